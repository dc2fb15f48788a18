/* Calibration tensors for the tools: per-layer Q/K/V read from a safetensors
 * file one layer at a time, and a synthetic calibration file whose layers
 * differ in how much channel pruning they tolerate. Tool code, not library. */
#ifndef SLIMKV_TOOLS_CALIB_H
#define SLIMKV_TOOLS_CALIB_H

#include <stdint.h>

#include "safetensors.h"

/* Tensors "layers.{i}.q" [tokens][n_q_heads][head_dim] and "layers.{i}.k",
 * "layers.{i}.v" [tokens][n_kv_heads][head_dim], any float dtype, for
 * i = 0 .. n_layers - 1 (the first missing q ends the list). Every layer has
 * the same shapes. */
typedef struct calib_file {
    st_file *file;
    int n_layers, n_tokens, n_q_heads, n_kv_heads, head_dim;
    const char *layer_labels; /* __metadata__ "slimkv.layer_labels", comma-separated, or NULL */
} calib_file;

typedef struct calib_layer {
    float *q, *k, *v; /* [n_tokens][heads][head_dim] */
} calib_layer;

/* 0, or -1 with a message on stderr. */
int calib_open(const char *path, calib_file *calib);
void calib_close(calib_file *calib);
int calib_load_layer(const calib_file *calib, int layer, calib_layer *out);
void calib_layer_free(calib_layer *layer);

/* The label of one layer from layer_labels ("" when absent), into buf. */
const char *calib_layer_label(const calib_file *calib, int layer, char *buf, size_t len);

/* Synthetic calibration: layers cycle through three kinds. "outlier": in
 * each KV head a few channels carry almost all K and V energy, so pruning
 * the rest costs little; "spread": energy spread evenly over every channel,
 * so every pruned channel costs; "medium": in between. Queries look for one
 * earlier key (plus noise), so attention is peaked and errors anywhere in the
 * history show. */
typedef struct synth_params {
    int n_layers, n_tokens, n_q_heads, n_kv_heads, head_dim;
    uint64_t seed;
    st_dtype dtype; /* ST_F32 or ST_F16 */
} synth_params;

void synth_defaults(synth_params *p);
int calib_write_synthetic(const char *path, const synth_params *p);

#endif /* SLIMKV_TOOLS_CALIB_H */
