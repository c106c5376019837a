// test_tokenizer.c — the tokenizer and chat rendering against references made by
// tests/gen_tokenizer.mjs (HF tokenizers, tiktoken, transformers.js' Jinja, Python's strip) in
// tests/fixtures/tokenizer_ref.jsonl; the tiktoken loader on a tokenizer.model derived from
// tokenizer.json; decode round trips; invalid UTF-8 fuzzing; load errors; encoding speed.
#include <cJSON.h>
#include <stdint.h>

#include "chat.h"
#include "test.h"
#include "tokenizer.h"
#include "util.h"

static const char *tok_dir(void) {
    const char *d = getenv("TOKENIZER_DIR");
    return d ? d : ".cache/tokenizer";
}

// --- fixture lines

static cJSON **fx;
static int nfx;

static void load_fixture(void) {
    size_t n;
    char *text = file_read_all("tests/fixtures/tokenizer_ref.jsonl", &n);
    if (!text) {
        test_fail("cannot read fixture: %s", err_get());
        exit(test_summary());
    }
    int cap = 8192;
    fx = malloc(cap * sizeof *fx);
    for (char *p = text, *e; p < text + n; p = e + 1) {
        e = memchr(p, '\n', (size_t)(text + n - p));
        if (!e) e = text + n;
        if (e == p) continue;
        if (nfx == cap) fx = realloc(fx, (cap *= 2) * sizeof *fx);
        fx[nfx] = cJSON_ParseWithLength(p, (size_t)(e - p));
        if (!fx[nfx]) {
            test_fail("fixture line %d is not JSON", nfx + 1);
            exit(test_summary());
        }
        nfx++;
    }
    free(text);
}

static const char *kind(const cJSON *o) { return cJSON_GetObjectItem(o, "k")->valuestring; }

static int ids_equal(const tok_ids *a, const cJSON *ref) {
    if ((int)a->n != cJSON_GetArraySize(ref)) return 0;
    int i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, ref) if (a->ids[i++] != (int32_t)it->valuedouble) return 0;
    return 1;
}

static unsigned char *unhex(const char *h, size_t *n) {
    size_t l = strlen(h) / 2;
    unsigned char *o = malloc(l + 1);
    for (size_t i = 0; i < l; i++) {
        unsigned v;
        sscanf(h + 2 * i, "%2x", &v);
        o[i] = (unsigned char)v;
    }
    *n = l;
    return o;
}

// Encodes every "enc" and "raw" case; returns the mismatches (printing the first few).
// skip_reserved: leave out allow_special cases naming reserved tokens (their names differ
// between Llama 3.0 and the 3.1+ defaults).
static int check_corpus(const tok_tokenizer *t, const char *what, int skip_reserved, int *checked) {
    int bad = 0;
    *checked = 0;
    for (int i = 0; i < nfx; i++) {
        const cJSON *o = fx[i];
        const char *k = kind(o);
        tok_ids ids = {0};
        int rc, allow = 1;
        const char *shown;
        if (!strcmp(k, "enc")) {
            const char *s = cJSON_GetObjectItem(o, "t")->valuestring;
            const cJSON *hex = cJSON_GetObjectItem(o, "hex");
            allow = (int)cJSON_GetObjectItem(o, "s")->valuedouble;
            if (skip_reserved && allow && strstr(s, "<|reserved_special_token_")) continue;
            if (hex) {
                size_t n;
                unsigned char *b = unhex(hex->valuestring, &n);
                rc = tok_encode(t, (const char *)b, n, allow, &ids);
                free(b);
            } else {
                rc = tok_encode(t, s, strlen(s), allow, &ids);
            }
            shown = s;
        } else if (!strcmp(k, "raw")) {
            size_t n;
            unsigned char *b = unhex(cJSON_GetObjectItem(o, "hex")->valuestring, &n);
            rc = tok_encode(t, (const char *)b, n, 1, &ids);
            free(b);
            shown = cJSON_GetObjectItem(o, "hex")->valuestring;
        } else {
            continue;
        }
        (*checked)++;
        const cJSON *ref = cJSON_GetObjectItem(o, "ids");
        if (rc || !ids_equal(&ids, ref)) {
            if (bad++ < 5) {
                printf("  %s: mismatch on fixture line %d (allow_special %d) '%.80s': got", what, i + 1, allow, shown);
                for (size_t j = 0; j < ids.n && j < 20; j++) printf(" %d", ids.ids[j]);
                printf(" | want");
                int j = 0;
                const cJSON *it;
                cJSON_ArrayForEach(it, ref) if (j++ < 20) printf(" %d", (int)it->valuedouble);
                printf("\n");
            }
        }
        tok_ids_free(&ids);
    }
    return bad;
}

