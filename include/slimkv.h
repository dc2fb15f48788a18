/* SlimKV: a quantized, channel-pruned KV cache with attention that runs
 * directly on the compressed storage.
 *
 * This is the only public header. All handles are opaque; every call returns
 * a slimkv_status and results come back through out-parameters. The library
 * never prints, aborts or exits, and a call that fails leaves every cache
 * exactly as it was.
 *
 * Tensor layouts (host, float32, row-major): q, k, v and out are
 * [token][head][head_dim]; q and out use n_q_heads, k and v use n_kv_heads.
 */
#ifndef SLIMKV_H
#define SLIMKV_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define SLIMKV_API
#else
#define SLIMKV_API __attribute__((visibility("default")))
#endif

#define SLIMKV_VERSION_MAJOR 0
#define SLIMKV_VERSION_MINOR 1
#define SLIMKV_VERSION_PATCH 0

/* Stable values: new codes are only ever appended. */
typedef enum slimkv_status {
    SLIMKV_OK = 0,
    SLIMKV_ERR_NULL_ARG = 1,       /* a required pointer is NULL */
    SLIMKV_ERR_INVALID_CONFIG = 2, /* zero/negative/inconsistent dimensions, bad format, overflow */
    SLIMKV_ERR_INVALID_ARG = 3,    /* bad call argument (n_tokens <= 0, n_queries > tokens held, ...) */
    SLIMKV_ERR_CAPACITY = 4,       /* the cache would exceed its capacity */
    SLIMKV_ERR_NONFINITE = 5,      /* NaN or Inf in q, k or v: rejected, nothing stored */
    SLIMKV_ERR_NOMEM = 6,          /* an allocation failed; nothing changed */
    SLIMKV_ERR_UNSUPPORTED = 7,    /* ISA or backend not available on this machine (incl. bad SLIMKV_ISA) */
    SLIMKV_ERR_FORMAT = 8,         /* malformed file or data */
    SLIMKV_ERR_IO = 9,             /* an operating-system I/O call failed */
    SLIMKV_ERR_STATE = 10,         /* not valid in the cache's current state (e.g. append before
                                      the first prefill of a query-aware policy) */
    SLIMKV_ERR_MISMATCH = 11,      /* a snapshot saved from a differently configured cache */
    SLIMKV_ERR_DEVICE = 12         /* the GPU runtime reported an error (CUDA backend) */
} slimkv_status;

/* Storage format of K or V. Dense formats store values as they are;
 * Q8/Q4/Q3/Q2 are KIVI-style asymmetric min/max quantization with fp16 scale
 * and min (K per channel over G tokens, V per token over G channels). Q3
 * is not a SparK record format; its V high-bit plane packs 32 tokens per
 * 4-byte lane, so group sizes that are multiples of 32 waste no byte. */
typedef enum slimkv_format {
    SLIMKV_F32 = 0,
    SLIMKV_F16 = 1,
    SLIMKV_BF16 = 2,
    SLIMKV_Q8 = 3,
    SLIMKV_Q4 = 4,
    SLIMKV_Q2 = 5,
    SLIMKV_Q3 = 6
} slimkv_format;
#define SLIMKV_FORMAT_COUNT 7

typedef enum slimkv_policy {
    SLIMKV_POLICY_NONE = 0,   /* keep every channel */
    SLIMKV_POLICY_STATIC = 1, /* per-KV-head kept-channel masks given in the config (LeanK, KVPruner) */
    SLIMKV_POLICY_THINK = 2,  /* query-aware K channel mask chosen at the first prefill (ThinK) */
    SLIMKV_POLICY_SPARK = 3   /* per-token top-T K channels, pruned ones restored in the score (SparK) */
} slimkv_policy;

/* Token eviction: which tokens a cache keeps once it holds more than a
 * budget (README "Token eviction"). Every KV head keeps the same number of
 * tokens (slimkv_cache_tokens), each head its own ones, in position order;
 * an evicted token's storage is released. Keys are stored after RoPE, so
 * attention over the kept tokens needs no positions; the position the next
 * token takes is slimkv_cache_tokens_seen. CPU caches only (the CUDA
 * backend refuses an eviction config with SLIMKV_ERR_UNSUPPORTED). */
