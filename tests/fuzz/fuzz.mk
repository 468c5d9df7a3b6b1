# tests/fuzz/fuzz.mk - libFuzzer targets under ASan+UBSan, built with clang
# into build-fuzz/ (included by the Makefile).
#
#   make fuzz               each target for FUZZ_SECONDS (60), one after
#                           another; fails if any finds a crash, a leak, a
#                           hang (> FUZZ_TIMEOUT s) or a sanitizer report
#   make fuzz FUZZ_SECONDS=300 FUZZ_TARGETS=fuzz_proto
#   make fuzz-build         only build them
#   make fuzz-seeds         regenerate the corpus tests/fuzz/corpus/ (mkseeds)
#
# Targets: fuzz_segment (attach to a mutated segment and use it), fuzz_tool
# (shmq's read-only segment reader), fuzz_proto (the request-line protocol).
# A run reads the committed corpus tests/fuzz/corpus/TARGET/ and writes what
# it finds to the scratch tests/fuzz/corpus-TARGET/ (ignored by git), so the
# committed corpus changes only through make fuzz-seeds.  Crashing inputs go
# to build-fuzz/artifacts/TARGET/; reproduce one with
#	build-fuzz/TARGET build-fuzz/artifacts/TARGET/crash-...
# Needs clang and its runtimes (Debian: clang libclang-rt-dev), installed
# like the other dependencies: by the build when run as root, else it says
# which command to run.

FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_TIMEOUT ?= 30
FUZZ_TARGETS ?= fuzz_segment fuzz_tool fuzz_proto

FZ           := build-fuzz
FZ_DEB_PKGS  := clang libclang-rt-dev $(DEB_PKGS)
FZ_DEPS_OK   := $(FZ)/.deps-ok
FZ_SAN       := -fsanitize=address,undefined -fno-sanitize-recover=all \
                -fno-omit-frame-pointer
# Every object carries the fuzzer's coverage; the same flags for all, and
# libbsd's overlay for those that need it (harmless to the others).
FZ_CFLAGS     = $(WARN) -O1 -g $(FZ_SAN) -pthread -Iinclude -Ishmqueue \
                -Iprocs -Itests/fuzz $(PC_CFLAGS)
FZ_COV       := -fsanitize=fuzzer-no-link

FZ_LIB       := $(LIB_SRCS:%.c=$(FZ)/%.o)
FZ_TOOL      := $(filter-out %/tool_main.o,$(TOOL_SRCS:%.c=$(FZ)/%.o)) \
                $(FZ)/procs/ctl.o $(FZ)/procs/utf8.o $(FZ)/procs/longopt.o
FZ_SHM       := $(FZ)/tests/fuzz/fuzz_shm.o
FZ_BINS      := $(addprefix $(FZ)/,fuzz_segment fuzz_tool fuzz_proto \
                handler_example.so)
# mkseeds kills its children at libshmq's fault points: the -fi objects.
FZ_FI        := $(addprefix $(FZ)/fi/,$(LIB_SRCS:.c=.o) shmqueue/fault.o \
                procs/ctl.o tests/fuzz/mkseeds.o)

# libFuzzer's options for every run, and per target.
FZ_RUN_OPTS   = -max_total_time=$(FUZZ_SECONDS) -timeout=$(FUZZ_TIMEOUT) \
                -rss_limit_mb=2048 -print_final_stats=1
FZ_OPTS_fuzz_proto := -dict=tests/fuzz/proto.dict -max_len=8192

.PHONY: fuzz fuzz-build fuzz-seeds fuzz-deps

fuzz-deps: $(FZ_DEPS_OK)
$(FZ_DEPS_OK):
	@mkdir -p $(FZ)
	@ok() { pkg-config --exists $(PC_PKGS) 2>/dev/null && \
	  echo 'int LLVMFuzzerTestOneInput(const char *d, long n) {return 0;}' | \
	  $(FUZZ_CC) -fsanitize=fuzzer,address,undefined -x c - \
	    -o $(FZ)/.deps-probe 2>/dev/null; }; \
	if ! ok; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing missing fuzzing dependencies: $(FZ_DEB_PKGS)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq $(FZ_DEB_PKGS) >/dev/null || exit 1; \
	    ok || { echo "$(FUZZ_CC) cannot build a libFuzzer target" >&2; \
	      exit 1; }; \
	  else \
	    echo "missing fuzzing dependencies; run: sudo apt-get install" \
	      "$(FZ_DEB_PKGS)" >&2; \
	    exit 1; \
	  fi; \
	fi; rm -f $(FZ)/.deps-probe
	@touch $@