static tok_tokenizer *T;

// --- tests

static void test_hf_corpus(void) {
    int checked;
    int bad = check_corpus(T, "tokenizer.json", 0, &checked);
    printf("tokenizer.json: %d/%d corpus cases identical to HF tokenizers / tiktoken\n", checked - bad, checked);
    CHECK(bad == 0, "%d of %d cases differ", bad, checked);
    CHECK(checked > 4000, "only %d cases", checked);
}

static void test_api(void) {
    CHECK(tok_vocab_size(T) == 128256, "vocab size %d", tok_vocab_size(T));
    CHECK(tok_special(T, "<|begin_of_text|>") == 128000, "bos");
    CHECK(tok_special(T, "<|end_of_text|>") == 128001, "eos");
    CHECK(tok_special(T, "<|start_header_id|>") == 128006, "sh");
    CHECK(tok_special(T, "<|end_header_id|>") == 128007, "eh");
    CHECK(tok_special(T, "<|eot_id|>") == 128009, "eot");
    CHECK(tok_special(T, "<|eot_id") == -1, "prefix of a special");
    CHECK(tok_special(T, "hello") == -1, "ordinary text");
    CHECK(tok_special(T, "") == -1, "empty");
    CHECK(tok_is_special(T, 128009) && tok_is_special(T, 128255) && !tok_is_special(T, 9906) && !tok_is_special(T, -1) &&
              !tok_is_special(T, 128256),
          "is_special");
    size_t n;
    const char *p = tok_piece(T, 9906, &n);
    CHECK(p && n == 5 && !memcmp(p, "Hello", 5), "piece 9906");
    p = tok_piece(T, 128009, &n);
    CHECK(p && n == 10 && !memcmp(p, "<|eot_id|>", 10), "piece of a special");
    p = tok_piece(T, 220, &n);
    CHECK(p && n == 1 && p[0] == ' ', "piece 220");
    CHECK(!tok_piece(T, -1, &n) && !tok_piece(T, 128256, &n), "unknown ids");
    CHECK(tok_hash(T) != 0, "hash");
    tok_tokenizer *t2 = tok_load(tok_dir());
    CHECK(t2 && tok_hash(t2) == tok_hash(T), "hash is stable across loads");
    tok_free(t2);
    // empty and special-only inputs
    tok_ids ids = {0};
    CHECK(tok_encode(T, "", 0, 1, &ids) == 0 && ids.n == 0, "empty text");
    CHECK(tok_encode(T, "<|eot_id|><|eot_id|>", 20, 1, &ids) == 0 && ids.n == 2 && ids.ids[0] == 128009 &&
              ids.ids[1] == 128009,
          "two specials");
    tok_ids_free(&ids);
    // embedded NUL bytes are text
    CHECK(tok_encode(T, "a\0b", 3, 1, &ids) == 0 && ids.n == 3, "NUL bytes (%zu ids)", ids.n);
    tok_ids_free(&ids);
}

