/* SPDX-License-Identifier: BSD-2-Clause */
/* listen.c - bind the --listen addresses before any stage is forked. */
#define _GNU_SOURCE
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "listen.h"

#define BACKLOG	1024

/*
 * The socket files this process made, so that whatever way it exits
 * through exit(3) -- a later --listen that fails, any setup error --
 * takes them along, and so that only the very file it made is removed:
 * not what someone put at its path since.  Forked stages inherit the
 * table and the atexit(3) handler; made_pid keeps their hands off.
 */
static struct made {
	char	 m_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	dev_t	 m_dev;
	ino_t	 m_ino;
} made[OPT_MAX_LISTEN];
static pid_t	made_pid;

static int
fail(char *err, size_t errlen, const struct listen_spec *ls, const char *what,
    int e)
{
	char where[300];

	options_listen_str(ls, where, sizeof(where));
	snprintf(err, errlen, "cannot listen on %s: %s: %s", where, what,
	    strerror(e));
	return -1;
}

/* Is something already accepting on this Unix path? */
static bool
unix_in_use(const struct sockaddr_un *sun)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool live;

	if (fd < 0)
		return false;
	live = connect(fd, (const struct sockaddr *)sun, sizeof(*sun)) == 0;
	close(fd);
	return live;
}

static void
made_remove(struct made *m)
{
	struct stat st;

	if (m->m_path[0] != '\0' && lstat(m->m_path, &st) == 0 &&
	    S_ISSOCK(st.st_mode) && st.st_dev == m->m_dev &&
	    st.st_ino == m->m_ino)
		unlink(m->m_path);
	m->m_path[0] = '\0';
}

static void
made_remove_all(void)
{
	if (getpid() != made_pid)
		return;
	for (size_t i = 0; i < OPT_MAX_LISTEN; i++)
		made_remove(&made[i]);
}

/* Note the socket file just bound at path; false if it cannot be. */
static bool
made_add(const char *path)
{
	struct made *m = NULL;
	struct stat st;

	for (size_t i = 0; m == NULL && i < OPT_MAX_LISTEN; i++)
		if (made[i].m_path[0] == '\0')
			m = &made[i];
	if (m == NULL) {
		errno = ENOBUFS;	/* more than --listen allows */
		return false;
	}
	if (lstat(path, &st) != 0)
		return false;
	if (made_pid == 0 && atexit(made_remove_all) != 0) {
		errno = ENOMEM;
		return false;
	}
	made_pid = getpid();
	strlcpy(m->m_path, path, sizeof(m->m_path));
	m->m_dev = st.st_dev;
	m->m_ino = st.st_ino;
	return true;
}

static const char *
file_kind(mode_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFREG: return "a regular file";
	case S_IFDIR: return "a directory";
	case S_IFLNK: return "a symbolic link";
	case S_IFIFO: return "a FIFO";
	case S_IFCHR: case S_IFBLK: return "a device";
	default: return "not a socket";
	}
}

/*
 * Clear the way for our socket: a socket file nobody answers on (a dead
 * server's) is removed; anything else there -- a file, a directory, a
 * symbolic link even to a socket -- is not ours to remove.
 */
static int
unix_clear(const struct listen_spec *ls, const struct sockaddr_un *sun,
    char *err, size_t errlen)
{
	struct stat st;

	if (lstat(ls->ls_path, &st) != 0)
		return 0;			/* nothing there, or bind says */
	if (!S_ISSOCK(st.st_mode)) {
		snprintf(err, errlen, "--listen unix:%s: %s exists and is not "
		    "a socket (%s)", ls->ls_path, ls->ls_path,
		    file_kind(st.st_mode));
		return -1;
	}
	if (unix_in_use(sun))
		return fail(err, errlen, ls, "a server is answering there",
		    EADDRINUSE);
	unlink(ls->ls_path);
	return 0;
}

static int
listen_unix(const struct listen_spec *ls, char *err, size_t errlen)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd, e;

	strlcpy(sun.sun_path, ls->ls_path, sizeof(sun.sun_path));
	if (unix_clear(ls, &sun, err, errlen) != 0)
		return -1;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return fail(err, errlen, ls, "socket", errno);
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
		e = errno;
		close(fd);
		return fail(err, errlen, ls, "bind", e);
	}
	/* The file is ours from here: gone again if we cannot keep it. */
	if (!made_add(ls->ls_path)) {
		e = errno;
		close(fd);
		unlink(ls->ls_path);
		return fail(err, errlen, ls, "bind", e);
	}
	if (listen(fd, BACKLOG) != 0) {
		e = errno;
		close(fd);
		listen_cleanup(ls);
		return fail(err, errlen, ls, "listen", e);
	}
	return fd;
}

static int
listen_tcp(const struct listen_spec *ls, char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC,
	    .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE };
	struct addrinfo *ai;
	int fd, one = 1, r;

	if ((r = getaddrinfo(ls->ls_host, ls->ls_port, &hints, &ai)) != 0) {
		char where[300];
		options_listen_str(ls, where, sizeof(where));
		snprintf(err, errlen, "cannot listen on %s: %s", where,
		    gai_strerror(r));
		return -1;
	}
	fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, ai->ai_protocol);
	if (fd < 0) {
		freeaddrinfo(ai);
		return fail(err, errlen, ls, "socket", errno);
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 ||
	    listen(fd, BACKLOG) != 0) {
		int e = errno;
		freeaddrinfo(ai);
		close(fd);
		return fail(err, errlen, ls, "bind", e);
	}
	freeaddrinfo(ai);
	return fd;
}

int
listen_open(const struct listen_spec *ls, char *err, size_t errlen)
{
	return ls->ls_unix ? listen_unix(ls, err, errlen) :
	    listen_tcp(ls, err, errlen);
}

void
listen_cleanup(const struct listen_spec *ls)
{
	if (!ls->ls_unix || getpid() != made_pid)
		return;
	for (size_t i = 0; i < OPT_MAX_LISTEN; i++)
		if (strcmp(made[i].m_path, ls->ls_path) == 0)
			made_remove(&made[i]);
}

void
listen_bound_port(int fd, struct listen_spec *ls)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	unsigned port;

	if (ls->ls_unix || getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
		return;
	port = ntohs(ss.ss_family == AF_INET6 ?
	    ((struct sockaddr_in6 *)&ss)->sin6_port :
	    ((struct sockaddr_in *)&ss)->sin_port);
	snprintf(ls->ls_port, sizeof(ls->ls_port), "%u", port);
}
