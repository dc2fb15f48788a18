/* Llama forward pass on SlimKV caches. See llama.h. */
#include "llama.h"

#include "qmm.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A weight matrix [rows][cols] (GGUF dims {cols, rows}): Q4_0, Q4_1 or
 * Q8_0 blocks read where the GGUF file holds them, or an owned float copy
 * (f32/f16/bf16 files, other block types, or f32 weights asked for). */
typedef struct llama_matrix {
    int rows, cols;
    int quantized;
    qmm_type type;         /* quantized: the blocks' type */
    const uint8_t *blocks; /* quantized: rows * cols / 32 blocks, row-major, in the file */
    float *f32;            /* otherwise: [rows][cols], owned */
} llama_matrix;

/* Bytes of one row of a quantized matrix's blocks. */
static size_t block_row_bytes(const llama_matrix *m)
{
    return (size_t)m->cols / QMM_BLOCK * qmm_block_bytes(m->type);
}

/* Bytes of a matrix as used: its blocks, or its float copy. */
static size_t matrix_bytes(const llama_matrix *m)
{
    return (size_t)m->rows * (m->quantized ? block_row_bytes(m) : (size_t)m->cols * sizeof(float));
}

typedef struct llama_layer {
    float *attn_norm, *ffn_norm;
    llama_matrix wq, wk, wv, wo, w_gate, w_up, w_down;
} llama_layer;

struct llama_model {
    llama_hparams hp;
    const qmm_kernels *qmm; /* the weight kernels (qmm.h) */
    int any_quantized;
    llama_matrix tok_embd;  /* [n_vocab][n_embd] */
    float *output_norm;     /* [n_embd] */
    llama_matrix output;    /* [n_vocab][n_embd]; tok_embd's bytes when tied */
    int output_tied;
    llama_layer *layers;
    float *rope_inv_freq; /* [head_dim / 2] */
};

struct llama_session {
    const llama_model *model;
    slimkv_cache **caches;
    int k_token_bits, k_token_group, k_token_rotate; /* llama_cache_options' K-per-token measurement */
    int n_past, capacity, max_batch;
    llama_observer observer;
    void *observer_ctx;
    /* scratch, sized for max_batch tokens */
    float *x, *xn, *qkv, *q, *k, *v, *attn, *proj, *gate_up, *rope_cos, *rope_sin;
    qmm_acts acts; /* a matmul's input, quantized (quantized weights only) */
};

/* ---- matrix multiplication ----------------------------------------- */

/* GCC vector extensions: portable SIMD that becomes SSE/AVX/NEON. On x86
 * the kernels are cloned for AVX-512 and AVX2+FMA and picked at load time
 * (the library's rule: one binary, every ISA, chosen at run time). */
typedef float v8f __attribute__((vector_size(32)));
/* The same vector type for unaligned loads from float arrays. */
typedef float v8f_unaligned __attribute__((vector_size(32), aligned(4), may_alias));
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define MATMUL_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define MATMUL_CLONES
#endif

/* Macros, not functions: passing 32-byte vectors by value changes the ABI
 * between the baseline and the AVX clones. */
#define load8(p) (*(const v8f_unaligned *)(p))
#define hsum8(v) ((v)[0] + (v)[1] + (v)[2] + (v)[3] + (v)[4] + (v)[5] + (v)[6] + (v)[7])

static inline float dot_tail(const float *a, const float *b, int from, int n)
{
    float s = 0.0f;
    for (int i = from; i < n; i++)
        s += a[i] * b[i];
    return s;
}

/* y[t][o] = sum_i x[t][i] * w[o][i] for t < n_tok and o0 <= o < o1.
 * Tiles of 4 tokens x 2 rows keep 8 accumulators and 6 loads in registers,
 * so the loop is bound by FMA throughput, not loads. */
