/* Byte-level BPE tokenizer from GGUF metadata. See tokenizer.h. */
#include "tokenizer.h"

#include <stdlib.h>
#include <string.h>

#include "unicode_tables.h"

#define TOKEN_TYPE_CONTROL 3

/* How a text is split before BPE (tokenizer.ggml.pre). */
typedef enum pre_tokenizer {
    PRE_GPT2,              /* the GPT-2 regex alone */
    PRE_DIGITS_THEN_GPT2   /* every \p{N} on its own first (smollm, starcoder, refact, ...) */
} pre_tokenizer;

/* Open-addressing hash from byte strings to token ids. */
typedef struct string_map {
    uint32_t mask;
    int32_t *slots; /* token id or -1 */
} string_map;

/* Open-addressing hash from a (left, right) token pair to its merge. */
typedef struct merge_slot {
    uint64_t key; /* left << 32 | right; UINT64_MAX when empty */
    int32_t rank;
    int32_t merged;
} merge_slot;

struct bpe_tokenizer {
    int n_vocab;
    char **text;      /* the token strings as stored (GPT-2 alphabet), NUL-terminated */
    size_t *text_len;
    char **bytes;     /* what each token decodes to */
    size_t *bytes_len;
    int32_t *type;
    string_map by_text;
    merge_slot *merges;
    uint32_t merge_mask;
    int32_t byte_token[256]; /* token of each single byte; -1 when the vocabulary lacks it */
    int32_t *control_ids;    /* control tokens, longest text first (for literal matching) */
    int n_control;
    int bos, eos, add_bos;
    pre_tokenizer pre;
};

/* ---- GPT-2 byte alphabet ------------------------------------------- */

/* GPT-2 maps every byte to a printable code point: bytes that are already
 * printable (and not space) map to themselves, the other 68 to 256 + i in
 * byte order, so that BPE never sees whitespace or control characters. */
static void byte_alphabet(uint32_t byte_to_cp[256])
{
    int next = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae);
        byte_to_cp[b] = printable ? (uint32_t)b : (uint32_t)(256 + next++);
    }
}

static size_t utf8_put(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Decodes one UTF-8 sequence at s[0..n); an invalid or truncated one counts
 * as a single byte with code point 0xFFFD (the byte itself is kept). */
static size_t utf8_next(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned char c = s[0];
    size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (len == 0 || len > n) {
        *cp = 0xfffd;
        return 1;
    }
    if (len == 1) {
        *cp = c;
        return 1;
    }
    uint32_t v = c & (0x7f >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            *cp = 0xfffd;
            return 1;
        }
        v = (v << 6) | (s[i] & 0x3f);
    }
    static const uint32_t min_for_len[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (v < min_for_len[len] || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) {
        *cp = 0xfffd;
        return 1;
    }
    *cp = v;
    return len;
}

/* ---- character classes of the GPT-2 regex --------------------------- */

static int in_ranges(uint32_t cp, const uint32_t (*ranges)[2], size_t n)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < ranges[mid][0])
            hi = mid;
        else if (cp > ranges[mid][1])
            lo = mid + 1;
        else
            return 1;
    }
    return 0;
}

static int is_letter(uint32_t cp)
{
    if (cp < 0x80)
        return (cp | 0x20) >= 'a' && (cp | 0x20) <= 'z';
    return in_ranges(cp, unicode_letter_ranges, sizeof unicode_letter_ranges / sizeof unicode_letter_ranges[0]);
}

static int is_number(uint32_t cp)
{
    if (cp < 0x80)
        return cp >= '0' && cp <= '9';
    return in_ranges(cp, unicode_number_ranges, sizeof unicode_number_ranges / sizeof unicode_number_ranges[0]);
}

/* Unicode White_Space, as \s matches it. */
static int is_space(uint32_t cp)
{
    return (cp >= 0x09 && cp <= 0x0d) || cp == 0x20 || cp == 0x85 || cp == 0xa0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 || cp == 0x202f || cp == 0x205f ||
           cp == 0x3000;
}

