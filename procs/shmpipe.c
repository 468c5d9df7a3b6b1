/* SPDX-License-Identifier: BSD-2-Clause */
/* shmpipe.c - main: a request pipeline of supervised processes. */
#define _GNU_SOURCE
#include <stdlib.h>
#include <unistd.h>

#include "options.h"
#include "proto.h"
#include "supervisor.h"

extern char **environ;

int
main(int argc, char **argv)
{
	struct options opt;

	proto_watch_exit();	/* the first atexit(3): run last */
	options_std_fds();	/* before anything is opened */
	setproctitle_init(argc, argv, environ);
	options_parse(&opt, argc, argv, false);
	return supervisor_run(&opt);
}
