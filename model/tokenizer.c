// tokenizer.c — the Llama 3 tokenizer (see tokenizer.h): loads HF tokenizer.json or a tiktoken
// tokenizer.model, splits out special tokens, pre-tokenizes with the Llama 3 regex (PCRE2, JIT)
// and merges byte pairs by rank; decodes ids back to UTF-8, whole or streaming.
//
// How encoding goes (the same steps as HF tokenizers and tiktoken):
//   1. invalid UTF-8 is repaired first: every maximal invalid subpart becomes U+FFFD (the rule of
//      Python's bytes.decode("utf-8", "replace"), Rust's String::from_utf8_lossy and the WHATWG
//      TextDecoder). The ids then equal HF tokenizers / tiktoken on that decoded string; the
//      invalid bytes themselves are not kept (decode gives U+FFFD there).
//   2. allow_special: the text is cut at special-token text (leftmost, longest first, as HF's
//      added-vocabulary matcher); each special becomes its id.
//   3. each remaining segment is split by the pre-tokenizer regex ("Isolated": matches and any
//      gaps are pieces; the regex never looks across a special token).
//   4. a piece that is itself a token is that token (HF ignore_merges; tiktoken always);
//      otherwise its bytes are merged pairwise, always the lowest-rank adjacent pair first
//      (leftmost on ties). HF ranks are merge-list positions; tiktoken ranks are the merged
//      token's rank, over every split of every token into two tokens.
//
// Regex: HF's Onig and tiktoken's Rust regex differ from PCRE2 in two places, which are
// rewritten before compiling: `\s` is the Unicode White_Space set (PCRE2's UCP \s also holds
// U+180E), and the (?i:'s|...) contractions fold ASCII only (PCRE2 would also fold 'ſ' to 's').
#define _GNU_SOURCE
#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer.h"

#include <cJSON.h>
#include <errno.h>
#include <math.h>
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

// Token ids (and tiktoken ranks) at most: Llama 3 has 128256; the id space is allocated up front.
#define TOK_MAX_VOCAB (1 << 24)

#define LLAMA3_PATTERN                                                                       \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|" \
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

enum { K_ABSENT = 0, K_NORMAL = 1, K_SPECIAL = 2, K_ADDED = 3 };   // kind of an id

typedef struct vslot {
    uint32_t h;    // upper hash bits (fast reject)
    int32_t id;    // -1 empty
} vslot;

typedef struct mslot {
    uint64_t key;  // (left+1) << 32 | right; 0 empty
    int32_t rank, id;
} mslot;

struct tok_tokenizer {
    int nvocab;                   // ids are 0..nvocab-1 (some may be absent)
    char *pool;                   // all token bytes
    size_t pool_len, pool_cap;
    uint32_t *off, *len;          // [nvocab] piece of each id in pool
    uint8_t *kind;                // [nvocab] K_*
    vslot *vt;                    // ordinary tokens: bytes -> id
    uint32_t vmask;
    mslot *mt;                    // pair (left id, right id) -> (rank, merged id)
    uint64_t mmask;
    size_t nmerges;
    int32_t byte_id[256];         // id of each single byte
    int whole_piece;              // a piece found in the vocab is one token (ignore_merges)
    // special (added) tokens, sorted by their first two bytes then longest first
    int32_t *sp;                  // [nsp] ids
    int nsp;
    uint32_t *sp_start;           // [65537] bucket starts by (b0 << 8 | b1)
    int32_t sp1[256];             // one-byte added tokens
    uint8_t sp_first[256];        // bytes that can start an added token
    char *pattern;                // the regex as given
    pcre2_code *re;
    int jit;
    size_t max_piece;
    uint64_t hash;
};

// --- small helpers

void tok_ids_push(tok_ids *v, int32_t id) {
    if (v->n == v->cap) {
        v->cap = v->cap ? 2 * v->cap : 64;
        v->ids = xrealloc(v->ids, v->cap * sizeof *v->ids);
    }
    v->ids[v->n++] = id;
}

void tok_ids_free(tok_ids *v) {
    free(v->ids);
    v->ids = NULL;
    v->n = v->cap = 0;
}

static inline uint64_t mix64(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

static inline uint64_t hash_bytes(const unsigned char *p, size_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ULL ^ (n * 0xff51afd7ed558ccdULL);
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        h = mix64(h ^ v);
        p += 8;
        n -= 8;
    }
    uint64_t v = 0;
    memcpy(&v, p, n);
    return mix64(h ^ v ^ 0x5bd1e995);
}

static uint32_t pow2_at_least(size_t n) {
    uint32_t c = 16;
    while (c < n) c <<= 1;
    return c;
}

// --- UTF-8 (maximal subparts, as the Unicode standard's recommended practice)

enum { U8_OK, U8_BAD, U8_SHORT };

// Looks at the sequence starting at s[0]: U8_OK with its length, U8_BAD with the length of the
// maximal invalid subpart (>= 1), or U8_SHORT when it is a valid prefix cut by the end.
static inline int utf8_seq(const unsigned char *s, size_t n, size_t *len) {
    unsigned b = s[0];
    if (b < 0x80) { *len = 1; return U8_OK; }
    size_t need;
    unsigned lo = 0x80, hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF) need = 1;
    else if (b == 0xE0) { need = 2; lo = 0xA0; }
    else if (b == 0xED) { need = 2; hi = 0x9F; }
    else if (b >= 0xE1 && b <= 0xEF) need = 2;
    else if (b == 0xF0) { need = 3; lo = 0x90; }
    else if (b >= 0xF1 && b <= 0xF3) need = 3;
    else if (b == 0xF4) { need = 3; hi = 0x8F; }
    else { *len = 1; return U8_BAD; }
    for (size_t k = 1; k <= need; k++) {
        if (k >= n) { *len = k; return U8_SHORT; }
        unsigned c = s[k];
        if (c < lo || c > hi) { *len = k; return U8_BAD; }
        lo = 0x80;
        hi = 0xBF;
    }
    *len = need + 1;
    return U8_OK;
}

int tok_utf8_valid(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        // ASCII fast path, 8 bytes at a time
        while (i + 8 <= n) {
            uint64_t v;
            memcpy(&v, p + i, 8);
            if (v & 0x8080808080808080ULL) break;
            i += 8;
        }
        if (i >= n) break;
        if (p[i] < 0x80) { i++; continue; }
        size_t l;
        if (utf8_seq(p + i, n - i, &l) != U8_OK) return 0;
        i += l;
    }
    return 1;
}

