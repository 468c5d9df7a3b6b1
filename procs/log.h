/* SPDX-License-Identifier: BSD-2-Clause */
/* log.h - one line per event on stderr, stamped with time, pid and role. */
#ifndef LOG_H
#define LOG_H

#include <stdbool.h>

/* Name the pipeline and this process in its log lines: "supervisor",
 * "processor 2", ...  Once per process, before it starts any thread: the
 * pipeline's name is shared by all of them. */
void	log_init(const char *pipeline, const char *role);

/* Name this thread alone in its log lines (shmpipe-threaded's stages):
 * safe while other threads log. */
void	log_set_role(const char *role);

/* Log one event (printf format, no newline).  Safe to call from several
 * processes at once: each line is one write(2). */
void	log_event(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Silence routine events (--quiet); deaths and errors still show. */
void	log_quiet(bool quiet);
void	log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif /* LOG_H */