typedef enum slimkv_eviction {
    SLIMKV_EVICT_NONE = 0,   /* keep every token */
    /* SnapKV, at each slimkv_cache_prefill: per KV head, every token held or
     * in the chunk is scored by the attention of the chunk's last `window`
     * queries (each query's softmax over all it sees, summed over the
     * head's query heads and those queries), max-pooled over evict_pool
     * neighbouring tokens; the evict_budget best, the sinks and the last
     * `window` tokens are kept when more would be held. Decode appends are
     * not evicted. */
    SLIMKV_EVICT_SNAPKV = 1,
    /* H2O (heavy hitters): per KV head, each held token accumulates the
     * attention it gets, summed over the head's query heads: from the last
     * `window` queries of each prefill chunk, and from every query given to
     * slimkv_attend_observe. The sinks and the last `residual` tokens are
     * never evicted; when the others reach evict_budget + group_size, those
     * with the lowest accumulated attention are evicted until evict_budget
     * remain (at a prefill, or at the end of slimkv_attend_observe), so
     * compressed K groups are rebuilt at most once per group_size tokens. */
    SLIMKV_EVICT_H2O = 2
} slimkv_eviction;

/* Where a cache's storage and attention live. Like SLIMKV_ISA, the
 * environment variable SLIMKV_BACKEND=auto|cpu|cuda decides for configs that
 * say auto (read once per process; another value makes their create fail
 * with SLIMKV_ERR_UNSUPPORTED).
 * CUDA runs in the plugin libslimkv_cuda.so, loaded at run time from
 * $SLIMKV_CUDA_PLUGIN, else from the directory libslimkv.so was loaded
 * from, else by the dynamic loader's search; the core never links the CUDA
 * runtime. The CUDA backend serves every format with static masks and
 * ThinK, not SparK; its caches cannot be saved or restored. */
typedef enum slimkv_backend {
    SLIMKV_BACKEND_AUTO = 0,  /* CUDA when the plugin loads, a device exists and the policy is
                                 supported there; else CPU */
    SLIMKV_BACKEND_CPU = 1,
    SLIMKV_BACKEND_CUDA = 2   /* SLIMKV_ERR_UNSUPPORTED when that is not possible */
} slimkv_backend;

/* Fill with slimkv_config_init(), then set the fields you need. */
enum { SLIMKV_ROTATE_K = 1, SLIMKV_ROTATE_V = 2 }; /* slimkv_config.rotate bits */

