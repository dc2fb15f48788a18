/* Cache snapshots: everything a cache holds, in a safetensors file, so a
 * prompt's compressed cache can be reused without recomputing the prefill.
 *
 * Metadata: "slimkv.snapshot" = version, "slimkv.config" = the fields of
 * the config that determine the stored state (must equal the target's),
 * "slimkv.tokens", "slimkv.pending" (ThinK/SparK channels not chosen yet),
 * "slimkv.checksum" = FNV-1a 64 over everything else the file says: the
 * other four metadata values, then every tensor in name order (name, dtype,
 * byte count, bytes). It is checked before anything is interpreted, so a
 * changed byte anywhere that changes what the file says is
 * SLIMKV_ERR_FORMAT, header included. FNV is no defence against a forger:
 * what is loaded is then checked for every invariant the kernels rely on
 * (io_snapshot_check.c) before the cache takes it. Tensors per KV head i
 * (raw bytes in the one storage layout, the same on every ISA):
 *   h<i>.k_chan, h<i>.v_chan  I32 kept channels
 *   h<i>.k_store              I32 [dk] K channels in storage order, with K
 *                             outlier channels only (config "outliers=")
 *   h<i>.qnorm                F32 [head_dim], SparK only
 *   h<i>.sink_k/v, h<i>.window_k/v, h<i>.k_body, h<i>.v_body  U8
 * Version 3 is written for caches with token eviction (and only for them,
 * so snapshots of the others stay version 2): the metadata adds
 * "slimkv.seen" (tokens seen, checksummed after "slimkv.pending"), the
 * config string the eviction policy, and each head
 *   h<i>.pos    I32 [tokens]: the held tokens' positions
 *   h<i>.score  F32 [tokens]: H2O's accumulated attention (H2O only) */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "safetensors/safetensors.h"

/* 2: the checksum covers the metadata and the tensor table too */
#define SNAPSHOT_VERSION "2"
/* 3: version 2 plus the token eviction state (see the top) */
#define SNAPSHOT_VERSION_EVICT "3"
#define PARTS_PER_HEAD 12
#define FNV_OFFSET 0xcbf29ce484222325ull
#define META_KEYS 5
#define META_KEYS_EVICT 6

