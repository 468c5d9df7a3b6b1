/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * fault.h - named crash points inside libshmq calls.  In test builds
 * (-DSHMQ_FAULT_INJECT, libshmq-fi.a) a process armed with
 * shmq_fault_arm("put.copied", 1) or SHMQ_FAULT=put.copied[:N] in its
 * environment calls _exit(SHMQ_FAULT_EXIT) the Nth time it reaches that
 * point (or stops, armed with shmq_fault_arm_stop); in normal builds SHMQ_FAULT() compiles to nothing.  The
 * environment may arm a few points, POINT[:N],POINT[:N]; with
 * SHMQ_FAULT_ONCE=DIR each fires in one process only, the first to get
 * there (fault.c), and with SHMQ_FAULT_STOP set they stop the process
 * instead.
 */
#ifndef SHMQ_FAULT_H
#define SHMQ_FAULT_H

#define SHMQ_FAULT_EXIT	86

#ifdef SHMQ_FAULT_INJECT
/* Every point, NULL-terminated, in the order the code reaches them. */
extern const char *const shmq_fault_points[];

/* Arm point (NULL disarms) to fire on its nth hit from now (n >= 1). */
void	shmq_fault_arm(const char *point, unsigned nth);
/* The same, but the process stops (SIGSTOP) there once, instead of dying:
 * a process slow at that point, for as long as the test wants. */
void	shmq_fault_arm_stop(const char *point, unsigned nth);
void	shmq__fault(const char *point);
#define SHMQ_FAULT(p)	shmq__fault(p)
#else
#define SHMQ_FAULT(p)	((void)0)
#endif

#endif /* SHMQ_FAULT_H */
