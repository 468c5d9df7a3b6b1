# Makefile - shmpipe: the libshmq queue library, its tests and benchmarks.
#
#   make                  build everything into build/
#   make test             build and run every test
#   make bench            throughput and latency against the baselines
#   make SANITIZER=address,undefined test   (into build-address-undefined/)
#   make install PREFIX=/usr/local DESTDIR=
#   make WERROR=1         warnings are errors (CI)

VERSION  := $(shell sed -n 's/^\#define SHMQ_VERSION[[:space:]]*"\(.*\)"/\1/p' include/shmq.h)
PREFIX   ?= /usr/local
DESTDIR  ?=
CC       ?= cc
CFLAGS   ?= -O2 -g
SANITIZER ?=
WERROR   ?=

comma    := ,
BUILD    := build$(if $(SANITIZER),-$(subst $(comma),-,$(SANITIZER)))

# Debian packages that provide what pkg-config looks for.
DEB_PKGS := pkg-config libbsd-dev libmd-dev check
PC_PKGS  := libbsd-overlay libmd check
# What the installed programs link: Check is for the tests alone.
PC_PROG  := libbsd-overlay libmd

WARN     := -std=c11 -Wall -Wextra -Wstrict-prototypes -Wmissing-prototypes \
            -Wshadow -Wpointer-arith $(if $(WERROR),-Werror)
SANFLAGS := $(if $(SANITIZER),-fsanitize=$(SANITIZER) -fno-omit-frame-pointer \
            -fno-sanitize-recover=all)
# TSan does not model atomic_thread_fence, and GCC says so (-Wtsan).  The
# fences in libshmq order atomics only (the sleep/wake-up handshake, seqlocks
# of atomic fields): no plain access depends on them, so the races TSan can
# see are the same without them.  Quieted where the compiler knows the flag.
ifneq ($(findstring thread,$(SANITIZER)),)
SANFLAGS += $(shell $(CC) -Werror -Wno-tsan -x c -c /dev/null -o /dev/null \
            2>/dev/null && echo -Wno-tsan)
endif
ALL_CFLAGS = $(WARN) $(CFLAGS) $(SANFLAGS) -fPIC -pthread -Iinclude -Ishmqueue
LDLIBS_LIB := -pthread
PC_CFLAGS   = $(shell pkg-config --cflags $(PC_PKGS) 2>/dev/null)
PC_LIBS     = $(shell pkg-config --libs $(PC_PROG) 2>/dev/null)
PC_TESTLIBS = $(shell pkg-config --libs $(PC_PKGS) 2>/dev/null)

LIB_SRCS := $(addprefix shmqueue/,segment.c ring.c lease.c wait.c recover.c stats.c)

# procs/: every file that is not a program's main goes into libshmpipe.a.
PROCS_MAINS := procs/shmpipe.c procs/shmpipe_threaded.c procs/loadgen.c \
               procs/handler_example.c
