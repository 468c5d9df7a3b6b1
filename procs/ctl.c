/* SPDX-License-Identifier: BSD-2-Clause */
/* ctl.c - create, check and map a pipeline's control segment. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ctl.h"
#include "shmq.h"

#define ALIGN	64

struct geom {
	uint32_t in_size, conn_size, reply_max, slab_size;
	uint64_t procs_off, conns_off, slab_off, verdicts_off, seg_size;
};

bool
ctl_name_ok(const char *pipeline)
{
	size_t n = strlen(pipeline);

	/* A '.' at either end makes ".." with the '.' around it in the
	 * segment names ("/shmpipe..x.req"), which shmq_create refuses. */
	if (n == 0 || n > 40 || strstr(pipeline, "..") != NULL ||
	    pipeline[0] == '.' || pipeline[n - 1] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = pipeline[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		    (ch >= '0' && ch <= '9') || ch == '_' || ch == '.' ||
		    ch == '-'))
			return false;
	}
	return true;
}

int
ctl_seg_name(char *buf, size_t len, const char *pipeline, const char *suffix)
{
	if (!ctl_name_ok(pipeline))
		return -EINVAL;
	if ((size_t)snprintf(buf, len, "/shmpipe.%s.%s", pipeline, suffix) >=
	    len)
		return -ENAMETOOLONG;
	return 0;
}

uint32_t
ctl_reply_max(uint32_t max_line)
{
	return max_line + 256;		/* "OK " + an echo, or an ERR */
}

static uint64_t
align(uint64_t n)
{
	return (n + ALIGN - 1) / ALIGN * ALIGN;
}

static void
geom_compute(struct geom *g, uint32_t nprocs, uint32_t max_conns,
    uint32_t max_line, uint32_t slots)
{
	g->in_size = 4096;
	while (g->in_size < 2 * (max_line + 1))
		g->in_size <<= 1;
	g->conn_size = (uint32_t)align(sizeof(struct shmpipe_conn) +
	    g->in_size);
	g->reply_max = ctl_reply_max(max_line);
	g->slab_size = (uint32_t)align(sizeof(struct shmpipe_slab) +
	    g->reply_max);
	g->procs_off = align(sizeof(struct shmpipe_ctl));
	g->conns_off = g->procs_off + (uint64_t)nprocs *
	    sizeof(struct shmpipe_proc);
	g->slab_off = g->conns_off + (uint64_t)max_conns * g->conn_size;
	g->verdicts_off = g->slab_off + (uint64_t)slots * g->slab_size;
	g->seg_size = align(g->verdicts_off + CTL_NVERDICTS *
	    sizeof(struct shmpipe_verdict));
}

/* The copy every reader of the segment goes by (struct ctl_geom). */
static void
geom_copy(struct ctl_geom *cg, uint32_t nprocs, uint32_t max_conns,
    uint32_t max_line, uint32_t slots, uint32_t conn_window,
    const struct geom *g)
{
	cg->nprocs = nprocs;
	cg->conn_window = conn_window;
	cg->max_conns = max_conns;
	cg->max_line = max_line;
	cg->slab_slots = slots;
	cg->nverdicts = CTL_NVERDICTS;
	cg->in_size = g->in_size;
	cg->conn_size = g->conn_size;
	cg->reply_max = g->reply_max;
	cg->slab_size = g->slab_size;
	cg->procs_off = g->procs_off;
	cg->conns_off = g->conns_off;
	cg->slab_off = g->slab_off;
	cg->verdicts_off = g->verdicts_off;
}

