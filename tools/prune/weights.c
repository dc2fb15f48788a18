/* Weight-side structural pruning and the SDS refit (see weights.h). */
#include "weights.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"
#include "slimkv.h"

void qk_weight_mask(const uint8_t *plan, int n_kv, int dim, uint8_t *keep)
{
    int half = dim / 2;
    for (int h = 0; h < n_kv; h++) {
        const uint8_t *m = plan + (size_t)h * dim;
        uint8_t *k = keep + (size_t)h * dim;
        int any = 0;
        for (int c = 0; c < dim; c++)
            any |= m[c];
        for (int c = 0; c < half; c++)
            k[c] = k[c + half] = !any || m[c] || m[c + half];
    }
}

void qk_prune(qk_layer *w, const uint8_t *keep)
{
    int d = w->head_dim, group = w->n_q_heads / w->n_kv_heads;
    size_t hid = (size_t)w->hidden;
    for (int h = 0; h < w->n_kv_heads; h++)
        for (int c = 0; c < d; c++) {
            if (keep[(size_t)h * d + c])
                continue;
            size_t kr = (size_t)h * d + c;
            memset(w->wk + kr * hid, 0, hid * sizeof(float));
            if (w->bk)
                w->bk[kr] = 0;
            for (int j = 0; j < group; j++) {
                size_t qr = (size_t)(h * group + j) * d + c;
                memset(w->wq + qr * hid, 0, hid * sizeof(float));
                if (w->bq)
                    w->bq[qr] = 0;
            }
        }
}

/* out [n][d] = x [n][hidden] . rows[d][hidden]^T + bias, in double. */
static void project(const float *x, int n, int hidden, const float *rows, const float *bias, int d, double *out)
{
    for (int t = 0; t < n; t++) {
        const float *xt = x + (size_t)t * hidden;
        for (int c = 0; c < d; c++) {
            const float *r = rows + (size_t)c * hidden;
            double s = bias ? bias[c] : 0;
            for (int i = 0; i < hidden; i++)
                s += (double)xt[i] * r[i];
            out[(size_t)t * d + c] = s;
        }
    }
}

/* out [d][d] = a^T b for a, b [n][d]. */
static void cross(const double *a, const double *b, int n, int d, double *out)
{
    memset(out, 0, (size_t)d * d * sizeof *out);
    for (int t = 0; t < n; t++)
        for (int i = 0; i < d; i++) {
            double ai = a[(size_t)t * d + i];
            for (int j = 0; j < d; j++)
                out[(size_t)i * d + j] += ai * b[(size_t)t * d + j];
        }
}