typedef struct slimkv_config {
    int n_q_heads;        /* query heads; a multiple of n_kv_heads (GQA), equal for MHA;
                             both head counts at most 4096 */
    int n_kv_heads;
    int head_dim;         /* multiple of 4, at most 1024 */
    int capacity;         /* most tokens the cache will hold */
    slimkv_format k_format;
    slimkv_format v_format;
    int group_size;       /* G: tokens per K group, channels per V group; multiple of 16, default 32 */
    int residual;         /* R: newest tokens kept in full precision; multiple of G, default 128 */
    int n_sink;           /* S: first tokens kept in full precision; default 0 */
    slimkv_policy policy;
    /* SLIMKV_POLICY_STATIC: [n_kv_heads][head_dim] 0/1 masks of kept channels.
     * k_mask is required; v_mask may be NULL (all V channels kept). Kept counts
     * are rounded up to channel_align by also keeping the lowest-index pruned
     * channels (slimkv_cache_kept_channels reports the result). A head whose
     * K mask keeps nothing is a streaming head: it keeps only the sinks and
     * the last R tokens. The masks are copied at create. */
    const uint8_t *k_mask;
    const uint8_t *v_mask;
    int channel_align;    /* multiple of 4; default 8 */
    /* SLIMKV_POLICY_THINK and SLIMKV_POLICY_SPARK: the first call must be
     * slimkv_cache_prefill (its last `window` queries choose the channels;
     * an earlier append gets SLIMKV_ERR_STATE). prune_ratio is the fraction
     * of K channels pruned: ThinK keeps D - floor(ratio * D) channels per KV
     * head (rounded up to channel_align), SparK keeps T = D - floor(ratio * D)
     * channels per token. */
    float prune_ratio;    /* in [0, 1); default 0.4 */
    int window;           /* W, default 32 */
    slimkv_backend backend;
    const char *isa;      /* NULL or "auto": best available (SLIMKV_ISA overrides);
                             else "scalar", "avx2", "avx512", "neon" or
                             "neon-dotprod" (NEON with the ARMv8.2 dot product) */
    /* CUDA backend only: q, k, v and out of prefill/append/attend are device
     * pointers (0: host pointers). Needs backend SLIMKV_BACKEND_CUDA: with
     * auto a cache could land on the CPU, where device pointers are useless.
     * Calls wait for the legacy default stream; inputs written on other
     * streams must be complete before the call. Outputs are complete when
     * the call returns. */
    int device_pointers;
    /* Walsh-Hadamard rotation with fixed random signs per KV head, a set of
     * SLIMKV_ROTATE_* bits (default 0): K rotates keys and queries alike
     * (scores unchanged), V rotates values before they are stored and the
     * attention output back. Spreading a few large channels over all D is
     * what per-token groups (V) need; K is quantized per channel, where the
     * large channels already have their own range. Needs head_dim a power
     * of 2 and policy SLIMKV_POLICY_NONE (a rotation mixes the channels that
     * masks and ThinK/SparK would select), host pointers. */
    int rotate;
    /* Token eviction (slimkv_eviction above). The observation window is
     * `window`, shared with ThinK and SparK: with ThinK, the first prefill's
     * last `window` queries choose both the channels and the tokens. */
    slimkv_eviction eviction;  /* default SLIMKV_EVICT_NONE */
    int evict_budget;          /* tokens per KV head kept by their score, besides the sinks and the
                                  protected window (SnapKV: the last `window`, H2O: the last
                                  `residual`); at least 1 with eviction; default 1024 */
    int evict_pool;            /* SnapKV: max-pool kernel over the token axis, odd, 1 to 1023
                                  (1: no pooling); default 7 */
    /* K outlier channels (default 0): per KV head, this many kept K
     * channels are stored at 8 bits and the rest in k_format, both in each
     * K group (README "K outlier channels"). They are the channels of the
     * widest range (max - min) over the tokens the window holds when the
     * head's first K group is flushed, chosen afresh whenever the K body
     * starts again from empty (a truncation to before it). A multiple of 4;
     * k_format q4, q3 or q2; a head keeping dk channels stores at most
     * dk - 4 at 8 bits. CPU only (the CUDA backend refuses it); not with
     * SparK or token eviction (SLIMKV_ERR_UNSUPPORTED). */
    int k_outliers;
} slimkv_config;

typedef struct slimkv_cache slimkv_cache;

SLIMKV_API const char *slimkv_status_str(slimkv_status status);
SLIMKV_API const char *slimkv_format_name(slimkv_format format);
/* The format or policy a name stands for ("f32" "f16" "bf16" "q8" "q4"
 * "q3" "q2"; "none" "static" "think" "spark"), the names *_name() return.
 * `length` bytes of `name` are read (they need no terminating NUL), so a
 * name inside a longer text parses in place. SLIMKV_ERR_INVALID_ARG for
 * any other text; *out is then unchanged. */
SLIMKV_API slimkv_status slimkv_format_from_name(const char *name, size_t length, slimkv_format *out);
SLIMKV_API const char *slimkv_policy_name(slimkv_policy policy);
SLIMKV_API slimkv_status slimkv_policy_from_name(const char *name, size_t length, slimkv_policy *out);
SLIMKV_API const char *slimkv_version(void);

/* Defaults: head counts/dims/capacity 0 (must be set), F16/F16, G=32,
 * R=128, S=0, no policy, align 8, prune ratio 0.4, window 32, backend auto,
 * isa auto, no eviction (budget 1024, pool 7). */
SLIMKV_API slimkv_status slimkv_config_init(slimkv_config *config);

/* Checks a config without allocating the cache. */
SLIMKV_API slimkv_status slimkv_config_validate(const slimkv_config *config);
/* The same check; *reason (when not NULL) gets a sentence naming the first
 * field that fails and why ("valid" for SLIMKV_OK). The sentence is static. */
SLIMKV_API slimkv_status slimkv_config_reason(const slimkv_config *config, const char **reason);

/* Name of the kernel table that "auto" selects here (honours SLIMKV_ISA).
 * Fails with SLIMKV_ERR_UNSUPPORTED when SLIMKV_ISA names an unknown or
 * unsupported ISA. */