static void
header_fill(struct shmpipe_ctl *h, const char *pipeline,
    const struct ctl_params *p, const struct geom *g)
{
	struct timespec ts;

	h->version_major = SHMPIPE_LAYOUT_MAJOR;
	h->version_minor = SHMPIPE_LAYOUT_MINOR;
	h->header_size = sizeof(*h);
	h->supervisor_pid = (uint32_t)getpid();
	h->supervisor_start = shmq_pid_start(getpid());
	h->flags = p->flags;
	clock_gettime(CLOCK_REALTIME, &ts);
	h->started_ns = (uint64_t)ts.tv_sec * 1000000000u +
	    (uint64_t)ts.tv_nsec;
	strlcpy(h->name, pipeline, sizeof(h->name));
	h->nprocs = p->nprocs;
	h->proc_size = sizeof(struct shmpipe_proc);
	h->max_conns = p->max_conns;
	h->conn_size = g->conn_size;
	h->in_size = g->in_size;
	h->max_line = p->max_line;
	h->reply_max = g->reply_max;
	h->slab_slots = p->window;
	h->slab_size = g->slab_size;
	h->nverdicts = CTL_NVERDICTS;
	h->conn_window = p->conn_window;
	h->max_deliveries = p->max_deliveries;
	h->request_timeout_ms = p->request_timeout_ms;
	h->procs_off = g->procs_off;
	h->conns_off = g->conns_off;
	h->slab_off = g->slab_off;
	h->verdicts_off = g->verdicts_off;
	h->seg_size = g->seg_size;
	atomic_store_explicit(&h->phase, SHMPIPE_PHASE_RUNNING,
	    memory_order_relaxed);
}

static uint64_t
ctl_size(const struct ctl_params *p)
{
	struct geom g;

	geom_compute(&g, p->nprocs, p->max_conns, p->max_line, p->window);
	return g.seg_size;
}

/* Size, map and fill the segment behind fd; magic last.  0 or -errno. */
static int
create_on_fd(struct ctl *c, int fd, const char *pipeline,
    const struct ctl_params *p)
{
	struct geom g;
	void *base;
	int r;

	geom_compute(&g, p->nprocs, p->max_conns, p->max_line, p->window);
	if ((r = posix_fallocate(fd, 0, (off_t)g.seg_size)) != 0)
		return -r;
	base = mmap(NULL, g.seg_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
	    0);
	if (base == MAP_FAILED)
		return -errno;
	c->c_base = base;
	c->c_hdr = base;
	c->c_size = g.seg_size;
	c->c_fd = -1;
	geom_copy(&c->c_g, p->nprocs, p->max_conns, p->max_line, p->window,
	    p->conn_window, &g);
	header_fill(c->c_hdr, pipeline, p, &g);
	for (uint32_t i = 0; i < p->nprocs; i++)
		atomic_store_explicit(&ctl_proc(c, i)->last_status, -1,
		    memory_order_relaxed);
	/* Release: pairs with the acquire in ctl_open; the rest is whole. */
	atomic_store_explicit(&c->c_hdr->magic, SHMPIPE_CTL_MAGIC,
	    memory_order_release);
	return 0;
}

int
ctl_create(struct ctl *c, const char *pipeline, const struct ctl_params *p)
{
	char path[64];
	int fd, r;

	if ((r = ctl_seg_name(path, sizeof(path), pipeline, "ctl")) != 0)
		return r;
	fd = shm_open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	r = create_on_fd(c, fd, pipeline, p);
	close(fd);
	if (r != 0)
		shm_unlink(path);
	return r;
}

/*
 * The memfd stays open, named like the segment it stands for, so that a
 * process of the same user can find it through /proc/PID/fd and map it
 * read-only (ctl_open_pid); it goes with the process, crash or not.
 */
int
ctl_create_anon(struct ctl *c, const char *pipeline,
    const struct ctl_params *p)
{
	char name[64];
	int fd, r;

	if ((r = ctl_seg_name(name, sizeof(name), pipeline, "ctl")) != 0)
		return r;
	if (ctl_size(p) > shmq_anon_room())
		return -ENOSPC;		/* as the named segment would */
	if ((fd = memfd_create(name + 1, MFD_CLOEXEC)) < 0)
		return -errno;
	if ((r = create_on_fd(c, fd, pipeline, p)) != 0) {
		close(fd);
		return r;
	}
	c->c_fd = fd;
	return 0;
}

/*
 * Every size and offset must be what the counts imply; the geometry into
 * *cg.  Each count is read once: another process may be changing the
 * header, and a count checked and then read again could be another one.
 */
static int
header_check(const struct shmpipe_ctl *h, size_t file_size,
    struct ctl_geom *cg)
{
	struct geom g;
	/* Acquire: pairs with the release of the magic in ctl_create. */
	uint64_t magic = atomic_load_explicit(&h->magic, memory_order_acquire);
	uint32_t nprocs, max_conns, max_line, slots, window;

