/* SPDX-License-Identifier: BSD-2-Clause */
/* tool_main.c - main() of shmq(1); the rest is in tool.c (tool_run), so
 * that tests/fuzz/fuzz_tool.c can run the tool in its own process. */
#include "tool.h"

int
main(int argc, char **argv)
{
	return tool_run(argc, argv);
}
