# The CUDA backend (cuda/), included from the top-level Makefile.
#   make cuda   $(BUILD)/libslimkv_cuda.so with nvcc; a message and nothing
#               else where nvcc is absent. The core dlopens it at run time.
# Native builds also make $(BUILD)/libslimkv_cuda_emu.so: the same sources
# compiled by the host C++ compiler with the emulator of cuda_compat.h, so
# `make test` runs the CUDA tests' logic on machines without a GPU.

NVCC ?= $(or $(shell command -v nvcc 2>/dev/null),$(wildcard /usr/local/cuda/bin/nvcc))
# Ampere and Hopper code, plus PTX that newer GPUs compile at load time.
CUDA_ARCHS ?= 80 90
NVCC_FLAGS ?= -O3
CUDA_GENCODE := $(foreach a,$(CUDA_ARCHS),-gencode arch=compute_$(a),code=sm_$(a)) \
  -gencode arch=compute_$(lastword $(CUDA_ARCHS)),code=compute_$(lastword $(CUDA_ARCHS))
CUDA_SRC := cuda/plugin.cu cuda/kernels.cu
CUDA_DEPS := $(CUDA_SRC) cuda/kernels.cuh cuda/cuda_compat.h src/plugin_abi.h simd/format_math.h \
  simd/kernels.h include/slimkv.h cuda/cuda.mk
CUDA_PLUGIN := $(BUILD)/libslimkv_cuda.so
CUDA_EMU := $(BUILD)/libslimkv_cuda_emu.so

.PHONY: cuda
cuda:
ifeq ($(NVCC),)
	@echo "nvcc not found: the CUDA plugin is not built (install the CUDA toolkit or set NVCC=)"
else
	$(Q)$(MAKE) --no-print-directory $(CUDA_PLUGIN)
endif

$(CUDA_PLUGIN): $(CUDA_DEPS)
	@mkdir -p $(dir $@)
	$(if $(Q),@echo "  NVCC    $@")
	$(Q)$(NVCC) $(NVCC_FLAGS) -std=c++17 -Xcompiler -fPIC,-fvisibility=hidden,-Wall -shared $(CUDA_GENCODE) \
	  -Iinclude $(CUDA_SRC) -o $@

$(CUDA_EMU): $(CUDA_DEPS)
	@mkdir -p $(dir $@)
	$(if $(Q),@echo "  CXX     $@ (CUDA emulator)")
	$(Q)$(CXX) -std=c++17 -x c++ -DSLIMKV_CUDA_EMU -Wall -Wextra -fPIC -fvisibility=hidden -shared $(CFLAGS) \
	  -Iinclude $(CUDA_SRC) $(LDFLAGS) -o $@

# What `make test` builds and runs besides the test programs: the emulator
# plugin (native builds only) and the real plugin (where nvcc is).
CUDA_EMU_SELFTEST := $(BUILD)/cuda/emu_selftest
$(CUDA_EMU_SELFTEST): cuda/emu_selftest.cu cuda/cuda_compat.h
	@mkdir -p $(dir $@)
	$(if $(Q),@echo "  CXX     $@")
	$(Q)$(CXX) -std=c++17 -x c++ -DSLIMKV_CUDA_EMU -Wall -Wextra $(CFLAGS) $< $(LDFLAGS) -o $@

ifeq ($(CROSS_COMPILE),)
tests: $(CUDA_EMU) $(CUDA_EMU_SELFTEST)
EXTRA_TEST_BIN += $(CUDA_EMU_SELFTEST)
CUDA_TEST_PLUGINS := $(CUDA_EMU)
ifneq ($(NVCC),)
tests: $(CUDA_PLUGIN)
CUDA_TEST_PLUGINS += $(CUDA_PLUGIN)
endif
endif
# Extra runs of test_cuda, one environment each (commas stand for spaces):
# on each plugin, then SLIMKV_BACKEND=cpu, =cuda and a bad value.
CUDA_TEST_ENVS := $(foreach p,$(CUDA_TEST_PLUGINS),SLIMKV_CUDA_PLUGIN=$(p)) \
  $(foreach e,cpu cuda,SLIMKV_BACKEND=$(e)$(if $(CUDA_TEST_PLUGINS),$(comma)SLIMKV_CUDA_PLUGIN=$(firstword $(CUDA_TEST_PLUGINS)))) \
  SLIMKV_BACKEND=bogus

# The GPU decode bench (runs wherever the plugin finds a device; --quick on
# the emulator plugin is a smoke run).
CUDA_BENCH := $(BUILD)/slimkv-cuda-bench
all: $(CUDA_BENCH)
