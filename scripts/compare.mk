# scripts/compare.mk - shmpipe (processes) against shmpipe-threaded
# (threads) under the same loads, and what a crash does to each:
#
#   make compare          every load, about 10 minutes (scripts/compare.sh)
#   make compare-quick    a few loads, under a minute
#   make compare COMPARE_FLAGS="--rounds 5"    (scripts/compare.sh --help)
#
# Figures, table and plot go to $(BUILD)/compare/; gnuplot-nox draws the
# plot (installed when root, else the plot is skipped with a message).
COMPARE_PROGS := $(BUILD)/shmpipe $(BUILD)/shmpipe-threaded \
                 $(BUILD)/shmpipe-bench $(BUILD)/shmq
.PHONY: compare compare-quick

COMPARE_FLAGS ?=

compare: $(COMPARE_PROGS)
	SHMPIPE_BUILD=$(BUILD) scripts/compare.sh $(COMPARE_FLAGS)

compare-quick: $(COMPARE_PROGS)
	SHMPIPE_BUILD=$(BUILD) scripts/compare.sh --quick
