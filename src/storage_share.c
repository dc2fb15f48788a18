/* Compressed pages shared by a cache and its forks.
 *
 * Appends write a head's body only after its end, so a page whose groups
 * (K) or blocks (V) are all written never changes again. A fork therefore
 * shares its source's full pages, counting holders in each page's header
 * (C11 atomics: the caches holding a page may be used and destroyed on
 * different threads), and copies the one partially filled page of each
 * head's K and V, which both caches' appends go on writing. N sequences
 * forked from one prompt hold its compressed pages once.
 *
 * The rule that keeps this sound: a page is written only by a cache that
 * holds it alone. Append writes the partially filled last page (never
 * shared: fork copies it) and pages it allocates; truncate clears the tail
 * of a page only after replacing a shared one by its own copy. */
#include <stdatomic.h>
#include <string.h>

#include "internal.h"

/* In front of every page. 64 bytes: the page's bytes keep the alignment an
 * allocation has (max_align_t) and its offset within a cache line. */
typedef union page_header {
    atomic_int holders;
    max_align_t align;
    unsigned char line[64];
} page_header;

static page_header *header_of(const uint8_t *page)
{
    return (page_header *)(void *)(page - sizeof(page_header));
}

uint8_t *slimkv_page_alloc(size_t bytes)
{
    if (bytes > SIZE_MAX - sizeof(page_header))
        return NULL;
    /* zeroed: V slots not yet written must read as code 0, scale 0, min 0,
     * and padding bytes are then deterministic */
    page_header *h = slimkv_calloc(1, sizeof *h + bytes);
    if (!h)
        return NULL;
    atomic_init(&h->holders, 1);
    return (uint8_t *)(h + 1);
}

void slimkv_page_retain(uint8_t *page)
{
    /* relaxed: the new holder got the page from a holder, which keeps it alive meanwhile */
    atomic_fetch_add_explicit(&header_of(page)->holders, 1, memory_order_relaxed);
}

void slimkv_page_release(uint8_t *page)
{
    if (!page)
        return;
    page_header *h = header_of(page);
    /* acq_rel: whoever frees the page does so after every other holder's last read of it */
    if (atomic_fetch_sub_explicit(&h->holders, 1, memory_order_acq_rel) == 1)
        slimkv_free(h);
}

int slimkv_page_shared(const uint8_t *page)
{
    /* A page held by this cache alone cannot gain a holder meanwhile: only
     * a fork of this cache could add one, and a fork must not run during a
     * call that modifies its source. A shared page may lose holders
     * meanwhile; then it is copied once more than needed, still correct. */
    return atomic_load_explicit(&header_of(page)->holders, memory_order_acquire) > 1;
}

/* Pages [0, full) of a table shared, the rest (at most the one partially
 * filled page) copied. *n_dst counts what dst holds, for its destroy. */
static slimkv_status fork_pages(uint8_t *const *src, int n_src, int full, size_t page_bytes, uint8_t **dst,
                                int *n_dst)
{
    for (int p = 0; p < n_src; p++) {
        if (p < full) {
            slimkv_page_retain(src[p]);
            dst[p] = src[p];
        } else {
            if (!(dst[p] = slimkv_page_alloc(page_bytes)))
                return SLIMKV_ERR_NOMEM;
            memcpy(dst[p], src[p], page_bytes);
        }
        *n_dst = p + 1;
    }
    return SLIMKV_OK;
}

slimkv_status slimkv_storage_fork(const slimkv_cache *src, slimkv_cache *dst)
{
    const slimkv_config *cfg = &src->cfg;
    size_t dim = (size_t)cfg->head_dim;
    size_t krow = dim * slimkv_row_elem_bytes(src->k_row_fmt), vrow = dim * slimkv_row_elem_bytes(src->v_row_fmt);
    int page_tokens = cfg->group_size * SLIMKV_PAGE_GROUPS;
    int full_k = slimkv_k_body_tokens(cfg, src->n_tokens) / page_tokens;
    int full_v = slimkv_v_body_tokens(cfg, src->n_tokens) / page_tokens;
    for (int i = 0; i < cfg->n_kv_heads; i++) {
        const slimkv_head *s = &src->heads[i];
        slimkv_head *d = &dst->heads[i];
        memcpy(d->ring_k, s->ring_k, (size_t)src->ring_slots * krow);
        memcpy(d->ring_v, s->ring_v, (size_t)src->ring_slots * vrow);
        if (src->sink_rows > 0) {
            memcpy(d->sink_k, s->sink_k, (size_t)src->sink_rows * krow);
            memcpy(d->sink_v, s->sink_v, (size_t)src->sink_rows * vrow);
        }
        slimkv_status st = fork_pages(s->k_pages, s->n_k_pages, full_k, s->k_group_bytes * SLIMKV_PAGE_GROUPS,
                                      d->k_pages, &d->n_k_pages);
        if (st == SLIMKV_OK)
            st = fork_pages(s->v_pages, s->n_v_pages, full_v, s->v_block_bytes * SLIMKV_PAGE_GROUPS, d->v_pages,
                            &d->n_v_pages);
        if (st != SLIMKV_OK)
            return st;
    }
    dst->n_tokens = src->n_tokens;
    dst->stream_floor = src->stream_floor;
    return SLIMKV_OK;
}