MATMUL_CLONES
static void matmul_rows(const float *x, int n_tok, const float *w, int n_in, int o0, int o1, float *y, int n_out)
{
    int n8 = n_in & ~7;
    int t = 0;
    for (; t + 4 <= n_tok; t += 4) {
        const float *x0 = x + (size_t)t * n_in, *x1 = x0 + n_in, *x2 = x1 + n_in, *x3 = x2 + n_in;
        int o = o0;
        for (; o + 2 <= o1; o += 2) {
            const float *w0 = w + (size_t)o * n_in, *w1 = w0 + n_in;
            v8f a00 = {0}, a01 = {0}, a10 = {0}, a11 = {0}, a20 = {0}, a21 = {0}, a30 = {0}, a31 = {0};
            for (int i = 0; i < n8; i += 8) {
                v8f b0 = load8(w0 + i), b1 = load8(w1 + i);
                v8f c = load8(x0 + i);
                a00 += c * b0;
                a01 += c * b1;
                c = load8(x1 + i);
                a10 += c * b0;
                a11 += c * b1;
                c = load8(x2 + i);
                a20 += c * b0;
                a21 += c * b1;
                c = load8(x3 + i);
                a30 += c * b0;
                a31 += c * b1;
            }
            float *yt = y + (size_t)t * n_out + o;
            yt[0] = hsum8(a00) + dot_tail(x0, w0, n8, n_in);
            yt[1] = hsum8(a01) + dot_tail(x0, w1, n8, n_in);
            yt[n_out] = hsum8(a10) + dot_tail(x1, w0, n8, n_in);
            yt[n_out + 1] = hsum8(a11) + dot_tail(x1, w1, n8, n_in);
            yt[2 * n_out] = hsum8(a20) + dot_tail(x2, w0, n8, n_in);
            yt[2 * n_out + 1] = hsum8(a21) + dot_tail(x2, w1, n8, n_in);
            yt[3 * n_out] = hsum8(a30) + dot_tail(x3, w0, n8, n_in);
            yt[3 * n_out + 1] = hsum8(a31) + dot_tail(x3, w1, n8, n_in);
        }
        for (; o < o1; o++) {
            const float *w0 = w + (size_t)o * n_in;
            for (int j = 0; j < 4; j++)
                y[(size_t)(t + j) * n_out + o] = dot_tail(x + (size_t)(t + j) * n_in, w0, 0, n_in);
        }
    }
    /* Leftover tokens (and the decode case, one token): 1 x 4 tiles. */
    for (; t < n_tok; t++) {
        const float *x0 = x + (size_t)t * n_in;
        int o = o0;
        for (; o + 4 <= o1; o += 4) {
            const float *w0 = w + (size_t)o * n_in, *w1 = w0 + n_in, *w2 = w1 + n_in, *w3 = w2 + n_in;
            v8f a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
            for (int i = 0; i < n8; i += 8) {
                v8f c = load8(x0 + i);
                a0 += c * load8(w0 + i);
                a1 += c * load8(w1 + i);
                a2 += c * load8(w2 + i);
                a3 += c * load8(w3 + i);
            }
            float *yt = y + (size_t)t * n_out + o;
            yt[0] = hsum8(a0) + dot_tail(x0, w0, n8, n_in);
            yt[1] = hsum8(a1) + dot_tail(x0, w1, n8, n_in);
            yt[2] = hsum8(a2) + dot_tail(x0, w2, n8, n_in);
            yt[3] = hsum8(a3) + dot_tail(x0, w3, n8, n_in);
        }
        for (; o < o1; o++)
            y[(size_t)t * n_out + o] = dot_tail(x0, w + (size_t)o * n_in, 0, n_in);
    }
}

/* Rows per work item: a block of W (16 x 1536 floats at most, 96 KiB) stays
 * in L2 while every token of the batch passes over it. */
#define MATMUL_ROW_BLOCK 16

/* y[t][off_p + o] = x[t] . row o of w[p] for every matrix p of a set that
 * shares the input (q|k|v, gate|up), off_p the rows of the matrices before
 * it and y_stride their sum: one parallel loop (one OpenMP barrier, which
 * matters on a busy machine) over the row blocks of all of them. */
static void matmul_set(llama_session *s, const float *x, int n_tok, const llama_matrix *const *w, int n_w,
                       float *y, int y_stride)
{
    const qmm_kernels *k = s->model->qmm;
    int n_in = w[0]->cols, first_block[8], row_offset[8], total = 0, quantized = 0;
    for (int p = 0, off = 0; p < n_w; off += w[p]->rows, p++) {
        first_block[p] = total;
        row_offset[p] = off;
        total += (w[p]->rows + MATMUL_ROW_BLOCK - 1) / MATMUL_ROW_BLOCK;
        quantized |= w[p]->quantized;
    }
    if (quantized)
        qmm_quantize(x, n_tok, n_in / QMM_BLOCK, &s->acts);
#pragma omp parallel for schedule(static)
    for (int b = 0; b < total; b++) {
        int p = n_w - 1;
        while (first_block[p] > b)
            p--;
        const llama_matrix *m = w[p];
        int o0 = (b - first_block[p]) * MATMUL_ROW_BLOCK;
        int o1 = o0 + MATMUL_ROW_BLOCK < m->rows ? o0 + MATMUL_ROW_BLOCK : m->rows;
        float *yp = y + row_offset[p];
        if (m->quantized) {
            k->rows[m->type](m->blocks + (size_t)o0 * block_row_bytes(m), o1 - o0, &s->acts, yp + o0,
                             (size_t)y_stride);
        } else {
            matmul_rows(x, n_tok, m->f32, n_in, o0, o1, yp, y_stride);
        }
    }
}

static void matmul(llama_session *s, const float *x, int n_tok, const llama_matrix *w, float *y)
{
    matmul_set(s, x, n_tok, &w, 1, y, w->rows);
}

/* ---- elementwise pieces -------------------------------------------- */

static void rms_norm(const float *x, const float *weight, int n_tok, int dim, float eps, float *out)
{
    for (int t = 0; t < n_tok; t++) {
        const float *xt = x + (size_t)t * dim;
        double ss = 0.0;
        for (int i = 0; i < dim; i++)
            ss += (double)xt[i] * xt[i];
        float scale = (float)(1.0 / sqrt(ss / dim + eps));
        for (int i = 0; i < dim; i++)
            out[(size_t)t * dim + i] = xt[i] * scale * weight[i];
    }
}

/* GGUF's Llama Q/K weights are permuted at conversion so that RoPE rotates
 * adjacent pairs (x[2i], x[2i+1]) by pos * base^(-2i/head_dim) ("normal"
 * mode in ggml), not the two halves as in the original checkpoint. */
static void rope(float *x, int n_tok, int n_heads, int head_dim, const float *cos_t, const float *sin_t)
{
    int half = head_dim / 2;
    for (int t = 0; t < n_tok; t++)
        for (int h = 0; h < n_heads; h++) {
            float *v = x + ((size_t)t * n_heads + h) * head_dim;
            const float *c = cos_t + (size_t)t * half, *s = sin_t + (size_t)t * half;
            for (int i = 0; i < half; i++) {
                float a = v[2 * i], b = v[2 * i + 1];
                v[2 * i] = a * c[i] - b * s[i];
                v[2 * i + 1] = a * s[i] + b * c[i];
            }
        }
}

