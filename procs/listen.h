/* SPDX-License-Identifier: BSD-2-Clause */
/* listen.h - the listening sockets a pipeline accepts clients on. */
#ifndef LISTEN_H
#define LISTEN_H

#include <stddef.h>

#include "options.h"

/*
 * Bind and listen (non-blocking, close-on-exec).  A Unix socket file left
 * by a dead server is replaced; one a live server answers on is not, nor
 * anything at the path that is not a socket (a symbolic link included).
 * The socket file made is removed by listen_cleanup(), or when this
 * process exits through exit(3) without calling it (a setup error), never
 * by a process forked from it.  Returns the fd, or -1 with one line
 * saying why in err.
 */
int	listen_open(const struct listen_spec *ls, char *err, size_t errlen);

/* Put the port a TCP socket got (for port 0) into ls, for log lines. */
void	listen_bound_port(int fd, struct listen_spec *ls);

/* Remove a Unix socket's path at shutdown, if it is still the socket file
 * listen_open() made in this process. */
void	listen_cleanup(const struct listen_spec *ls);

#endif /* LISTEN_H */
