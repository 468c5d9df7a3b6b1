/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * fuzz_tool.c - libFuzzer target: shmq(1)'s segment reader.  The input is
 * one whole file of /dev/shm, a queue or a pipeline's control segment,
 * written as /dev/shm/shmpipe.fuzzPID.ctl (a name both kinds can have);
 * then every command that maps and interprets segments read-only runs on
 * it, in every output format, through tool_run() as shmq would from the
 * command line: show, peek, ls, check, ps and gc -n.  Not run: top (it
 * takes SIGINT and sleeps; it reads as ls does) and the commands that use
 * a queue (put, get, create, rm; fuzz_segment covers the library).
 *
 * The tool must not crash, leak, hang or say it was called wrongly (exit
 * 64) or failed inside (70), whatever the file holds; the seeds in
 * tests/fuzz/corpus/fuzz_tool are real queues and control segments from
 * tests/fuzz/mkseeds.c.  Its output goes to /dev/null (FUZZ_TOOL_OUTPUT=1
 * shows it, to look at one input).
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_shm.h"
#include "tool.h"

#define ARGS_MAX	8

int	LLVMFuzzerInitialize(int *argc, char ***argv);
int	LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The command lines; N is the segment's name, P its pipeline's. */
static const char *const runs[][ARGS_MAX] = {
	{ "show", "N" }, { "show", "-o", "json", "N" },
	{ "show", "-o", "csv", "N" }, { "show", "-o", "prom", "N" },
	{ "peek", "-n", "4", "N" }, { "peek", "-x", "-n", "2", "N" },
	{ "ls", "N" }, { "ls", "-o", "json", "N" }, { "ls", "-o", "csv", "N" },
	{ "ls", "-o", "prom", "N" }, { "check", "N" },
	{ "check", "-o", "json", "N" }, { "ps", "P" },
	{ "ps", "-o", "json", "P" }, { "ps", "-o", "csv", "P" },
	{ "ps", "-o", "prom", "P" },
	{ "gc", "-n", "N" },
};
#define NRUNS	(sizeof(runs) / sizeof(runs[0]))

static char	 pipe_name[32];		/* "fuzzPID" */
static FILE	*devnull;		/* the tool's stdout and stderr */

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_shm_init("shmpipe.fuzz", ".ctl");
	snprintf(pipe_name, sizeof(pipe_name), "fuzz%d", (int)getpid());
	if (getenv("FUZZ_TOOL_OUTPUT") == NULL &&
	    (devnull = fopen("/dev/null", "w")) == NULL)
		fuzz_fail("/dev/null", 0);
	return 0;
}

/* One command line of runs[] through tool_run(); its exit code. */
static int
run(const char *const *cmd)
{
	char *argv[ARGS_MAX + 2];
	FILE *out = stdout, *err = stderr;
	int argc = 0, code;

	argv[argc++] = "shmq";
	for (; argc <= ARGS_MAX && cmd[argc - 1] != NULL; argc++)
		argv[argc] = (char *)(strcmp(cmd[argc - 1], "N") == 0 ?
		    fuzz_shm_base() : strcmp(cmd[argc - 1], "P") == 0 ?
		    pipe_name : cmd[argc - 1]);
	argv[argc] = NULL;
	if (devnull != NULL) {
		stdout = stderr = devnull;
	}
	code = tool_run(argc, argv);
	stdout = out;
	stderr = err;
	return code;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_shm_write(data, size);
	for (size_t i = 0; i < NRUNS; i++) {
		int code = run(runs[i]);
		if (code == TOOL_EX_USAGE || code == TOOL_EX_SOFTWARE)
			fuzz_fail(runs[i][0], code);
	}
	fuzz_shm_unlink();
	tool_pid_forget();	/* pids met in one input mean nothing next */
	return 0;
}