char *tok_utf8_repair(const char *s, size_t n, size_t *out_len) {
    const unsigned char *p = (const unsigned char *)s;
    char *o = xmalloc(3 * n + 1);
    size_t i = 0, k = 0;
    while (i < n) {
        size_t l;
        int st = p[i] < 0x80 ? (l = 1, U8_OK) : utf8_seq(p + i, n - i, &l);
        if (st == U8_OK) {
            memcpy(o + k, p + i, l);
            k += l;
        } else {
            memcpy(o + k, "\xEF\xBF\xBD", 3);
            k += 3;
        }
        i += l;
    }
    o[k] = 0;
    *out_len = k;
    return o;
}

// --- vocabulary tables

static void pool_add(tok_tokenizer *t, int32_t id, const void *bytes, size_t n, int kind) {
    if (t->pool_len + n + 1 > t->pool_cap) {
        t->pool_cap = 2 * (t->pool_len + n + 1) + 4096;
        t->pool = xrealloc(t->pool, t->pool_cap);
    }
    memcpy(t->pool + t->pool_len, bytes, n);
    t->pool[t->pool_len + n] = 0;
    t->off[id] = (uint32_t)t->pool_len;
    t->len[id] = (uint32_t)n;
    t->kind[id] = (uint8_t)kind;
    t->pool_len += n + 1;
    if (n > t->max_piece) t->max_piece = n;
}

static void vocab_alloc(tok_tokenizer *t, int nvocab) {
    t->nvocab = nvocab;
    t->off = xcalloc((size_t)nvocab, sizeof *t->off);
    t->len = xcalloc((size_t)nvocab, sizeof *t->len);
    t->kind = xcalloc((size_t)nvocab, 1);
}

static inline const unsigned char *piece_of(const tok_tokenizer *t, int32_t id) {
    return (const unsigned char *)t->pool + t->off[id];
}

static int32_t vocab_find(const tok_tokenizer *t, const unsigned char *p, size_t n) {
    uint64_t h = hash_bytes(p, n);
    uint32_t hi = (uint32_t)(h >> 32), i = (uint32_t)h & t->vmask;
    for (;; i = (i + 1) & t->vmask) {
        const vslot *s = &t->vt[i];
        if (s->id < 0) return -1;
        if (s->h == hi && t->len[s->id] == n && !memcmp(piece_of(t, s->id), p, n)) return s->id;
    }
}

// Builds the bytes -> id table over the ordinary tokens. Duplicate bytes: an error.
static int vocab_index(tok_tokenizer *t, const char *src) {
    size_t count = 0;
    for (int id = 0; id < t->nvocab; id++) count += t->kind[id] == K_NORMAL;
    uint32_t cap = pow2_at_least(2 * count + 1);
    free(t->vt);
    t->vt = xmalloc(cap * sizeof *t->vt);
    for (uint32_t i = 0; i < cap; i++) t->vt[i].id = -1;
    t->vmask = cap - 1;
    for (int id = 0; id < t->nvocab; id++) {
        if (t->kind[id] != K_NORMAL) continue;
        const unsigned char *p = piece_of(t, id);
        size_t n = t->len[id];
        uint64_t h = hash_bytes(p, n);
        uint32_t hi = (uint32_t)(h >> 32), i = (uint32_t)h & t->vmask;
        for (;; i = (i + 1) & t->vmask) {
            vslot *s = &t->vt[i];
            if (s->id < 0) {
                s->id = id;
                s->h = hi;
                break;
            }
            if (s->h == hi && t->len[s->id] == n && !memcmp(piece_of(t, s->id), p, n))
                return err_set("%s: tokens %d and %d have the same bytes (expected each token once in the vocabulary)",
                               src, s->id, id);
        }
    }
    for (int b = 0; b < 256; b++) {
        unsigned char c = (unsigned char)b;
        t->byte_id[b] = vocab_find(t, &c, 1);
        if (t->byte_id[b] < 0)
            return err_set("%s: the vocabulary has no token for byte 0x%02x (expected all 256 bytes for byte-level BPE)",
                           src, b);
    }
    return 0;
}

static void merges_alloc(tok_tokenizer *t, size_t expected) {
    uint64_t cap = pow2_at_least(2 * expected + 1);
    free(t->mt);
    t->mt = xcalloc(cap, sizeof *t->mt);
    t->mmask = cap - 1;
    t->nmerges = 0;
}

static inline uint64_t pair_key(int32_t a, int32_t b) {
    return ((uint64_t)(uint32_t)(a + 1) << 32) | (uint32_t)b;
}

// Sets (a, b) -> (rank, id); a pair listed twice keeps its last entry, as HF's merge map does
// (tiktoken's derived pairs always repeat the same rank and id).
static void merge_add(tok_tokenizer *t, int32_t a, int32_t b, int32_t rank, int32_t id) {
    if (2 * (t->nmerges + 1) > t->mmask + 1) {   // grow
        mslot *old = t->mt;
        uint64_t oldcap = t->mmask + 1;
        t->mt = xcalloc(2 * oldcap, sizeof *t->mt);
        t->mmask = 2 * oldcap - 1;
        for (uint64_t i = 0; i < oldcap; i++) {
            if (!old[i].key) continue;
            uint64_t j = mix64(old[i].key) & t->mmask;
            while (t->mt[j].key) j = (j + 1) & t->mmask;
            t->mt[j] = old[i];
        }
        free(old);
    }
    uint64_t key = pair_key(a, b), i = mix64(key) & t->mmask;
    for (;; i = (i + 1) & t->mmask) {
        mslot *s = &t->mt[i];
        if (!s->key) {
            s->key = key;
            s->rank = rank;
            s->id = id;
            t->nmerges++;
            return;
        }
        if (s->key == key) {
            s->rank = rank;
            s->id = id;
            return;
        }
    }
}

static inline const mslot *merge_find(const tok_tokenizer *t, int32_t a, int32_t b) {
    uint64_t key = pair_key(a, b), i = mix64(key) & t->mmask;
    for (;; i = (i + 1) & t->mmask) {
        const mslot *s = &t->mt[i];
        if (s->key == key) return s;
        if (!s->key) return NULL;
    }
}

// --- special tokens