static void add_into(float *dst, const float *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] += src[i];
}

/* ---- loading ------------------------------------------------------- */

static void free_layer(llama_layer *l)
{
    free(l->attn_norm);
    free(l->ffn_norm);
    llama_matrix *m[] = {&l->wq, &l->wk, &l->wv, &l->wo, &l->w_gate, &l->w_up, &l->w_down};
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++)
        free(m[i]->f32);
}

void llama_free(llama_model *m)
{
    if (!m)
        return;
    if (m->layers)
        for (int i = 0; i < m->hp.n_layer; i++)
            free_layer(&m->layers[i]);
    free(m->layers);
    if (!m->output_tied)
        free(m->output.f32);
    free(m->tok_embd.f32);
    free(m->output_norm);
    free(m->rope_inv_freq);
    free(m);
}

/* The named tensor after checking its shape: a vector of rows elements
 * (cols == 0) or a [rows][cols] matrix (dims {cols, rows}). */
static slimkv_status find_tensor(const gguf_file *f, const char *name, int cols, int rows, const gguf_tensor **out)
{
    const gguf_tensor *t = gguf_find_tensor(f, name);
    if (!t) {
        fprintf(stderr, "model: tensor %s missing\n", name);
        return SLIMKV_ERR_FORMAT;
    }
    int ok = cols == 0 ? (t->n_dims == 1 && t->dims[0] == (uint64_t)rows)
                       : (t->n_dims == 2 && t->dims[0] == (uint64_t)cols && t->dims[1] == (uint64_t)rows);
    if (!ok) {
        fprintf(stderr, "model: tensor %s has an unexpected shape\n", name);
        return SLIMKV_ERR_FORMAT;
    }
    if (!gguf_type_dequantizable(t->type)) {
        fprintf(stderr, "model: tensor %s: type %s is not supported\n", name, gguf_type_name(t->type));
        return SLIMKV_ERR_UNSUPPORTED;
    }
    *out = t;
    return SLIMKV_OK;
}

/* A float copy of the named tensor (norm weights; matrices the kernels do not take). */
static slimkv_status load_floats(const gguf_file *f, const char *name, int cols, int rows, float **out)
{
    const gguf_tensor *t;
    slimkv_status st = find_tensor(f, name, cols, rows, &t);
    if (st != SLIMKV_OK)
        return st;
    float *data = malloc((size_t)t->n_elements * sizeof(float));
    if (!data)
        return SLIMKV_ERR_NOMEM;
    st = gguf_dequantize(t, data);
    if (st != SLIMKV_OK) {
        free(data);
        return st;
    }
    *out = data;
    return SLIMKV_OK;
}

/* A matrix: its blocks in place when the kernels take its type (and
 * cols is whole blocks), else a float copy. */
static slimkv_status load_matrix(const gguf_file *f, const char *name, int cols, int rows, int f32_weights,
                                 llama_matrix *m)
{
    const gguf_tensor *t;
    slimkv_status st = find_tensor(f, name, cols, rows, &t);
    if (st != SLIMKV_OK)
        return st;
    m->rows = rows;
    m->cols = cols;
    int type = t->type == GGML_TYPE_Q4_0 ? QMM_Q4_0 : t->type == GGML_TYPE_Q4_1 ? QMM_Q4_1
             : t->type == GGML_TYPE_Q8_0 ? QMM_Q8_0 : -1;
    if (type >= 0 && !f32_weights && cols % QMM_BLOCK == 0) {
        m->quantized = 1;
        m->type = (qmm_type)type;
        m->blocks = t->data;
        return SLIMKV_OK;
    }
    return load_floats(f, name, cols, rows, &m->f32);
}

/* Row `row` of a matrix as floats (the embedding lookup). */
static void matrix_row(const llama_matrix *m, int row, float *out)
{
    if (m->quantized) {
        qmm_dequantize_row(m->type, m->blocks + (size_t)row * block_row_bytes(m), m->cols / QMM_BLOCK, out);
    } else {
        memcpy(out, m->f32 + (size_t)row * m->cols, (size_t)m->cols * sizeof(float));
    }
}

