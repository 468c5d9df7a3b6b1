/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * tool_peek.c - shmq peek: the next messages of a queue, copied through a
 * read-only mapping without consuming them; printable text as it is,
 * anything else as a hex dump.
 */
#define _GNU_SOURCE
#include <err.h>
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "shmq_layout.h"
#include "tool.h"

#define PEEK_RETRIES	1000	/* a message that keeps changing */

struct peek {
	const struct tool_ent	*p_ent;
	struct shmq		*p_q;
	unsigned char		*p_buf;
	long long		 p_count;
	bool			 p_hex;
	int			 p_shown;
};

static bool
printable(const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((p[i] < 0x20 && p[i] != '\t') || p[i] >= 0x7f)
			return false;
	return true;
}

/* hexdump -C style. */
static void
hex_dump(const unsigned char *p, size_t n)
{
	for (size_t off = 0; off < n; off += 16) {
		printf("  %08zx ", off);
		for (size_t i = off; i < off + 16; i++)
			if (i < n)
				printf("%s%02x", i == off + 8 ? "  " : " ",
				    p[i]);
			else
				printf("%s  ", i == off + 8 ? "   " : " ");
		printf("  |");
		for (size_t i = off; i < off + 16 && i < n; i++)
			putchar(p[i] >= 0x20 && p[i] < 0x7f ? p[i] : '.');
		printf("|\n");
	}
}

static void
peek_print(const struct peek *p, unsigned k, size_t len)
{
	if (!p->p_hex && printable(p->p_buf, len)) {
		printf("#%u %zu bytes: %.*s\n", k, len, (int)len,
		    (const char *)p->p_buf);
		return;
	}
	printf("#%u %zu bytes%s\n", k, len, p->p_hex ? ":" : ", binary:");
	hex_dump(p->p_buf, len);
}

static int
peek_run(void *arg)
{
	struct peek *p = arg;
	uint32_t cap;

	p->p_q = shmq_open_flags(p->p_ent->e_name, SHMQ_OPEN_RDONLY |
	    SHMQ_OPEN_ANY_OWNER | SHMQ_OPEN_ANY_MODE);
	if (p->p_q == NULL)
		return -errno;
	cap = shmq_msg_max(p->p_q);
	if ((p->p_buf = malloc(cap ? cap : 1)) == NULL)
		return -ENOMEM;
	for (unsigned k = 0; k < p->p_count; k++) {
		ssize_t n = -EAGAIN;
		for (int t = 0; t < PEEK_RETRIES && n == -EAGAIN; t++)
			n = shmq_peek(p->p_q, k, p->p_buf, cap);
		if (n == -ENOENT)
			break;
		if (n < 0) {
			printf("#%u (changing too fast to copy)\n", k);
			continue;
		}
		peek_print(p, k, (size_t)n);
		p->p_shown++;
	}
	return 0;
}

/* What the header says before mapping: 0, or why not to map. */
static int
peek_precheck(const struct tool_ent *e)
{
	if (e->e_kind == TOOL_K_QINIT)
		return EAGAIN;
	if (e->e_major != SHMQ_LAYOUT_MAJOR)
		return EPROTONOSUPPORT;
	if (e->e_size < sizeof(struct shmq_seg_header) ||
	    e->e_size < e->e_seg_size)
		return ENODATA;
	return e->e_size == e->e_seg_size ? 0 : EBADMSG;
}

int
tool_cmd_peek(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "count", required_argument, NULL, 'n' },
		{ "hex", no_argument, NULL, 'x' },
		{ "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 }
	};
	struct tool_ent e;
	struct peek p = { .p_ent = &e, .p_count = 10 };
	int ch, r;

	while ((ch = getopt_long(argc, argv, ":hn:x", longopts, NULL)) != -1) {
		if (ch == 'h')
			return tool_help("peek");
		if (ch == 'x')
			p.p_hex = true;
		else if (ch != 'n')
			return tool_opt_bad("peek", ch, argv, longopts);
		else if (!tool_num(optarg, 1, 1000000, &p.p_count))
			return tool_usage("peek", "-n: expected a count, "
			    "1..1000000");
	}
	if (argc - optind != 1)
		return tool_usage("peek", "expected one NAME");
	if ((r = tool_lookup(argv[optind], TOOL_K_QUEUE | TOOL_K_QINIT,
	    &e)) != 0)
		return r;
	if ((r = peek_precheck(&e)) == 0)
		r = -tool_guard(peek_run, &p);
	shmq_close(p.p_q);
	free(p.p_buf);
	return r != 0 ? tool_queue_fail(&e, r) : 0;
}