static void test_decode(void) {
    int bad = 0, checked = 0;
    size_t cap = tok_decode_cap(T);
    char *buf = malloc(cap);
    for (int i = 0; i < nfx; i++) {
        if (strcmp(kind(fx[i]), "dec")) continue;
        const cJSON *ref = cJSON_GetObjectItem(fx[i], "ids"), *it;
        const char *want = cJSON_GetObjectItem(fx[i], "t")->valuestring;
        int32_t ids[64];
        int n = 0;
        cJSON_ArrayForEach(it, ref) if (n < 64) ids[n++] = (int32_t)it->valuedouble;
        char *got = tok_decode(T, ids, (size_t)n);
        // streaming: steps + flush must give the same text
        tok_decoder d = {0};
        char *stream = calloc(1, cap * (size_t)(n + 1) + 1);
        size_t sl = 0;
        for (int k = 0; k < n; k++) sl += tok_decode_step(T, &d, ids[k], stream + sl, cap);
        sl += tok_decode_flush(&d, stream + sl, cap);
        checked++;
        if (strcmp(got, want) || strcmp(stream, want)) {
            if (bad++ < 5) printf("  decode mismatch on fixture line %d: '%s' / stream '%s' vs '%s'\n", i + 1, got, stream, want);
        }
        free(got);
        free(stream);
    }
    free(buf);
    CHECK(checked >= 300 && bad == 0, "%d of %d decodes differ from HF", bad, checked);
    // a split character: held until complete
    tok_ids ids = {0};
    tok_encode(T, "😀", strlen("😀"), 0, &ids);
    CHECK(ids.n >= 2, "the emoji takes %zu tokens", ids.n);
    tok_decoder d = {0};
    char out[1024];
    size_t total = 0;
    for (size_t k = 0; k + 1 < ids.n; k++) total += tok_decode_step(T, &d, ids.ids[k], out, sizeof out);
    CHECK(total == 0 && d.npending > 0, "partial character held (%zu bytes out)", total);
    size_t l = tok_decode_step(T, &d, ids.ids[ids.n - 1], out, sizeof out);
    CHECK(l == 4 && !strcmp(out, "😀") && d.npending == 0, "completed character");
    // an incomplete character followed by a special token: U+FFFD then the special text
    d = (tok_decoder){0};
    tok_decode_step(T, &d, ids.ids[0], out, sizeof out);
    l = tok_decode_step(T, &d, 128009, out, sizeof out);
    CHECK(!strcmp(out, "\xEF\xBF\xBD<|eot_id|>"), "broken char before a special: '%s'", out);
    tok_ids_free(&ids);
}

static void test_roundtrip(void) {
    int bad = 0, checked = 0;
    for (int i = 0; i < nfx; i++) {
        const char *k = kind(fx[i]);
        tok_ids ids = {0};
        char *want;
        size_t wl;
        if (!strcmp(k, "enc") && !cJSON_GetObjectItem(fx[i], "hex")) {
            const char *s = cJSON_GetObjectItem(fx[i], "t")->valuestring;
            want = strdup(s);
            wl = strlen(s);
        } else if (cJSON_GetObjectItem(fx[i], "hex")) {
            size_t n;
            unsigned char *b = unhex(cJSON_GetObjectItem(fx[i], "hex")->valuestring, &n);
            want = tok_utf8_repair((const char *)b, n, &wl);
            free(b);
        } else {
            continue;
        }
        tok_encode(T, want, wl, cJSON_GetObjectItem(fx[i], "s") ? (int)cJSON_GetObjectItem(fx[i], "s")->valuedouble : 1, &ids);
        size_t gl;
        char *got = tok_decode_n(T, ids.ids, ids.n, &gl);
        checked++;
        if (gl != wl || memcmp(got, want, wl)) {
            if (bad++ < 3) printf("  round trip differs on fixture line %d\n", i + 1);
        }
        free(got);
        free(want);
        tok_ids_free(&ids);
    }
    CHECK(bad == 0, "%d of %d round trips differ", bad, checked);
}