/* A text decoded once into code points, each with its byte offset. */
typedef struct code_points {
    uint32_t *cp;
    size_t *offset; /* n + 1 entries: offset[n] is the byte length */
    size_t n;
} code_points;

/* Length in code points of the GPT-2 regex match at i (never 0):
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * The alternatives are tried in this order, as the regex engine does. */
static size_t gpt2_match(const uint32_t *cp, size_t i, size_t n)
{
    if (cp[i] == '\'' && i + 1 < n) {
        uint32_t a = cp[i + 1], b = i + 2 < n ? cp[i + 2] : 0;
        if (a == 's' || a == 't' || a == 'm' || a == 'd')
            return 2;
        if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))
            return 3;
    }
    size_t j = i + (cp[i] == ' ' && i + 1 < n ? 1 : 0);
    if (!is_space(cp[j])) {
        size_t k = j + 1;
        if (is_letter(cp[j]))
            while (k < n && is_letter(cp[k]))
                k++;
        else if (is_number(cp[j]))
            while (k < n && is_number(cp[k]))
                k++;
        else
            while (k < n && !is_space(cp[k]) && !is_letter(cp[k]) && !is_number(cp[k]))
                k++;
        return k - i;
    }
    /* A whitespace run: all of it at the end of the text, else all but its
     * last character (which then prefixes the next word), else just one. */
    size_t k = i;
    while (k < n && is_space(cp[k]))
        k++;
    if (k == n || k - i == 1)
        return k - i;
    return k - i - 1;
}

/* ---- hash maps ----------------------------------------------------- */

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static uint64_t hash_pair(uint64_t key)
{
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdull;
    key ^= key >> 33;
    return key;
}

static uint32_t table_mask_for(size_t n)
{
    uint32_t size = 16;
    while (size < 2 * n)
        size *= 2;
    return size - 1;
}

static int32_t lookup_text(const bpe_tokenizer *t, const char *s, size_t n)
{
    for (uint32_t i = (uint32_t)hash_bytes(s, n) & t->by_text.mask;; i = (i + 1) & t->by_text.mask) {
        int32_t id = t->by_text.slots[i];
        if (id < 0)
            return -1;
        if (t->text_len[id] == n && memcmp(t->text[id], s, n) == 0)
            return id;
    }
}

static const merge_slot *lookup_merge(const bpe_tokenizer *t, int32_t left, int32_t right)
{
    uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    for (uint32_t i = (uint32_t)hash_pair(key) & t->merge_mask;; i = (i + 1) & t->merge_mask) {
        if (t->merges[i].key == UINT64_MAX)
            return NULL;
        if (t->merges[i].key == key)
            return &t->merges[i];
    }
}

/* ---- loading ------------------------------------------------------- */

void tokenizer_destroy(bpe_tokenizer *t)
{
    if (!t)
        return;
    for (int i = 0; t->text && i < t->n_vocab; i++) {
        free(t->text[i]);
        free(t->bytes[i]);
    }
    free(t->text);
    free(t->text_len);
    free(t->bytes);
    free(t->bytes_len);
    free(t->type);
    free(t->by_text.slots);
    free(t->merges);
    free(t->control_ids);
    free(t);
}

/* Maps a token's GPT-2-alphabet text back to bytes. */
static slimkv_status token_to_bytes(const char *text, size_t len, const int32_t cp_to_byte[512], char *out,
                                    size_t *out_len)
{
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        i += utf8_next((const unsigned char *)text + i, len - i, &cp);
        if (cp >= 512 || cp_to_byte[cp] < 0)
            return SLIMKV_ERR_FORMAT;
        out[n++] = (char)cp_to_byte[cp];
    }
    *out_len = n;
    return SLIMKV_OK;
}