static void specials_index(tok_tokenizer *t) {
    free(t->sp);
    free(t->sp_start);
    t->nsp = 0;
    for (int id = 0; id < t->nvocab; id++) t->nsp += (t->kind[id] == K_SPECIAL || t->kind[id] == K_ADDED) && t->len[id] >= 2;
    t->sp = xmalloc(((size_t)t->nsp + 1) * sizeof *t->sp);
    t->sp_start = xcalloc(65537, sizeof *t->sp_start);
    memset(t->sp_first, 0, sizeof t->sp_first);
    for (int b = 0; b < 256; b++) t->sp1[b] = -1;
    // counting sort by the first two bytes; within a bucket longest first (then lower id)
    for (int id = 0; id < t->nvocab; id++) {
        if (t->kind[id] != K_SPECIAL && t->kind[id] != K_ADDED) continue;
        const unsigned char *p = piece_of(t, id);
        if (t->len[id] == 0) continue;
        t->sp_first[p[0]] = 1;
        if (t->len[id] == 1) {
            if (t->sp1[p[0]] < 0) t->sp1[p[0]] = id;
            continue;
        }
        t->sp_start[((unsigned)p[0] << 8 | p[1]) + 1]++;
    }
    for (int k = 0; k < 65536; k++) t->sp_start[k + 1] += t->sp_start[k];
    uint32_t *fill = xmalloc(65536 * sizeof *fill);
    memcpy(fill, t->sp_start, 65536 * sizeof *fill);
    for (int id = 0; id < t->nvocab; id++) {
        if ((t->kind[id] != K_SPECIAL && t->kind[id] != K_ADDED) || t->len[id] < 2) continue;
        const unsigned char *p = piece_of(t, id);
        unsigned k = (unsigned)p[0] << 8 | p[1];
        // insertion keeping length-descending order inside the bucket
        uint32_t j = fill[k]++;
        while (j > t->sp_start[k] && t->len[t->sp[j - 1]] < t->len[id]) {
            t->sp[j] = t->sp[j - 1];
            j--;
        }
        t->sp[j] = id;
    }
    free(fill);
}

// Longest added token starting at s[0] (within n bytes), or -1.
static inline int32_t special_at(const tok_tokenizer *t, const unsigned char *s, size_t n) {
    if (n >= 2) {
        unsigned k = (unsigned)s[0] << 8 | s[1];
        for (uint32_t j = t->sp_start[k]; j < t->sp_start[k + 1]; j++) {
            int32_t id = t->sp[j];
            size_t l = t->len[id];
            if (l <= n && !memcmp(piece_of(t, id), s, l)) return id;
        }
    }
    return t->sp1[s[0]];
}

int32_t tok_special(const tok_tokenizer *t, const char *text) {
    size_t n = strlen(text);
    if (!n) return -1;
    int32_t id = special_at(t, (const unsigned char *)text, n);
    return id >= 0 && t->len[id] == n ? id : -1;
}

int tok_is_special(const tok_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->nvocab && t->kind[id] == K_SPECIAL;
}

int tok_vocab_size(const tok_tokenizer *t) { return t->nvocab; }

const char *tok_piece(const tok_tokenizer *t, int32_t id, size_t *len) {
    if (id < 0 || id >= t->nvocab || t->kind[id] == K_ABSENT) {
        if (len) *len = 0;
        return NULL;
    }
    if (len) *len = t->len[id];
    return t->pool + t->off[id];
}

uint64_t tok_hash(const tok_tokenizer *t) { return t->hash; }

// --- regex

// White_Space (Unicode), as \s in Onig and Rust regex; PCRE2's UCP \s also has U+180E.
#define WS_RANGES "\\t-\\r \\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}"

// Digits (Nd) assigned in Unicode 15 and 16, which PCRE2 10.42's Unicode 14 tables lack but HF
// tokenizers' Oniguruma has; the only code points of planes 0-3 whose ids differed from HF's.
#define N_NEW_RANGES                                                                              \
    "\\x{10D40}-\\x{10D49}\\x{116D0}-\\x{116E3}\\x{11BF0}-\\x{11BF9}\\x{11F50}-\\x{11F59}\\x{16130}-\\x{16139}" \
    "\\x{16D70}-\\x{16D79}\\x{1CCF0}-\\x{1CCF9}\\x{1D2C0}-\\x{1D2D3}\\x{1E4F0}-\\x{1E4F9}\\x{1E5F1}-\\x{1E5FA}"

// Rewrites \s and \S into explicit White_Space classes, adds the newer digits to \p{N}, and turns
// the Llama 3 contractions group into an ASCII-only case fold. Returns NULL (err_set) for a \S
// inside a character class.
static char *pattern_translate(const char *pat) {
    static const char *contr = "(?i:'s|'t|'re|'ve|'m|'ll|'d)";
    static const char *contr_ascii = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])";
    size_t n = strlen(pat), cap = 4 * n + 256, k = 0;
    char *o = xmalloc(cap);
    int in_class = 0;
    for (size_t i = 0; i < n;) {
        if (k + 128 > cap) o = xrealloc(o, cap *= 2);
        if (!in_class && !strncmp(pat + i, contr, strlen(contr))) {
            size_t l = strlen(contr_ascii);
            if (k + l + 1 > cap) o = xrealloc(o, cap = 2 * cap + l);
            memcpy(o + k, contr_ascii, l);
            k += l;
            i += strlen(contr);
            continue;
        }
        char c = pat[i];
        if (!strncmp(pat + i, "\\p{N}", 5)) {
            const char *rep = in_class ? "\\p{N}" N_NEW_RANGES : "[\\p{N}" N_NEW_RANGES "]";
            size_t l = strlen(rep);
            if (k + l + 1 > cap) o = xrealloc(o, cap = 2 * cap + l);
            memcpy(o + k, rep, l);
            k += l;
            i += 5;
            continue;
        }
        if (c == '\\' && i + 1 < n) {
            char e = pat[i + 1];
            if (e == 's' || e == 'S') {
                if (in_class && e == 'S') {
                    free(o);
                    err_set("pre-tokenizer regex: \\S inside a character class is not supported");
                    return NULL;
                }
                const char *rep = in_class ? WS_RANGES : e == 's' ? "[" WS_RANGES "]" : "[^" WS_RANGES "]";
                size_t l = strlen(rep);
                memcpy(o + k, rep, l);
                k += l;
            } else {
                o[k++] = c;
                o[k++] = e;
            }
            i += 2;
            continue;
        }
        if (c == '[' && !in_class) {
            in_class = 1;
            o[k++] = c;
            i++;
            if (i < n && pat[i] == '^') o[k++] = pat[i++];
            if (i < n && pat[i] == ']') o[k++] = pat[i++];   // literal ] first in a class
            continue;
        }
        if (c == ']' && in_class) in_class = 0;
        o[k++] = c;
        i++;
    }
    o[k] = 0;
    return o;
}

static int regex_compile(tok_tokenizer *t, const char *src) {
    char *pat = pattern_translate(t->pattern);
    if (!pat) return err_prefix("%s", src);
    int code;
    PCRE2_SIZE at;
    t->re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &code,
                          &at, NULL);
    free(pat);
    if (!t->re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        return err_set("%s: pre-tokenizer regex does not compile at offset %zu: %s (pattern '%s')", src, (size_t)at,
                       (const char *)msg, t->pattern);
    }
    t->jit = pcre2_jit_compile(t->re, PCRE2_JIT_COMPLETE) == 0;
    return 0;
}

