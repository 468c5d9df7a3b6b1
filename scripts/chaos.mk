# scripts/chaos.mk - make chaos: a pipeline under load while its stages are
# SIGKILLed and paused at random (scripts/chaos.sh); make chaos-ci, the
# 30-second run CI does.
#
#   make chaos                        10 minutes, a SIGKILL every ~100 ms
#   make chaos CHAOS_SECONDS=60 CHAOS_ROLES=processor CHAOS_TRANSPORT=unix
#   make chaos CHAOS_ARGS='--seed 7 --keep'

CHAOS_SECONDS   ?= 600
CHAOS_INTERVAL  ?= 100
CHAOS_ROLES     ?= processor,request,reply
CHAOS_STOP_RATE ?= 2
CHAOS_TRANSPORT ?= tcp
CHAOS_ARGS      ?=
CHAOS_PROGS     := $(BUILD)/shmpipe $(BUILD)/shmpipe-bench $(BUILD)/shmq

.PHONY: chaos chaos-ci
chaos: $(CHAOS_PROGS)
	SHMPIPE_BUILD=$(BUILD) scripts/chaos.sh --duration $(CHAOS_SECONDS) \
	  --interval $(CHAOS_INTERVAL) --roles $(CHAOS_ROLES) \
	  --stop-rate $(CHAOS_STOP_RATE) --$(CHAOS_TRANSPORT) $(CHAOS_ARGS)

chaos-ci: $(CHAOS_PROGS)
	SHMPIPE_BUILD=$(BUILD) scripts/chaos.sh --duration 30 --interval 100 \
	  --roles processor,request,reply --stop-rate 2 --tcp

# make memcheck: a short pipeline, a processor and the reply process
# killed and replaced, and the drain, every process under valgrind
# (scripts/memcheck.sh): no error, no definite or indirect leak.
.PHONY: memcheck
memcheck: $(CHAOS_PROGS)
	SHMPIPE_BUILD=$(BUILD) scripts/memcheck.sh
