/* SPDX-License-Identifier: BSD-2-Clause */
/* check_main.c - the test runner: every libshmq suite in one SRunner. */
#include <stdio.h>
#include <stdlib.h>

#include "check_util.h"

Suite	*proto_suite(void);	/* check_proto.c */
Suite	*loadgen_suite(void);	/* check_loadgen.c */
Suite	*pipeline_suite(void);	/* check_pipeline.c */
Suite	*pipeline_threaded_suite(void);	/* check_pipeline.c */
Suite	*shmq_tool_suite(void);	/* check_shmq_tool.c */
Suite	*limits_suite(void);	/* check_limits.c */

int
main(void)
{
	SRunner *sr;
	int failed, left;

	cu_init();
	sr = srunner_create(segment_suite());
	srunner_add_suite(sr, ring_suite());
	srunner_add_suite(sr, lease_suite());
	srunner_add_suite(sr, multiproc_suite());
	srunner_add_suite(sr, crash_suite());
	srunner_add_suite(sr, proto_suite());
	srunner_add_suite(sr, loadgen_suite());
	srunner_add_suite(sr, pipeline_suite());
	srunner_add_suite(sr, pipeline_threaded_suite());
	srunner_add_suite(sr, shmq_tool_suite());
	srunner_add_suite(sr, limits_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	/* A segment left by a test that passed is a failure too. */
	cu_sweep();
	left = cu_left_behind();
	if (left > 0 && failed == 0) {
		fprintf(stderr, "%d segment(s) left in /dev/shm\n", left);
		failed = 1;
	}
	/* The failure count is the exit status; keep it from wrapping to 0. */
	return failed < 255 ? failed : 255;
}