// --- hash of the whole tokenizer

static inline uint64_t hchain(uint64_t h, const void *p, size_t n) {
    return mix64(h ^ hash_bytes(p, n)) + n;
}

// merges_hash: the merges in rank order (HF), or a constant for tiktoken's implicit ranks.
static void compute_hash(tok_tokenizer *t, uint64_t merges_hash) {
    uint64_t h = hchain(0, "lorac-tokenizer-v1", 18);
    h = hchain(h, &t->nvocab, sizeof t->nvocab);
    for (int id = 0; id < t->nvocab; id++) {
        uint32_t hdr[2] = {t->kind[id], t->len[id]};
        h = hchain(h, hdr, sizeof hdr);
        h = hchain(h, piece_of(t, id), t->len[id]);
    }
    h = hchain(h, t->pattern, strlen(t->pattern));
    h = hchain(h, &t->whole_piece, sizeof t->whole_piece);
    h = hchain(h, &merges_hash, sizeof merges_hash);
    t->hash = h;
}

// --- loading: HF tokenizer.json

// GPT-2 byte-level alphabet: printable bytes map to themselves, the rest to U+0100...
static void byte_level_tables(int cp_to_byte[324]) {
    for (int i = 0; i < 324; i++) cp_to_byte[i] = -1;
    int n = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
        if (printable) cp_to_byte[b] = b;
        else cp_to_byte[256 + n++] = b;
    }
}

// Decodes a byte-level token string into raw bytes (out has room for strlen(s) bytes).
static int byte_level_decode(const int cp_to_byte[324], const char *s, unsigned char *out, size_t *n) {
    const unsigned char *p = (const unsigned char *)s;
    size_t k = 0;
    while (*p) {
        unsigned cp;
        if (p[0] < 0x80) { cp = p[0]; p += 1; }
        else if ((p[0] & 0xE0) == 0xC0 && (p[1] & 0xC0) == 0x80) { cp = (p[0] & 0x1Fu) << 6 | (p[1] & 0x3Fu); p += 2; }
        else return -1;
        if (cp >= 324 || cp_to_byte[cp] < 0) return -1;
        out[k++] = (unsigned char)cp_to_byte[cp];
    }
    *n = k;
    return 0;
}

static int json_int(const cJSON *j, long long *out) {
    if (!cJSON_IsNumber(j)) return -1;
    double d = j->valuedouble;
    if (!(d >= -9.0e18 && d <= 9.0e18) || d != floor(d)) return -1;   // the cast of a larger value is undefined
    *out = (long long)d;
    return 0;
}

// Finds the Split regex of the pre-tokenizer; checks the rest is what byte-level BPE expects.
static int hf_pretokenizer(tok_tokenizer *t, const cJSON *pre, const char *src) {
    if (!pre || cJSON_IsNull(pre))
        return err_set("%s: 'pre_tokenizer' is missing (expected the Llama 3 Split regex + ByteLevel)", src);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(pre, "type");
    const char *ty = cJSON_IsString(type) ? type->valuestring : "";
    if (!strcmp(ty, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(pre, "pretokenizers"), *it;
        cJSON_ArrayForEach(it, list) {
            const cJSON *ity = cJSON_GetObjectItemCaseSensitive(it, "type");
            if (cJSON_IsString(ity) && !strcmp(ity->valuestring, "Split")) {
                if (hf_pretokenizer(t, it, src)) return -1;
            } else if (cJSON_IsString(ity) && !strcmp(ity->valuestring, "ByteLevel")) {
                const cJSON *ur = cJSON_GetObjectItemCaseSensitive(it, "use_regex");
                const cJSON *ap = cJSON_GetObjectItemCaseSensitive(it, "add_prefix_space");
                if (cJSON_IsTrue(ap))
                    return err_set("%s: pre_tokenizer ByteLevel: add_prefix_space true is not supported (Llama 3 has false)", src);
                if (!cJSON_IsFalse(ur) && t->pattern)
                    return err_set("%s: pre_tokenizer: a Split regex followed by ByteLevel with use_regex is not supported", src);
                if (!cJSON_IsFalse(ur))   // GPT-2 style: the regex lives in ByteLevel
                    t->pattern = xstrdup("'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+");
            } else {
                return err_set("%s: pre_tokenizer: unsupported step '%s' (expected Split and ByteLevel, as Llama 3)", src,
                               cJSON_IsString(ity) ? ity->valuestring : "?");
            }
        }
    } else if (!strcmp(ty, "Split")) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(pre, "pattern");
        const cJSON *re = pat ? cJSON_GetObjectItemCaseSensitive(pat, "Regex") : NULL;
        const cJSON *beh = cJSON_GetObjectItemCaseSensitive(pre, "behavior");
        const cJSON *inv = cJSON_GetObjectItemCaseSensitive(pre, "invert");
        if (!cJSON_IsString(re))
            return err_set("%s: pre_tokenizer Split: expected pattern.Regex (a string)", src);
        if (!cJSON_IsString(beh) || strcmp(beh->valuestring, "Isolated") || cJSON_IsTrue(inv))
            return err_set("%s: pre_tokenizer Split: expected behavior 'Isolated' without invert, found '%s'", src,
                           cJSON_IsString(beh) ? beh->valuestring : "?");
        if (t->pattern) return err_set("%s: pre_tokenizer: more than one regex step is not supported", src);
        t->pattern = xstrdup(re->valuestring);
    } else if (!strcmp(ty, "ByteLevel")) {
        const cJSON *ap = cJSON_GetObjectItemCaseSensitive(pre, "add_prefix_space");
        if (cJSON_IsTrue(ap))
            return err_set("%s: pre_tokenizer ByteLevel: add_prefix_space true is not supported", src);
        t->pattern = xstrdup("'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+");
    } else {
        return err_set("%s: pre_tokenizer: unsupported type '%s' (expected the Llama 3 Sequence of Split + ByteLevel)",
                       src, ty);
    }
    return 0;
}