SLIMKV_API slimkv_status slimkv_isa_auto(const char **name);
/* 1 when the named ISA's kernels are compiled in and the CPU supports them. */
SLIMKV_API int slimkv_isa_supported(const char *name);

/* SLIMKV_OK when CUDA caches can be created here; else SLIMKV_ERR_UNSUPPORTED
 * and, when reason is not NULL, a sentence saying why (no plugin, a plugin
 * of another ABI, no device). */
SLIMKV_API slimkv_status slimkv_cuda_available(const char **reason);

/* Device memory through the CUDA plugin, for callers that pass device
 * pointers (device_pointers) without linking the CUDA runtime themselves.
 * Each returns SLIMKV_ERR_UNSUPPORTED where slimkv_cuda_available does not
 * say OK, SLIMKV_ERR_NOMEM when the device has no room, SLIMKV_ERR_DEVICE
 * when the runtime fails. */
typedef enum slimkv_copy_direction {
    SLIMKV_COPY_TO_HOST = 0,
    SLIMKV_COPY_TO_DEVICE = 1
} slimkv_copy_direction;
SLIMKV_API slimkv_status slimkv_cuda_alloc(size_t bytes, void **ptr);
SLIMKV_API void slimkv_cuda_free(void *ptr); /* NULL: nothing */
SLIMKV_API slimkv_status slimkv_cuda_copy(void *dst, const void *src, size_t bytes, slimkv_copy_direction to);
/* The device's read bandwidth in GB/s: the best of reps passes over a
 * buffer of `bytes` (choose it far larger than the device's L2 cache). */
SLIMKV_API slimkv_status slimkv_cuda_read_bandwidth(size_t bytes, int reps, double *gbps);

SLIMKV_API slimkv_status slimkv_cache_create(const slimkv_config *config, slimkv_cache **out_cache);
SLIMKV_API void slimkv_cache_destroy(slimkv_cache *cache);

/* Causal attention of a prompt chunk of n_tokens (queries at the positions
 * the chunk will take) over what the cache holds plus the chunk itself in
 * full precision; then the chunk's K/V are stored. out: [n_tokens][n_q_heads][head_dim].
 * out must not overlap q, k or v (SLIMKV_ERR_INVALID_ARG, nothing stored);
 * the inputs may overlap one another. */
SLIMKV_API slimkv_status slimkv_cache_prefill(slimkv_cache *cache, const float *q, const float *k,
                                              const float *v, int n_tokens, float *out);

/* Stores n_tokens new K/V rows. */
SLIMKV_API slimkv_status slimkv_cache_append(slimkv_cache *cache, const float *k, const float *v,
                                             int n_tokens);

/* Decode attention on the stored (compressed) tokens. The i-th of n_queries
 * queries sits at position n - n_queries + i (n = tokens held) and attends
 * causally: usually append the new tokens first, then attend their queries.
 * n_queries must be between 1 and the number of tokens held; out must not
 * overlap q (SLIMKV_ERR_INVALID_ARG). */
SLIMKV_API slimkv_status slimkv_attend(const slimkv_cache *cache, const float *q, int n_queries,
                                       float *out);

/* Bytes of K/V storage the cache holds now: sinks, residual windows and the
 * compressed pages allocated so far (on the device for a CUDA cache), plus
 * SparK's per-head query norms (2 x head_dim floats per KV head). The cache
 * object's fixed bookkeeping (kept-channel lists, page tables) is not
 * counted. Pages shared with forks count in full for every cache that holds
 * them (slimkv_cache_bytes_shared tells them apart). */
SLIMKV_API slimkv_status slimkv_cache_bytes(const slimkv_cache *cache, size_t *bytes);
SLIMKV_API slimkv_status slimkv_cache_tokens(const slimkv_cache *cache, int *n_tokens);
/* The ISA table this cache runs on ("cuda" for a CUDA cache). */
SLIMKV_API slimkv_status slimkv_cache_isa(const slimkv_cache *cache, const char **name);
/* The backend this cache runs on: SLIMKV_BACKEND_CPU or SLIMKV_BACKEND_CUDA. */
SLIMKV_API slimkv_status slimkv_cache_backend(const slimkv_cache *cache, slimkv_backend *backend);