static slimkv_status load_vocab(bpe_tokenizer *t, const gguf_kv *tokens, const gguf_kv *types)
{
    uint32_t byte_to_cp[256];
    int32_t cp_to_byte[512];
    byte_alphabet(byte_to_cp);
    for (int i = 0; i < 512; i++)
        cp_to_byte[i] = -1;
    for (int b = 0; b < 256; b++)
        cp_to_byte[byte_to_cp[b]] = b;

    int n = t->n_vocab;
    t->text = calloc((size_t)n, sizeof *t->text);
    t->bytes = calloc((size_t)n, sizeof *t->bytes);
    t->text_len = calloc((size_t)n, sizeof *t->text_len);
    t->bytes_len = calloc((size_t)n, sizeof *t->bytes_len);
    t->type = calloc((size_t)n, sizeof *t->type);
    t->control_ids = calloc((size_t)n, sizeof *t->control_ids);
    t->by_text.mask = table_mask_for((size_t)n);
    t->by_text.slots = malloc(((size_t)t->by_text.mask + 1) * sizeof(int32_t));
    if (!t->text || !t->bytes || !t->text_len || !t->bytes_len || !t->type || !t->control_ids ||
        !t->by_text.slots)
        return SLIMKV_ERR_NOMEM;
    memset(t->by_text.slots, 0xff, ((size_t)t->by_text.mask + 1) * sizeof(int32_t));

    for (int id = 0; id < n; id++) {
        gguf_string s = tokens->array_strings[id];
        int64_t type = 1;
        if (types && gguf_array_int(types, (uint64_t)id, &type) != SLIMKV_OK)
            return SLIMKV_ERR_FORMAT;
        t->type[id] = (int32_t)type;
        t->text[id] = malloc((size_t)s.len + 1);
        t->bytes[id] = malloc((size_t)s.len + 1);
        if (!t->text[id] || !t->bytes[id])
            return SLIMKV_ERR_NOMEM;
        memcpy(t->text[id], s.data, (size_t)s.len);
        t->text[id][s.len] = '\0';
        t->text_len[id] = (size_t)s.len;
        if (type == TOKEN_TYPE_CONTROL) {
            /* Control tokens are written literally, not in the byte alphabet. */
            memcpy(t->bytes[id], s.data, (size_t)s.len);
            t->bytes_len[id] = (size_t)s.len;
            if (s.len > 0)
                t->control_ids[t->n_control++] = id;
        } else {
            slimkv_status st = token_to_bytes(s.data, (size_t)s.len, cp_to_byte, t->bytes[id], &t->bytes_len[id]);
            if (st != SLIMKV_OK)
                return st;
        }
        /* First id wins for duplicate strings, as in the reference tokenizers. */
        if (lookup_text(t, s.data, (size_t)s.len) >= 0)
            continue;
        uint32_t i = (uint32_t)hash_bytes(s.data, (size_t)s.len) & t->by_text.mask;
        while (t->by_text.slots[i] >= 0)
            i = (i + 1) & t->by_text.mask;
        t->by_text.slots[i] = id;
    }
    for (int b = 0; b < 256; b++) {
        char buf[4];
        size_t len = utf8_put(byte_to_cp[b], buf);
        t->byte_token[b] = lookup_text(t, buf, len);
    }
    return SLIMKV_OK;
}

/* Control tokens longest first, so that literal matching prefers the
 * longest one (insertion sort: there are a handful; stable by id). */
static void sort_controls_by_length(bpe_tokenizer *t)
{
    for (int i = 1; i < t->n_control; i++) {
        int32_t id = t->control_ids[i];
        int j = i;
        for (; j > 0 && t->text_len[t->control_ids[j - 1]] < t->text_len[id]; j--)
            t->control_ids[j] = t->control_ids[j - 1];
        t->control_ids[j] = id;
    }
}

