# tests/fault.mk - build/shmpipe-fi: shmpipe with the crash points of
# libshmq and of its stages armed by SHMQ_FAULT=point[:n] (shmqueue/fault.h),
# for the tests that kill a stage at an exact instruction.

FI_PROCS_OBJS := $(PROCS_SRCS:%.c=$(BUILD)/fi/%.o)
LIBPIPE_FI    := $(BUILD)/libshmpipe-fi.a

$(BUILD)/fi/procs/%.o: procs/%.c $(HEADERS) | $(DEPS_OK)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(PC_CFLAGS) -Iprocs -DSHMQ_FAULT_INJECT -c $< -o $@

$(LIBPIPE_FI): $(FI_PROCS_OBJS)
	$(AR) rcs $@ $^

$(BUILD)/shmpipe-fi: $(BUILD)/fi/procs/shmpipe.o $(LIBPIPE_FI) $(LIBFI)
	$(CC) $(SANFLAGS) -rdynamic -o $@ $< $(LIBPIPE_FI) $(LIBFI) $(PC_LIBS) \
	  -pthread -ldl

$(CHECK): $(BUILD)/shmpipe-fi
