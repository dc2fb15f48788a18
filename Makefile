# SlimKV - plain GNU make.
#   make            libraries (static + shared), tests, demo, bench and the tools/ programs
#   make demo       run the demo (installs missing Debian packages first)
#   make test       run the test suite (same)
#   make cross-test build for aarch64 and run the tests under qemu-aarch64
#   make cross-test-armhf  the same for 32-bit ARM (armhf) under qemu-arm
#   make install    PREFIX=/usr/local DESTDIR= (the library, its header and
#                   pkg-config file; slimkv-run, -plan and -prune in BINDIR)
#   make V=1        show the commands
# A toolchain file sets CROSS_COMPILE and the runner: make TOOLCHAIN=aarch64-linux-gnu

SHELL := /bin/bash

TOOLCHAIN ?=
ifneq ($(TOOLCHAIN),)
include toolchains/$(TOOLCHAIN).mk
endif

CROSS_COMPILE ?=
ifeq ($(origin CC),default)
CC := $(CROSS_COMPILE)gcc
endif
ifeq ($(origin CXX),default)
CXX := $(CROSS_COMPILE)g++
endif
AR := $(CROSS_COMPILE)ar

CFLAGS ?= -O2 -g
CPPFLAGS ?=
LDFLAGS ?=
LDLIBS ?=
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
DESTDIR ?=
# Prefix for running target binaries (qemu for cross builds).
RUNNER ?=

MACHINE := $(shell $(CC) -dumpmachine)
ARCH := $(firstword $(subst -, ,$(MACHINE)))
BUILD ?= build/$(ARCH)

# The version lives in include/slimkv.h only (slimkv_version() reports it).
version_part = $(shell sed -n 's/^\#define SLIMKV_VERSION_$(1) \([0-9][0-9]*\)$$/\1/p' include/slimkv.h)
VERSION := $(call version_part,MAJOR).$(call version_part,MINOR).$(call version_part,PATCH)
SONAME := libslimkv.so.$(call version_part,MAJOR)

ifeq ($(V),1)
Q :=
else
Q := @
endif

# Project flags come after the user's so that the essentials stay on.
# _FILE_OFFSET_BITS=64: 64-bit off_t, stat and readdir on 32-bit targets too
# (files past 2 GiB, 64-bit inode numbers and directory offsets).
ALL_CPPFLAGS := -Iinclude -Isimd -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 $(CPPFLAGS)
ALL_CFLAGS := -std=c11 -Wall -Wextra -fPIC -fvisibility=hidden -fopenmp $(CFLAGS)
LIBS := -lsleef -lcjson -lm -lpthread -ldl