static slimkv_status load_merges(bpe_tokenizer *t, const gguf_kv *merges)
{
    uint64_t n = merges ? merges->array_count : 0;
    if (n > (uint64_t)INT32_MAX / 2)
        return SLIMKV_ERR_FORMAT;
    t->merge_mask = table_mask_for((size_t)n);
    t->merges = malloc(((size_t)t->merge_mask + 1) * sizeof(merge_slot));
    if (!t->merges)
        return SLIMKV_ERR_NOMEM;
    for (size_t i = 0; i <= t->merge_mask; i++)
        t->merges[i].key = UINT64_MAX;
    char *joined = NULL;
    for (uint64_t rank = 0; rank < n; rank++) {
        gguf_string s = merges->array_strings[rank];
        const char *space = memchr(s.data, ' ', (size_t)s.len);
        if (!space) {
            free(joined);
            return SLIMKV_ERR_FORMAT;
        }
        size_t left_len = (size_t)(space - s.data), right_len = (size_t)s.len - left_len - 1;
        int32_t left = lookup_text(t, s.data, left_len), right = lookup_text(t, space + 1, right_len);
        char *grown = realloc(joined, left_len + right_len + 1);
        if (!grown) {
            free(joined);
            return SLIMKV_ERR_NOMEM;
        }
        joined = grown;
        memcpy(joined, s.data, left_len);
        memcpy(joined + left_len, space + 1, right_len);
        int32_t merged = lookup_text(t, joined, left_len + right_len);
        /* A merge whose parts or result are not tokens can never apply. */
        if (left < 0 || right < 0 || merged < 0)
            continue;
        uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
        uint32_t i = (uint32_t)hash_pair(key) & t->merge_mask;
        while (t->merges[i].key != UINT64_MAX && t->merges[i].key != key)
            i = (i + 1) & t->merge_mask;
        if (t->merges[i].key == key)
            continue; /* keep the first (best) rank */
        t->merges[i] = (merge_slot){key, (int32_t)rank, merged};
    }
    free(joined);
    return SLIMKV_OK;
}

static int optional_id(const gguf_file *file, const char *key, int n_vocab)
{
    uint32_t id;
    if (gguf_get_u32(file, key, &id) != SLIMKV_OK || id >= (uint32_t)n_vocab)
        return -1;
    return (int)id;
}

slimkv_status tokenizer_load(const gguf_file *file, bpe_tokenizer **out)
{
    if (!file || !out)
        return SLIMKV_ERR_NULL_ARG;
    *out = NULL;
    gguf_string model;
    if (gguf_get_string(file, "tokenizer.ggml.model", &model) != SLIMKV_OK)
        return SLIMKV_ERR_FORMAT;
    if (model.len != 4 || memcmp(model.data, "gpt2", 4) != 0)
        return SLIMKV_ERR_UNSUPPORTED; /* SentencePiece and others are other algorithms */
    const gguf_kv *tokens = gguf_find_kv(file, "tokenizer.ggml.tokens");
    const gguf_kv *types = gguf_find_kv(file, "tokenizer.ggml.token_type");
    const gguf_kv *merges = gguf_find_kv(file, "tokenizer.ggml.merges");
    if (!tokens || tokens->type != GGUF_TYPE_ARRAY || tokens->array_type != GGUF_TYPE_STRING ||
        tokens->array_count == 0 || tokens->array_count > (uint64_t)INT32_MAX / 4)
        return SLIMKV_ERR_FORMAT;
    if (types && (types->type != GGUF_TYPE_ARRAY || types->array_count != tokens->array_count))
        return SLIMKV_ERR_FORMAT;
    if (merges && (merges->type != GGUF_TYPE_ARRAY || merges->array_type != GGUF_TYPE_STRING))
        return SLIMKV_ERR_FORMAT;

    bpe_tokenizer *t = calloc(1, sizeof *t);
    if (!t)
        return SLIMKV_ERR_NOMEM;
    t->n_vocab = (int)tokens->array_count;
    slimkv_status st = load_vocab(t, tokens, types);
    if (st == SLIMKV_OK)
        st = load_merges(t, merges);
    if (st != SLIMKV_OK) {
        tokenizer_destroy(t);
        return st;
    }
    sort_controls_by_length(t);
    t->bos = optional_id(file, "tokenizer.ggml.bos_token_id", t->n_vocab);
    t->eos = optional_id(file, "tokenizer.ggml.eos_token_id", t->n_vocab);
    if (gguf_get_bool(file, "tokenizer.ggml.add_bos_token", &t->add_bos) != SLIMKV_OK)
        t->add_bos = 0;
    gguf_string pre = {"gpt2", 4};
    gguf_get_string(file, "tokenizer.ggml.pre", &pre); /* absent: plain GPT-2 */
    t->pre = PRE_GPT2;
    /* llama.cpp's pre-tokenizer types that put "\p{N}" (each digit alone)
     * before the GPT-2 regex. */
    static const char *const digit_splitting[] = {"smollm", "starcoder", "refact", "command-r", "codeshell",
                                                  "exaone", "minerva"};
    for (size_t i = 0; i < sizeof digit_splitting / sizeof digit_splitting[0]; i++)
        if (pre.len == strlen(digit_splitting[i]) && memcmp(pre.data, digit_splitting[i], (size_t)pre.len) == 0)
            t->pre = PRE_DIGITS_THEN_GPT2;
    *out = t;
    return SLIMKV_OK;
}

