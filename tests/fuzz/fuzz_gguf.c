/* slimkv-run's GGUF reader and BPE tokenizer (tools/run) on hostile input:
 * any bytes give a status, never a crash, and whatever loads is usable:
 * small tensors dequantize, a tokenizer encodes and decodes a fixed text and
 * the tail of the input itself. The target links the model library
 * libslimkv_model.a of the fuzz build (clang, sanitizers; FUZZ_LIBS_fuzz_gguf
 * in the Makefile) and finds its headers with -Itools/run. */
#include <string.h>

#include "gguf.h"
#include "tokenizer.h"
#include "fuzz_common.h"

static void try_tensors(const gguf_file *file)
{
    for (uint64_t i = 0; i < file->n_tensors; i++) {
        const gguf_tensor *t = &file->tensors[i];
        if (t->n_elements > (1u << 16) || !gguf_type_dequantizable(t->type))
            continue;
        float *x = malloc(t->n_elements * sizeof(float) + 1);
        fuzz_check_status(gguf_dequantize(t, x));
        free(x);
    }
}

static void try_tokenizer(const gguf_file *file, const uint8_t *data, size_t size)
{
    bpe_tokenizer *tok = NULL;
    slimkv_status st = tokenizer_load(file, &tok);
    fuzz_check_status(st);
    if (st != SLIMKV_OK)
        return;
    static const char fixed[] = "Hello, world! 12345 <|im_start|>caf\xc3\xa9 \xff\xfe";
    const char *texts[2] = {fixed, (const char *)data + size - (size < 64 ? size : 64)};
    const size_t lens[2] = {sizeof fixed - 1, size < 64 ? size : 64};
    for (int i = 0; i < 2; i++) {
        for (int special = 0; special < 2; special++) {
            int32_t *ids = NULL;
            size_t n_ids = 0;
            st = tokenizer_encode(tok, texts[i], lens[i], special, &ids, &n_ids);
            fuzz_check_status(st);
            if (st != SLIMKV_OK)
                continue;
            char *text = NULL;
            size_t len = 0;
            /* Every id the encoder gives must decode (only NOMEM may fail).
             * No round trip is asserted: a hostile vocabulary may lack
             * bytes (dropped) or merge into control tokens. */
            st = tokenizer_decode(tok, ids, n_ids, &text, &len);
            if (st != SLIMKV_OK && st != SLIMKV_ERR_NOMEM)
                abort();
            free(text);
            free(ids);
        }
    }
    tokenizer_destroy(tok);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *bytes = malloc(size ? size : 1);
    if (!bytes)
        return 0;
    memcpy(bytes, data, size);
    gguf_file *file = NULL;
    slimkv_status st = gguf_parse(bytes, size, &file);
    fuzz_check_status(st);
    if (st != SLIMKV_OK)
        return 0;
    try_tensors(file);
    try_tokenizer(file, data, size);
    gguf_close(file);
    return 0;
}