static slimkv_status read_hparams(const gguf_file *f, llama_hparams *hp)
{
    gguf_string arch;
    if (gguf_get_string(f, "general.architecture", &arch) != SLIMKV_OK)
        return SLIMKV_ERR_FORMAT;
    if (arch.len != 5 || memcmp(arch.data, "llama", 5) != 0)
        return SLIMKV_ERR_UNSUPPORTED;
    uint32_t n_layer, n_embd, n_head, n_kv_head = 0, n_ff, n_ctx = 0, rope_dims = 0;
    if (gguf_get_u32(f, "llama.block_count", &n_layer) || gguf_get_u32(f, "llama.embedding_length", &n_embd) ||
        gguf_get_u32(f, "llama.attention.head_count", &n_head) ||
        gguf_get_u32(f, "llama.feed_forward_length", &n_ff) ||
        gguf_get_f32(f, "llama.attention.layer_norm_rms_epsilon", &hp->rms_eps))
        return SLIMKV_ERR_FORMAT;
    if (gguf_get_u32(f, "llama.attention.head_count_kv", &n_kv_head) != SLIMKV_OK)
        n_kv_head = n_head; /* absent: multi-head attention */
    if (gguf_get_f32(f, "llama.rope.freq_base", &hp->rope_base) != SLIMKV_OK)
        hp->rope_base = 10000.0f; /* the Llama default when unspecified */
    gguf_get_u32(f, "llama.context_length", &n_ctx);
    const uint32_t limit = 1u << 20;
    if (n_layer == 0 || n_layer > 1024 || n_embd == 0 || n_embd > limit || n_head == 0 || n_head > 1024 ||
        n_kv_head == 0 || n_head % n_kv_head != 0 || n_embd % n_head != 0 || n_ff == 0 || n_ff > limit ||
        !(hp->rms_eps > 0.0f) || !(hp->rope_base > 1.0f))
        return SLIMKV_ERR_FORMAT;
    hp->n_layer = (int)n_layer;
    hp->n_embd = (int)n_embd;
    hp->n_head = (int)n_head;
    hp->n_kv_head = (int)n_kv_head;
    hp->head_dim = (int)(n_embd / n_head);
    hp->n_ff = (int)n_ff;
    hp->n_ctx_train = (int)n_ctx;
    if (gguf_get_u32(f, "llama.rope.dimension_count", &rope_dims) == SLIMKV_OK &&
        rope_dims != (uint32_t)hp->head_dim)
        return SLIMKV_ERR_UNSUPPORTED; /* partial rotary embeddings: not Llama */
    if (hp->head_dim % 4 != 0)
        return SLIMKV_ERR_UNSUPPORTED; /* SlimKV needs head_dim % 4 == 0 */
    const gguf_tensor *embd = gguf_find_tensor(f, "token_embd.weight");
    if (!embd || embd->n_dims != 2 || embd->dims[1] == 0 || embd->dims[1] > (uint64_t)INT32_MAX)
        return SLIMKV_ERR_FORMAT;
    hp->n_vocab = (int)embd->dims[1];
    return SLIMKV_OK;
}

void llama_load_options_init(llama_load_options *opts)
{
    opts->f32_weights = 0;
    opts->isa = NULL;
}

slimkv_status llama_load(const gguf_file *f, const llama_load_options *opts, llama_model **out)
{
    if (!f || !out)
        return SLIMKV_ERR_NULL_ARG;
    *out = NULL;
    llama_load_options defaults;
    llama_load_options_init(&defaults);
    if (!opts)
        opts = &defaults;
    llama_model *m = calloc(1, sizeof *m);
    if (!m)
        return SLIMKV_ERR_NOMEM;
    slimkv_status st = qmm_select(opts->isa, &m->qmm);
    if (st == SLIMKV_OK)
        st = read_hparams(f, &m->hp);
    const llama_hparams *hp = &m->hp;
    if (st == SLIMKV_OK) {
        m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
        m->rope_inv_freq = malloc((size_t)hp->head_dim / 2 * sizeof(float));
        if (!m->layers || !m->rope_inv_freq)
            st = SLIMKV_ERR_NOMEM;
    }
    int d = hp->n_embd, dkv = hp->n_kv_head * hp->head_dim, f32w = opts->f32_weights;
    if (st == SLIMKV_OK)
        st = load_matrix(f, "token_embd.weight", d, hp->n_vocab, f32w, &m->tok_embd);
    if (st == SLIMKV_OK)
        st = load_floats(f, "output_norm.weight", 0, d, &m->output_norm);
    if (st == SLIMKV_OK) {
        m->output_tied = !gguf_find_tensor(f, "output.weight");
        if (m->output_tied)
            m->output = m->tok_embd;
        else
            st = load_matrix(f, "output.weight", d, hp->n_vocab, f32w, &m->output);
    }
    for (int i = 0; st == SLIMKV_OK && i < hp->n_layer; i++) {
        llama_layer *l = &m->layers[i];
        struct {
            const char *suffix;
            int cols, rows;
            float **vector;
            llama_matrix *matrix;
        } parts[] = {
            {"attn_norm.weight", 0, d, &l->attn_norm, NULL},   {"attn_q.weight", d, d, NULL, &l->wq},
            {"attn_k.weight", d, dkv, NULL, &l->wk},           {"attn_v.weight", d, dkv, NULL, &l->wv},
            {"attn_output.weight", d, d, NULL, &l->wo},        {"ffn_norm.weight", 0, d, &l->ffn_norm, NULL},
            {"ffn_gate.weight", d, hp->n_ff, NULL, &l->w_gate}, {"ffn_up.weight", d, hp->n_ff, NULL, &l->w_up},
            {"ffn_down.weight", hp->n_ff, d, NULL, &l->w_down},
        };
        for (size_t p = 0; st == SLIMKV_OK && p < sizeof parts / sizeof parts[0]; p++) {
            char name[64];
            snprintf(name, sizeof name, "blk.%d.%s", i, parts[p].suffix);
            st = parts[p].vector ? load_floats(f, name, parts[p].cols, parts[p].rows, parts[p].vector)
                                 : load_matrix(f, name, parts[p].cols, parts[p].rows, f32w, parts[p].matrix);
            if (st == SLIMKV_OK && parts[p].matrix)
                m->any_quantized |= parts[p].matrix->quantized;
        }
    }
    m->any_quantized |= m->output.quantized;
    if (st != SLIMKV_OK) {
        llama_free(m);
        return st;
    }
    for (int i = 0; i < hp->head_dim / 2; i++)
        m->rope_inv_freq[i] = (float)pow((double)hp->rope_base, -2.0 * i / hp->head_dim);
    *out = m;
    return SLIMKV_OK;
}