int tokenizer_vocab_size(const bpe_tokenizer *t)
{
    return t->n_vocab;
}

int tokenizer_bos_id(const bpe_tokenizer *t)
{
    return t->bos;
}

int tokenizer_eos_id(const bpe_tokenizer *t)
{
    return t->eos;
}

int tokenizer_adds_bos(const bpe_tokenizer *t)
{
    return t->add_bos && t->bos >= 0;
}

/* ---- encoding ------------------------------------------------------ */

typedef struct id_list {
    int32_t *ids;
    size_t n, cap;
} id_list;

static int push_id(id_list *list, int32_t id)
{
    if (list->n == list->cap) {
        size_t cap = list->cap ? list->cap * 2 : 256;
        int32_t *grown = realloc(list->ids, cap * sizeof *grown);
        if (!grown)
            return 0;
        list->ids = grown;
        list->cap = cap;
    }
    list->ids[list->n++] = id;
    return 1;
}

/* BPE on one pre-tokenized piece: start from its bytes' tokens, then merge
 * the adjacent pair of lowest rank (leftmost on ties) until none applies.
 * symbols: scratch of at least len entries. */
static int bpe_piece(const bpe_tokenizer *t, const unsigned char *piece, size_t len, int32_t *symbols,
                     id_list *out)
{
    size_t n = 0;
    /* A byte the vocabulary has no token for (GPT-2-style vocabularies may
     * lack bytes that never occur in UTF-8, such as 0xff) is dropped, as
     * the reference implementations do: an <unk> here would be a control
     * token in the middle of text. */
    for (size_t i = 0; i < len; i++)
        if (t->byte_token[piece[i]] >= 0)
            symbols[n++] = t->byte_token[piece[i]];
    for (;;) {
        int32_t best_rank = INT32_MAX, best_merged = -1;
        size_t best_at = 0;
        for (size_t i = 0; i + 1 < n; i++) {
            const merge_slot *m = lookup_merge(t, symbols[i], symbols[i + 1]);
            if (m && m->rank < best_rank) {
                best_rank = m->rank;
                best_merged = m->merged;
                best_at = i;
            }
        }
        if (best_merged < 0)
            break;
        symbols[best_at] = best_merged;
        memmove(symbols + best_at + 1, symbols + best_at + 2, (n - best_at - 2) * sizeof *symbols);
        n--;
    }
    for (size_t i = 0; i < n; i++)
        if (!push_id(out, symbols[i]))
            return 0;
    return 1;
}

/* Pre-tokenizes and encodes text that holds no control token. */
static int encode_plain(const bpe_tokenizer *t, const unsigned char *text, size_t len, id_list *out)
{
    if (len == 0)
        return 1;
    code_points cps = {malloc(len * sizeof(uint32_t)), malloc((len + 1) * sizeof(size_t)), 0};
    int32_t *symbols = malloc(len * sizeof(int32_t));
    int ok = cps.cp && cps.offset && symbols;
    for (size_t i = 0; ok && i < len;) {
        cps.offset[cps.n] = i;
        i += utf8_next(text + i, len - i, &cps.cp[cps.n]);
        cps.n++;
    }
    if (ok)
        cps.offset[cps.n] = len;
    /* Segments for the regex: with digit splitting, each number character
     * is a segment of its own and the runs between them are segments. */
    size_t seg_start = 0;
    while (ok && seg_start < cps.n) {
        size_t seg_end = seg_start + 1;
        if (t->pre == PRE_DIGITS_THEN_GPT2 && !is_number(cps.cp[seg_start]))
            while (seg_end < cps.n && !is_number(cps.cp[seg_end]))
                seg_end++;
        else if (t->pre == PRE_GPT2)
            seg_end = cps.n;
        for (size_t i = seg_start; ok && i < seg_end;) {
            size_t n = gpt2_match(cps.cp + seg_start, i - seg_start, seg_end - seg_start);
            size_t b0 = cps.offset[i], b1 = cps.offset[i + n];
            ok = bpe_piece(t, text + b0, b1 - b0, symbols, out);
            i += n;
        }
        seg_start = seg_end;
    }
    free(cps.cp);
    free(cps.offset);
    free(symbols);
    return ok;
}