PROCS_SRCS := $(filter-out $(PROCS_MAINS),$(wildcard procs/*.c))
PROCS_OBJS := $(PROCS_SRCS:%.c=$(BUILD)/%.o)
LIBPIPE  := $(BUILD)/libshmpipe.a
# shmq(1), the inspection tool: shmqueue/tool*.c.
TOOL_SRCS := $(wildcard shmqueue/tool*.c)
TOOL_OBJS := $(TOOL_SRCS:%.c=$(BUILD)/%.o)
PROGS    := $(if $(wildcard procs/shmpipe.c),$(BUILD)/shmpipe) \
            $(if $(wildcard procs/shmpipe_threaded.c),$(BUILD)/shmpipe-threaded) \
            $(if $(wildcard procs/loadgen.c),$(BUILD)/shmpipe-bench) \
            $(if $(wildcard procs/handler_example.c),$(BUILD)/handler_example.so) \
            $(if $(TOOL_SRCS),$(BUILD)/shmq)
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/%.o)
FI_OBJS  := $(LIB_SRCS:%.c=$(BUILD)/fi/%.o) $(BUILD)/fi/shmqueue/fault.o
TEST_SRCS := $(wildcard tests/check_*.c)
TEST_OBJS := $(TEST_SRCS:%.c=$(BUILD)/%.o)
HEADERS  := $(wildcard include/*.h shmqueue/*.h procs/*.h tests/*.h)

LIBA     := $(BUILD)/libshmq.a
LIBSO    := $(BUILD)/libshmq.so.$(VERSION)
SONAME   := libshmq.so.$(firstword $(subst ., ,$(VERSION)))
LIBFI    := $(BUILD)/libshmq-fi.a
CHECK    := $(BUILD)/tests/check_all
BENCH    := $(BUILD)/shmq-bench
DEPS_OK  := $(BUILD)/.deps-ok

.PHONY: all test check bench install uninstall clean deps headers-check run
all: $(LIBA) $(LIBSO) $(BUILD)/shmq.pc $(PROGS)

# Dependencies: install them when root, else say exactly what to run.
deps: $(DEPS_OK)
$(DEPS_OK):
	@mkdir -p $(BUILD)
	@if ! pkg-config --exists $(PC_PKGS) 2>/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing missing build dependencies: $(DEB_PKGS)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq $(DEB_PKGS) >/dev/null || exit 1; \
	  else \
	    echo "missing build dependencies; run: sudo apt-get install $(DEB_PKGS)" >&2; \
	    exit 1; \
	  fi; \
	fi
	@touch $@

$(BUILD)/%.o: %.c $(HEADERS) | $(DEPS_OK)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/procs/%.o: procs/%.c $(HEADERS) | $(DEPS_OK)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(PC_CFLAGS) -Iprocs -c $< -o $@

$(TOOL_OBJS): $(BUILD)/%.o: %.c $(HEADERS) | $(DEPS_OK)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(PC_CFLAGS) -Iprocs -c $< -o $@

$(BUILD)/fi/%.o: %.c $(HEADERS) | $(DEPS_OK)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -DSHMQ_FAULT_INJECT -c $< -o $@

$(BUILD)/tests/%.o: tests/%.c $(HEADERS) | $(DEPS_OK)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(PC_CFLAGS) -Iprocs -DSHMQ_FAULT_INJECT -c $< -o $@

$(LIBA): $(LIB_OBJS)
	$(AR) rcs $@ $^

$(LIBFI): $(FI_OBJS)
	$(AR) rcs $@ $^

$(LIBSO): $(LIB_OBJS)
	$(CC) -shared -Wl,-soname,$(SONAME) $(SANFLAGS) -o $@ $^ $(LDLIBS_LIB)
	ln -sf $(notdir $@) $(BUILD)/$(SONAME)
	ln -sf $(SONAME) $(BUILD)/libshmq.so

$(BUILD)/shmq.pc: shmq.pc.in include/shmq.h
	@mkdir -p $(@D)
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' $< > $@

$(LIBPIPE): $(PROCS_OBJS)
	$(AR) rcs $@ $^

PROG_LIBS = $(LIBPIPE) $(LIBA) $(PC_LIBS) -pthread -ldl

$(BUILD)/shmpipe: $(BUILD)/procs/shmpipe.o $(LIBPIPE) $(LIBA)
	$(CC) $(SANFLAGS) -rdynamic -o $@ $< $(PROG_LIBS)

$(BUILD)/shmpipe-threaded: $(BUILD)/procs/shmpipe_threaded.o $(LIBPIPE) $(LIBA)
	$(CC) $(SANFLAGS) -rdynamic -o $@ $< $(PROG_LIBS)

$(BUILD)/shmq: $(TOOL_OBJS) $(BUILD)/procs/ctl.o $(BUILD)/procs/utf8.o \
    $(BUILD)/procs/longopt.o $(LIBA)
	$(CC) $(SANFLAGS) -o $@ $^ $(PC_LIBS) -pthread

$(BUILD)/shmpipe-bench: $(BUILD)/procs/loadgen.o $(LIBPIPE) $(LIBA)
	$(CC) $(SANFLAGS) -o $@ $< $(PROG_LIBS)

$(BUILD)/handler_example.so: procs/handler_example.c include/shmpipe_handler.h
	@mkdir -p $(@D)
	$(CC) $(WARN) $(CFLAGS) -fPIC -shared -Iinclude -o $@ $<

$(CHECK): $(TEST_OBJS) $(LIBFI) $(LIBPIPE) $(PROGS) $(BENCH)
	$(CC) $(SANFLAGS) -o $@ $(TEST_OBJS) $(LIBPIPE) $(LIBFI) $(PC_TESTLIBS) -pthread -ldl

$(BENCH): $(BUILD)/shmqueue/bench.o $(LIBA)
	$(CC) $(SANFLAGS) -o $@ $^ -pthread -lrt

# Each public header compiles on its own, strictly.
headers-check: | $(DEPS_OK)
	@for h in include/*.h; do \
	  printf '#include "%s"\nint main(void){return 0;}\n' $$(basename $$h) | \
	  $(CC) -std=c11 -pedantic -Wall -Wextra -Werror -Iinclude -x c - \
	    -o /dev/null || exit 1; done; echo "headers compile alone"

test check: $(CHECK) headers-check
	SHMPIPE_BUILD=$(BUILD) CK_DEFAULT_TIMEOUT=120 $(CHECK)

bench: $(BENCH)
	$(BENCH)
	$(MAKE) --no-print-directory $(BUILD)/shmq $(BUILD)/shmpipe $(BUILD)/shmpipe-bench
	SHMPIPE_BUILD=$(BUILD) scripts/bench-shmq-tool.sh
	SHMPIPE_BUILD=$(BUILD) scripts/bench-pipeline.sh

# The pipeline in the foreground with its defaults (^C drains and stops it).
run: all
	$(BUILD)/shmpipe

# What install puts under DESTDIR/PREFIX: the programs this tree builds,
# the library, the public headers, the example handler and the manuals.
DEST         = $(DESTDIR)$(PREFIX)
BIN_NAMES    := shmpipe shmpipe-threaded shmpipe-bench shmq
INSTALL_BINS := $(filter $(addprefix $(BUILD)/,$(BIN_NAMES)),$(PROGS))
MAN1         := $(wildcard man/*.1)
MAN3         := $(wildcard man/*.3)
EXAMPLE      := $(wildcard procs/handler_example.c)

install: all
	install -d $(DEST)/bin $(DEST)/lib $(DEST)/lib/pkgconfig $(DEST)/include \
	  $(DEST)/share/man/man1 $(DEST)/share/man/man3 $(DEST)/share/doc/shmpipe
	$(if $(INSTALL_BINS),install -m 755 $(INSTALL_BINS) $(DEST)/bin/)
	install -m 644 $(LIBA) $(DEST)/lib/
	install -m 755 $(LIBSO) $(DEST)/lib/
	ln -sf $(notdir $(LIBSO)) $(DEST)/lib/$(SONAME)
	ln -sf $(SONAME) $(DEST)/lib/libshmq.so
	install -m 644 include/shmq.h include/shmq_layout.h \
	  include/shmpipe_handler.h include/shmpipe_layout.h $(DEST)/include/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' shmq.pc.in \
	  > $(DEST)/lib/pkgconfig/shmq.pc
	chmod 644 $(DEST)/lib/pkgconfig/shmq.pc
	$(if $(EXAMPLE),install -m 644 $(EXAMPLE) $(DEST)/share/doc/shmpipe/)
	$(if $(MAN1),install -m 644 $(MAN1) $(DEST)/share/man/man1/)
	$(if $(MAN3),install -m 644 $(MAN3) $(DEST)/share/man/man3/)
	@# Into the system itself, as root: tell the loader of libshmq.so.0.
	$(if $(DESTDIR),,@if [ "$$(id -u)" = 0 ] && command -v ldconfig \
	  >/dev/null; then ldconfig; fi)

uninstall:
	rm -f $(addprefix $(DEST)/bin/,$(BIN_NAMES)) \
	  $(DEST)/lib/libshmq.a $(DEST)/lib/$(notdir $(LIBSO)) \
	  $(DEST)/lib/$(SONAME) $(DEST)/lib/libshmq.so \
	  $(DEST)/lib/pkgconfig/shmq.pc \
	  $(addprefix $(DEST)/include/,shmq.h shmq_layout.h shmpipe_handler.h \
	    shmpipe_layout.h) \
	  $(DEST)/share/doc/shmpipe/handler_example.c \
	  $(addprefix $(DEST)/share/man/man1/,$(sort shmpipe.1 shmpipe-bench.1 \
	    shmq.1 $(notdir $(MAN1)))) \
	  $(addprefix $(DEST)/share/man/man3/,$(sort shmq.3 $(notdir $(MAN3))))
	rmdir $(DEST)/share/doc/shmpipe 2>/dev/null || true

# Lint the manual pages (Debian package mandoc); notes about pages that
# are not installed on this machine are below -Wwarning.
man-check:
	mandoc -Tlint -Wwarning $(wildcard man/*.[0-9])
.PHONY: man-check

clean:
	rm -rf build build-*

# Further targets live next to what they drive: make fuzz (tests/fuzz/),
# make compare and make chaos (scripts/), the threaded build's tests.
include $(sort $(wildcard tests/*.mk tests/fuzz/*.mk scripts/*.mk))