static uint64_t fnv1a(uint64_t h, const void *data, size_t n)
{
    const uint8_t *p = data;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

/* The config fields the stored state depends on, and only those: the
 * static policy's alignment shapes its kept channels, SparK's ratio its
 * record size; ThinK's channels are stored in the file, and the window only
 * steers a choice not made yet. */
static void config_string(const slimkv_cache *c, char *buf, size_t size)
{
    const slimkv_config *f = &c->cfg;
    int n = snprintf(buf, size, "q_heads=%d kv_heads=%d head_dim=%d capacity=%d k=%s v=%s group=%d residual=%d "
                                "sinks=%d policy=%d",
                     f->n_q_heads, f->n_kv_heads, f->head_dim, f->capacity, slimkv_format_name(f->k_format),
                     slimkv_format_name(f->v_format), f->group_size, f->residual, f->n_sink, (int)f->policy);
    if (n < 0 || (size_t)n >= size)
        return;
    if (f->rotate) /* stored rotated: only a cache rotating alike reads them right */
        n += snprintf(buf + n, size - (size_t)n, " rotate=%d", f->rotate);
    if (f->policy == SLIMKV_POLICY_STATIC)
        n += snprintf(buf + n, size - (size_t)n, " align=%d", f->channel_align);
    if (f->k_outliers)
        n += snprintf(buf + n, size - (size_t)n, " outliers=%d", f->k_outliers);
    if (f->policy == SLIMKV_POLICY_SPARK)
        n += snprintf(buf + n, size - (size_t)n, " keep=%d", c->spark_keep);
    /* the policy decides which tensors a head has; its budget, window and
     * pool only steer evictions not made yet */
    if (f->eviction != SLIMKV_EVICT_NONE && n >= 0 && (size_t)n < size)
        snprintf(buf + n, size - (size_t)n, " evict=%d", (int)f->eviction);
}

/* The checksummed metadata, in this order. */
typedef struct snapshot_meta {
    const char *version, *config, *tokens, *pending;
    const char *seen; /* version 3 only, else NULL */
} snapshot_meta;

static uint64_t meta_checksum(const snapshot_meta *m)
{
    const char *values[5] = {m->version, m->config, m->tokens, m->pending, m->seen};
    uint64_t h = FNV_OFFSET;
    for (int i = 0; i < (m->seen ? 5 : 4); i++)
        h = fnv1a(h, values[i], strlen(values[i]) + 1); /* with the NUL: "12"+"3" differs from "1"+"23" */
    return h;
}

/* A tensor's table entry: name (with its NUL), dtype, byte count. */
static uint64_t entry_checksum(uint64_t h, const char *name, st_dtype dtype, uint64_t n_bytes)
{
    uint8_t fields[9];
    fields[0] = (uint8_t)dtype;
    for (int i = 0; i < 8; i++)
        fields[1 + i] = (uint8_t)(n_bytes >> (8 * i));
    h = fnv1a(h, name, strlen(name) + 1);
    return fnv1a(h, fields, sizeof fields);
}

/* One stored part of a head: where its bytes live in a cache. Body pages
 * are not contiguous, so they are described by page list and page size. */
typedef struct part {
    char name[32];
    st_dtype dtype;
    size_t n_bytes;
    uint8_t *flat;          /* contiguous bytes, or NULL for pages */
    uint8_t **pages;
    int n_pages;
    size_t page_bytes;
} part;

/* The parts of head i, in the order they are written and checksummed. */
static int head_parts(const slimkv_cache *c, int i, part *p)
{
    const slimkv_config *cfg = &c->cfg;
    slimkv_head *h = &c->heads[i];
    size_t dim = (size_t)cfg->head_dim;
    size_t krow = dim * slimkv_row_elem_bytes(c->k_row_fmt), vrow = dim * slimkv_row_elem_bytes(c->v_row_fmt);
    int n = 0;
    memset(p, 0, PARTS_PER_HEAD * sizeof *p);
#define FLAT(NAME, DTYPE, PTR, BYTES)                                                                    \
    do {                                                                                                 \
        snprintf(p[n].name, sizeof p[n].name, "h%d." NAME, i);                                           \
        p[n].dtype = DTYPE;                                                                              \
        p[n].flat = (uint8_t *)(PTR);                                                                    \
        p[n].n_bytes = BYTES;                                                                            \
        n++;                                                                                             \
    } while (0)
    FLAT("k_chan", ST_I32, h->k_chan, (size_t)h->dk * sizeof(int32_t));
    FLAT("v_chan", ST_I32, h->v_chan, (size_t)h->dv * sizeof(int32_t));
    if (h->k_store)
        FLAT("k_store", ST_I32, h->k_store, (size_t)h->dk * sizeof(int32_t));
    if (h->qnorm)
        FLAT("qnorm", ST_F32, h->qnorm, dim * sizeof(float));
    FLAT("sink_k", ST_U8, h->sink_k, (size_t)c->sink_rows * krow);
    FLAT("sink_v", ST_U8, h->sink_v, (size_t)c->sink_rows * vrow);
    FLAT("window_k", ST_U8, h->ring_k, (size_t)c->ring_slots * krow);
    FLAT("window_v", ST_U8, h->ring_v, (size_t)c->ring_slots * vrow);
    if (c->evict) {
        int32_t *pos;
        float *score;
        slimkv_evict_tracking(c, i, &pos, &score);
        FLAT("pos", ST_I32, pos, (size_t)c->n_tokens * sizeof(int32_t));
        if (c->cfg.eviction == SLIMKV_EVICT_H2O)
            FLAT("score", ST_F32, score, (size_t)c->n_tokens * sizeof(float));
    }
#undef FLAT
    const char *names[2] = {"k_body", "v_body"};
    for (int which = 0; which < 2; which++, n++) {
        snprintf(p[n].name, sizeof p[n].name, "h%d.%s", i, names[which]);
        p[n].dtype = ST_U8;
        p[n].pages = which == 0 ? h->k_pages : h->v_pages;
        p[n].n_pages = which == 0 ? h->n_k_pages : h->n_v_pages;
        p[n].page_bytes = (which == 0 ? h->k_group_bytes : h->v_block_bytes) * SLIMKV_PAGE_GROUPS;
        p[n].n_bytes = (size_t)p[n].n_pages * p[n].page_bytes;
    }
    return n;
}

static uint64_t part_checksum(uint64_t sum, const part *p)
{
    if (p->flat)
        return fnv1a(sum, p->flat, p->n_bytes);
    for (int i = 0; i < p->n_pages; i++)
        sum = fnv1a(sum, p->pages[i], p->page_bytes);
    return sum;
}

static int part_name_order(const void *a, const void *b)
{
    return strcmp(((const part *)a)->name, ((const part *)b)->name);
}

/* The checksum of what the file says (see the top), from its own table:
 * SLIMKV_ERR_FORMAT unless it equals the stored one. */
static slimkv_status verify_checksum(const st_file *f, const snapshot_meta *m, const char *stored)
{
    enum { CHUNK = 1 << 16 };
    uint8_t *buf = slimkv_malloc(CHUNK);
    if (!buf)
        return SLIMKV_ERR_NOMEM;
    uint64_t sum = meta_checksum(m);
    slimkv_status st = SLIMKV_OK;
    for (size_t i = 0; i < f->n_tensors && st == SLIMKV_OK; i++) { /* sorted by name */
        const st_tensor *t = &f->tensors[i];
        sum = entry_checksum(sum, t->name, t->dtype, t->n_bytes);
        for (uint64_t off = 0; off < t->n_bytes && st == SLIMKV_OK; off += CHUNK) {
            size_t len = t->n_bytes - off < CHUNK ? (size_t)(t->n_bytes - off) : CHUNK;
            st = st_read_bytes(f, t, off, len, buf);
            sum = fnv1a(sum, buf, len);
        }
    }
    slimkv_free(buf);
    char computed[20];
    snprintf(computed, sizeof computed, "%016llx", (unsigned long long)sum);
    if (st == SLIMKV_OK && strcmp(computed, stored) != 0)
        st = SLIMKV_ERR_FORMAT;
    return st;
}

static slimkv_status produce_part(void *ctx, const st_out *self, void *dst)
{
    const part *p = ctx;
    (void)self;
    if (p->flat) {
        memcpy(dst, p->flat, p->n_bytes);
        return SLIMKV_OK;
    }
    for (int i = 0; i < p->n_pages; i++)
        memcpy((uint8_t *)dst + (size_t)i * p->page_bytes, p->pages[i], p->page_bytes);
    return SLIMKV_OK;
}

slimkv_status slimkv_snapshot_save(const slimkv_cache *c, const char *path)
{
    int heads = c->cfg.n_kv_heads;
    part *parts = slimkv_calloc((size_t)heads * PARTS_PER_HEAD, sizeof *parts);
    st_out *outs = slimkv_calloc((size_t)heads * PARTS_PER_HEAD, sizeof *outs);
    if (!parts || !outs) {
        slimkv_free(parts);
        slimkv_free(outs);
        return SLIMKV_ERR_NOMEM;
    }
    size_t n = 0;
    for (int i = 0; i < heads; i++)
        n += (size_t)head_parts(c, i, parts + n);
    char config[512], tokens[16], pending[4], seen[16], checksum[20];
    config_string(c, config, sizeof config);
    snprintf(tokens, sizeof tokens, "%d", c->n_tokens);
    snprintf(pending, sizeof pending, "%d", c->channels_pending);
    snprintf(seen, sizeof seen, "%d", slimkv_evict_seen(c));
    snapshot_meta m = {c->evict ? SNAPSHOT_VERSION_EVICT : SNAPSHOT_VERSION, config, tokens, pending,
                       c->evict ? seen : NULL};
    uint64_t sum = meta_checksum(&m);
    /* tensors in name order, as the reader's table lists them */
    qsort(parts, n, sizeof *parts, part_name_order);
    for (size_t j = 0; j < n; j++) {
        sum = part_checksum(entry_checksum(sum, parts[j].name, parts[j].dtype, parts[j].n_bytes), &parts[j]);
        size_t elem = st_dtype_size(parts[j].dtype);
        outs[j] = (st_out){.name = parts[j].name, .dtype = parts[j].dtype, .n_dims = 1,
                           .shape = {(int64_t)(parts[j].n_bytes / elem)}, .produce = produce_part, .ctx = &parts[j]};
    }
    snprintf(checksum, sizeof checksum, "%016llx", (unsigned long long)sum);
    st_meta meta[] = {{"slimkv.snapshot", c->evict ? SNAPSHOT_VERSION_EVICT : SNAPSHOT_VERSION},
                      {"slimkv.config", config},
                      {"slimkv.tokens", tokens},
                      {"slimkv.pending", pending},
                      {"slimkv.checksum", checksum},
                      {"slimkv.seen", seen}}; /* the last: version 3 only */
    slimkv_status st = st_write(path, outs, n, meta, (size_t)(c->evict ? META_KEYS_EVICT : META_KEYS));
    slimkv_free(parts);
    slimkv_free(outs);
    return st;
}

/* A decimal integer in [lo, hi] (lo >= 0) as the writer prints it: digits
 * only, no sign, no leading zero. */
static int parse_int(const char *s, long lo, long hi, int *out)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 10 || strspn(s, "0123456789") != n || (n > 1 && s[0] == '0'))
        return 0;
    long v = strtol(s, NULL, 10); /* digits only; a value past LONG_MAX saturates, and hi refuses it */
    if (v < lo || v > hi)
        return 0;
    *out = (int)v;
    return 1;
}