	if (magic == 0)
		return -EAGAIN;
	if (magic != SHMPIPE_CTL_MAGIC)
		return -EPROTO;
	if (h->version_major != SHMPIPE_LAYOUT_MAJOR)
		return -EPROTONOSUPPORT;
	/* Volatile: one load each, which the compiler may not repeat. */
	nprocs = *(const volatile uint32_t *)&h->nprocs;
	max_conns = *(const volatile uint32_t *)&h->max_conns;
	max_line = *(const volatile uint32_t *)&h->max_line;
	slots = *(const volatile uint32_t *)&h->slab_slots;
	window = *(const volatile uint32_t *)&h->conn_window;
	if (h->header_size != sizeof(*h) || nprocs == 0 || nprocs > 4096 ||
	    window == 0 || (window & (window - 1)) != 0 || window > slots ||
	    max_conns == 0 || max_conns > 1 << 20 || max_line == 0 ||
	    max_line > 1 << 24 || slots == 0 || slots > 1 << 22 ||
	    h->nverdicts != CTL_NVERDICTS ||
	    h->proc_size != sizeof(struct shmpipe_proc) ||
	    memchr(h->name, '\0', sizeof(h->name)) == NULL)
		return -EBADMSG;
	geom_compute(&g, nprocs, max_conns, max_line, slots);
	if (h->conn_size != g.conn_size || h->in_size != g.in_size ||
	    h->reply_max != g.reply_max || h->slab_size != g.slab_size ||
	    h->procs_off != g.procs_off || h->conns_off != g.conns_off ||
	    h->slab_off != g.slab_off || h->verdicts_off != g.verdicts_off ||
	    h->seg_size != g.seg_size)
		return -EBADMSG;
	if (file_size < g.seg_size)
		return -ENODATA;
	if (file_size != g.seg_size)
		return -EBADMSG;
	geom_copy(cg, nprocs, max_conns, max_line, slots, window, &g);
	return 0;
}

/* Ours alone: our euid's, no permission for group or others. */
static bool
owned(const struct stat *st)
{
	return st->st_uid == geteuid() && (st->st_mode & 077) == 0;
}

bool
ctl_seg_foreign(const char *pipeline, const char *suffix, char *why,
    size_t len)
{
	char path[64];
	struct stat st;
	int fd;

	if (ctl_seg_name(path, sizeof(path), pipeline, suffix) != 0)
		return false;
	if ((fd = shm_open(path, O_RDONLY | O_NONBLOCK | O_NOFOLLOW |
	    O_CLOEXEC, 0)) < 0) {
		snprintf(why, len, "%s: %s", path, strerror(errno));
		return errno == EACCES;		/* there, and not ours */
	}
	if (fstat(fd, &st) != 0)
		st.st_uid = geteuid(), st.st_mode = 0600;
	close(fd);
	snprintf(why, len, "%s is owned by uid %u, mode %03o", path,
	    (unsigned)st.st_uid, (unsigned)(st.st_mode & 0777));
	return !owned(&st);
}