// long: tokenizer.json's sections (model type, vocab, merges, added tokens, normalizer,
// pre-tokenizer, decoder) read and checked in file order, each with its own message.
static int load_hf(tok_tokenizer *t, const char *path) {
    size_t flen;
    char *text = file_read_all(path, &flen);
    if (!text) return -1;
    cJSON *root = cJSON_ParseWithLength(text, flen);
    if (!root) {
        const char *e = cJSON_GetErrorPtr();
        size_t at = e && e >= text && e <= text + flen ? (size_t)(e - text) : 0;
        int deep = json_max_depth(text, flen) >= CJSON_NESTING_LIMIT;
        free(text);
        if (deep) return err_set("%s: the JSON nests deeper than %d levels (the limit)", path, CJSON_NESTING_LIMIT);
        return err_set("%s: not valid JSON (near byte %zu; a truncated download?)", path, at);
    }
    free(text);
    int rc = -1;
    unsigned char *buf = NULL;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *mtype = model ? cJSON_GetObjectItemCaseSensitive(model, "type") : NULL;
    const cJSON *vocab = model ? cJSON_GetObjectItemCaseSensitive(model, "vocab") : NULL;
    const cJSON *merges = model ? cJSON_GetObjectItemCaseSensitive(model, "merges") : NULL;
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    const cJSON *it;
    if (!cJSON_IsObject(model) || !cJSON_IsString(mtype) || strcmp(mtype->valuestring, "BPE")) {
        err_set("%s: 'model.type': expected \"BPE\", found %s", path,
                cJSON_IsString(mtype) ? mtype->valuestring : "nothing");
        goto done;
    }
    if (!cJSON_IsObject(vocab) || !cJSON_IsArray(merges)) {
        err_set("%s: expected 'model.vocab' (object) and 'model.merges' (array)", path);
        goto done;
    }
    const cJSON *bf = cJSON_GetObjectItemCaseSensitive(model, "byte_fallback");
    if (cJSON_IsTrue(bf)) {
        err_set("%s: 'model.byte_fallback' true is not supported (expected a byte-level BPE like Llama 3)", path);
        goto done;
    }
    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    if (norm && !cJSON_IsNull(norm)) {
        err_set("%s: 'normalizer' is set; expected null (Llama 3 has none)", path);
        goto done;
    }
    t->whole_piece = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(model, "ignore_merges"));
    if (hf_pretokenizer(t, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), path)) goto done;
    if (!t->pattern) {
        err_set("%s: pre_tokenizer has no Split regex", path);
        goto done;
    }
    // size of the id space
    long long maxid = -1, v;
    cJSON_ArrayForEach(it, vocab) {
        if (json_int(it, &v) || v < 0 || v >= TOK_MAX_VOCAB) {
            err_set("%s: model.vocab['%s']: expected an integer id in [0, %d)", path, it->string, TOK_MAX_VOCAB);
            goto done;
        }
        if (v > maxid) maxid = v;
    }
    cJSON_ArrayForEach(it, added) {
        if (json_int(cJSON_GetObjectItemCaseSensitive(it, "id"), &v) || v < 0 || v >= TOK_MAX_VOCAB) {
            err_set("%s: added_tokens: expected an integer 'id' in [0, %d) in every entry", path, TOK_MAX_VOCAB);
            goto done;
        }
        if (v > maxid) maxid = v;
    }
    if (maxid < 255) {
        err_set("%s: model.vocab has %lld ids, expected at least 256 (byte-level BPE)", path, maxid + 1);
        goto done;
    }
    vocab_alloc(t, (int)maxid + 1);
    int cp_to_byte[324];
    byte_level_tables(cp_to_byte);
    size_t bufcap = 1024;
    buf = xmalloc(bufcap);
    cJSON_ArrayForEach(it, vocab) {
        size_t l = strlen(it->string), n;
        if (l + 1 > bufcap) buf = xrealloc(buf, bufcap = 2 * l + 1);
        json_int(it, &v);
        if (byte_level_decode(cp_to_byte, it->string, buf, &n)) {
            err_set("%s: model.vocab['%s']: not a byte-level token (characters outside the GPT-2 byte alphabet)",
                    path, it->string);
            goto done;
        }
        if (t->kind[v] != K_ABSENT) {
            err_set("%s: model.vocab: id %lld is used twice", path, v);
            goto done;
        }
        pool_add(t, (int32_t)v, buf, n, K_NORMAL);
    }
    cJSON_ArrayForEach(it, added) {
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(it, "content");
        json_int(cJSON_GetObjectItemCaseSensitive(it, "id"), &v);
        if (!cJSON_IsString(content) || !content->valuestring[0]) {
            err_set("%s: added_tokens id %lld: expected a non-empty 'content' string", path, v);
            goto done;
        }
        int special = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(it, "special"));
        pool_add(t, (int32_t)v, content->valuestring, strlen(content->valuestring), special ? K_SPECIAL : K_ADDED);
    }
    if (vocab_index(t, path)) goto done;
    // merges: "a b" strings or [a, b] pairs; rank = position
    merges_alloc(t, (size_t)cJSON_GetArraySize(merges));
    int rank = 0;
    unsigned char *ab = NULL;
    size_t abcap = 0, tmpcap = 256;
    char *tmp = xmalloc(tmpcap);
    uint64_t mh = hchain(0, "merges", 6);
    cJSON_ArrayForEach(it, merges) {
        const char *a, *b;
        if (cJSON_IsString(it)) {
            const char *sp = strchr(it->valuestring, ' ');
            if (!sp || strchr(sp + 1, ' ')) {
                err_set("%s: model.merges[%d]: expected \"left right\", found \"%s\"", path, rank, it->valuestring);
                free(ab);
                free(tmp);
                goto done;
            }
            size_t l = strlen(it->valuestring);
            if (l + 1 > tmpcap) tmp = xrealloc(tmp, tmpcap = 2 * l + 1);
            memcpy(tmp, it->valuestring, l + 1);
            tmp[sp - it->valuestring] = 0;
            a = tmp;
            b = tmp + (sp - it->valuestring) + 1;
        } else if (cJSON_IsArray(it) && cJSON_GetArraySize(it) == 2 && cJSON_IsString(cJSON_GetArrayItem(it, 0)) &&
                   cJSON_IsString(cJSON_GetArrayItem(it, 1))) {
            a = cJSON_GetArrayItem(it, 0)->valuestring;
            b = cJSON_GetArrayItem(it, 1)->valuestring;
        } else {
            err_set("%s: model.merges[%d]: expected a \"left right\" string or a [left, right] pair", path, rank);
            free(ab);
            free(tmp);
            goto done;
        }
        size_t la = strlen(a), lb = strlen(b), na, nb;
        if (la + lb + 1 > abcap) ab = xrealloc(ab, abcap = 2 * (la + lb + 1));
        int bad = byte_level_decode(cp_to_byte, a, ab, &na) || byte_level_decode(cp_to_byte, b, ab + na, &nb);
        int32_t ia = bad ? -1 : vocab_find(t, ab, na), ib = bad ? -1 : vocab_find(t, ab + na, nb);
        int32_t iab = bad ? -1 : vocab_find(t, ab, na + nb);
        if (ia < 0 || ib < 0 || iab < 0) {
            err_set("%s: model.merges[%d] ('%s' + '%s'): %s is not in model.vocab", path, rank, a, b,
                    bad ? "a part" : ia < 0 ? "the left part" : ib < 0 ? "the right part" : "the merged token");
            free(tmp);
            free(ab);
            goto done;
        }
        merge_add(t, ia, ib, rank, iab);
        int32_t trip[3] = {ia, ib, iab};
        mh = hchain(mh, trip, sizeof trip);
        rank++;
    }
    free(ab);
    free(tmp);
    specials_index(t);
    if (regex_compile(t, path)) goto done;
    compute_hash(t, mh);
    rc = 0;