/* Kept channels read from the file: strictly ascending, inside the head. */
static int valid_channels(const int32_t *chan, int n, int dim)
{
    for (int i = 0; i < n; i++)
        if (chan[i] < 0 || chan[i] >= dim || (i > 0 && chan[i] <= chan[i - 1]))
            return 0;
    return 1;
}

static int valid_qnorm(const float *qnorm, int dim)
{
    for (int i = 0; i < dim; i++)
        if (!(qnorm[i] > 0.0f) || !isfinite(qnorm[i]))
            return 0;
    return 1;
}

/* The channel tensors of head i into tmp: for policies that fix channels
 * in the config they must equal the target's (else MISMATCH); ThinK's
 * chosen K channels and SparK's norms come from the file. */
static slimkv_status load_channels(const st_file *f, const slimkv_cache *target, slimkv_cache *tmp, int i)
{
    const slimkv_config *cfg = &tmp->cfg;
    slimkv_head *h = &tmp->heads[i];
    const slimkv_head *th = &target->heads[i];
    char name[32];
    int dim = cfg->head_dim;
    int32_t chan[SLIMKV_MAX_HEAD_DIM];
    for (int which = 0; which < 2; which++) {
        snprintf(name, sizeof name, "h%d.%s", i, which == 0 ? "k_chan" : "v_chan");
        const st_tensor *t = st_find(f, name);
        if (!t || t->dtype != ST_I32 || t->n_dims != 1 || t->shape[0] > dim)
            return SLIMKV_ERR_FORMAT;
        int n = (int)t->shape[0];
        slimkv_status st = st_read_bytes(f, t, 0, (size_t)n * sizeof(int32_t), chan);
        if (st != SLIMKV_OK)
            return st;
        if (!valid_channels(chan, n, dim))
            return SLIMKV_ERR_FORMAT;
        int chosen_here = which == 0 && cfg->policy == SLIMKV_POLICY_THINK;
        if (chosen_here) {
            if (n < 1 || (n % 4 != 0 && n != dim))
                return SLIMKV_ERR_FORMAT;
            h->dk = n;
            memcpy(h->k_chan, chan, (size_t)n * sizeof *chan);
        } else {
            int expect = which == 0 ? th->dk : th->dv;
            const int32_t *want = which == 0 ? th->k_chan : th->v_chan;
            if (n != expect || memcmp(chan, want, (size_t)n * sizeof *chan) != 0)
                return SLIMKV_ERR_MISMATCH;
        }
    }
    if (h->qnorm) {
        snprintf(name, sizeof name, "h%d.qnorm", i);
        const st_tensor *t = st_find(f, name);
        if (!t || t->dtype != ST_F32 || t->n_dims != 1 || t->shape[0] != dim)
            return SLIMKV_ERR_FORMAT;
        slimkv_status st = st_read_bytes(f, t, 0, (size_t)dim * sizeof(float), h->qnorm);
        if (st != SLIMKV_OK)
            return st;
        if (!valid_qnorm(h->qnorm, dim))
            return SLIMKV_ERR_FORMAT;
        slimkv_policy_set_qnorm(h, dim);
    }
    slimkv_policy_group_bytes(tmp, h);
    return SLIMKV_OK;
}

