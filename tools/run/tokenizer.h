/* Byte-level BPE tokenizer (GPT-2 style) built from a GGUF file's metadata:
 * tokenizer.ggml.tokens, .merges and .token_type.
 *
 * Encoding: control tokens (type 3, e.g. <|im_start|>) are matched literally
 * when asked to; the rest is pre-tokenized as the model's pre-tokenizer says
 * (tokenizer.ggml.pre: "smollm" and the other GPT-2-regex ones split every
 * digit on its own first, "gpt2" does not), each piece's bytes are mapped to
 * GPT-2's printable byte alphabet and merged pair by pair in merge-rank
 * order. Decoding maps the alphabet back to bytes. */
#ifndef SLIMKV_MODEL_TOKENIZER_H
#define SLIMKV_MODEL_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "gguf.h"
#include "slimkv.h"

typedef struct bpe_tokenizer bpe_tokenizer;

slimkv_status tokenizer_load(const gguf_file *file, bpe_tokenizer **out);
void tokenizer_destroy(bpe_tokenizer *tok);

int tokenizer_vocab_size(const bpe_tokenizer *tok);
int tokenizer_bos_id(const bpe_tokenizer *tok); /* -1 when the file names none */
int tokenizer_eos_id(const bpe_tokenizer *tok);
/* 1 when the model expects a BOS token in front of a text. */
int tokenizer_adds_bos(const bpe_tokenizer *tok);

/* Encodes len bytes of text (any bytes; invalid UTF-8 is kept byte by byte).
 * parse_special: 1 to turn the literal text of control tokens into their
 * ids, 0 to tokenize it as plain text. *ids is malloc'd (free it). */
slimkv_status tokenizer_encode(const bpe_tokenizer *tok, const char *text, size_t len, int parse_special,
                               int32_t **ids, size_t *n_ids);

/* The bytes one token stands for (not NUL-terminated; control tokens give
 * their literal text). SLIMKV_ERR_INVALID_ARG for an id out of range. */
slimkv_status tokenizer_token_bytes(const bpe_tokenizer *tok, int32_t id, const char **bytes, size_t *len);

/* Decodes ids into a malloc'd NUL-terminated string (free it). */
slimkv_status tokenizer_decode(const bpe_tokenizer *tok, const int32_t *ids, size_t n_ids, char **text,
                               size_t *len);

#endif /* SLIMKV_MODEL_TOKENIZER_H */
