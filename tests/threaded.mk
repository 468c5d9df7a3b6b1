# tests/threaded.mk - shmpipe-threaded's integration tests under
# ThreadSanitizer, with the test runner, the servers and shmpipe-bench
# all built with -fsanitize=thread into build-thread/:
#
#   make SANITIZER=thread test-tsan     (plain `make test-tsan` does the same)
#
# A report in a server fails its test: cp_stop asserts exit 0 (TSan exits
# 66 after a report) and a log without "Sanitizer" in it.
.PHONY: test-tsan

ifeq ($(findstring thread,$(SANITIZER)),)
test-tsan:
	$(MAKE) --no-print-directory SANITIZER=thread test-tsan
else
test-tsan: $(CHECK)
	SHMPIPE_BUILD=$(BUILD) CK_RUN_SUITE=pipeline_threaded \
	  CK_DEFAULT_TIMEOUT=300 $(CHECK)
endif