/* Kept channels of one KV head after alignment, ascending. channels may be
 * NULL to query only the count; else it must hold head_dim entries.
 * which: 0 = K, 1 = V. */
SLIMKV_API slimkv_status slimkv_cache_kept_channels(const slimkv_cache *cache, int kv_head, int which,
                                                    int *channels, int *count);

/* ---- Truncate and fork (CPU caches; a CUDA cache returns SLIMKV_ERR_UNSUPPORTED) ---- */

/* Keeps the first n_tokens tokens and drops the rest (speculative decoding,
 * an edited turn). 0 <= n_tokens <= tokens held, else SLIMKV_ERR_INVALID_ARG;
 * n_tokens equal to the tokens held changes nothing.
 *
 * The cache is then laid out as if exactly those n_tokens had been
 * appended: the same tokens in the sinks, the full-precision window and the
 * compressed body, the same pages (pages past the new end are released, so
 * slimkv_cache_bytes drops; a fork's shared page is only let go), the
 * unwritten rest zero; nothing of a dropped token stays in the cache.
 * Later appends, attends and snapshots continue from there. Every kept
 * value is as it was, except for a token that had been compressed and
 * that the window of n_tokens tokens holds in full precision again (K: a
 * token of a group that n_tokens no longer flush; V: one of the last R;
 * a V token of a partly kept V block is one of them):
 *   - while the window still holds its row, that exact row is used (it
 *     holds the newest R+G tokens before the call: with R > 0 a rollback
 *     of up to G tokens loses nothing);
 *   - else its row is decoded from the compressed body: K's kept channels as
 *     stored (q8/q4/q2: code * scale + min), pruned K channels (static
 *     masks, ThinK) 0, and for SparK the pruned channels restored as the
 *     score restores them, sign * sqrt(a_t / ||qbar_c||); V's kept channels
 *     decoded, pruned V channels 0. The row is then rounded to the window's
 *     format (f16 unless the format is f32, clamped to +-65504). Attention
 *     scores such a token as it did in the body, up to that rounding; when
 *     appends age it out again it is compressed again from the decoded row
 *     (for q8/q4/q2 a second quantization, with group or token parameters
 *     recomputed over whatever shares its group).
 * Truncating to 0 leaves a cache like a new one: ThinK and SparK choose
 * their channels again at the next prefill (an append before it gets
 * SLIMKV_ERR_STATE). Truncating to n_tokens > 0 keeps the channels chosen.
 * A streaming head (static mask keeping no K channel) holds only the sinks
 * and its last R..R+G tokens: a truncation whose new window would need a
 * token it no longer holds (one older than R+G tokens before the call, or
 * dropped by an earlier truncation, or older than the window of a restored
 * snapshot) gets SLIMKV_ERR_STATE. Truncating an unshared cache allocates
 * nothing; a fork copies a shared page it must clear, and SLIMKV_ERR_NOMEM
 * then leaves the cache as it was, as does every other failure. */
SLIMKV_API slimkv_status slimkv_cache_truncate(slimkv_cache *cache, int n_tokens);

/* A new cache continuing src's sequence: the same config, channels (ThinK's
 * choice, SparK's norms, or still pending), kernels and backend, and the
 * same tokens, bit for bit. Full compressed pages (8 groups of G tokens, K
 * and V apart) are shared, counted by an atomic reference count, so N forks
 * of a prompt hold its compressed bytes once; each fork copies the window,
 * the sinks and the partially filled last pages. Appending to or
 * truncating one fork never changes what another (or src) holds: a shared
 * page is never written (a truncation that must clear one copies it
 * first). src and its forks may be destroyed in any order, and used from
 * different threads at once (each cache by one thread at a time, as
 * always). Fork only reads src: it may run alongside slimkv_attend or
 * another fork of src, not alongside a call that modifies src. On failure
 * (SLIMKV_ERR_NOMEM) *out is unchanged and src is as it was. */
SLIMKV_API slimkv_status slimkv_cache_fork(const slimkv_cache *src, slimkv_cache **out);

/* slimkv_cache_bytes split in two: *shared the compressed pages this cache
 * holds together with at least one other cache (its source or forks),
 * *owned the rest (its window, sinks, pages no other cache holds, SparK's
 * norms); owned + shared = slimkv_cache_bytes. A prompt's cache and N forks
 * of it that all still hold its pages hold together the sum of their owned
 * bytes plus the shared bytes of one of them. While another cache that
 * shares pages is destroyed on another thread, the split is that of a
 * moment. A CUDA cache shares nothing. */
