/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tool_scan.c - which files in /dev/shm are libshmq queues or pipeline
 * control segments, told from their first bytes (read with pread, never
 * mapped) so that other applications' files are left alone.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <err.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shmpipe_layout.h"
#include "shmq_layout.h"
#include "tool.h"

/* Room for either header; read, never mapped. */
union head {
	struct shmq_seg_header	h_q;
	struct shmpipe_ctl	h_p;
	unsigned char		h_bytes[sizeof(struct shmq_seg_header)];
};
static_assert(sizeof(struct shmq_seg_header) >= sizeof(struct shmpipe_ctl),
    "the queue header is the larger");

static const char *scan_pattern;	/* for scandir's filter */

static uint64_t
head_magic(const union head *h)
{
	/* Relaxed: a private copy. */
	return atomic_load_explicit(&h->h_q.magic, memory_order_relaxed);
}

static void
ent_queue(struct tool_ent *e, const struct shmq_seg_header *h)
{
	e->e_kind = TOOL_K_QUEUE;
	e->e_major = h->version_major;
	e->e_minor = h->version_minor;
	if (h->version_major != SHMQ_LAYOUT_MAJOR)
		return;		/* the rest may mean something else */
	e->e_header_size = h->header_size;
	e->e_seg_size = h->seg_size;
	e->e_capacity = h->capacity;
	e->e_msg_max = h->msg_max;
	e->e_max_procs = h->max_procs;
	e->e_lease_max = h->lease_max;
	e->e_creator = (pid_t)h->creator_pid;
	e->e_creator_start = h->creator_start;
	e->e_created_ns = h->created_ns;
}

static void
ent_pipe(struct tool_ent *e, const struct shmpipe_ctl *h)
{
	e->e_kind = TOOL_K_PIPE;
	e->e_major = h->version_major;
	e->e_minor = h->version_minor;
	if (h->version_major != SHMPIPE_LAYOUT_MAJOR)
		return;
	e->e_header_size = h->header_size;
	e->e_seg_size = h->seg_size;
	e->e_creator = (pid_t)h->supervisor_pid;
	e->e_creator_start = h->supervisor_start;
	e->e_created_ns = h->started_ns;
}

/*
 * Magic 0: a creator between its ftruncate and its release of the magic,
 * or one that died there.  Ours only if the fields written first (version,
 * header size, creator) say so.
 */
static bool
ent_half(struct tool_ent *e, const union head *h, size_t n)
{
	if (n >= sizeof(h->h_q) && h->h_q.version_major == SHMQ_LAYOUT_MAJOR &&
	    h->h_q.header_size == sizeof(h->h_q) && h->h_q.creator_pid != 0) {
		ent_queue(e, &h->h_q);
		e->e_kind = TOOL_K_QINIT;
		return true;
	}
	if (n >= sizeof(h->h_p) && h->h_p.version_major ==
	    SHMPIPE_LAYOUT_MAJOR && h->h_p.header_size == sizeof(h->h_p) &&
	    h->h_p.supervisor_pid != 0) {
		ent_pipe(e, &h->h_p);
		e->e_kind = TOOL_K_PINIT;
		return true;
	}
	return false;
}

/* Tell the kind from the header bytes; false if not ours. */
static bool
ent_kind(struct tool_ent *e, const union head *h, size_t n)
{
	uint64_t magic;

	if (n < sizeof(magic))
		return false;
	magic = head_magic(h);
	if (magic == SHMQ_SEG_MAGIC) {
		if (n >= offsetof(struct shmq_seg_header, seg_size) + 8)
			ent_queue(e, &h->h_q);
		else
			e->e_kind = TOOL_K_QUEUE; /* truncated: corrupt */
		return true;
	}
	if (magic == SHMPIPE_CTL_MAGIC) {
		if (n >= sizeof(h->h_p))
			ent_pipe(e, &h->h_p);
		else
			e->e_kind = TOOL_K_PIPE;
		return true;
	}
	return magic == 0 && ent_half(e, h, n);
}

static void
ent_stat(struct tool_ent *e, const struct stat *st)
{
	e->e_size = (uint64_t)st->st_size;
	e->e_dev = st->st_dev;
	e->e_ino = st->st_ino;
	e->e_uid = st->st_uid;
	e->e_mode = st->st_mode;
}