static void test_invalid_utf8_fuzz(void) {
    // random bytes (biased to UTF-8 lead/continuation bytes and '<|'): no crash, repaired text
    // round-trips, and encoding equals encoding the repaired text
    uint64_t s = 0x1234567;
    int bad = 0;
    for (int it = 0; it < 3000; it++) {
        unsigned char b[128];
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        size_t n = (size_t)(s >> 58) + (size_t)(it % 3) * 30;
        for (size_t i = 0; i < n; i++) {
            s = s * 6364136223846793005ULL + 1442695040888963407ULL;
            unsigned r = (unsigned)(s >> 33);
            static const unsigned char pool[] = {0x80, 0xBF, 0xC2, 0xE0, 0xED, 0xF0, 0xF4, 0xFF, '<', '|', '>', ' ', '\n', 'a', '9', '\''};
            b[i] = (r & 3) ? pool[(r >> 2) % sizeof pool] : (unsigned char)(r >> 8);
        }
        size_t rl;
        char *rep = tok_utf8_repair((const char *)b, n, &rl);
        CHECK(tok_utf8_valid(rep, rl), "repair gives valid UTF-8");
        for (int allow = 0; allow < 2; allow++) {
            tok_ids a = {0}, c = {0};
            int rc1 = tok_encode(T, (const char *)b, n, allow, &a);
            int rc2 = tok_encode(T, rep, rl, allow, &c);
            size_t dl;
            char *dec = tok_decode_n(T, a.ids, a.n, &dl);
            if (rc1 || rc2 || a.n != c.n || (a.n && memcmp(a.ids, c.ids, a.n * sizeof *a.ids)) || dl != rl || memcmp(dec, rep, rl)) {
                if (bad++ < 3) {
                    printf("  fuzz case %d (allow %d, rc %d %d, %zu vs %zu ids, %zu vs %zu bytes):", it, allow, rc1, rc2, a.n,
                           c.n, dl, rl);
                    for (size_t q = 0; q < n; q++) printf(" %02x", b[q]);
                    printf("\n");
                }
            }
            free(dec);
            tok_ids_free(&a);
            tok_ids_free(&c);
        }
        free(rep);
    }
    CHECK(bad == 0, "%d fuzz cases failed", bad);
    bad = 0;
    // random id streams decode without crashing, streaming == whole
    size_t cap = tok_decode_cap(T);
    char *out = malloc(cap * 40 + 1);
    for (int it = 0; it < 500; it++) {
        int32_t ids[32];
        int n = 1 + it % 32;
        for (int k = 0; k < n; k++) {
            s = s * 6364136223846793005ULL + 1442695040888963407ULL;
            ids[k] = (int32_t)((s >> 33) % 128300) - 10;   // some out of range
        }
        char *whole = tok_decode(T, ids, (size_t)n);
        tok_decoder d = {0};
        size_t l = 0;
        for (int k = 0; k < n; k++) l += tok_decode_step(T, &d, ids[k], out + l, cap);
        l += tok_decode_flush(&d, out + l, cap);
        if (strcmp(whole, out)) bad++;
        free(whole);
    }
    free(out);
    CHECK(bad == 0, "%d streaming decodes differ from whole decodes", bad);
}

static void test_trim_and_spaces(void) {
    int bad = 0;
    for (int i = 0; i < nfx; i++) {
        const char *k = kind(fx[i]);
        if (!strcmp(k, "space")) {
            static uint8_t is[0x110000];
            const cJSON *it;
            cJSON_ArrayForEach(it, cJSON_GetObjectItem(fx[i], "cps")) is[(int)it->valuedouble] = 1;
            for (uint32_t c = 0; c < 0x110000; c++)
                if (chat_is_space(c) != is[c]) {
                    if (bad++ < 3) printf("  U+%04X: chat_is_space %d, Python isspace %d\n", c, chat_is_space(c), is[c]);
                }
        } else if (!strcmp(k, "trim")) {
            char *got = chat_trim(cJSON_GetObjectItem(fx[i], "t")->valuestring);
            const char *want = cJSON_GetObjectItem(fx[i], "r")->valuestring;
            if (strcmp(got, want) && bad++ < 6) printf("  trim: got '%s' want '%s'\n", got, want);
            free(got);
        }
    }
    CHECK(bad == 0, "%d trim/space mismatches against Python", bad);
    // invalid UTF-8 at the edges is kept (it is not whitespace)
    char *g = chat_trim(" \xE2\x80 x \xC3 ");
    CHECK(!strcmp(g, "\xE2\x80 x \xC3"), "invalid bytes at the edges");
    free(g);
}