/* The control token whose text starts at s (longest first), or -1. */
static int32_t control_at(const bpe_tokenizer *t, const char *s, size_t n)
{
    for (int i = 0; i < t->n_control; i++) {
        int32_t id = t->control_ids[i];
        size_t len = t->text_len[id];
        if (len <= n && s[0] == t->text[id][0] && memcmp(s, t->text[id], len) == 0)
            return id;
    }
    return -1;
}

slimkv_status tokenizer_encode(const bpe_tokenizer *t, const char *text, size_t len, int parse_special,
                               int32_t **ids, size_t *n_ids)
{
    if (!t || (!text && len > 0) || !ids || !n_ids)
        return SLIMKV_ERR_NULL_ARG;
    *ids = NULL;
    *n_ids = 0;
    id_list out = {NULL, 0, 0};
    int ok = 1;
    if (tokenizer_adds_bos(t))
        ok = push_id(&out, t->bos);
    size_t plain_start = 0;
    for (size_t i = 0; ok && parse_special && i < len; i++) {
        int32_t id = control_at(t, text + i, len - i);
        if (id < 0)
            continue;
        ok = encode_plain(t, (const unsigned char *)text + plain_start, i - plain_start, &out) && push_id(&out, id);
        i += t->text_len[id] - 1;
        plain_start = i + 1;
    }
    if (ok)
        ok = encode_plain(t, (const unsigned char *)text + plain_start, len - plain_start, &out);
    if (!ok) {
        free(out.ids);
        return SLIMKV_ERR_NOMEM;
    }
    if (!out.ids)
        out.ids = malloc(sizeof(int32_t)); /* an empty text still gives a buffer to free */
    if (!out.ids)
        return SLIMKV_ERR_NOMEM;
    *ids = out.ids;
    *n_ids = out.n;
    return SLIMKV_OK;
}

slimkv_status tokenizer_token_bytes(const bpe_tokenizer *t, int32_t id, const char **bytes, size_t *len)
{
    if (!t || !bytes || !len)
        return SLIMKV_ERR_NULL_ARG;
    if (id < 0 || id >= t->n_vocab)
        return SLIMKV_ERR_INVALID_ARG;
    *bytes = t->bytes[id];
    *len = t->bytes_len[id];
    return SLIMKV_OK;
}

slimkv_status tokenizer_decode(const bpe_tokenizer *t, const int32_t *ids, size_t n_ids, char **text, size_t *len)
{
    if (!t || (!ids && n_ids > 0) || !text)
        return SLIMKV_ERR_NULL_ARG;
    *text = NULL;
    size_t total = 0;
    for (size_t i = 0; i < n_ids; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_vocab)
            return SLIMKV_ERR_INVALID_ARG;
        total += t->bytes_len[ids[i]];
    }
    char *s = malloc(total + 1);
    if (!s)
        return SLIMKV_ERR_NOMEM;
    size_t pos = 0;
    for (size_t i = 0; i < n_ids; i++) {
        memcpy(s + pos, t->bytes[ids[i]], t->bytes_len[ids[i]]);
        pos += t->bytes_len[ids[i]];
    }
    s[pos] = '\0';
    *text = s;
    if (len)
        *len = pos;
    return SLIMKV_OK;
}