/* Reads one part of tmp from the file: same name, U8/I32/F32, exact size. */
static slimkv_status load_part(const st_file *f, const part *p)
{
    const st_tensor *t = st_find(f, p->name);
    if (!t || t->dtype != p->dtype || t->n_dims != 1 || t->n_bytes != p->n_bytes)
        return SLIMKV_ERR_FORMAT;
    if (p->flat)
        return p->n_bytes ? st_read_bytes(f, t, 0, p->n_bytes, p->flat) : SLIMKV_OK;
    for (int i = 0; i < p->n_pages; i++) {
        slimkv_status st = st_read_bytes(f, t, (uint64_t)i * p->page_bytes, p->page_bytes, p->pages[i]);
        if (st != SLIMKV_OK)
            return st;
    }
    return SLIMKV_OK;
}

static slimkv_status load_into(const st_file *f, const slimkv_cache *target, slimkv_cache *tmp)
{
    snapshot_meta m = {st_meta_get(f, "slimkv.snapshot"), st_meta_get(f, "slimkv.config"),
                       st_meta_get(f, "slimkv.tokens"), st_meta_get(f, "slimkv.pending"), NULL};
    const char *checksum = st_meta_get(f, "slimkv.checksum");
    int evicting = m.version && strcmp(m.version, SNAPSHOT_VERSION_EVICT) == 0;
    if (!m.version || (strcmp(m.version, SNAPSHOT_VERSION) != 0 && !evicting))
        return SLIMKV_ERR_FORMAT;
    if (evicting && !(m.seen = st_meta_get(f, "slimkv.seen")))
        return SLIMKV_ERR_FORMAT;
    if (!m.config || !m.tokens || !m.pending || !checksum || strlen(checksum) != 16 ||
        f->n_meta != (evicting ? META_KEYS_EVICT : META_KEYS))
        return SLIMKV_ERR_FORMAT;
    /* first whether the file is intact, then whether it is ours */
    slimkv_status st = verify_checksum(f, &m, checksum);
    if (st != SLIMKV_OK)
        return st;
    char config[512];
    config_string(target, config, sizeof config);
    if (strcmp(m.config, config) != 0)
        return SLIMKV_ERR_MISMATCH;
    int tokens, pending;
    if (!parse_int(m.tokens, 0, target->cfg.capacity, &tokens) || !parse_int(m.pending, 0, 1, &pending))
        return SLIMKV_ERR_FORMAT;
    if (pending && (!slimkv_policy_chooses_at_prefill(tmp->cfg.policy) || tokens != 0))
        return SLIMKV_ERR_FORMAT;
    /* the config string names the eviction policy, so only a forgery gets
     * here with a version that does not fit the cache */
    if (evicting != (tmp->evict != NULL))
        return SLIMKV_ERR_FORMAT;
    int seen = tokens;
    if (evicting && !parse_int(m.seen, tokens, INT_MAX, &seen))
        return SLIMKV_ERR_FORMAT;
    for (int i = 0; i < tmp->cfg.n_kv_heads && st == SLIMKV_OK && !pending; i++)
        st = load_channels(f, target, tmp, i);
    if (st == SLIMKV_OK)
        st = slimkv_storage_reserve(tmp, slimkv_k_body_tokens(&tmp->cfg, tokens),
                                  slimkv_v_body_tokens(&tmp->cfg, tokens));
    if (st == SLIMKV_OK && evicting) /* positions and scores: sized by the tokens */
        st = slimkv_evict_prepare_restore(tmp, tokens, seen);
    if (st == SLIMKV_OK)
        tmp->n_tokens = tokens;
    part parts[PARTS_PER_HEAD];
    for (int i = 0; i < tmp->cfg.n_kv_heads && st == SLIMKV_OK; i++) {
        int n = head_parts(tmp, i, parts);
        for (int j = 0; j < n && st == SLIMKV_OK; j++)
            st = load_part(f, &parts[j]);
    }
    if (st != SLIMKV_OK)
        return st;
    tmp->n_tokens = tokens;
    tmp->channels_pending = pending;
    /* The file does not say how far back a streaming head's ring reaches
     * (an earlier truncation may have dropped rows); what it holds for
     * certain is the window it sees, so a truncation may not go back
     * before that (slimkv_storage_truncate). */
    tmp->stream_floor = tmp->cfg.n_sink + slimkv_v_body_tokens(&tmp->cfg, tokens);
    /* a snapshot is hostile input: what the kernels will read must hold */
    return slimkv_snapshot_state_valid(tmp) && slimkv_evict_state_valid(tmp) ? SLIMKV_OK : SLIMKV_ERR_FORMAT;
}

slimkv_status slimkv_snapshot_restore(slimkv_cache *c, const char *path)
{
    st_file *f;
    slimkv_status st = st_open(path, &f);
    if (st != SLIMKV_OK)
        return st;
    slimkv_cache *tmp;
    st = slimkv_cache_create_like(c, &tmp);
    if (st == SLIMKV_OK) {
        st = load_into(f, c, tmp);
        if (st == SLIMKV_OK) { /* everything checked: swap the contents in */
            slimkv_cache old = *c;
            *c = *tmp;
            *tmp = old;
        }
        slimkv_cache_destroy(tmp);
    }
    st_close(f);
    return st;
}