static void test_chat(void) {
    int bad = 0, checked = 0;
    for (int i = 0; i < nfx; i++) {
        if (strcmp(kind(fx[i]), "chat")) continue;
        const cJSON *m = cJSON_GetObjectItem(fx[i], "m"), *it;
        int n = cJSON_GetArraySize(m), g = (int)cJSON_GetObjectItem(fx[i], "g")->valuedouble;
        chat_msg msgs[16];
        chat_span spans[16];
        int j = 0;
        cJSON_ArrayForEach(it, m) {
            msgs[j].role = cJSON_GetArrayItem(it, 0)->valuestring;
            msgs[j].content = cJSON_GetArrayItem(it, 1)->valuestring;
            j++;
        }
        size_t len;
        char *r = chat_render_spans(msgs, n, g, spans, &len);
        const char *want = cJSON_GetObjectItem(fx[i], "t")->valuestring;
        checked++;
        if (strcmp(r, want) || len != strlen(want)) {
            if (bad++ < 3) printf("  chat render differs on fixture line %d:\n    got  '%s'\n    want '%s'\n", i + 1, r, want);
            free(r);
            continue;
        }
        tok_ids whole = {0}, parts = {0};
        tok_encode(T, r, len, 1, &whole);
        if (!ids_equal(&whole, cJSON_GetObjectItem(fx[i], "ids"))) {
            if (bad++ < 3) printf("  chat ids differ on fixture line %d\n", i + 1);
        }
        // piecewise encoding along the spans equals the whole encoding
        size_t at = 0;
        for (int q = 0; q < n; q++) {
            tok_encode(T, r + at, spans[q].start - at, 1, &parts);
            tok_encode(T, r + spans[q].start, spans[q].content_start - spans[q].start, 1, &parts);
            tok_encode(T, r + spans[q].content_start, spans[q].content_end - spans[q].content_start, 1, &parts);
            tok_encode(T, r + spans[q].content_end, spans[q].end - spans[q].content_end, 1, &parts);
            at = spans[q].end;
        }
        tok_encode(T, r + at, len - at, 1, &parts);
        if (parts.n != whole.n || (whole.n && memcmp(parts.ids, whole.ids, whole.n * sizeof *whole.ids))) {
            if (bad++ < 3) printf("  chat piecewise ids differ on fixture line %d\n", i + 1);
        }
        tok_ids_free(&whole);
        tok_ids_free(&parts);
        free(r);
    }
    CHECK(checked > 100 && bad == 0, "%d of %d chat cases differ", bad, checked);
    char *r = chat_render(NULL, 0, 0);
    CHECK(!strcmp(r, "<|begin_of_text|>"), "no messages");
    free(r);
}

// --- tiktoken: derive original/tokenizer.model from the loaded tokenizer.json

static void b64(const unsigned char *p, size_t n, FILE *fp) {
    static const char *a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
        fputc(a[v >> 18 & 63], fp);
        fputc(a[v >> 12 & 63], fp);
        fputc(i + 1 < n ? a[v >> 6 & 63] : '=', fp);
        fputc(i + 2 < n ? a[v & 63] : '=', fp);
    }
}

static char *write_tiktoken_dir(const char *name, int with_config) {
    const char *dir = test_tmpdir(name);
    char *orig = path_join(dir, "original");
    mkdir_p(orig);
    char *path = path_join(orig, "tokenizer.model");
    FILE *fp = fopen(path, "w");
    for (int id = 0; id < tok_vocab_size(T); id++) {
        size_t n;
        const char *p = tok_piece(T, id, &n);
        if (!p || tok_is_special(T, id)) continue;
        b64((const unsigned char *)p, n, fp);
        fprintf(fp, " %d\n", id);
    }
    CHECK(fclose(fp) == 0, "write %s", path);
    if (with_config) {
        char *src = path_join(tok_dir(), "tokenizer_config.json"), *dst = path_join(dir, "tokenizer_config.json");
        size_t n;
        char *text = file_read_all(src, &n);
        CHECK(text && file_write_atomic(dst, text, n) == 0, "copy tokenizer_config.json");
        free(text);
        free(src);
        free(dst);
    }
    free(path);
    free(orig);
    return strdup(dir);
}

