/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * fuzz_shm.h - the one POSIX shared memory object a fuzz target writes
 * each input to, and its removal however the run ends: after each input,
 * in fuzz_fail(), in a sanitizer's report (its error summary hook), and -
 * for runs killed from outside, e.g. by libFuzzer's -timeout - by the next
 * run, which sweeps objects of this kind whose process is gone.
 */
#ifndef FUZZ_SHM_H
#define FUZZ_SHM_H

#include <stddef.h>

/*
 * Name the object prefix PID suffix (no '/'), e.g. "shmq-fuzz-seg-" and ""
 * for "/shmq-fuzz-seg-1234", and unlink those of the same shape left by
 * processes that no longer exist.  Call once, from LLVMFuzzerInitialize.
 */
void		 fuzz_shm_init(const char *prefix, const char *suffix);

/* The name, with its leading '/', and without it (for /dev/shm). */
const char	*fuzz_shm_path(void);
const char	*fuzz_shm_base(void);

/* A new object holding exactly these bytes (the old one unlinked). */
void		 fuzz_shm_write(const void *data, size_t size);

/* Unlink it; async-signal-safe, harmless if it is not there. */
void		 fuzz_shm_unlink(void);

/* The target found a broken contract: say what, unlink, abort(3) (which
 * libFuzzer catches and reports as a crash, saving the input). */
void		 fuzz_fail(const char *what, long v) __attribute__((noreturn));

#endif /* FUZZ_SHM_H */