done:
    free(buf);
    cJSON_Delete(root);
    return rc;
}

// --- loading: tiktoken tokenizer.model

static int b64_value(int c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

// Decodes standard base64 (with '=' padding) into out; returns the length or -1.
static long b64_decode(const char *s, size_t n, unsigned char *out) {
    if (n % 4) return -1;
    long k = 0;
    for (size_t i = 0; i < n; i += 4) {
        int v[4], pad = 0;
        for (int j = 0; j < 4; j++) {
            char c = s[i + j];
            if (c == '=' && i + 4 == n && j >= 2) { v[j] = 0; pad++; }
            else if (pad || (v[j] = b64_value((unsigned char)c)) < 0) return -1;
        }
        uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        out[k++] = (unsigned char)(w >> 16);
        if (pad < 2) out[k++] = (unsigned char)(w >> 8);
        if (pad < 1) out[k++] = (unsigned char)w;
    }
    return k;
}

// The Llama 3.1 / 3.2 names of ids base..base+255 (used when no tokenizer_config.json is found).
static void llama3_special_name(int i, char *out, size_t cap) {
    static const char *named[] = {"<|begin_of_text|>",          "<|end_of_text|>",
                                  "<|reserved_special_token_0|>", "<|reserved_special_token_1|>",
                                  "<|finetune_right_pad_id|>",   "<|reserved_special_token_2|>",
                                  "<|start_header_id|>",         "<|end_header_id|>",
                                  "<|eom_id|>",                  "<|eot_id|>",
                                  "<|python_tag|>"};
    int nn = (int)(sizeof named / sizeof named[0]);
    if (i < nn) snprintf(out, cap, "%s", named[i]);
    else snprintf(out, cap, "<|reserved_special_token_%d|>", 3 + i - nn);
}

// Added tokens from tokenizer_config.json's added_tokens_decoder. *found = 0 when the file or
// the key is absent.
static int load_config_specials(tok_tokenizer *t, const char *dir, int *found) {
    *found = 0;
    char *path = path_join(dir, "tokenizer_config.json");
    if (!file_exists(path)) {
        free(path);
        return 0;
    }
    size_t n;
    char *text = file_read_all(path, &n);
    if (!text) {
        free(path);
        return -1;
    }
    cJSON *root = cJSON_ParseWithLength(text, n);
    free(text);
    int rc = 0;
    if (!root) {
        rc = err_set("%s: not valid JSON", path);
        goto done;
    }
    const cJSON *dec = cJSON_GetObjectItemCaseSensitive(root, "added_tokens_decoder"), *it;
    if (!cJSON_IsObject(dec)) goto done;
    // first pass: the id range
    long maxid = t->nvocab - 1;
    cJSON_ArrayForEach(it, dec) {
        char *end;
        errno = 0;
        long id = strtol(it->string, &end, 10);
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(it, "content");
        if (errno || *end || id < 0 || id >= TOK_MAX_VOCAB || !cJSON_IsString(content) || !content->valuestring[0]) {
            rc = err_set("%s: added_tokens_decoder['%s']: expected an integer id key and a non-empty 'content'", path,
                         it->string);
            goto done;
        }
        if (id > maxid) maxid = id;
    }
    if (maxid >= t->nvocab) {
        int old = t->nvocab;
        t->nvocab = (int)maxid + 1;
        t->off = xrealloc(t->off, (size_t)t->nvocab * sizeof *t->off);
        t->len = xrealloc(t->len, (size_t)t->nvocab * sizeof *t->len);
        t->kind = xrealloc(t->kind, (size_t)t->nvocab);
        for (int i = old; i < t->nvocab; i++) t->off[i] = t->len[i] = t->kind[i] = 0;
    }
    cJSON_ArrayForEach(it, dec) {
        long id = strtol(it->string, NULL, 10);
        const char *content = cJSON_GetObjectItemCaseSensitive(it, "content")->valuestring;
        int special = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(it, "special"));
        if (t->kind[id] == K_NORMAL) continue;   // an ordinary token listed again: keep its bytes
        pool_add(t, (int32_t)id, content, strlen(content), special ? K_SPECIAL : K_ADDED);
    }
    *found = 1;
done:
    cJSON_Delete(root);
    free(path);
    return rc;
}