static void test_tiktoken(void) {
    char *dir = write_tiktoken_dir("tok_tiktoken_cfg", 1);
    tok_tokenizer *t = tok_load(dir);
    CHECK(t, "load tiktoken: %s", err_get());
    if (t) {
        int checked, bad = check_corpus(t, "tiktoken+config", 0, &checked);
        printf("tokenizer.model (+tokenizer_config.json): %d/%d corpus cases identical\n", checked - bad, checked);
        CHECK(bad == 0, "%d of %d cases differ", bad, checked);
        CHECK(tok_vocab_size(t) == 128256, "vocab %d", tok_vocab_size(t));
        CHECK(tok_special(t, "<|reserved_special_token_250|>") == 128255, "config names");
        tok_free(t);
    }
    free(dir);
    dir = write_tiktoken_dir("tok_tiktoken_defaults", 0);
    t = tok_load(dir);
    CHECK(t, "load tiktoken: %s", err_get());
    if (t) {
        int checked, bad = check_corpus(t, "tiktoken defaults", 1, &checked);
        printf("tokenizer.model (Llama 3 default specials): %d/%d corpus cases identical\n", checked - bad, checked);
        CHECK(bad == 0, "%d of %d cases differ", bad, checked);
        CHECK(tok_vocab_size(t) == 128256, "vocab %d", tok_vocab_size(t));
        CHECK(tok_special(t, "<|begin_of_text|>") == 128000 && tok_special(t, "<|end_of_text|>") == 128001 &&
                  tok_special(t, "<|finetune_right_pad_id|>") == 128004 && tok_special(t, "<|start_header_id|>") == 128006 &&
                  tok_special(t, "<|end_header_id|>") == 128007 && tok_special(t, "<|eom_id|>") == 128008 &&
                  tok_special(t, "<|eot_id|>") == 128009 && tok_special(t, "<|python_tag|>") == 128010 &&
                  tok_special(t, "<|reserved_special_token_2|>") == 128005 &&
                  tok_special(t, "<|reserved_special_token_3|>") == 128011 &&
                  tok_special(t, "<|reserved_special_token_247|>") == 128255,
              "Llama 3.1/3.2 special token layout");
        tok_free(t);
    }
    free(dir);
}

// A small hand-made tokenizer.json: [a, b] merge pairs, ignore_merges on and off, added tokens
// with and without the special flag, a GPT-2 style pre-tokenizer (ByteLevel with its regex).
static char *write_small_hf(const char *name, int ignore_merges, int pairs) {
    cJSON *root = cJSON_CreateObject(), *model = cJSON_AddObjectToObject(root, "model");
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON_AddBoolToObject(model, "ignore_merges", ignore_merges);
    cJSON *vocab = cJSON_AddObjectToObject(model, "vocab");
    // ids 0..255: the bytes in order, written in the GPT-2 byte alphabet (printable bytes as
    // themselves, the others as U+0100...)
    int id = 0, extra = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
        unsigned cp = printable ? (unsigned)b : 256u + (unsigned)extra++;
        char u[4] = {0};
        if (cp < 0x80) u[0] = (char)cp;
        else { u[0] = (char)(0xC0 | cp >> 6); u[1] = (char)(0x80 | (cp & 63)); }
        cJSON_AddNumberToObject(vocab, u, id++);
    }
    const char *more[] = {"ab", "abc", "abd", "\xC4\xA0" "a", "\xC4\xA0" "ab"};   // \xC4\xA0 = U+0120 = byte 0x20
    for (int k = 0; k < 5; k++) cJSON_AddNumberToObject(vocab, more[k], id++);   // ids 256..260
    cJSON *merges = cJSON_AddArrayToObject(model, "merges");
    const char *m[][2] = {{"a", "b"}, {"ab", "c"}, {"\xC4\xA0", "a"}, {"\xC4\xA0" "a", "b"}};
    for (int k = 0; k < 4; k++) {
        if (pairs) {
            cJSON *pr = cJSON_CreateArray();
            cJSON_AddItemToArray(pr, cJSON_CreateString(m[k][0]));
            cJSON_AddItemToArray(pr, cJSON_CreateString(m[k][1]));
            cJSON_AddItemToArray(merges, pr);
        } else {
            char buf[32];
            snprintf(buf, sizeof buf, "%s %s", m[k][0], m[k][1]);
            cJSON_AddItemToArray(merges, cJSON_CreateString(buf));
        }
    }
    cJSON *added = cJSON_AddArrayToObject(root, "added_tokens");
    const char *at[] = {"<s>", "<x>"};
    for (int k = 0; k < 2; k++) {
        cJSON *a = cJSON_CreateObject();
        cJSON_AddNumberToObject(a, "id", 300 + k);
        cJSON_AddStringToObject(a, "content", at[k]);
        cJSON_AddBoolToObject(a, "special", k == 0);
        cJSON_AddItemToArray(added, a);
    }
    cJSON_AddNullToObject(root, "normalizer");
    cJSON *pre = cJSON_AddObjectToObject(root, "pre_tokenizer");
    cJSON_AddStringToObject(pre, "type", "ByteLevel");
    cJSON_AddBoolToObject(pre, "add_prefix_space", 0);
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    const char *dir = test_tmpdir(name);
    char *path = path_join(dir, "tokenizer.json");
    CHECK(file_write_atomic(path, text, strlen(text)) == 0, "write %s", path);
    free(path);
    free(text);
    return strdup(dir);
}