$(FZ)/%.o: %.c $(HEADERS) tests/fuzz/fuzz_shm.h | $(FZ_DEPS_OK)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FZ_CFLAGS) $(FZ_COV) -c $< -o $@

$(FZ)/fi/%.o: %.c $(HEADERS) | $(FZ_DEPS_OK)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FZ_CFLAGS) -DSHMQ_FAULT_INJECT -c $< -o $@

$(FZ)/fuzz_segment: $(FZ)/tests/fuzz/fuzz_segment.o $(FZ_SHM) $(FZ_LIB)
	$(FUZZ_CC) $(FZ_SAN) -fsanitize=fuzzer -o $@ $^ -pthread

$(FZ)/fuzz_tool: $(FZ)/tests/fuzz/fuzz_tool.o $(FZ_SHM) $(FZ_TOOL) $(FZ_LIB)
	$(FUZZ_CC) $(FZ_SAN) -fsanitize=fuzzer -o $@ $^ $(PC_LIBS) -pthread

$(FZ)/fuzz_proto: $(FZ)/tests/fuzz/fuzz_proto.o $(FZ)/procs/proto.o \
    $(FZ)/procs/handlers.o $(FZ)/procs/ctl.o $(FZ)/procs/log.o $(FZ_LIB) \
    | $(FZ)/handler_example.so
	$(FUZZ_CC) $(FZ_SAN) -fsanitize=fuzzer -o $@ $(filter %.o,$^) \
	  $(PC_LIBS) -pthread -ldl

# Loaded by fuzz_proto; instrumented, so its code counts as coverage too.
$(FZ)/handler_example.so: procs/handler_example.c include/shmpipe_handler.h \
    | $(FZ_DEPS_OK)
	$(FUZZ_CC) $(WARN) -O1 -g $(FZ_SAN) $(FZ_COV) -fPIC -shared -Iinclude \
	  -o $@ $<

$(FZ)/mkseeds: $(FZ_FI)
	$(FUZZ_CC) $(FZ_SAN) -o $@ $^ $(PC_LIBS) -pthread

fuzz-build: $(FZ_BINS)

# A fuzz target that libFuzzer stops from outside (-timeout, out of
# memory) cannot remove its shared memory object; this does, for every
# object of the targets' naming whose process is gone.
FZ_SWEEP = for f in /dev/shm/shmq-fuzz-seg-* /dev/shm/shmpipe.fuzz*.ctl; do \
	  p=$${f\#/dev/shm/shmq-fuzz-seg-}; p=$${p\#/dev/shm/shmpipe.fuzz}; \
	  p=$${p%.ctl}; [ -e "$$f" ] && ! kill -0 "$$p" 2>/dev/null && \
	  rm -f "$$f"; done; true

# One target's run; fail=1 if it found something.
fz_run = mkdir -p tests/fuzz/corpus-$(1) $(FZ)/artifacts/$(1); \
	echo "== $(1): $(FUZZ_SECONDS) s"; \
	$(FZ)/$(1) $(FZ_RUN_OPTS) $(FZ_OPTS_$(1)) \
	  -artifact_prefix=$(FZ)/artifacts/$(1)/ \
	  tests/fuzz/corpus-$(1) tests/fuzz/corpus/$(1) || fail=1; \
	$(FZ_SWEEP);

# One after another, whatever -j says: they share the CPUs.
fuzz: $(FZ_BINS)
	@fail=0; $(foreach t,$(FUZZ_TARGETS),$(call fz_run,$(t))) \
	if [ $$fail = 0 ]; then echo "fuzz: no findings"; else \
	  echo "fuzz: findings in $(FZ)/artifacts/" >&2; exit 1; fi

# The seed corpus, regenerated whole: the same bytes each time.
fuzz-seeds: $(FZ)/mkseeds
	rm -rf tests/fuzz/corpus
	$(FZ)/mkseeds tests/fuzz/corpus