SLIMKV_API slimkv_status slimkv_cache_bytes_shared(const slimkv_cache *cache, size_t *owned, size_t *shared);
/* ---- Token eviction (config field `eviction`) ----
 *
 * Positions: with eviction the tokens a cache holds are no longer the
 * positions 0..n-1 of its sequence. slimkv_cache_tokens counts the tokens
 * held (the same for every KV head); slimkv_cache_tokens_seen counts every
 * token stored since the cache was created, evicted ones included, which is
 * the position (for RoPE) of the next token. The queries of slimkv_attend
 * and slimkv_cache_prefill sit after every held token: the causal rule of
 * slimkv_attend (the i-th of n queries sees all but the newest n - 1 - i
 * held tokens) counts held tokens. `capacity` bounds the tokens held,
 * before a call's eviction (tokens held + a prefill chunk); the tokens seen
 * are bounded by INT_MAX only (SLIMKV_ERR_CAPACITY past it).
 * A token, once compressed, keeps its compressed value when eviction moves
 * it: no full-precision copy is kept (README "Token eviction" says
 * exactly what is copied and what is quantized again). */

/* slimkv_attend, then for an H2O cache: each query's attention
 * probabilities (its softmax over the held tokens it sees), summed over the
 * query heads of each KV head, are added to the held tokens' accumulated
 * attention, and when the evictable tokens reach evict_budget + group_size
 * the lowest are evicted (see SLIMKV_EVICT_H2O). Engines call it in place of
 * slimkv_attend at decode. The probabilities come from a second pass over
 * the held tokens (the fused attention path does not expose them), so it
 * costs more than slimkv_attend; for a cache without H2O it is
 * slimkv_attend. On failure (SLIMKV_ERR_NOMEM) the cache is unchanged and
 * out holds the attention. */
SLIMKV_API slimkv_status slimkv_attend_observe(slimkv_cache *cache, const float *q, int n_queries, float *out);
/* Tokens stored since creation (or in the restored snapshot's cache),
 * evicted ones included: the next token's position. Without eviction the
 * same as slimkv_cache_tokens. */
SLIMKV_API slimkv_status slimkv_cache_tokens_seen(const slimkv_cache *cache, int *n_seen);
/* The position (0 .. tokens seen - 1) of each token one KV head holds, in
 * storage order (ascending). positions may be NULL to query the count;
 * else it must hold slimkv_cache_tokens entries. Without eviction 0..n-1. */
SLIMKV_API slimkv_status slimkv_cache_token_positions(const slimkv_cache *cache, int kv_head, int32_t *positions,
                                                      int *count);
/* H2O: the accumulated attention of each token one KV head holds, in
 * storage order (scores may be NULL to query the count). SLIMKV_ERR_STATE
 * for a cache without H2O. */
SLIMKV_API slimkv_status slimkv_cache_token_scores(const slimkv_cache *cache, int kv_head, float *scores,
                                                   int *count);

/* ---- Snapshots ---- */

/* Saves everything the cache holds (any format and policy; a truncated
 * cache or a fork too) to a safetensors file with a version field and a
 * checksum over the payload, written to a temporary file and renamed over
 * path. A restored cache owns all its pages, shared ones included. */
SLIMKV_API slimkv_status slimkv_cache_save(const slimkv_cache *cache, const char *path);

/* Restores a snapshot bit for bit into a cache created with the same
 * configuration (fields and masks; ISA may differ). On any failure the cache
 * is unchanged: SLIMKV_ERR_FORMAT for a truncated or corrupted file, a wrong
 * checksum or an unknown version; SLIMKV_ERR_MISMATCH for a snapshot of a
 * differently configured cache; SLIMKV_ERR_IO when the file cannot be read. */
SLIMKV_API slimkv_status slimkv_cache_restore(slimkv_cache *cache, const char *path);

/* ---- Memory ---- */

/* Every allocation the library makes goes through these (the internals of
 * OpenMP, SLEEF and cJSON aside). Set before creating caches or loading
 * files, and keep the same allocator while anything it allocated lives;
 * NULL restores malloc/calloc/free. Not thread-safe: call it at start-up. */