static double dot_all(const double *a, const double *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

/* ||Qn K'^T - Qo K^T||^2 where Qn's pruned columns are zero (so K' = K
 * masked changes nothing) and gk = K^T K: expanded into d x d Grams. */
static double score_error(const double *qn, const double *qo, int n, int d, const double *gk, double *tmp,
                          double *reference)
{
    size_t dd = (size_t)d * d;
    cross(qn, qn, n, d, tmp);
    double e = dot_all(tmp, gk, dd);
    cross(qn, qo, n, d, tmp);
    e -= 2 * dot_all(tmp, gk, dd);
    cross(qo, qo, n, d, tmp);
    double ref = dot_all(tmp, gk, dd);
    *reference = ref;
    e += ref;
    return e > 0 ? e : 0;
}

/* Solves A X = B, A [n][n] symmetric positive semi-definite, B [n][m]; X
 * into B. A ridge of 1e-9 x mean diagonal (raised while the factorization
 * fails) keeps it well defined when kept key channels are collinear. */
static int cholesky_solve(const double *a, int n, double *b, int m)
{
    double *l = malloc((size_t)n * n * sizeof *l), mean = 0;
    if (!l)
        return -1;
    for (int i = 0; i < n; i++)
        mean += a[(size_t)i * n + i] / n;
    if (!(mean > 0))
        mean = 1;
    int ok = 0;
    for (double ridge = 1e-9; !ok && ridge < 1; ridge *= 100) {
        memcpy(l, a, (size_t)n * n * sizeof *l);
        ok = 1;
        for (int j = 0; j < n && ok; j++) {
            double s = l[(size_t)j * n + j] + ridge * mean;
            for (int k = 0; k < j; k++)
                s -= l[(size_t)j * n + k] * l[(size_t)j * n + k];
            if (!(s > 0)) {
                ok = 0;
                break;
            }
            double djj = sqrt(s);
            l[(size_t)j * n + j] = djj;
            for (int i = j + 1; i < n; i++) {
                double t = l[(size_t)i * n + j];
                for (int k = 0; k < j; k++)
                    t -= l[(size_t)i * n + k] * l[(size_t)j * n + k];
                l[(size_t)i * n + j] = t / djj;
            }
        }
    }
    if (ok)
        for (int c = 0; c < m; c++) { /* L y = b, then L^T x = y, column by column */
            for (int i = 0; i < n; i++) {
                double t = b[(size_t)i * m + c];
                for (int k = 0; k < i; k++)
                    t -= l[(size_t)i * n + k] * b[(size_t)k * m + c];
                b[(size_t)i * m + c] = t / l[(size_t)i * n + i];
            }
            for (int i = n - 1; i >= 0; i--) {
                double t = b[(size_t)i * m + c];
                for (int k = i + 1; k < n; k++)
                    t -= l[(size_t)k * n + i] * b[(size_t)k * m + c];
                b[(size_t)i * m + c] = t / l[(size_t)i * n + i];
            }
        }
    free(l);
    return ok ? 0 : -1;
}

/* One KV group: B from the keys, then for each query head the refit rows
 * and both errors; the group keeps the refit only if it is no worse. */
static int refit_group(qk_layer *w, const float *x, int n, int h, const uint8_t *keep, score_errors *err,
                       double *scratch, float *new_rows)
{
    int d = w->head_dim, group = w->n_q_heads / w->n_kv_heads, hid = w->hidden, nc = 0, np = 0;
    int kept[1024], pruned[1024];
    for (int c = 0; c < d; c++) {
        if (keep[(size_t)h * d + c])
            kept[nc++] = c;
        else
            pruned[np++] = c;
    }
    double *k = scratch, *qo = k + (size_t)n * d, *qn = qo + (size_t)n * d, *gk = qn + (size_t)n * d;
    double *tmp = gk + (size_t)d * d, *gcc = tmp + (size_t)d * d, *beta = gcc + (size_t)d * d;
    project(x, n, hid, w->wk + (size_t)h * d * hid, w->bk ? w->bk + (size_t)h * d : NULL, d, k);
    cross(k, k, n, d, gk);
    int solved = 0;
    if (np > 0 && nc > 0) {
        for (int i = 0; i < nc; i++) {
            for (int j = 0; j < nc; j++)
                gcc[(size_t)i * nc + j] = gk[(size_t)kept[i] * d + kept[j]];
            for (int j = 0; j < np; j++)
                beta[(size_t)i * np + j] = gk[(size_t)kept[i] * d + pruned[j]];
        }
        solved = cholesky_solve(gcc, nc, beta, np) == 0;
    }
    double e_plain = 0, e_refit = 0, ref = 0;
    for (int j = 0; j < group; j++) {
        int qh = h * group + j;
        const float *rows = w->wq + (size_t)qh * d * hid;
        const float *bias = w->bq ? w->bq + (size_t)qh * d : NULL;
        float *out = new_rows + (size_t)j * d * (hid + 1); /* d rows, then d bias entries */
        project(x, n, hid, rows, bias, d, qo);
        /* plain pruning: the kept columns of Qo */
        for (size_t i = 0; i < (size_t)n * d; i++)
            qn[i] = keep[(size_t)h * d + i % d] ? qo[i] : 0;
        double r;
        e_plain += score_error(qn, qo, n, d, gk, tmp, &r);
        ref += r;
        /* refit: W'_c = W_c + sum_p B_cp W_p, so Qn_c = Qo_c + sum_p B_cp Qo_p */
        memset(out, 0, (size_t)d * (hid + 1) * sizeof *out);
        for (int i = 0; i < nc; i++) {
            int c = kept[i];
            float *row = out + (size_t)c * hid, *b = out + (size_t)d * hid + c;
            memcpy(row, rows + (size_t)c * hid, (size_t)hid * sizeof *row);
            *b = bias ? bias[c] : 0;
            for (int p = 0; solved && p < np; p++) {
                float coef = (float)beta[(size_t)i * np + p];
                const float *src = rows + (size_t)pruned[p] * hid;
                for (int t = 0; t < hid; t++)
                    row[t] += coef * src[t];
                *b += bias ? coef * bias[pruned[p]] : 0;
            }
        }
        project(x, n, hid, out, w->bq ? out + (size_t)d * hid : NULL, d, qn);
        e_refit += score_error(qn, qo, n, d, gk, tmp, &r);
    }
    int use_refit = solved && e_refit <= e_plain;
    if (use_refit)
        for (int j = 0; j < group; j++) {
            int qh = h * group + j;
            const float *src = new_rows + (size_t)j * d * (hid + 1);
            memcpy(w->wq + (size_t)qh * d * hid, src, (size_t)d * hid * sizeof(float));
            if (w->bq)
                memcpy(w->bq + (size_t)qh * d, src + (size_t)d * hid, (size_t)d * sizeof(float));
        }
    if (err) {
        err->pruned += e_plain;
        err->refit += use_refit ? e_refit : e_plain;
        err->reference += ref;
        err->groups_refit += use_refit;
    }
    return 0;
}

int qk_refit(qk_layer *w, const float *x, int n, const uint8_t *keep, score_errors *err)
{
    int d = w->head_dim, group = w->n_q_heads / w->n_kv_heads;
    size_t scratch_n = 3 * (size_t)n * d + 4 * (size_t)d * d;
    double *scratch = malloc(scratch_n * sizeof *scratch);
    float *new_rows = malloc((size_t)group * d * (w->hidden + 1) * sizeof *new_rows);
    int rc = scratch && new_rows && d <= 1024 ? 0 : -1;
    for (int h = 0; rc == 0 && h < w->n_kv_heads; h++)
        rc = refit_group(w, x, n, h, keep, err, scratch, new_rows);
    free(scratch);
    free(new_rows);
    if (rc == 0)
        qk_prune(w, keep); /* prune again: the refit rows of pruned channels are zero already; k rows go now */
    return rc;
}

int qk_compact_dim(const uint8_t *keep, int n_kv, int dim)
{
    int d = -1;
    for (int h = 0; h < n_kv; h++) {
        int count = 0;
        for (int c = 0; c < dim; c++)
            count += keep[(size_t)h * dim + c];
        if (count == 0 || (d >= 0 && count != d))
            return -1;
        d = count;
    }
    return d;
}

void qk_compact(const qk_layer *w, const uint8_t *keep, int d, float *wq_out, float *wk_out, float *bq_out,
                float *bk_out, int32_t *index)
{
    int dim = w->head_dim, group = w->n_q_heads / w->n_kv_heads;
    size_t hid = (size_t)w->hidden;
    float q_scale = sqrtf((float)d / (float)dim);
    for (int h = 0; h < w->n_kv_heads; h++) {
        int at = 0;
        for (int c = 0; c < dim; c++) {
            if (!keep[(size_t)h * dim + c])
                continue;
            size_t src = (size_t)h * dim + c, dst = (size_t)h * d + at;
            index[dst] = c;
            memcpy(wk_out + dst * hid, w->wk + src * hid, hid * sizeof(float));
            if (bk_out)
                bk_out[dst] = w->bk[src];
            for (int j = 0; j < group; j++) {
                size_t qs = (size_t)(h * group + j) * dim + c, qd = (size_t)(h * group + j) * d + at;
                for (size_t i = 0; i < hid; i++)
                    wq_out[qd * hid + i] = w->wq[qs * hid + i] * q_scale;
                if (bq_out)
                    bq_out[qd] = w->bq[qs] * q_scale;
            }
            at++;
        }
    }
}

/* ---- the model file ---- */

enum { T_QW, T_KW, T_QB, T_KB, T_INDEX, T_KINDS };
static const char *const tensor_suffix[T_KINDS] = {
    "self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.q_proj.bias", "self_attn.k_proj.bias",
    "self_attn.k_kept_channels"};

typedef struct prune_state {
    const prune_options *o;
    const st_file *model, *calib;
    const slimkv_plan *plan;
    int n_kv, dim;
    score_errors *err;
    /* the layer processed last: its outputs, f32 */
    int layer;
    qk_layer w;
    float *out[T_KINDS - 1]; /* compact outputs (remove), else the pruned w arrays */
    int32_t *index;
    int d_out;
} prune_state;

typedef struct job {
    prune_state *st;
    int layer, kind;
} job;

static int layer_name(char *buf, size_t len, int layer, int kind)
{
    return snprintf(buf, len, "model.layers.%d.%s", layer, tensor_suffix[kind]) < (int)len;
}

static const st_tensor *layer_tensor(const st_file *f, int layer, int kind)
{
    char name[128];
    return layer_name(name, sizeof name, layer, kind) ? st_find(f, name) : NULL;
}

static void free_layer(prune_state *s)
{
    free(s->w.wq);
    free(s->w.wk);
    free(s->w.bq);
    free(s->w.bk);
    for (int i = 0; i < T_KINDS - 1; i++)
        if (s->o->remove)
            free(s->out[i]);
    free(s->index);
    memset(&s->w, 0, sizeof s->w);
    memset(s->out, 0, sizeof s->out);
    s->index = NULL;
    s->layer = -1;
}

static slimkv_status read_floats(const st_file *f, const st_tensor *t, float **out)
{
    *out = NULL;
    if (!t)
        return SLIMKV_OK;
    *out = malloc(t->n_elems * sizeof **out);
    return *out ? st_read_f32(f, t, *out) : SLIMKV_ERR_NOMEM;
}

static const st_tensor *calib_hidden(const st_file *calib, int layer)
{
    char name[64];
    snprintf(name, sizeof name, "layers.%d.hidden", layer);
    const st_tensor *t = st_find(calib, name);
    return t ? t : st_find(calib, "calib.hidden");
}

/* Loads, refits, prunes (and compacts) one layer into s. */
static slimkv_status process_layer(prune_state *s, int layer)
{
    if (s->layer == layer)
        return SLIMKV_OK;
    free_layer(s);
    const st_tensor *tq = layer_tensor(s->model, layer, T_QW), *tk = layer_tensor(s->model, layer, T_KW);
    qk_layer *w = &s->w;
    w->n_kv_heads = s->n_kv;
    w->head_dim = s->dim;
    w->hidden = (int)tk->shape[1];
    w->n_q_heads = (int)(tq->shape[0] / s->dim);
    slimkv_status st = read_floats(s->model, tq, &w->wq);
    if (st == SLIMKV_OK)
        st = read_floats(s->model, tk, &w->wk);
    if (st == SLIMKV_OK)
        st = read_floats(s->model, layer_tensor(s->model, layer, T_QB), &w->bq);
    if (st == SLIMKV_OK)
        st = read_floats(s->model, layer_tensor(s->model, layer, T_KB), &w->bk);
    slimkv_config c;
    slimkv_config_init(&c);
    slimkv_plan_layer_config(s->plan, layer, &c);
    uint8_t *keep = malloc((size_t)s->n_kv * s->dim);
    if (st == SLIMKV_OK && !keep)
        st = SLIMKV_ERR_NOMEM;
    if (st == SLIMKV_OK)
        qk_weight_mask(c.k_mask, s->n_kv, s->dim, keep);
    if (st == SLIMKV_OK && s->calib) {
        const st_tensor *th = calib_hidden(s->calib, layer);
        float *x = NULL;
        st = read_floats(s->calib, th, &x);
        if (st == SLIMKV_OK && qk_refit(w, x, (int)th->shape[0], keep, s->err) != 0)
            st = SLIMKV_ERR_NOMEM;
        free(x);
    }
    if (st == SLIMKV_OK)
        qk_prune(w, keep);
    if (st == SLIMKV_OK && s->o->remove) {
        int d = s->d_out = qk_compact_dim(keep, s->n_kv, s->dim);
        size_t hid = (size_t)w->hidden, nq = (size_t)w->n_q_heads, nkv = (size_t)s->n_kv;
        s->out[T_QW] = malloc(nq * d * hid * sizeof(float));
        s->out[T_KW] = malloc(nkv * d * hid * sizeof(float));
        s->out[T_QB] = w->bq ? malloc(nq * d * sizeof(float)) : NULL;
        s->out[T_KB] = w->bk ? malloc(nkv * d * sizeof(float)) : NULL;
        s->index = malloc(nkv * d * sizeof *s->index);
        if (!s->out[T_QW] || !s->out[T_KW] || (w->bq && !s->out[T_QB]) || (w->bk && !s->out[T_KB]) || !s->index)
            st = SLIMKV_ERR_NOMEM;
        else
            qk_compact(w, keep, d, s->out[T_QW], s->out[T_KW], s->out[T_QB], s->out[T_KB], s->index);
    } else if (st == SLIMKV_OK) {
        s->out[T_QW] = w->wq;
        s->out[T_KW] = w->wk;
        s->out[T_QB] = w->bq;
        s->out[T_KB] = w->bk;
    }
    free(keep);
    if (st != SLIMKV_OK) {
        fprintf(stderr, "layer %d: %s\n", layer, slimkv_status_str(st));
        free_layer(s);
        return st;
    }
    s->layer = layer;
    return SLIMKV_OK;
}

static slimkv_status produce(void *ctx, const st_out *self, void *dst)
{
    const job *j = ctx;
    slimkv_status st = process_layer(j->st, j->layer);
    if (st != SLIMKV_OK)
        return st;
    size_t n = 1;
    for (int i = 0; i < self->n_dims; i++)
        n *= (size_t)self->shape[i];
    if (j->kind == T_INDEX)
        st_encode_i32(j->st->index, n, dst);
    else
        st_encode_f32(self->dtype, j->st->out[j->kind], n, dst);
    return SLIMKV_OK;
}

/* Shapes and dtypes of one layer's projections against the plan. */
static int check_layer(const st_file *f, int layer, int n_kv, int dim)
{
    const st_tensor *t[T_KINDS - 1];
    for (int k = 0; k < T_KINDS - 1; k++)
        t[k] = layer_tensor(f, layer, k);
    char name[128];
    layer_name(name, sizeof name, layer, T_KW);
    if (!t[T_QW] || !t[T_KW]) {
        fprintf(stderr, "model: layer %d has no q_proj/k_proj weight (%s)\n", layer, name);
        return -1;
    }
    for (int k = 0; k < T_KINDS - 1; k++)
        if (t[k] && t[k]->dtype != ST_F32 && t[k]->dtype != ST_F16 && t[k]->dtype != ST_BF16) {
            fprintf(stderr, "model: layer %d: dtype %s (F32, F16 or BF16 supported)\n", layer,
                    st_dtype_name(t[k]->dtype));
            return -1;
        }
    const st_tensor *q = t[T_QW], *k = t[T_KW];
    int64_t kv_rows = (int64_t)n_kv * dim;
    if (q->n_dims != 2 || k->n_dims != 2 || k->shape[0] != kv_rows || q->shape[1] != k->shape[1] ||
        k->shape[1] < 1 || k->shape[1] > 1 << 20 || q->shape[0] % ((int64_t)dim * n_kv) != 0 ||
        q->shape[0] / dim > 4096 || q->shape[0] == 0 ||
        (t[T_QB] && (t[T_QB]->n_dims != 1 || t[T_QB]->shape[0] != q->shape[0])) ||
        (t[T_KB] && (t[T_KB]->n_dims != 1 || t[T_KB]->shape[0] != kv_rows))) {
        fprintf(stderr, "model: layer %d: q_proj/k_proj shapes do not fit the plan's %d KV heads x %d channels\n",
                layer, n_kv, dim);
        return -1;
    }
    return 0;
}

static int check_calib(const st_file *calib, int layer, int64_t hidden)
{
    const st_tensor *t = calib_hidden(calib, layer);
    if (!t || t->n_dims != 2 || t->shape[1] != hidden || t->shape[0] < 1 || t->shape[0] > 1 << 24 ||
        !st_dtype_is_float(t->dtype)) {
        fprintf(stderr, "calibration: layer %d needs layers.%d.hidden or calib.hidden [tokens][%lld], float\n",
                layer, layer, (long long)hidden);
        return -1;
    }
    return 0;
}

/* Output descriptors: every model tensor (name order), the layers' q/k
 * tensors produced by the pruner, plus the index tensors when compacting. */
static int build_outputs(prune_state *s, int layers, st_out **outs, job **jobs, char **names, size_t *n_out)
{
    const st_file *f = s->model;
    size_t cap = f->n_tensors + (size_t)layers;
    *outs = calloc(cap, sizeof **outs);
    *jobs = calloc(cap, sizeof **jobs);
    *names = calloc((size_t)layers, 128);
    if (!*outs || !*jobs || !*names)
        return -1;
    size_t n = 0;
    uint8_t *keep = malloc((size_t)s->n_kv * s->dim);
    if (!keep)
        return -1;
    for (size_t i = 0; i < f->n_tensors; i++) {
        const st_tensor *t = &f->tensors[i];
        st_out *o = &(*outs)[n];
        o->name = t->name;
        o->dtype = t->dtype;
        o->n_dims = t->n_dims;
        memcpy(o->shape, t->shape, sizeof o->shape);
        o->src = f;
        o->src_tensor = t;
        for (int l = 0; l < layers; l++)
            for (int k = 0; k < T_KINDS - 1; k++)
                if (layer_tensor(f, l, k) == t) {
                    o->src = NULL;
                    o->src_tensor = NULL;
                    o->produce = produce;
                    (*jobs)[n] = (job){s, l, k};
                    o->ctx = &(*jobs)[n];
                    if (s->o->remove) {
                        slimkv_config c;
                        slimkv_config_init(&c);
                        slimkv_plan_layer_config(s->plan, l, &c);
                        qk_weight_mask(c.k_mask, s->n_kv, s->dim, keep);
                        int d = qk_compact_dim(keep, s->n_kv, s->dim);
                        if (d < 0) {
                            fprintf(stderr, "--remove: layer %d keeps different channel counts per KV head "
                                            "(or has a streaming head); a compact tensor needs one count\n", l);
                            free(keep);
                            return -1;
                        }
                        o->shape[0] = t->shape[0] / s->dim * d;
                        if (k == T_KW) { /* the index tensor goes next to k_proj */
                            st_out *ix = &(*outs)[++n];
                            char *name = *names + (size_t)l * 128;
                            layer_name(name, 128, l, T_INDEX);
                            *ix = (st_out){.name = name, .dtype = ST_I32, .n_dims = 2, .shape = {s->n_kv, d},
                                           .produce = produce, .ctx = &(*jobs)[n]};
                            (*jobs)[n] = (job){s, l, T_INDEX};
                        }
                    }
                }
        n++;
    }
    free(keep);
    *n_out = n;
    return 0;
}

int prune_model(const prune_options *o, score_errors *err)
{
    slimkv_plan *plan = NULL;
    st_file *model = NULL, *calib = NULL;
    st_out *outs = NULL;
    job *jobs = NULL;
    char *names = NULL;
    st_meta *meta = NULL;
    prune_state s = {.o = o, .layer = -1, .err = err};
    int rc = -1, layers = 0;
    slimkv_status st = slimkv_plan_load(o->plan_path, &plan);
    if (st != SLIMKV_OK) {
        fprintf(stderr, "%s: %s\n", o->plan_path, slimkv_status_str(st));
        goto done;
    }
    slimkv_config c;
    slimkv_config_init(&c);
    slimkv_plan_layers(plan, &layers);
    slimkv_plan_layer_config(plan, 0, &c);
    s.plan = plan;
    s.n_kv = c.n_kv_heads;
    s.dim = c.head_dim;
    if ((st = st_open(o->model_in, &model)) != SLIMKV_OK) {
        fprintf(stderr, "%s: %s\n", o->model_in, slimkv_status_str(st));
        goto done;
    }
    s.model = model;
    if (o->calib_path && (st = st_open(o->calib_path, &calib)) != SLIMKV_OK) {
        fprintf(stderr, "%s: %s\n", o->calib_path, slimkv_status_str(st));
        goto done;
    }
    s.calib = calib;
    for (int l = 0; l < layers; l++)
        if (check_layer(model, l, s.n_kv, s.dim) ||
            (calib && check_calib(calib, l, layer_tensor(model, l, T_KW)->shape[1])))
            goto done;
    if (layer_tensor(model, layers, T_KW)) {
        fprintf(stderr, "model has more layers than the plan's %d\n", layers);
        goto done;
    }
    size_t n_out;
    if (build_outputs(&s, layers, &outs, &jobs, &names, &n_out))
        goto done;
    /* the input's metadata, then what was done */
    meta = calloc(model->n_meta + 2, sizeof *meta);
    if (!meta)
        goto done;
    size_t n_meta = 0;
    for (size_t i = 0; i < model->n_meta; i++)
        if (strncmp(model->meta[i].key, "slimkv.", 7) != 0)
            meta[n_meta++] = model->meta[i];
    meta[n_meta++] = (st_meta){"slimkv.k_pruning", o->remove ? "removed" : "zeroed"};
    meta[n_meta++] = (st_meta){"slimkv.q_refit", calib ? "sds-least-squares" : "none"};
    st = st_write(o->model_out, outs, n_out, meta, n_meta);
    if (st != SLIMKV_OK) {
        fprintf(stderr, "%s: %s\n", o->model_out, slimkv_status_str(st));
        goto done;
    }
    rc = 0;
done:
    if (s.model)
        free_layer(&s);
    free(outs);
    free(jobs);
    free(names);
    free(meta);
    st_close(calib);
    st_close(model);
    slimkv_plan_destroy(plan);
    return rc;
}
