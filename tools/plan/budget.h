/* Per-layer / per-head channel budgets (KVPruner, Tyr-the-Pruner): measure
 * what each keep count costs in attention-output error by running SlimKV
 * caches on calibration data, then pick the counts that meet one K+V byte
 * budget with the least total error. Tool code, not library. */
#ifndef SLIMKV_TOOLS_BUDGET_H
#define SLIMKV_TOOLS_BUDGET_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "calib.h"
#include "slimkv.h"

typedef struct budget_params {
    slimkv_format k_format, v_format;
    int group_size, residual, n_sink, channel_align;
    double budget;   /* K+V bytes allowed, as a fraction of the unpruned bytes at these formats */
    int context;     /* tokens at which bytes are counted (default 8192): the sequence length the
                        budget is for; 0: the calibration length */
    int n_queries;   /* last calibration queries whose decode outputs are compared */
    int per_head;    /* 1: counts per (layer, KV head); 0: per layer */
    int prune_v;     /* 1: V channel counts are searched too; 0: V keeps every channel */
    int rope_pairs;  /* 1: K channels kept in rotate-half RoPE pairs (c, c + D/2) */
} budget_params;

void budget_defaults(budget_params *p);

/* One allocation of keep counts and what it measured. */
typedef struct budget_choice {
    int *k_count, *v_count; /* [layers][kv_heads]; k_count 0: streaming head */
    double *layer_err;      /* [layers]: ||out - ref|| / ||ref|| of the layer's decode outputs */
    double total_err;       /* sum over layers of layer_err^2: the quantity minimized */
    size_t bytes;           /* K+V bytes held at `context` tokens (slimkv_cache_bytes) */
} budget_choice;

typedef struct budget_result {
    int n_layers, n_kv_heads, head_dim, context;
    size_t full_bytes;   /* every channel kept, same formats */
    size_t budget_bytes;
    budget_choice plan;
    budget_choice uniform; /* one keep count for every head, the largest within budget;
                              k_count NULL when none fits */
    budget_choice plan_at_uniform; /* searched within exactly uniform.bytes: the like-for-like
                                      comparison (k_count NULL without a uniform baseline) */
    int uniform_keep;
    uint8_t *k_mask, *v_mask; /* the plan's masks [layers][kv_heads][head_dim] */
    long cache_runs;          /* calibration caches run to measure errors */
} budget_result;

/* 0, or -1 with a message on stderr (bad parameters, budget below the
 * smallest possible bytes, a failing library call). */
int budget_search(const calib_file *calib, const budget_params *params, budget_result *result);
void budget_result_free(budget_result *r);

/* The per-layer table: uniform vs plan counts, errors and bytes. */
void budget_print(FILE *out, const calib_file *calib, const budget_params *params, const budget_result *r);

/* The plan (masks + storage settings) for slimkv_plan_save. */
slimkv_status budget_make_plan(const budget_params *params, const budget_result *r, slimkv_plan **plan);

#endif /* SLIMKV_TOOLS_BUDGET_H */