typedef struct slimkv_allocator {
    void *(*malloc_fn)(size_t size, void *user);
    void *(*calloc_fn)(size_t count, size_t size, void *user);
    void (*free_fn)(void *ptr, void *user);
    void *user;
} slimkv_allocator;

SLIMKV_API slimkv_status slimkv_set_allocator(const slimkv_allocator *allocator);

/* ---- Files: channel masks and per-layer plans (safetensors) ---- */

/* Files are safetensors (README "File formats" gives tensor names, dtypes and
 * metadata keys). Readers treat files as hostile: any malformed content is
 * SLIMKV_ERR_FORMAT, a failing OS call SLIMKV_ERR_IO. Writers replace the
 * target atomically (temporary file, fsync, rename): on failure the target is
 * untouched. On failure no output parameter is written. */

/* Static channel masks for a whole model (LeanK): per (layer, KV head) 0/1
 * masks of kept K channels and, optionally, V channels. */
typedef struct slimkv_masks slimkv_masks;

/* Reads "k_mask" and the optional "v_mask", each [layers][kv_heads][head_dim]
 * of any numeric dtype (U8, BOOL, F32, F16, ...) whose values are exactly 0
 * or 1. A plan file is also a masks file. */
SLIMKV_API slimkv_status slimkv_masks_load(const char *path, slimkv_masks **out_masks);
SLIMKV_API void slimkv_masks_destroy(slimkv_masks *masks);
SLIMKV_API slimkv_status slimkv_masks_shape(const slimkv_masks *masks, int *layers, int *kv_heads,
                                            int *head_dim);
/* Sets config->policy = SLIMKV_POLICY_STATIC and config->k_mask / v_mask to
 * this layer's masks (v_mask NULL when the file has none). The pointers stay
 * valid while masks lives. config->n_kv_heads and head_dim must match the
 * file (else SLIMKV_ERR_INVALID_CONFIG); layer out of range is
 * SLIMKV_ERR_INVALID_ARG. */
SLIMKV_API slimkv_status slimkv_masks_apply(const slimkv_masks *masks, int layer, slimkv_config *config);
/* Writes U8 masks [layers][kv_heads][head_dim]; v_mask may be NULL. Values
 * other than 0/1 are SLIMKV_ERR_INVALID_ARG. */
SLIMKV_API slimkv_status slimkv_masks_save(const char *path, int layers, int kv_heads, int head_dim,
                                           const uint8_t *k_mask, const uint8_t *v_mask);

/* A per-layer plan (KVPruner, Tyr-the-Pruner budgets; written by the
 * slimkv-plan tool): per (layer, KV head) K and V channel masks and kept
 * counts, plus the storage settings every layer's cache uses (k_format,
 * v_format, group_size, residual, n_sink, channel_align). */
typedef struct slimkv_plan slimkv_plan;

/* A plan from masks [layers][settings->n_kv_heads][settings->head_dim]
 * (v_mask may be NULL: V unpruned) and the storage fields of settings; the
 * other fields of settings are ignored. Each layer must make a valid
 * config (else SLIMKV_ERR_INVALID_CONFIG). The masks are copied. */
SLIMKV_API slimkv_status slimkv_plan_create(const slimkv_config *settings, int layers, const uint8_t *k_mask,
                                            const uint8_t *v_mask, slimkv_plan **out_plan);
SLIMKV_API slimkv_status slimkv_plan_load(const char *path, slimkv_plan **out_plan);
SLIMKV_API slimkv_status slimkv_plan_save(const char *path, const slimkv_plan *plan);
SLIMKV_API void slimkv_plan_destroy(slimkv_plan *plan);
SLIMKV_API slimkv_status slimkv_plan_layers(const slimkv_plan *plan, int *layers);
/* Fills config for one layer: n_kv_heads, head_dim, the storage settings,
 * policy SLIMKV_POLICY_STATIC and k_mask / v_mask (valid while plan lives).
 * Other fields (n_q_heads, capacity, backend, isa) are left as they are:
 * call slimkv_config_init first, then set them, then create the cache. */
SLIMKV_API slimkv_status slimkv_plan_layer_config(const slimkv_plan *plan, int layer, slimkv_config *config);

#ifdef __cplusplus
}
#endif

#endif /* SLIMKV_H */