const char *llama_weights_isa(const llama_model *m)
{
    return m->any_quantized ? m->qmm->name : "f32";
}

size_t llama_weight_bytes(const llama_model *m)
{
    size_t total = matrix_bytes(&m->tok_embd) + (m->output_tied ? 0 : matrix_bytes(&m->output));
    for (int i = 0; i < m->hp.n_layer; i++) {
        const llama_layer *l = &m->layers[i];
        const llama_matrix *w[] = {&l->wq, &l->wk, &l->wv, &l->wo, &l->w_gate, &l->w_up, &l->w_down};
        for (size_t j = 0; j < sizeof w / sizeof w[0]; j++)
            total += matrix_bytes(w[j]);
    }
    return total;
}

const llama_hparams *llama_get_hparams(const llama_model *m)
{
    return &m->hp;
}

int llama_output_tied(const llama_model *m)
{
    return m->output_tied;
}

/* ---- sessions ------------------------------------------------------ */

void llama_cache_options_init(llama_cache_options *o)
{
    slimkv_config defaults;
    slimkv_config_init(&defaults);
    o->k_format = SLIMKV_F16;
    o->v_format = SLIMKV_F16;
    o->group_size = defaults.group_size;
    o->residual = defaults.residual;
    o->n_sink = defaults.n_sink;
    o->channel_align = defaults.channel_align;
    o->k_masks = NULL;
    o->policy = SLIMKV_POLICY_NONE;
    o->prune_ratio = defaults.prune_ratio;
    o->window = defaults.window;
    o->rotate = defaults.rotate;
    o->k_outliers = defaults.k_outliers;
    o->plan = NULL;
    o->eviction = defaults.eviction;
    o->evict_budget = defaults.evict_budget;
    o->evict_pool = defaults.evict_pool;
    o->k_token_bits = 0;
    o->k_token_group = defaults.group_size;
    o->k_token_rotate = 0;
}

void llama_session_free(llama_session *s)
{
    if (!s)
        return;
    if (s->caches)
        for (int i = 0; i < s->model->hp.n_layer; i++)
            slimkv_cache_destroy(s->caches[i]);
    free(s->caches);
    float *buffers[] = {s->x, s->xn, s->qkv, s->q, s->k, s->v, s->attn, s->proj, s->gate_up, s->rope_cos, s->rope_sin};
    for (size_t i = 0; i < sizeof buffers / sizeof buffers[0]; i++)
        free(buffers[i]);
    qmm_acts_free(&s->acts);
    free(s);
}

slimkv_status llama_session_create(const llama_model *m, const llama_cache_options *opts, int capacity,
                                   int max_batch, llama_session **out)
{
    if (!m || !opts || !out)
        return SLIMKV_ERR_NULL_ARG;
    *out = NULL;
    if (capacity < 1 || max_batch < 1)
        return SLIMKV_ERR_INVALID_ARG;
    const llama_hparams *hp = &m->hp;
    if (opts->k_token_bits && (opts->k_token_bits < 2 || opts->k_token_bits > 8 || opts->k_token_group < 1 ||
                               (opts->k_token_rotate && (hp->head_dim & (hp->head_dim - 1)) != 0)))
        return SLIMKV_ERR_INVALID_ARG;
    llama_session *s = calloc(1, sizeof *s);
    if (!s)
        return SLIMKV_ERR_NOMEM;
    s->model = m;
    s->k_token_bits = opts->k_token_bits;
    s->k_token_group = opts->k_token_group;
    s->k_token_rotate = opts->k_token_rotate;
    s->capacity = capacity;
    s->max_batch = max_batch;
    size_t b = (size_t)max_batch, d = (size_t)hp->n_embd, dkv = (size_t)hp->n_kv_head * hp->head_dim;
    s->caches = calloc((size_t)hp->n_layer, sizeof *s->caches);
    s->x = malloc(b * d * sizeof(float));
    s->xn = malloc(b * d * sizeof(float));
    s->qkv = malloc(b * (d + 2 * dkv) * sizeof(float));
    s->q = malloc(b * d * sizeof(float));
    s->k = malloc(b * dkv * sizeof(float));
    s->v = malloc(b * dkv * sizeof(float));
    s->attn = malloc(b * d * sizeof(float));
    s->proj = malloc(b * d * sizeof(float));
    s->gate_up = malloc(b * 2 * (size_t)hp->n_ff * sizeof(float));
    s->rope_cos = malloc(b * (size_t)hp->head_dim / 2 * sizeof(float));
    s->rope_sin = malloc(b * (size_t)hp->head_dim / 2 * sizeof(float));
    slimkv_status st = SLIMKV_OK;
    if (!s->caches || !s->x || !s->xn || !s->q || !s->k || !s->v || !s->attn || !s->proj || !s->gate_up || !s->qkv ||
        !s->rope_cos || !s->rope_sin)
        st = SLIMKV_ERR_NOMEM;
    /* the widest matmul input is the MLP's [n_ff] */
    int widest = hp->n_ff > hp->n_embd ? hp->n_ff : hp->n_embd;
    if (st == SLIMKV_OK && m->any_quantized)
        st = qmm_acts_alloc(&s->acts, b * (size_t)(widest / QMM_BLOCK));
    for (int i = 0; st == SLIMKV_OK && i < hp->n_layer; i++) {
        slimkv_config cfg;
        slimkv_config_init(&cfg);
        cfg.n_q_heads = hp->n_head;
        cfg.capacity = capacity;
        if (opts->plan) {
            int layers;
            st = slimkv_plan_layers(opts->plan, &layers);
            if (st == SLIMKV_OK && layers != hp->n_layer)
                st = SLIMKV_ERR_INVALID_CONFIG; /* a plan for another model */
            if (st == SLIMKV_OK)
                st = slimkv_plan_layer_config(opts->plan, i, &cfg);
            if (st == SLIMKV_OK && (cfg.n_kv_heads != hp->n_kv_head || cfg.head_dim != hp->head_dim))
                st = SLIMKV_ERR_INVALID_CONFIG;
            if (st != SLIMKV_OK)
                break;
        } else {
            cfg.n_kv_heads = hp->n_kv_head;
            cfg.head_dim = hp->head_dim;
            cfg.k_format = opts->k_format;
            cfg.v_format = opts->v_format;
            cfg.group_size = opts->group_size;
            cfg.residual = opts->residual;
            cfg.n_sink = opts->n_sink;
            cfg.channel_align = opts->channel_align;
            cfg.rotate = opts->rotate;
            cfg.k_outliers = opts->k_outliers;
            if (opts->k_masks && opts->k_masks[i]) {
                cfg.policy = SLIMKV_POLICY_STATIC;
                cfg.k_mask = opts->k_masks[i];
            } else if (opts->policy == SLIMKV_POLICY_THINK || opts->policy == SLIMKV_POLICY_SPARK) {
                cfg.policy = opts->policy;
                cfg.prune_ratio = opts->prune_ratio;
                cfg.window = opts->window;
            }
        }
        cfg.eviction = opts->eviction;
        cfg.evict_budget = opts->evict_budget;
        cfg.evict_pool = opts->evict_pool;
        if (opts->eviction != SLIMKV_EVICT_NONE)
            cfg.window = opts->window; /* SnapKV's observation window, also with a plan */
        st = slimkv_cache_create(&cfg, &s->caches[i]);
    }
    if (st != SLIMKV_OK) {
        llama_session_free(s);
        return st;
    }
    *out = s;
    return SLIMKV_OK;
}