static int encode_is(const tok_tokenizer *t, const char *s, int allow, const int32_t *want, size_t n) {
    tok_ids ids = {0};
    int ok = tok_encode(t, s, strlen(s), allow, &ids) == 0 && ids.n == n && !memcmp(ids.ids, want, n * sizeof *want);
    if (!ok) {
        printf("  '%s':", s);
        for (size_t i = 0; i < ids.n; i++) printf(" %d", ids.ids[i]);
        printf("\n");
    }
    tok_ids_free(&ids);
    return ok;
}

static void test_small_hf(void) {
    for (int pairs = 0; pairs < 2; pairs++) {
        for (int ign = 0; ign < 2; ign++) {
            char *dir = write_small_hf("tok_small", ign, pairs);
            tok_tokenizer *t = tok_load(dir);
            CHECK(t, "load: %s", err_get());
            free(dir);
            if (!t) continue;
            CHECK(tok_vocab_size(t) == 302, "vocab %d", tok_vocab_size(t));
            int32_t w1[] = {257}, w2[] = {258}, w3[] = {256, 'd'}, w4[] = {32, 256, 'x'}, w7[] = {260},
                    w8[] = {32, 256}, w9[] = {259};
            CHECK(encode_is(t, "abc", 1, w1, 1), "merges ab, abc");
            if (ign) CHECK(encode_is(t, "abd", 1, w2, 1), "ignore_merges: a vocab word is one token");
            else CHECK(encode_is(t, "abd", 1, w3, 2), "without ignore_merges: merges only");
            CHECK(encode_is(t, " abx", 1, w4, 3), "lowest rank first: (a b) before (Ġ a)");
            if (ign) CHECK(encode_is(t, " ab", 1, w7, 1), "ignore_merges: whole piece");
            else CHECK(encode_is(t, " ab", 1, w8, 2), "ranks: (a b) first, then no (Ġ ab)");
            CHECK(encode_is(t, " a", 1, w9, 1), "(Ġ a)");
            int32_t w5[] = {300, 301, 'a'};
            CHECK(encode_is(t, "<s><x>a", 1, w5, 3), "added tokens split when allowed");
            CHECK(tok_is_special(t, 300) && !tok_is_special(t, 301), "special flags");
            int32_t w6[] = {'<', 's', '>'};
            CHECK(encode_is(t, "<s>", 0, w6, 3), "added token as text");
            tok_free(t);
        }
    }
}

static void test_errors(void) {
    err_clear();
    CHECK(!tok_load("build/tmp/no-such-model") && strstr(err_get(), "no-such-model") &&
              strstr(err_get(), "model folder not found"),
          "missing folder: %s", err_get());
    const char *dir = test_tmpdir("tok_errors");
    CHECK(!tok_load(dir) && strstr(err_get(), "tokenizer.json") && strstr(err_get(), "no tokenizer found"),
          "folder without a tokenizer: %s", err_get());
    char *orig = path_join(dir, "original"), *path = path_join(orig, "tokenizer.model");
    mkdir_p(orig);
    char bad_model[8192];
    size_t bl = 0;
    for (int i = 0; i < 300; i++) bl += (size_t)snprintf(bad_model + bl, sizeof bad_model - bl, "QUFB%c%c== %d\n", 'A' + i % 26, 'A' + i / 26 % 4 * 16, i);
    bl += (size_t)snprintf(bad_model + bl, sizeof bad_model - bl, "@@@@ 300\n");
    file_write_atomic(path, bad_model, bl);
    CHECK(!tok_load(dir) && strstr(err_get(), "tokenizer.model") && strstr(err_get(), "line 301"), "bad base64: %s", err_get());
    const char *bad_rank = "IQ== 0\nIg== x\n";
    file_write_atomic(path, bad_rank, strlen(bad_rank));
    CHECK(!tok_load(dir) && strstr(err_get(), "line 2"), "bad rank: %s", err_get());
    char *json = path_join(dir, "tokenizer.json");
    const char *trunc = "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0";
    file_write_atomic(json, trunc, strlen(trunc));
    CHECK(!tok_load(dir) && strstr(err_get(), "tokenizer.json") && strstr(err_get(), "JSON"), "truncated json: %s", err_get());
    const char *novocab = "{\"model\": {\"type\": \"WordPiece\"}}";
    file_write_atomic(json, novocab, strlen(novocab));
    CHECK(!tok_load(dir) && strstr(err_get(), "model.type"), "wrong model type: %s", err_get());
    free(json);
    free(orig);
    free(path);
}