int
tool_classify(const char *name, struct tool_ent *e)
{
	char path[sizeof(TOOL_SHM_DIR) + TOOL_NAME_LEN];
	union head h;
	struct stat st;
	ssize_t n;
	int fd;

	memset(e, 0, sizeof(*e));
	if (strlcpy(e->e_name, name, sizeof(e->e_name)) >= sizeof(e->e_name))
		return -EPROTO;
	snprintf(path, sizeof(path), TOOL_SHM_DIR "/%s", name);
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY |
	    O_CLOEXEC);
	if (fd < 0 && (errno == EACCES || errno == EPERM)) {
		e->e_kind = TOOL_K_DENIED;
		e->e_err = errno;
		return 0;
	}
	if (fd < 0)
		return errno == ENOENT ? -ENOENT : -EPROTO;
	memset(&h, 0, sizeof(h));
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return -EPROTO;
	}
	ent_stat(e, &st);
	do
		n = pread(fd, h.h_bytes, sizeof(h.h_bytes), 0);
	while (n < 0 && errno == EINTR);
	close(fd);
	return n > 0 && ent_kind(e, &h, (size_t)n) ? 0 : -EPROTO;
}

static int
scan_filter(const struct dirent *de)
{
	if (de->d_name[0] == '.' || (de->d_type != DT_REG &&
	    de->d_type != DT_UNKNOWN))
		return 0;
	return scan_pattern == NULL ||
	    fnmatch(scan_pattern, de->d_name, FNM_PERIOD) == 0;
}

int
tool_scan(const char *pattern, unsigned kinds, tool_scan_fn fn, void *arg,
    unsigned *matched)
{
	struct dirent **list;
	struct tool_ent e;
	int n, r = 0;

	scan_pattern = pattern;
	if (matched != NULL)
		*matched = 0;
	if ((n = scandir(TOOL_SHM_DIR, &list, scan_filter, alphasort)) < 0)
		return -errno;
	for (int i = 0; i < n; i++) {
		if (r == 0 && tool_classify(list[i]->d_name, &e) == 0 &&
		    (e.e_kind & kinds) != 0) {
			if (matched != NULL)
				(*matched)++;
			r = fn(&e, arg);
		}
		free(list[i]);
	}
	free(list);
	return r;
}

bool
tool_pipe_name(const char *seg, char *pipe, size_t len, const char **suffix)
{
	static const char prefix[] = "shmpipe.";
	const char *dot = strrchr(seg, '.');
	size_t n;

	if (strncmp(seg, prefix, sizeof(prefix) - 1) != 0 || dot == NULL ||
	    (strcmp(dot, ".ctl") != 0 && strcmp(dot, ".req") != 0 &&
	    strcmp(dot, ".rep") != 0))
		return false;
	seg += sizeof(prefix) - 1;
	n = (size_t)(dot - seg);
	if (n == 0 || n >= len)
		return false;
	memcpy(pipe, seg, n);
	pipe[n] = '\0';
	if (suffix != NULL)
		*suffix = dot + 1;
	return true;
}

bool
tool_pipe_ctl(const char *seg)
{
	char pipe[TOOL_NAME_LEN];
	const char *suffix;

	return tool_pipe_name(seg, pipe, sizeof(pipe), &suffix) &&
	    strcmp(suffix, "ctl") == 0;
}

int
tool_lookup(const char *arg, unsigned kinds, struct tool_ent *e)
{
	char name[TOOL_NAME_LEN], shown[TOOL_NAME_LEN * 3];
	int r;

	if (tool_seg_name(arg, name, sizeof(name)) != 0)
		return TOOL_EX_USAGE;
	tool_safe(shown, sizeof(shown), name);
	if ((r = tool_classify(name, e)) == -ENOENT) {
		warnx("%s: no such segment", shown);
		return TOOL_EX_NOINPUT;
	}
	if (r == 0 && e->e_kind == TOOL_K_DENIED) {
		warnx("%s: permission denied", shown);
		return TOOL_EX_NOPERM;
	}
	if (r != 0 || (e->e_kind & kinds) == 0) {
		warnx("%s: %s", shown, r == 0 && (e->e_kind & (TOOL_K_PIPE |
		    TOOL_K_PINIT)) ? "a pipeline's control segment, not a "
		    "queue (see shmq ps)" : "not a libshmq queue");
		return TOOL_EX_DATAERR;
	}
	return 0;
}