int llama_session_tokens(const llama_session *s)
{
    return s->n_past;
}

void llama_session_set_observer(llama_session *s, llama_observer observer, void *ctx)
{
    s->observer = observer;
    s->observer_ctx = ctx;
}

slimkv_status llama_session_bytes(const llama_session *s, size_t *bytes)
{
    size_t total = 0;
    for (int i = 0; i < s->model->hp.n_layer; i++) {
        size_t layer_bytes;
        slimkv_status st = slimkv_cache_bytes(s->caches[i], &layer_bytes);
        if (st != SLIMKV_OK)
            return st;
        total += layer_bytes;
    }
    *bytes = total;
    return SLIMKV_OK;
}

const slimkv_cache *llama_session_cache(const llama_session *s, int layer)
{
    return layer >= 0 && layer < s->model->hp.n_layer ? s->caches[layer] : NULL;
}

/* ---- the K-per-token measurement (llama_cache_options.k_token_bits) ---- */

/* x <- H x / sqrt(d) in place (Sylvester order; H / sqrt(d) is its own inverse). */
static void hadamard(float *x, int d)
{
    for (int len = 1; len < d; len *= 2)
        for (int i = 0; i < d; i += 2 * len)
            for (int j = i; j < i + len; j++) {
                float a = x[j], b = x[j + len];
                x[j] = a + b;
                x[j + len] = a - b;
            }
    float s = 1.0f / sqrtf((float)d);
    for (int i = 0; i < d; i++)
        x[i] *= s;
}

/* A fixed random sign per (layer, KV head, channel). */
static float k_sign(int layer, int head, int c)
{
    uint64_t z = ((uint64_t)layer << 40 ^ (uint64_t)head << 20 ^ (uint64_t)c) + 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return (z ^ (z >> 31)) & 1 ? -1.0f : 1.0f;
}

static void quantize_k_per_token(const llama_session *s, int layer, float *k, int n)
{
    const llama_hparams *hp = &s->model->hp;
    int d = hp->head_dim, g = s->k_token_group < d ? s->k_token_group : d;
    float top = (float)((1 << s->k_token_bits) - 1);
    for (int t = 0; t < n; t++)
        for (int h = 0; h < hp->n_kv_head; h++) {
            float *x = k + ((size_t)t * hp->n_kv_head + h) * d;
            if (s->k_token_rotate) {
                for (int c = 0; c < d; c++)
                    x[c] *= k_sign(layer, h, c);
                hadamard(x, d);
            }
            for (int c0 = 0; c0 < d; c0 += g) {
                int cn = d - c0 < g ? d - c0 : g;
                float lo = x[c0], hi = x[c0];
                for (int c = c0 + 1; c < c0 + cn; c++) {
                    lo = x[c] < lo ? x[c] : lo;
                    hi = x[c] > hi ? x[c] : hi;
                }
                float scale = (hi - lo) / top, inv = scale > 0.0f ? 1.0f / scale : 0.0f;
                for (int c = c0; c < c0 + cn; c++) {
                    float code = rintf((x[c] - lo) * inv);
                    code = code < 0.0f ? 0.0f : code > top ? top : code;
                    x[c] = code * scale + lo;
                }
            }
            if (s->k_token_rotate) {
                hadamard(x, d);
                for (int c = 0; c < d; c++)
                    x[c] *= k_sign(layer, h, c);
            }
        }
}