// The demo corpus (data/demo/train.jsonl + eval.jsonl: 1,100 instruction records), all text
// fields as one buffer: encoding is deterministic, decodes back to the same bytes, and the
// encoding rate is printed (a number for the reader, not a check: speed is for benchmarks).
static void test_demo_corpus(void) {
    const char *files[] = {"data/demo/train.jsonl", "data/demo/eval.jsonl"};
    size_t cap = 1 << 20, len = 0;
    char *buf = malloc(cap);
    int records = 0;
    for (int fi = 0; fi < 2; fi++) {
        size_t n;
        char *text = file_read_all(files[fi], &n);
        CHECK(text, "%s", err_get());
        if (!text) continue;
        for (char *p = text, *e; p < text + n; p = e + 1) {
            e = memchr(p, '\n', (size_t)(text + n - p));
            if (!e) e = text + n;
            *e = 0;
            cJSON *o = cJSON_Parse(p);
            if (!o) continue;
            records++;
            const char *keys[] = {"instruction", "input", "output"};
            for (int k = 0; k < 3; k++) {
                cJSON *v = cJSON_GetObjectItem(o, keys[k]);
                if (!cJSON_IsString(v)) continue;
                size_t l = strlen(v->valuestring);
                while (len + l + 1 > cap) buf = realloc(buf, cap *= 2);
                memcpy(buf + len, v->valuestring, l);
                len += l;
                buf[len++] = '\n';
            }
            cJSON_Delete(o);
        }
        free(text);
    }
    CHECK(records == 1100, "%d records in the demo corpus, want 1100", records);
    int reps = 3;
    tok_ids ids = {0}, first = {0};
    double t0 = now_seconds();
    for (int r = 0; r < reps; r++) {
        ids.n = 0;
        CHECK(tok_encode(T, buf, len, 1, &ids) == 0, "%s", err_get());
        if (r == 0)
            for (size_t i = 0; i < ids.n; i++) tok_ids_push(&first, ids.ids[i]);
        else
            CHECK(ids.n == first.n && !memcmp(ids.ids, first.ids, ids.n * sizeof *ids.ids), "encoding %d differs", r);
    }
    double dt = now_seconds() - t0;
    size_t dl = 0;
    char *back = tok_decode_n(T, ids.ids, ids.n, &dl);
    CHECK(back && dl == len && !memcmp(back, buf, len), "decode(encode(corpus)) differs from the corpus");
    printf("demo corpus: %zu bytes -> %zu ids, %.1f MB/s encoding (one thread; information only)\n", len, ids.n,
           (double)len * reps / dt / 1e6);
    free(back);
    tok_ids_free(&ids);
    tok_ids_free(&first);
    free(buf);
}

int main(void) {
    load_fixture();
    T = tok_load(tok_dir());
    if (!T) {
        test_fail("cannot load the tokenizer from %s: %s", tok_dir(), err_get());
        return test_summary();
    }
    RUN(test_api);
    RUN(test_hf_corpus);
    RUN(test_decode);
    RUN(test_roundtrip);
    RUN(test_invalid_utf8_fuzz);
    RUN(test_trim_and_spaces);
    RUN(test_chat);
    RUN(test_tiktoken);
    RUN(test_small_hf);
    RUN(test_errors);
    RUN(test_demo_corpus);
    tok_free(T);
    for (int i = 0; i < nfx; i++) cJSON_Delete(fx[i]);
    free(fx);
    return test_summary();
}