static int load_tiktoken(tok_tokenizer *t, const char *path, const char *dir) {
    size_t flen;
    char *text = file_read_all(path, &flen);
    if (!text) return -1;
    // pass 1: count lines and the largest rank
    long lines = 0, maxrank = -1;
    int rc = -1;
    for (char *p = text, *e; p < text + flen; p = e + 1) {
        e = memchr(p, '\n', (size_t)(text + flen - p));
        if (!e) e = text + flen;
        lines++;
        char *sp = memchr(p, ' ', (size_t)(e - p));
        if (!sp) {
            if (e - p == 0 || (e - p == 1 && *p == '\r')) { lines--; continue; }   // blank line
            err_set("%s: line %ld: expected \"<base64 token> <rank>\", found no space", path, lines);
            goto fail;
        }
        char *end;
        errno = 0;
        long r = strtol(sp + 1, &end, 10);
        while (end < e && (*end == '\r' || *end == ' ')) end++;
        if (errno || end != e || r < 0 || r >= TOK_MAX_VOCAB || sp + 1 == e) {
            err_set("%s: line %ld: expected an integer rank in [0, %d) after the token", path, lines, TOK_MAX_VOCAB);
            goto fail;
        }
        if (r > maxrank) maxrank = r;
    }
    if (maxrank < 255) {
        err_set("%s: %ld tokens, expected at least 256 (a tiktoken BPE file)", path, maxrank + 1);
        goto fail;
    }
    vocab_alloc(t, (int)maxrank + 1);
    unsigned char buf[1024];
    long line = 0, count = 0;
    for (char *p = text, *e; p < text + flen; p = e + 1) {
        e = memchr(p, '\n', (size_t)(text + flen - p));
        if (!e) e = text + flen;
        line++;
        char *sp = memchr(p, ' ', (size_t)(e - p));
        if (!sp) continue;
        long r = strtol(sp + 1, NULL, 10);
        size_t bl = (size_t)(sp - p);
        long n = bl <= 4 * (sizeof buf / 3) ? b64_decode(p, bl, buf) : -1;
        if (n <= 0) {
            err_set("%s: line %ld: the token is not valid base64 (or longer than %zu bytes)", path, line, sizeof buf);
            goto fail;
        }
        if (t->kind[r] != K_ABSENT) {
            err_set("%s: line %ld: rank %ld is used twice", path, line, r);
            goto fail;
        }
        pool_add(t, (int32_t)r, buf, (size_t)n, K_NORMAL);
        count++;
    }
    if (vocab_index(t, path)) goto fail;
    // merges: every split of every token into two tokens, ranked by the token's rank
    merges_alloc(t, (size_t)count * 3);
    for (int id = 0; id < t->nvocab; id++) {
        if (t->kind[id] != K_NORMAL || t->len[id] < 2) continue;
        const unsigned char *p = piece_of(t, id);
        size_t n = t->len[id];
        for (size_t k = 1; k < n; k++) {
            int32_t a = vocab_find(t, p, k);
            if (a < 0) continue;
            int32_t b = vocab_find(t, p + k, n - k);
            if (b >= 0) merge_add(t, a, b, id, id);
        }
    }
    t->whole_piece = 1;
    t->pattern = xstrdup(LLAMA3_PATTERN);
    // special tokens: tokenizer_config.json, else the Llama 3 names after the base vocabulary
    int found;
    if (load_config_specials(t, dir, &found)) goto fail;
    if (!found) {
        int base = t->nvocab;
        t->nvocab = base + 256;
        t->off = xrealloc(t->off, (size_t)t->nvocab * sizeof *t->off);
        t->len = xrealloc(t->len, (size_t)t->nvocab * sizeof *t->len);
        t->kind = xrealloc(t->kind, (size_t)t->nvocab);
        for (int i = 0; i < 256; i++) {
            char name[64];
            llama3_special_name(i, name, sizeof name);
            pool_add(t, base + i, name, strlen(name), K_SPECIAL);
        }
    }
    specials_index(t);
    if (regex_compile(t, path)) goto fail;
    compute_hash(t, hchain(0, "tiktoken-ranks", 14));
    rc = 0;
fail:
    free(text);
    return rc;
}

tok_tokenizer *tok_load(const char *model_dir) {
    tok_tokenizer *t = xcalloc(1, sizeof *t);
    char *hf = path_join(model_dir, "tokenizer.json");
    char *orig = path_join(model_dir, "original");
    char *tk1 = path_join(orig, "tokenizer.model");
    char *tk2 = path_join(model_dir, "tokenizer.model");
    int rc;
    if (!dir_exists(model_dir)) rc = err_set("%s: model folder not found", model_dir);
    else if (file_exists(hf)) rc = load_hf(t, hf);
    else if (file_exists(tk1)) rc = load_tiktoken(t, tk1, model_dir);
    else if (file_exists(tk2)) rc = load_tiktoken(t, tk2, model_dir);
    else
        rc = err_set("%s: no tokenizer found (expected tokenizer.json or original/tokenizer.model in the model folder)",
                     model_dir);
    free(hf);
    free(orig);
    free(tk1);
    free(tk2);
    if (rc) {
        tok_free(t);
        return NULL;
    }
    return t;
}

void tok_free(tok_tokenizer *t) {
    if (!t) return;
    free(t->pool);
    free(t->off);
    free(t->len);
    free(t->kind);
    free(t->vt);
    free(t->mt);
    free(t->sp);
    free(t->sp_start);
    free(t->pattern);
    if (t->re) pcre2_code_free(t->re);
    free(t);
}

// --- encoding

typedef struct bpe_work {
    int32_t *id, *next, *prev, *rank;   // per symbol; rank of the pair (i, next[i]) or INT32_MAX
    int64_t *heap;                      // (rank << 32 | pos)
    size_t cap, nheap;
} bpe_work;

static void bpe_reserve(bpe_work *w, size_t n) {
    if (n <= w->cap) return;
    size_t c = n + n / 2 + 16;
    w->id = xrealloc(w->id, c * sizeof *w->id);
    w->next = xrealloc(w->next, c * sizeof *w->next);
    w->prev = xrealloc(w->prev, c * sizeof *w->prev);
    w->rank = xrealloc(w->rank, c * sizeof *w->rank);
    w->heap = xrealloc(w->heap, 3 * c * sizeof *w->heap);   // n initial pairs + 2 per merge
    w->cap = c;
}

static void bpe_free(bpe_work *w) {
    free(w->id);
    free(w->next);
    free(w->prev);
    free(w->rank);
    free(w->heap);
}

static inline void heap_push(bpe_work *w, int64_t v) {
    size_t i = w->nheap++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (w->heap[p] <= v) break;
        w->heap[i] = w->heap[p];
        i = p;
    }
    w->heap[i] = v;
}

static inline int64_t heap_pop(bpe_work *w) {
    int64_t top = w->heap[0], last = w->heap[--w->nheap];
    size_t i = 0, n = w->nheap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && w->heap[c + 1] < w->heap[c]) c++;
        if (w->heap[c] >= last) break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (n) w->heap[i] = last;
    return top;
}

static inline void set_pair(const tok_tokenizer *t, bpe_work *w, int32_t i) {
    int32_t j = w->next[i];
    const mslot *m = j >= 0 ? merge_find(t, w->id[i], w->id[j]) : NULL;
    w->rank[i] = m ? m->rank : INT32_MAX;
    if (m) heap_push(w, (int64_t)m->rank << 32 | (uint32_t)i);
}