/* ---- forward ------------------------------------------------------- */

static slimkv_status attention_layer(llama_session *s, int il, int n, llama_attention_mode mode)
{
    const llama_model *m = s->model;
    const llama_hparams *hp = &m->hp;
    const llama_layer *l = &m->layers[il];
    int d = hp->n_embd, dkv = hp->n_kv_head * hp->head_dim;
    rms_norm(s->x, l->attn_norm, n, d, hp->rms_eps, s->xn);
    int dqkv = d + 2 * dkv;
    const llama_matrix *qkv[] = {&l->wq, &l->wk, &l->wv};
    matmul_set(s, s->xn, n, qkv, 3, s->qkv, dqkv);
    for (int t = 0; t < n; t++) {
        const float *row = s->qkv + (size_t)t * dqkv;
        memcpy(s->q + (size_t)t * d, row, (size_t)d * sizeof(float));
        memcpy(s->k + (size_t)t * dkv, row + d, (size_t)dkv * sizeof(float));
        memcpy(s->v + (size_t)t * dkv, row + d + dkv, (size_t)dkv * sizeof(float));
    }
    rope(s->q, n, hp->n_head, hp->head_dim, s->rope_cos, s->rope_sin);
    rope(s->k, n, hp->n_kv_head, hp->head_dim, s->rope_cos, s->rope_sin);
    if (s->observer)
        s->observer(s->observer_ctx, il, s->q, s->k, s->v, n, s->n_past);
    if (s->k_token_bits)
        quantize_k_per_token(s, il, s->k, n);
    slimkv_status st;
    if (mode == LLAMA_PREFILL) {
        st = slimkv_cache_prefill(s->caches[il], s->q, s->k, s->v, n, s->attn);
    } else {
        st = slimkv_cache_append(s->caches[il], s->k, s->v, n);
        if (st == SLIMKV_OK) /* slimkv_attend, plus H2O's accumulation and eviction */
            st = slimkv_attend_observe(s->caches[il], s->q, n, s->attn);
    }
    if (st != SLIMKV_OK)
        return st;
    matmul(s, s->attn, n, &l->wo, s->proj);
    add_into(s->x, s->proj, (size_t)n * d);
    return SLIMKV_OK;
}