int
ctl_open_fd(struct ctl *c, int fd, unsigned flags)
{
	bool rdonly = flags & CTL_OPEN_RDONLY;
	struct stat st;
	void *base;
	int r;

	if (fstat(fd, &st) != 0)
		return -errno;
	/* What was opened is what is mapped: a FIFO or a device in the
	 * segment's place is not one. */
	if (!S_ISREG(st.st_mode))
		return -EPROTO;
	if (!(flags & CTL_OPEN_ANY) && !owned(&st))
		return -EPERM;
	if ((size_t)st.st_size < sizeof(struct shmpipe_ctl))
		return st.st_size == 0 ? -EAGAIN : -ENODATA;
	base = mmap(NULL, (size_t)st.st_size, rdonly ? PROT_READ :
	    PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (base == MAP_FAILED)
		return -errno;
	if ((r = header_check(base, (size_t)st.st_size, &c->c_g)) != 0) {
		munmap(base, (size_t)st.st_size);
		return r;
	}
	c->c_base = base;
	c->c_hdr = base;
	c->c_size = (size_t)st.st_size;
	c->c_fd = -1;
	return 0;
}

int
ctl_open(struct ctl *c, const char *pipeline, unsigned flags)
{
	bool rdonly = flags & CTL_OPEN_RDONLY;
	char path[64];
	int fd, r;

	if ((r = ctl_seg_name(path, sizeof(path), pipeline, "ctl")) != 0)
		return r;
	/* Non-blocking: a FIFO put by this name in /dev/shm, which anyone
	 * may write, would block a read-only open for good. */
	fd = shm_open(path, (rdonly ? O_RDONLY : O_RDWR) | O_NONBLOCK |
	    O_NOFOLLOW | O_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	r = ctl_open_fd(c, fd, flags);
	close(fd);
	return r;
}

#define MEMFD_PREFIX	"/memfd:shmpipe."
#define MEMFD_SUFFIX	".ctl (deleted)"

/*
 * The pipeline whose control memfd a /proc/PID/fd link names, into name
 * (SHMPIPE_NAME_MAX); false if the link is something else.
 */
static bool
memfd_pipeline(const char *link, char *name)
{
	size_t n = strlen(link), pre = strlen(MEMFD_PREFIX),
	    suf = strlen(MEMFD_SUFFIX);

	if (n <= pre + suf || n - pre - suf >= SHMPIPE_NAME_MAX ||
	    strncmp(link, MEMFD_PREFIX, pre) != 0 ||
	    strcmp(link + n - suf, MEMFD_SUFFIX) != 0)
		return false;
	memcpy(name, link + pre, n - pre - suf);
	name[n - pre - suf] = '\0';
	return ctl_name_ok(name);
}

/*
 * The number of pid's fd that is the control memfd of pipeline, or of the
 * first pipeline found if that is NULL (its name then into found_name, if
 * not NULL); -ENOENT if none, -ESRCH if no process pid, or -errno of /proc.
 */
static int
memfd_find(pid_t pid, const char *pipeline, char *found_name)
{
	char dir[32], path[300], link[128], name[SHMPIPE_NAME_MAX];
	struct dirent *de;
	ssize_t n;
	DIR *d;
	int found = -1;

	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
	if ((d = opendir(dir)) == NULL)
		return errno == ENOENT ? -ESRCH : -errno;
	while (found < 0 && (de = readdir(d)) != NULL) {
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		n = readlink(path, link, sizeof(link) - 1);
		link[n > 0 ? n : 0] = '\0';
		if (memfd_pipeline(link, name) && (pipeline == NULL ||
		    strcmp(name, pipeline) == 0))
			found = atoi(de->d_name);
	}
	closedir(d);
	if (found >= 0 && found_name != NULL)
		strlcpy(found_name, name, SHMPIPE_NAME_MAX);
	return found >= 0 ? found : -ENOENT;
}

int
ctl_pid_pipeline(pid_t pid, char *name)
{
	int n = memfd_find(pid, NULL, name);

	return n < 0 ? n : 0;
}

int
ctl_open_pid(struct ctl *c, pid_t pid, const char *pipeline, unsigned flags)
{
	bool rdonly = flags & CTL_OPEN_RDONLY;
	char path[64];
	int fd, n, r;

	if (!ctl_name_ok(pipeline))
		return -EINVAL;
	if ((n = memfd_find(pid, pipeline, NULL)) < 0)
		return n;
	snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)pid, n);
	/* Followed (a /proc link), but not waited on if it is a FIFO now. */
	if ((fd = open(path, (rdonly ? O_RDONLY : O_RDWR) | O_NONBLOCK |
	    O_CLOEXEC)) < 0)
		return -errno;
	/* A memfd is always mode 0777; who may reach it through /proc/PID/fd
	 * is decided by that process's ptrace rules instead. */
	r = ctl_open_fd(c, fd, flags | CTL_OPEN_ANY);
	close(fd);
	return r;
}

void
ctl_close(struct ctl *c)
{
	if (c->c_base != NULL) {
		munmap(c->c_base, c->c_size);
		if (c->c_fd >= 0)
			close(c->c_fd);
	}
	c->c_fd = -1;
	c->c_base = NULL;
	c->c_hdr = NULL;
}