// Byte-pair merges of one piece, lowest rank first, leftmost on ties.
static void bpe_piece(const tok_tokenizer *t, bpe_work *w, const unsigned char *p, size_t n, tok_ids *out) {
    if (n == 1) {
        tok_ids_push(out, t->byte_id[p[0]]);
        return;
    }
    if (t->whole_piece) {
        int32_t id = vocab_find(t, p, n);
        if (id >= 0) {
            tok_ids_push(out, id);
            return;
        }
    }
    bpe_reserve(w, n);
    w->nheap = 0;
    for (size_t i = 0; i < n; i++) {
        w->id[i] = t->byte_id[p[i]];
        w->prev[i] = (int32_t)i - 1;
        w->next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    for (size_t i = 0; i + 1 < n; i++) set_pair(t, w, (int32_t)i);
    w->rank[n - 1] = INT32_MAX;
    while (w->nheap) {
        int64_t e = heap_pop(w);
        int32_t i = (int32_t)(uint32_t)e, r = (int32_t)(e >> 32);
        if (w->rank[i] != r || w->next[i] < 0) continue;   // stale
        int32_t j = w->next[i];
        const mslot *m = merge_find(t, w->id[i], w->id[j]);
        w->id[i] = m->id;
        w->next[i] = w->next[j];
        if (w->next[j] >= 0) w->prev[w->next[j]] = i;
        w->rank[j] = INT32_MAX;
        w->next[j] = -2;   // dead
        set_pair(t, w, i);
        if (w->prev[i] >= 0) set_pair(t, w, w->prev[i]);
    }
    for (int32_t i = 0; i >= 0; i = w->next[i]) tok_ids_push(out, w->id[i]);
}

typedef struct enc_ctx {
    const tok_tokenizer *t;
    pcre2_match_data *md;
    bpe_work w;
    tok_ids *out;
} enc_ctx;

// Pre-tokenizes one segment (no special tokens inside) and merges each piece.
static int encode_segment(enc_ctx *c, const unsigned char *s, size_t n) {
    const tok_tokenizer *t = c->t;
    size_t pos = 0;
    while (pos < n) {
        int rc = t->jit ? pcre2_jit_match(t->re, s, n, pos, PCRE2_NO_UTF_CHECK, c->md, NULL) : -100;
        if (rc < 0 && rc != PCRE2_ERROR_NOMATCH)   // JIT unavailable or out of JIT stack
            rc = pcre2_match(t->re, s, n, pos, PCRE2_NO_UTF_CHECK, c->md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) {
            bpe_piece(t, &c->w, s + pos, n - pos, c->out);
            return 0;
        }
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return err_set("tokenizer: regex match failed at byte %zu of a %zu-byte text: %s", pos, n,
                           (const char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(c->md);
        size_t a = ov[0], b = ov[1];
        if (a > pos) bpe_piece(t, &c->w, s + pos, a - pos, c->out);   // a gap is a piece too
        if (b == a) {                                                  // empty match: take one char
            size_t l = 1;
            while (a + l < n && (s[a + l] & 0xC0) == 0x80) l++;
            bpe_piece(t, &c->w, s + a, l, c->out);
            pos = a + l;
            continue;
        }
        bpe_piece(t, &c->w, s + a, b - a, c->out);
        pos = b;
    }
    return 0;
}

int tok_encode(const tok_tokenizer *t, const char *text, size_t len, int allow_special, tok_ids *out) {
    char *fixed = NULL;
    if (!tok_utf8_valid(text, len)) text = fixed = tok_utf8_repair(text, len, &len);
    enc_ctx c = {.t = t, .out = out};
    c.md = pcre2_match_data_create_from_pattern(t->re, NULL);
    if (!c.md) AG_ASSERT(0, "out of memory creating PCRE2 match data");
    const unsigned char *s = (const unsigned char *)text;
    int rc = 0;
    if (allow_special) {
        size_t start = 0;
        for (size_t i = 0; i < len && !rc; i++) {
            if (!t->sp_first[s[i]]) continue;
            int32_t id = special_at(t, s + i, len - i);
            if (id < 0) continue;
            if (i > start) rc = encode_segment(&c, s + start, i - start);
            tok_ids_push(out, id);
            i += t->len[id] - 1;
            start = i + 1;
        }
        if (!rc && start < len) rc = encode_segment(&c, s + start, len - start);
    } else if (len) {
        rc = encode_segment(&c, s, len);
    }
    pcre2_match_data_free(c.md);
    bpe_free(&c.w);
    free(fixed);
    return rc;
}

// --- decoding

size_t tok_decode_cap(const tok_tokenizer *t) { return 3 * (t->max_piece + 8) + 1; }

// Appends the UTF-8 of bytes s[0..n) to o (repairing invalid subparts); an incomplete but valid
// tail is left unconsumed when `hold` is set. Returns the bytes consumed.
static size_t utf8_emit(const unsigned char *s, size_t n, int hold, char *o, size_t cap, size_t *k) {
    size_t i = 0;
    while (i < n) {
        size_t l;
        int st = s[i] < 0x80 ? (l = 1, U8_OK) : utf8_seq(s + i, n - i, &l);
        if (st == U8_SHORT && hold) break;
        const char *src = st == U8_OK ? (const char *)s + i : "\xEF\xBF\xBD";
        size_t m = st == U8_OK ? l : 3;
        if (*k + m < cap) {
            memcpy(o + *k, src, m);
            *k += m;
        }
        i += l;
    }
    return i;
}

size_t tok_decode_step(const tok_tokenizer *t, tok_decoder *d, int32_t id, char *buf, size_t cap) {
    size_t k = 0, plen;
    const char *piece = tok_piece(t, id, &plen);
    if (cap == 0) return 0;
    if (!piece) {
        buf[0] = 0;
        return 0;
    }
    unsigned char local[512], *tmp = local;
    size_t np = (size_t)d->npending, n = np + plen;
    if (n > sizeof local) tmp = xmalloc(n);
    memcpy(tmp, d->pending, np);
    memcpy(tmp + np, piece, plen);
    size_t used = utf8_emit(tmp, n, 1, buf, cap, &k);
    d->npending = (int)(n - used);   // at most 3 bytes: a valid prefix of one character
    memcpy(d->pending, tmp + used, n - used);
    if (tmp != local) free(tmp);
    buf[k] = 0;
    return k;
}

size_t tok_decode_flush(tok_decoder *d, char *buf, size_t cap) {
    size_t k = 0;
    if (cap == 0) return 0;
    utf8_emit(d->pending, (size_t)d->npending, 0, buf, cap, &k);
    d->npending = 0;
    buf[k] = 0;
    return k;
}

char *tok_decode(const tok_tokenizer *t, const int32_t *ids, size_t n) { return tok_decode_n(t, ids, n, NULL); }

char *tok_decode_n(const tok_tokenizer *t, const int32_t *ids, size_t n, size_t *out_len) {
    size_t total = 0, plen;
    for (size_t i = 0; i < n; i++)
        if (tok_piece(t, ids[i], &plen)) total += plen;
    unsigned char *raw = xmalloc(total + 1);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const char *p = tok_piece(t, ids[i], &plen);
        if (!p) continue;   // unknown ids are skipped, as HF's decode does
        memcpy(raw + k, p, plen);
        k += plen;
    }
    size_t outlen;
    char *out = tok_utf8_repair((const char *)raw, k, &outlen);
    free(raw);
    if (out_len) *out_len = outlen;
    return out;
}