static void mlp_layer(llama_session *s, int il, int n)
{
    const llama_hparams *hp = &s->model->hp;
    const llama_layer *l = &s->model->layers[il];
    int d = hp->n_embd, ff = hp->n_ff;
    rms_norm(s->x, l->ffn_norm, n, d, hp->rms_eps, s->xn);
    const llama_matrix *gate_up[] = {&l->w_gate, &l->w_up};
    matmul_set(s, s->xn, n, gate_up, 2, s->gate_up, 2 * ff);
    /* SiLU(gate) * up, packed into [n][ff] in place (row t only reads row t
     * of the [n][2ff] input, at or after where it writes). */
    for (int t = 0; t < n; t++) {
        const float *g = s->gate_up + (size_t)t * 2 * ff, *u = g + ff;
        float *h = s->gate_up + (size_t)t * ff;
        for (int i = 0; i < ff; i++)
            h[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
    }
    matmul(s, s->gate_up, n, &l->w_down, s->proj);
    add_into(s->x, s->proj, (size_t)n * d);
}

slimkv_status llama_forward(llama_session *s, const int32_t *tokens, int n, llama_attention_mode mode,
                            float *logits, int logits_from)
{
    if (!s || !tokens)
        return SLIMKV_ERR_NULL_ARG;
    const llama_model *m = s->model;
    const llama_hparams *hp = &m->hp;
    if (n < 1 || n > s->max_batch || (logits && (logits_from < 0 || logits_from >= n)))
        return SLIMKV_ERR_INVALID_ARG;
    if (n > s->capacity - s->n_past)
        return SLIMKV_ERR_CAPACITY;
    int d = hp->n_embd, half = hp->head_dim / 2;
    for (int t = 0; t < n; t++) {
        if (tokens[t] < 0 || tokens[t] >= hp->n_vocab)
            return SLIMKV_ERR_INVALID_ARG;
        matrix_row(&m->tok_embd, tokens[t], s->x + (size_t)t * d);
        for (int i = 0; i < half; i++) {
            double angle = (double)(s->n_past + t) * m->rope_inv_freq[i];
            s->rope_cos[(size_t)t * half + i] = (float)cos(angle);
            s->rope_sin[(size_t)t * half + i] = (float)sin(angle);
        }
    }
    for (int il = 0; il < hp->n_layer; il++) {
        slimkv_status st = attention_layer(s, il, n, mode);
        if (st != SLIMKV_OK)
            return st;
        mlp_layer(s, il, n);
    }
    s->n_past += n;
    if (logits) {
        int rows = n - logits_from;
        rms_norm(s->x + (size_t)logits_from * d, m->output_norm, rows, d, hp->rms_eps, s->xn);
        matmul(s, s->xn, rows, &m->output, logits);
    }
    return SLIMKV_OK;
}

/* ---- perplexity ---------------------------------------------------- */

/* log(sum_i exp(x_i - max)) in double, and max = the largest x_i: the
 * shifted log-sum-exp that the NLL and the log-softmax share. */
static double log_sum_exp_shifted(const float *x, int n, float *max)
{
    float top = x[0];
    for (int i = 1; i < n; i++)
        if (x[i] > top)
            top = x[i];
    double sum = 0.0;
    for (int i = 0; i < n; i++)
        sum += exp((double)(x[i] - top));
    *max = top;
    return log(sum);
}

static int32_t argmax_of(const float *logits, int n)
{
    int32_t best = 0;
    for (int i = 1; i < n; i++)
        if (logits[i] > logits[best])
            best = i;
    return best;
}

long llama_ppl_scored(int n, int ctx, int stride)
{
    if (ctx < 2 || stride < 1 || stride >= ctx || n < ctx)
        return 0;
    return (long)((n - ctx) / stride + 1) * stride;
}

/* KL(p || q) = sum p (log p - log q), from log-probabilities. */
static double kl_divergence(const float *log_p, const float *log_q, int n)
{
    double kl = 0.0;
    for (int i = 0; i < n; i++)
        kl += exp((double)log_p[i]) * ((double)log_p[i] - (double)log_q[i]);
    return kl > 0.0 ? kl : 0.0; /* rounding can leave -1e-12 for equal inputs */
}

/* Scores one prediction: its NLL and, when asked, its argmax, its
 * log-softmax and its KL divergence from the reference's (one log-sum-exp
 * serves the NLL and the log-softmax). scratch: n_vocab floats. */
static void score(const llama_ppl_params *p, const float *logits, int vocab, int target, float *scratch,
                  llama_ppl_result *res)
{
    float max;
    double shifted = log_sum_exp_shifted(logits, vocab, &max);
    res->nll_sum += shifted - (double)(logits[target] - max);
    if (p->argmax)
        p->argmax[res->scored] = argmax_of(logits, vocab);
    if (p->logprobs || p->kl) {
        float *lp = p->logprobs ? p->logprobs + (size_t)res->scored * vocab : scratch;
        double lse = (double)max + shifted;
        for (int i = 0; i < vocab; i++)
            lp[i] = (float)((double)logits[i] - lse);
        if (p->kl && p->reference_logprobs)
            p->kl[res->scored] = kl_divergence(p->reference_logprobs + (size_t)res->scored * vocab, lp, vocab);
    }
    res->scored++;
}

static slimkv_status perplexity_window(const llama_model *m, const llama_cache_options *opts, const int32_t *win,
                                       const llama_ppl_params *p, float *logits, float *scratch,
                                       llama_ppl_result *res)
{
    int ctx = p->ctx, prompt = p->ctx - p->stride, vocab = m->hp.n_vocab;
    llama_session *s;
    slimkv_status st = llama_session_create(m, opts, ctx, prompt > p->chunk ? prompt : p->chunk, &s);
    if (st != SLIMKV_OK)
        return st;
    /* The prompt; its last logits predict the first scored token. */
    st = llama_forward(s, win, prompt, LLAMA_PREFILL, logits, prompt - 1);
    if (st == SLIMKV_OK)
        score(p, logits, vocab, win[prompt], scratch, res);
    if (st == SLIMKV_OK)
        st = slimkv_cache_tokens(s->caches[0], &res->cache_tokens_prompt);
    /* The scored tokens; the window's last token is only a target. */
    for (int pos = prompt; pos < ctx - 1 && st == SLIMKV_OK; pos += p->chunk) {
        int len = ctx - 1 - pos < p->chunk ? ctx - 1 - pos : p->chunk;
        st = llama_forward(s, win + pos, len, LLAMA_DECODE, logits, 0);
        for (int i = 0; i < len && st == SLIMKV_OK; i++)
            score(p, logits + (size_t)i * vocab, vocab, win[pos + i + 1], scratch, res);
    }
    if (st == SLIMKV_OK) {
        st = llama_session_bytes(s, &res->bytes);
        res->tokens_held = llama_session_tokens(s);
        if (st == SLIMKV_OK)
            st = slimkv_cache_tokens(s->caches[0], &res->cache_tokens_end);
    }
    llama_session_free(s);
    return st;
}

slimkv_status llama_perplexity(const llama_model *m, const llama_cache_options *opts, const int32_t *tokens, int n,
                               const llama_ppl_params *p, llama_ppl_result *res)
{
    if (!m || !opts || !tokens || !p || !res)
        return SLIMKV_ERR_NULL_ARG;
    *res = (llama_ppl_result){0};
    if (p->ctx < 2 || p->stride < 1 || p->stride >= p->ctx || p->chunk < 1 || n < p->ctx)
        return SLIMKV_ERR_INVALID_ARG;
    int n_windows = (n - p->ctx) / p->stride + 1;
    /* chunk rows of logits, then one row of scratch */
    float *logits = malloc(((size_t)p->chunk + 1) * m->hp.n_vocab * sizeof(float));
    if (!logits)
        return SLIMKV_ERR_NOMEM;
    float *scratch = logits + (size_t)p->chunk * m->hp.n_vocab;
    slimkv_status st = SLIMKV_OK;
    for (int w = 0; w < n_windows && st == SLIMKV_OK; w++) {
        st = perplexity_window(m, opts, tokens + (size_t)w * p->stride, p, logits, scratch, res);
        if (st == SLIMKV_OK && p->progress)
            p->progress(p->progress_ctx, w + 1, n_windows, res->nll_sum, res->scored);
    }
    free(logits);
    if (st == SLIMKV_OK)
        res->perplexity = exp(res->nll_sum / (double)res->scored);
    return st;
}