CORE_SRC := $(wildcard src/*.c src/safetensors/*.c) simd/scalar.c
# SIMD=0 builds the portable scalar kernels only.
SIMD ?= 1
ifeq ($(SIMD),1)
ifeq ($(ARCH),x86_64)
SIMD_SRC := $(wildcard simd/x86/*.c)
endif
ifeq ($(ARCH),aarch64)
SIMD_SRC := $(wildcard simd/arm/*.c)
endif
ifeq ($(ARCH),arm)
# 32-bit ARM: the NEON files, no dot-product variant (an AArch64 table only).
SIMD_SRC := $(filter-out %_dotprod_neon.c,$(wildcard simd/arm/*.c))
endif
else
ALL_CPPFLAGS += -DSLIMKV_SCALAR_ONLY
endif
LIB_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(CORE_SRC) $(SIMD_SRC))

# ISA flags per file, never global: one binary holds every variant.
AVX2_FLAGS := -mavx2 -mfma -mf16c
AVX512_FLAGS := $(AVX2_FLAGS) -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni
NEON_FLAGS :=
# 32-bit ARM: NEON + VFPv4 (FMA) for the NEON files only; the rest stays at
# the compiler's baseline, so the scalar kernels run on a CPU without NEON.
ifeq ($(ARCH),arm)
NEON_FLAGS := -mfpu=neon-vfpv4 -mfloat-abi=hard
endif
$(BUILD)/%_avx2.o: ISA_FLAGS := $(AVX2_FLAGS)
$(BUILD)/%_avx512.o: ISA_FLAGS := $(AVX512_FLAGS)
$(BUILD)/%_neon.o: ISA_FLAGS := $(NEON_FLAGS)
# gcc also gets this from the file's target pragma; clang needs the flag.
$(BUILD)/%_dotprod_neon.o: ISA_FLAGS := -march=armv8.2-a+dotprod

TEST_SRC := $(wildcard tests/test_*.c)
TEST_BIN := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRC))
TEST_COMMON := $(BUILD)/tests/oracle.o

STATIC_LIB := $(BUILD)/libslimkv.a
# The safetensors reader and writer (src/safetensors/): part of libslimkv,
# and alone for the programs and tests that use it (-Isrc/safetensors,
# linked by name before libslimkv.a, whose allocator it calls).
ST_LIB := $(BUILD)/libslimkv_safetensors.a
ST_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(wildcard src/safetensors/*.c))
SHARED_LIB := $(BUILD)/$(SONAME)
PC_FILE := $(BUILD)/slimkv.pc
DEMO := $(BUILD)/slimkv-demo
BENCH := $(BUILD)/slimkv-bench
# The programs users run: tools/NAME/ holds the main of $(BUILD)/slimkv-NAME
# and its own modules; tools/common/ the option parsing plan and prune
# share. A program's modules that tests use are a named static library with
# its header (found with -Itools/NAME), linked by name like every internal
# library (LINK_INTERNAL below). slimkv-run and its model library: tools/run/run.mk.
RUN := $(BUILD)/slimkv-run
PLAN := $(BUILD)/slimkv-plan
PRUNE := $(BUILD)/slimkv-prune
PROGRAMS := $(RUN) $(PLAN) $(PRUNE)
# tools/plan: the budget search and calibration files; tools/prune: weight-side pruning.
PLAN_LIB := $(BUILD)/libslimkv_plan.a
PLAN_LIB_OBJ := $(BUILD)/tools/plan/budget.o $(BUILD)/tools/plan/calib.o
PRUNE_LIB := $(BUILD)/libslimkv_prune.a
PRUNE_LIB_OBJ := $(BUILD)/tools/prune/weights.o
CLI_OBJ := $(BUILD)/tools/common/cli.o

.SECONDARY:
.PHONY: all lib tests demo test bench cross-test cross-test-armhf arm-dispatch-checks sanitize-test valgrind-test \
  stress fuzz fuzz-seeds deps install uninstall clean
all: lib tests $(DEMO) $(BENCH) $(PROGRAMS)
lib: $(STATIC_LIB) $(ST_LIB) $(SHARED_LIB) $(PC_FILE)
tests: $(TEST_BIN) $(PROGRAMS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(if $(Q),@echo "  CC      $<")
	$(Q)$(CC) $(ALL_CPPFLAGS) $(ALL_CFLAGS) $(ISA_FLAGS) -MMD -MP -c $< -o $@

$(STATIC_LIB): $(LIB_OBJ)
$(ST_LIB): $(ST_OBJ)
$(STATIC_LIB) $(ST_LIB):
	$(if $(Q),@echo "  AR      $@")
	$(Q)rm -f $@ && $(AR) rcs $@ $^
# safetensors.c includes src/internal.h (the allocator); its header does not.
$(ST_OBJ): ALL_CPPFLAGS += -Isrc

$(SHARED_LIB): $(LIB_OBJ)
	$(if $(Q),@echo "  LD      $@")
	$(Q)$(CC) -shared -fopenmp -Wl,-soname,$(SONAME) $(LDFLAGS) -o $@ $^ $(LIBS) $(LDLIBS)
	$(Q)ln -sf $(SONAME) $(BUILD)/libslimkv.so

$(PC_FILE): Makefile
	@mkdir -p $(dir $@)
	$(Q)printf '%s\n' 'prefix=$(PREFIX)' 'libdir=$(LIBDIR)' 'includedir=$(INCLUDEDIR)' '' \
	  'Name: slimkv' 'Description: Quantized, channel-pruned KV cache with attention on compressed storage' \
	  'Version: $(VERSION)' 'Libs: -L$${libdir} -lslimkv' 'Libs.private: -fopenmp $(LIBS)' \
	  'Cflags: -I$${includedir}' > $@

# Internal static libraries among a link's prerequisites ($(BUILD)/libNAME.a,
# in prerequisite order), linked by name before libslimkv.a.
LINK_INTERNAL = -L$(BUILD) $(patsubst $(BUILD)/lib%.a,-l%,$(filter-out $(STATIC_LIB),$(filter $(BUILD)/lib%.a,$^)))
LINK = $(CC) -fopenmp $(LDFLAGS) -o $@ $(filter-out %.a,$^) $(LINK_INTERNAL) $(STATIC_LIB)

$(BUILD)/tests/%: $(BUILD)/tests/%.o $(TEST_COMMON) $(STATIC_LIB)
	$(if $(Q),@echo "  LD      $@")
	$(Q)$(LINK) -lcmocka $(LIBS) $(LDLIBS)
$(BUILD)/tests/test_tools: $(PLAN_LIB) $(PRUNE_LIB) $(ST_LIB)
$(BUILD)/tests/test_tools.o: ALL_CPPFLAGS += -Itools/plan -Itools/prune -Isrc/safetensors
$(BUILD)/tests/test_files $(BUILD)/tests/test_snapshot_hostile $(BUILD)/tests/test_evict: $(ST_LIB)
$(BUILD)/tests/test_files.o $(BUILD)/tests/test_snapshot_hostile.o $(BUILD)/tests/test_evict.o: \
  ALL_CPPFLAGS += -Isrc/safetensors
# tests/tools_cli.sh runs the programs on the command line; cli_fixture
# writes their synthetic inputs and checks their outputs (public API and the
# safetensors reader). Not a test itself: no cmocka.
CLI_FIXTURE := $(BUILD)/tests/cli_fixture
tests: $(CLI_FIXTURE)
$(CLI_FIXTURE): $(BUILD)/tests/cli_fixture.o $(ST_LIB) $(STATIC_LIB)
	$(if $(Q),@echo "  LD      $@")
	$(Q)$(LINK) $(LIBS) $(LDLIBS)
$(BUILD)/tests/cli_fixture.o: ALL_CPPFLAGS += -Isrc/safetensors
# The tests that look inside the library (internal.h) get -Isrc; the stress
# campaign in tests/stress/ shares the tests' helpers (-Itests).
TEST_INTERNAL_OBJ := $(addprefix $(BUILD)/tests/,oracle.o test_cache.o test_dispatch.o test_kernels.o \
  test_snapshot_hostile.o test_truncate_fork.o)
$(TEST_INTERNAL_OBJ): ALL_CPPFLAGS += -Isrc
$(BUILD)/tests/stress/%.o: ALL_CPPFLAGS += -Itests

BENCH_COMMON := $(BUILD)/bench/workload.o
$(BUILD)/slimkv-%: $(BUILD)/bench/%.o $(BENCH_COMMON) $(STATIC_LIB)
	$(if $(Q),@echo "  LD      $@")
	$(Q)$(LINK) $(LIBS) $(LDLIBS)

$(PLAN_LIB): $(PLAN_LIB_OBJ)
$(PRUNE_LIB): $(PRUNE_LIB_OBJ)
$(PLAN_LIB) $(PRUNE_LIB):
	$(if $(Q),@echo "  AR      $@")
	$(Q)rm -f $@ && $(AR) rcs $@ $^

$(PLAN): $(BUILD)/tools/plan/plan.o $(CLI_OBJ) $(PLAN_LIB) $(ST_LIB) $(STATIC_LIB)
$(PRUNE): $(BUILD)/tools/prune/prune.o $(CLI_OBJ) $(PRUNE_LIB) $(ST_LIB) $(STATIC_LIB)
$(PLAN) $(PRUNE):
	$(if $(Q),@echo "  LD      $@")
	$(Q)$(LINK) $(LIBS) $(LDLIBS)
$(BUILD)/tools/plan/%.o $(BUILD)/tools/prune/%.o: ALL_CPPFLAGS += -Isrc/safetensors
$(BUILD)/tools/plan/plan.o $(BUILD)/tools/prune/prune.o: ALL_CPPFLAGS += -Itools/common

deps:
	$(Q)sh toolchains/install-deps.sh $(TOOLCHAIN)

# The README's two commands.
demo: deps
	$(Q)$(MAKE) --no-print-directory $(DEMO)
	$(RUNNER) $(DEMO)

test: deps
	$(Q)$(MAKE) --no-print-directory tests
	$(Q)failed=0; for t in $(TEST_BIN) $(EXTRA_TEST_BIN); do echo "== $$t"; $(RUNNER) $$t || failed=$$((failed + 1)); done; \
	  echo "== tests/tools_cli.sh: slimkv-plan, slimkv-prune and slimkv-run on the command line"; \
	  bash tests/tools_cli.sh $(BUILD) $(RUNNER) || failed=$$((failed + $$?)); \
	  for isa in scalar bogus; do echo "== SLIMKV_ISA=$$isa $(BUILD)/tests/test_dispatch"; \
	    SLIMKV_ISA=$$isa $(RUNNER) $(BUILD)/tests/test_dispatch || failed=$$((failed + 1)); done; \
	  for e in $(CUDA_TEST_ENVS); do echo "== $${e//,/ } $(BUILD)/tests/test_cuda"; \
	    env $${e//,/ } $(RUNNER) $(BUILD)/tests/test_cuda || failed=$$((failed + 1)); done; \
	  echo "test programs and command-line checks failed: $$failed"; [ $$failed -eq 0 ]

bench: $(BENCH)
	$(RUNNER) $(BENCH) $(BENCH_ARGS)

# ARM: the whole library and tests for aarch64 under qemu. qemu-user 7.2 here
# hangs when a program starts a thread or forks: one OpenMP thread, and the
# tests that need threads skip (SLIMKV_TEST_NO_THREADS). SLIMKV_TEST_QUICK=1:
# the heavy tests repeat less under the emulator (tests/oracle.h,
# test_quick: every format, policy, eviction and edge case still, fewer
# combinations of them and shorter runs; `make test` runs them all).
cross-test:
	$(Q)OMP_NUM_THREADS=1 SLIMKV_TEST_NO_THREADS=1 SLIMKV_TEST_QUICK=1 $(MAKE) --no-print-directory \
	  TOOLCHAIN=aarch64-linux-gnu test

# 32-bit ARM (armhf) the same way under qemu-arm, then its dispatch checks.
cross-test-armhf:
	$(Q)OMP_NUM_THREADS=1 SLIMKV_TEST_NO_THREADS=1 SLIMKV_TEST_QUICK=1 $(MAKE) --no-print-directory \
	  TOOLCHAIN=arm-linux-gnueabihf test
	$(Q)$(MAKE) --no-print-directory TOOLCHAIN=arm-linux-gnueabihf arm-dispatch-checks

# 32-bit ARM: SLIMKV_ISA=neon, and =neon-dotprod (no such table there: refused
# as an unknown name is), then "auto" on qemu CPU models with NEON + VFPv4,
# with NEON but no VFPv4, and without NEON (the last two: scalar).
ARM_CPU_CHECKS := cortex-a7:neon cortex-a9:scalar cortex-r5f:scalar
arm-dispatch-checks: $(BUILD)/tests/test_dispatch
	$(Q)failed=0; for isa in neon neon-dotprod; do echo "== SLIMKV_ISA=$$isa $<"; \
	    SLIMKV_ISA=$$isa $(RUNNER) $< || failed=$$((failed + 1)); done; \
	  for c in $(ARM_CPU_CHECKS); do echo "== -cpu $${c%%:*} $<: auto must be $${c#*:}"; \
	    SLIMKV_TEST_EXPECT_ISA=$${c#*:} $(RUNNER) -cpu $${c%%:*} $< || failed=$$((failed + 1)); done; \
	  echo "dispatch checks failed: $$failed"; [ $$failed -eq 0 ]

# The suite under AddressSanitizer + UndefinedBehaviorSanitizer (own build
# dir), quick as under qemu (SLIMKV_TEST_QUICK=1: every code path, fewer
# repetitions; `make test` runs the full sizes).
SANITIZE_FLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
sanitize-test:
	$(Q)SLIMKV_TEST_QUICK=1 $(MAKE) --no-print-directory BUILD=build/sanitize-$(ARCH) CFLAGS="$(SANITIZE_FLAGS)" \
	  LDFLAGS="-fsanitize=address,undefined" test

# The suite under valgrind memcheck (one OpenMP thread keeps it quick), less
# the programs whose long O(n^2) prefills take many minutes there (ASan
# covers them); SLIMKV_TEST_QUICK=1 as under qemu (cross-test): the heavy
# tests repeat less, `make test` runs them in full.
VALGRIND := valgrind -q --error-exitcode=99 --leak-check=full --show-possibly-lost=no --errors-for-leak-kinds=definite
VALGRIND_TESTS := $(filter-out %/test_policies %/test_model %/test_snapshot_hostile,$(TEST_BIN))
# Each program runs on one thread, so two run side by side (VALGRIND_JOBS),
# each into its own log, printed in order afterwards.
VALGRIND_JOBS ?= 2
valgrind-test: tests
	$(Q)sh toolchains/install-deps.sh valgrind
	$(Q)printf '%s\n' $(VALGRIND_TESTS) | xargs -P $(VALGRIND_JOBS) -I{} sh -c \
	  'OMP_NUM_THREADS=1 SLIMKV_TEST_QUICK=1 $(VALGRIND) {} > {}.valgrind.log 2>&1; echo $$? > {}.valgrind.rc'
	$(Q)failed=0; for t in $(VALGRIND_TESTS); do echo "== valgrind $$t"; cat $$t.valgrind.log; \
	  [ "$$(cat $$t.valgrind.rc)" = 0 ] || failed=$$((failed + 1)); done; \
	  echo "test programs failed under valgrind: $$failed"; [ $$failed -eq 0 ]

# The hostile-input campaign (tests/stress/stress.c: every truncation of
# snapshots, masks and plans, every byte change of masks and plans, random
# call sequences against a reference model, concurrent attend on one cache),
# then the thread tests (test_reliability; test_truncate_fork: forks sharing
# pages on two threads) under ThreadSanitizer with one OpenMP thread
# (libgomp itself is not instrumented, so its own threads stay out).
# test_truncate_fork's other tests run on one thread there: quick
# (SLIMKV_TEST_QUICK=1; its two-thread test is the same in both modes).
STRESS := $(BUILD)/tests/stress/stress
TSAN_BUILD := build/tsan-$(ARCH)
stress: deps
	$(Q)$(MAKE) --no-print-directory $(STRESS)
	$(RUNNER) $(STRESS)
	$(Q)$(MAKE) --no-print-directory BUILD=$(TSAN_BUILD) CFLAGS="-O1 -g -fsanitize=thread" \
	  LDFLAGS="-fsanitize=thread" $(TSAN_BUILD)/tests/stress/stress $(TSAN_BUILD)/tests/test_reliability \
	  $(TSAN_BUILD)/tests/test_truncate_fork
	OMP_NUM_THREADS=1 STRESS_THREADS_ONLY=1 TSAN_OPTIONS=halt_on_error=1 $(TSAN_BUILD)/tests/stress/stress
	OMP_NUM_THREADS=1 TSAN_OPTIONS=halt_on_error=1 $(TSAN_BUILD)/tests/test_reliability
	OMP_NUM_THREADS=1 SLIMKV_TEST_QUICK=1 TSAN_OPTIONS=halt_on_error=1 $(TSAN_BUILD)/tests/test_truncate_fork

# Fuzzing with clang's libFuzzer (+ASan/UBSan), on the scalar kernels (the
# readers and validators are what is fuzzed): every tests/fuzz/fuzz_*.c
# runs FUZZ_SECONDS from the checked-in seed corpus tests/fuzz/corpus/NAME/;
# new inputs go to build/fuzz/corpus/NAME/. `make fuzz-seeds` rewrites the
# seed corpus from tests/fuzz/make_seeds.c.
FUZZ_BUILD := build/fuzz
FUZZ_TARGETS := $(patsubst tests/fuzz/%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_SECONDS ?= 60
FUZZ_FLAGS := -g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
# The internal libraries a target links besides libslimkv (built in the
# fuzz build dir with the same compiler and flags) and their headers: the
# GGUF reader and the tokenizer are slimkv-run's model library; fuzz_files
# reads safetensors files directly.
FUZZ_LIBS_fuzz_gguf := $(FUZZ_BUILD)/libslimkv_model.a
FUZZ_CPPFLAGS_fuzz_gguf := -Itools/run
FUZZ_LIBS_fuzz_files := $(FUZZ_BUILD)/libslimkv_safetensors.a
FUZZ_CPPFLAGS_fuzz_files := -Isrc/safetensors
define fuzz_one
echo "== fuzz $(1) for $(FUZZ_SECONDS) s" && \
clang $(ALL_CPPFLAGS) $(FUZZ_CPPFLAGS_$(1)) -std=c11 $(FUZZ_FLAGS) -fsanitize=fuzzer -fopenmp tests/fuzz/$(1).c \
  -L$(FUZZ_BUILD) $(patsubst $(FUZZ_BUILD)/lib%.a,-l%,$(FUZZ_LIBS_$(1))) $(FUZZ_BUILD)/libslimkv.a $(LIBS) \
  -o $(FUZZ_BUILD)/$(1) && \
mkdir -p $(FUZZ_BUILD)/corpus/$(1) && \
{ ASAN_OPTIONS=allocator_may_return_null=1 $(FUZZ_BUILD)/$(1) -max_total_time=$(FUZZ_SECONDS) \
    -rss_limit_mb=4096 -artifact_prefix=$(FUZZ_BUILD)/$(1)- -print_final_stats=1 \
    $(FUZZ_BUILD)/corpus/$(1) tests/fuzz/corpus/$(1) 2>&1 | \
    grep -E "^(stat::number_of_executed_units|stat::new_units_added|==|SUMMARY|Done)"; \
  [ $${PIPESTATUS[0]} -eq 0 ]; }
endef
fuzz:
	$(Q)sh toolchains/install-deps.sh fuzz
	$(Q)$(MAKE) --no-print-directory BUILD=$(FUZZ_BUILD) CC=clang SIMD=0 \
	  CFLAGS="$(FUZZ_FLAGS) -fsanitize=fuzzer-no-link" $(FUZZ_BUILD)/libslimkv.a \
	  $(sort $(foreach t,$(FUZZ_TARGETS),$(FUZZ_LIBS_$(t))))
	$(Q)$(MAKE) --no-print-directory -j$(FUZZ_JOBS) --output-sync=target $(addprefix fuzz-run-,$(FUZZ_TARGETS))
# Each libFuzzer run is one process on one core: FUZZ_JOBS of them at a time,
# each target's output printed whole when it ends.
FUZZ_JOBS ?= 2
fuzz-run-%:
	$(Q)$(call fuzz_one,$*)

fuzz-seeds: $(STATIC_LIB)
	$(Q)$(CC) $(ALL_CPPFLAGS) -std=c11 -fopenmp tests/fuzz/make_seeds.c $(STATIC_LIB) $(LIBS) -o $(BUILD)/make_seeds
	$(Q)rm -rf tests/fuzz/corpus && $(BUILD)/make_seeds tests/fuzz/corpus

install: lib $(PROGRAMS)
	install -d $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(BINDIR)
	install -m 644 include/slimkv.h $(DESTDIR)$(INCLUDEDIR)/
	install -m 644 $(STATIC_LIB) $(DESTDIR)$(LIBDIR)/
	install -m 755 $(SHARED_LIB) $(DESTDIR)$(LIBDIR)/
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libslimkv.so
	install -m 644 $(PC_FILE) $(DESTDIR)$(LIBDIR)/pkgconfig/
	install -m 755 $(PROGRAMS) $(DESTDIR)$(BINDIR)/
	@# the CUDA plugin when `make cuda` built it: beside the library, where the core looks
	$(if $(wildcard $(CUDA_PLUGIN)),install -m 755 $(CUDA_PLUGIN) $(DESTDIR)$(LIBDIR)/)

uninstall:
	rm -f $(DESTDIR)$(INCLUDEDIR)/slimkv.h $(DESTDIR)$(LIBDIR)/libslimkv.a $(DESTDIR)$(LIBDIR)/$(SONAME) \
	  $(DESTDIR)$(LIBDIR)/libslimkv.so $(DESTDIR)$(LIBDIR)/pkgconfig/slimkv.pc $(DESTDIR)$(LIBDIR)/libslimkv_cuda.so \
	  $(addprefix $(DESTDIR)$(BINDIR)/,$(notdir $(PROGRAMS)))

clean:
	rm -rf build

comma := ,
include cuda/cuda.mk
include tools/run/run.mk
-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
