// records.c — JSONL records -> token ids + loss masks (see records.h and docs/formats.md "Data:
// JSONL records"). A record is rendered to one string with its supervised byte spans, encoded at
// once (special tokens recognized) and masked by the byte offsets of its tokens.
#define _GNU_SOURCE
#include "records.h"

#include <cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "util.h"

#define T_EOS "<|end_of_text|>"   // the others: CHAT_BOS, CHAT_SH, CHAT_EH, CHAT_EOT (chat.h)

static const char *ALPACA_PROMPT_INPUT =
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n%s\n\n### Input:\n%s\n\n### Response:\n";
static const char *ALPACA_PROMPT_NO_INPUT =
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.\n\n### Instruction:\n%s\n\n### Response:\n";

enum { F_AUTO, F_CHAT, F_ALPACA, F_TEXT, F_CAPTION };
enum { TPL_LLAMA3, TPL_ALPACA_CLASSIC };

static int format_id(const char *s) {
    if (!s || !strcmp(s, "auto")) return F_AUTO;
    if (!strcmp(s, "chat")) return F_CHAT;
    if (!strcmp(s, "alpaca")) return F_ALPACA;
    if (!strcmp(s, "text")) return F_TEXT;
    if (!strcmp(s, "caption")) return F_CAPTION;
    return -1;
}

static int template_id(const char *s) {
    if (!s || !strcmp(s, "llama3")) return TPL_LLAMA3;
    if (!strcmp(s, "alpaca_classic")) return TPL_ALPACA_CLASSIC;
    return -1;
}

data_opts data_opts_default(void) {
    data_opts o;
    memset(&o, 0, sizeof o);
    o.format = "auto";
    o.template_ = "llama3";
    return o;
}

int data_opts_check(const data_opts *o) {
    if (format_id(o->format) < 0)
        return err_set("data.format: expected auto, chat, alpaca, text or caption, found '%s'", o->format);
    if (template_id(o->template_) < 0)
        return err_set("data.template: expected llama3 or alpaca_classic, found '%s'", o->template_);
    if (o->num_patches < 0) return err_set("num_patches: expected >= 0, found %d", o->num_patches);
    return 0;
}

void data_record_free(data_record *r) {
    free(r->ids);
    free(r->mask);
    free(r->image);
    free(r->image_ref);
    memset(r, 0, sizeof *r);
    r->image_pos = -1;
}

int64_t data_record_rows(const data_record *r, int num_patches) {
    return r->n + (r->image_pos >= 0 ? num_patches : 0);
}

int64_t data_record_n_supervised(const data_record *r) {
    int64_t k = 0;
    for (int64_t i = 0; i < r->n; i++) k += r->mask[i] != 0;
    return k;
}

// --- rendering: one string, supervised byte spans, where the image goes

typedef struct render {
    strbuf b;                // the text
    size_t *span;            // [2 * nspan] supervised byte ranges [begin, end), increasing
    int nspan, span_cap;
    int64_t split;           // byte offset where the image goes (-1: none)
} render;

static void r_span(render *r, size_t begin, size_t end) {
    if (end <= begin) return;
    if (r->nspan && r->span[2 * r->nspan - 1] == begin) {   // extend the previous span
        r->span[2 * r->nspan - 1] = end;
        return;
    }
    if (r->nspan == r->span_cap) {
        r->span_cap = r->span_cap ? 2 * r->span_cap : 8;
        r->span = xrealloc(r->span, sizeof(size_t) * 2 * (size_t)r->span_cap);
    }
    r->span[2 * r->nspan] = begin;
    r->span[2 * r->nspan + 1] = end;
    r->nspan++;
}

static void r_free(render *r) {
    free(r->b.s);
    free(r->span);
}

// --- errors with FILE:LINE

typedef struct ctx {
    data_reader *rd;
    int64_t line;
    int fatal;   // a configuration problem: not skipped by skip_bad_lines
} ctx;

#define CTX_ERR(c, ...) ctx_err(c, __VA_ARGS__)
static int ctx_err(ctx *c, const char *fmt, ...) AG_PRINTF(2, 3);
static int ctx_err(ctx *c, const char *fmt, ...) {
    char msg[1536];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return err_set("%s:%lld: %s", c->rd->path, (long long)c->line, msg);
}

static const char *json_type(const cJSON *j) {
    if (cJSON_IsString(j)) return "a string";
    if (cJSON_IsNumber(j)) return "a number";
    if (cJSON_IsArray(j)) return "an array";
    if (cJSON_IsObject(j)) return "an object";
    if (cJSON_IsBool(j)) return "a boolean";
    if (cJSON_IsNull(j)) return "null";
    return "an invalid value";
}

// Reads string field `key` of obj. Missing (or null, when optional): *out = NULL, 0 when
// optional, else an error. `name` is how the field is named in messages.
static int get_str(ctx *c, const cJSON *obj, const char *key, const char *name, int required,
                   const char **out) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, key);
    *out = NULL;
    if (!j || (!required && cJSON_IsNull(j))) {
        if (!required) return 0;
        return CTX_ERR(c, "missing field '%s'", name);
    }
    if (!cJSON_IsString(j) || !j->valuestring)
        return CTX_ERR(c, "field '%s': expected a string, found %s", name, json_type(j));
    *out = j->valuestring;
    return 0;
}

// --- chat rendering (Llama 3)

static const char *ROLES[] = {"system", "user", "assistant", "ipython"};

typedef struct msg {
    const char *role, *content;
    size_t len;   // trimmed content length
} msg;

// Renders messages; `want_image` marks where the single "<image>" of a user message goes.
static int render_chat(ctx *c, render *r, const msg *m, int nm, int want_image) {
    int images = 0, assistants = 0;
    sb_puts(&r->b, CHAT_BOS);
    for (int i = 0; i < nm; i++) {
        int is_assistant = !strcmp(m[i].role, "assistant");
        sb_puts(&r->b, CHAT_SH);
        sb_puts(&r->b, m[i].role);
        sb_puts(&r->b, CHAT_EH "\n\n");
        size_t begin = r->b.n;
        const char *s = m[i].content;
        size_t n = m[i].len;
        if (want_image) {
            const char *p = memmem(s, n, DATA_IMAGE_MARK, strlen(DATA_IMAGE_MARK));
            if (p) {
                if (strcmp(m[i].role, "user"))
                    return CTX_ERR(c, "field 'messages[%d].content': '<image>' must be in a user message, found it in a message with role '%s'",
                                   i, m[i].role);
                const char *rest = p + strlen(DATA_IMAGE_MARK);
                if (images || memmem(rest, (size_t)(s + n - rest), DATA_IMAGE_MARK, strlen(DATA_IMAGE_MARK)))
                    return CTX_ERR(c, "field 'messages[%d].content': expected '<image>' once in the record, found it more than once", i);
                images++;
                sb_put(&r->b, s, (size_t)(p - s));
                r->split = (int64_t)r->b.n;
                sb_put(&r->b, rest, (size_t)(s + n - rest));
            } else {
                sb_put(&r->b, s, n);
            }
        } else {
            sb_put(&r->b, s, n);
        }
        sb_puts(&r->b, CHAT_EOT);
        if (is_assistant) {
            assistants++;
            r_span(r, begin, r->b.n);   // the content and its <|eot_id|>
        }
    }
    if (want_image && !images)
        return CTX_ERR(c, "field 'messages': the record has an 'image' but no user message contains '<image>' (put it where the image goes)");
    if (!assistants && !c->rd->o.train_on_prompt)
        return CTX_ERR(c, "field 'messages': no assistant message (nothing to learn; the loss is on assistant replies)");
    return 0;
}

static int parse_messages(ctx *c, const cJSON *obj, msg **out, int *nout) {
    const cJSON *ms = cJSON_GetObjectItemCaseSensitive(obj, "messages");
    if (!ms) return CTX_ERR(c, "missing field 'messages'");
    if (!cJSON_IsArray(ms))
        return CTX_ERR(c, "field 'messages': expected an array of {role, content}, found %s", json_type(ms));
    int nm = cJSON_GetArraySize(ms);
    if (nm == 0) return CTX_ERR(c, "field 'messages': expected at least one message, found an empty array");
    msg *m = xcalloc((size_t)nm, sizeof *m);
    int i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, ms) {
        char name[64];
        if (!cJSON_IsObject(it)) {
            free(m);
            return CTX_ERR(c, "field 'messages[%d]': expected an object {role, content}, found %s", i, json_type(it));
        }
        snprintf(name, sizeof name, "messages[%d].role", i);
        if (get_str(c, it, "role", name, 1, &m[i].role)) { free(m); return -1; }
        int known = 0;
        for (size_t k = 0; k < sizeof ROLES / sizeof ROLES[0]; k++) known |= !strcmp(m[i].role, ROLES[k]);
        if (!known) {
            int rc = CTX_ERR(c, "field 'messages[%d].role': expected system, user, assistant or ipython, found '%.64s'", i, m[i].role);
            free(m);
            return rc;
        }
        snprintf(name, sizeof name, "messages[%d].content", i);
        if (get_str(c, it, "content", name, 1, &m[i].content)) { free(m); return -1; }
        m[i].len = strlen(m[i].content);
        m[i].content = chat_trim_view(m[i].content, &m[i].len);
        if (!strcmp(m[i].role, "assistant") && m[i].len == 0) {
            int rc = CTX_ERR(c, "field 'messages[%d].content': empty assistant message (nothing to learn)", i);
            free(m);
            return rc;
        }
        i++;
    }
    *out = m;
    *nout = nm;
    return 0;
}

// --- image paths

static int resolve_image(ctx *c, const cJSON *obj, data_record *rec) {
    const char *img;
    if (get_str(c, obj, "image", "image", 1, &img)) return -1;
    if (!img[0]) return CTX_ERR(c, "field 'image': expected an image path, found an empty string");
    if (c->rd->o.num_patches <= 0 && !c->rd->o.image_outside) {
        c->fatal = 1;
        return CTX_ERR(c, "field 'image': the record has an image but no vision model is configured (num_patches is 0)");
    }
    char *path = path_join(c->rd->dir, img);
    if (!file_exists(path)) {
        int rc = CTX_ERR(c, "field 'image': image file '%s' not found (paths are relative to the JSONL file's folder)", path);
        free(path);
        return rc;
    }
    rec->image = path;
    rec->image_ref = xstrdup(img);
    return 0;
}

// --- encoding: ids, where the image goes, and the mask

int data_encode_spliced(const tok_tokenizer *tok, const char *s, size_t n, int64_t at, size_t skip, int nrows,
                        tok_ids *ids, int64_t *image_pos) {
    if (at < 0) {
        *image_pos = -1;
        return tok_encode(tok, s, n, 1, ids);
    }
    AG_ASSERT((size_t)at + skip <= n, "splice at %lld + %zu past the text's %zu bytes", (long long)at, skip, n);
    if (tok_encode(tok, s, (size_t)at, 1, ids)) return -1;
    *image_pos = (int64_t)ids->n;
    for (int k = 0; k < nrows; k++) tok_ids_push(ids, -1);
    return tok_encode(tok, s + at + skip, n - (size_t)at - skip, 1, ids);
}

// The rendered string encoded (in two parts when it has an image; no visual rows in ids), and
// each token masked when its bytes overlap a supervised span: the tokens' bytes add up to the
// rendered string (the image takes none of them).
static int encode_render(data_reader *rd, const render *r, data_record *rec) {
    tok_ids ids = {0};
    if (data_encode_spliced(rd->tok, r->b.s, r->b.n, r->split, 0, 0, &ids, &rec->image_pos)) {
        tok_ids_free(&ids);
        return -1;
    }
    uint8_t *mask = ids.n ? xmalloc(ids.n) : NULL;
    size_t off = 0;
    int sp = 0;
    for (size_t i = 0; i < ids.n; i++) {
        size_t plen = 0;
        const char *piece = tok_piece(rd->tok, ids.ids[i], &plen);
        AG_ASSERT(piece, "tokenizer produced unknown id %d", ids.ids[i]);
        size_t a = off, b = off + plen;
        while (sp < r->nspan && r->span[2 * sp + 1] <= a) sp++;
        mask[i] = sp < r->nspan && r->span[2 * sp] < b;   // the token overlaps a span
        off = b;
    }
    AG_ASSERT(off == r->b.n, "token bytes (%zu) do not add up to the encoded text (%zu)", off, r->b.n);
    if (rd->o.train_on_prompt)
        for (size_t i = 0; i < ids.n; i++) mask[i] = i > 0;
    rec->ids = ids.ids;
    rec->n = (int64_t)ids.n;
    rec->mask = mask ? mask : xcalloc(1, 1);
    if (!rec->ids) rec->ids = xcalloc(1, sizeof(int32_t));
    return 0;
}

// --- one record

static int detect_format(ctx *c, const cJSON *obj) {
    if (cJSON_GetObjectItemCaseSensitive(obj, "messages")) return F_CHAT;
    if (cJSON_GetObjectItemCaseSensitive(obj, "instruction") || cJSON_GetObjectItemCaseSensitive(obj, "output"))
        return F_ALPACA;
    if (cJSON_GetObjectItemCaseSensitive(obj, "caption")) return F_CAPTION;
    if (cJSON_GetObjectItemCaseSensitive(obj, "text")) return F_TEXT;
    char keys[256] = "";
    size_t k = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, obj) {
        if (k + 8 >= sizeof keys) break;
        k += (size_t)snprintf(keys + k, sizeof keys - k, "%s'%.40s'", k ? ", " : "", it->string ? it->string : "");
        if (k >= sizeof keys) k = sizeof keys - 1;
    }
    return CTX_ERR(c, "cannot tell the record's format from its fields (%s); expected 'messages' (chat), "
                      "'instruction'/'input'/'output' (alpaca), 'text', or 'image'/'caption' (caption)",
                   k ? keys : "none");
}

static int build_record(ctx *c, const cJSON *obj, data_record *rec) {
    data_reader *rd = c->rd;
    int fmt = format_id(rd->o.format), tpl = template_id(rd->o.template_);
    if (fmt == F_AUTO && (fmt = detect_format(c, obj)) < 0) return -1;
    render r = {0};
    r.split = -1;
    int rc = 0;
    if (fmt == F_CHAT) {
        msg *m = NULL;
        int nm = 0;
        if (tpl != TPL_LLAMA3) {
            c->fatal = 1;
            return CTX_ERR(c, "template %s renders alpaca records only; this record is chat (use template llama3)",
                           rd->o.template_);
        }
        const cJSON *im = cJSON_GetObjectItemCaseSensitive(obj, "image");
        int want_image = im && !cJSON_IsNull(im);   // "image": null is no image
        if (parse_messages(c, obj, &m, &nm)) return -1;
        rc = render_chat(c, &r, m, nm, want_image);
        free(m);
        if (!rc && want_image) rc = resolve_image(c, obj, rec);
    } else if (fmt == F_ALPACA) {
        const char *ins, *inp, *out;
        if (get_str(c, obj, "instruction", "instruction", 1, &ins) || get_str(c, obj, "input", "input", 0, &inp) ||
            get_str(c, obj, "output", "output", 1, &out))
            return -1;
        int has_input = inp && inp[0];
        if (tpl == TPL_ALPACA_CLASSIC) {
            if (!out[0]) return CTX_ERR(c, "field 'output': expected the response text, found an empty string");
            sb_puts(&r.b, CHAT_BOS);
            size_t need = strlen(ins) + (inp ? strlen(inp) : 0) + strlen(ALPACA_PROMPT_INPUT) + 1;
            char *p = xmalloc(need);
            if (has_input) snprintf(p, need, ALPACA_PROMPT_INPUT, ins, inp);
            else snprintf(p, need, ALPACA_PROMPT_NO_INPUT, ins);
            sb_puts(&r.b, p);
            free(p);
            size_t begin = r.b.n;
            sb_puts(&r.b, out);
            sb_puts(&r.b, T_EOS);
            r_span(&r, begin, r.b.n);
        } else {
            size_t nu = strlen(ins) + (has_input ? 2 + strlen(inp) : 0);
            char *user = xmalloc(nu + 1);
            strcpy(user, ins);
            if (has_input) {
                strcat(user, "\n\n");
                strcat(user, inp);
            }
            msg m[2] = {{"user", user, nu}, {"assistant", out, strlen(out)}};
            for (int i = 0; i < 2; i++) m[i].content = chat_trim_view(m[i].content, &m[i].len);
            if (m[1].len == 0) rc = CTX_ERR(c, "field 'output': empty assistant message (nothing to learn)");
            else rc = render_chat(c, &r, m, 2, 0);
            free(user);
        }
    } else if (fmt == F_TEXT) {
        const char *text;
        if (get_str(c, obj, "text", "text", 1, &text)) return -1;
        if (!text[0]) return CTX_ERR(c, "field 'text': expected a document, found an empty string");
        sb_puts(&r.b, CHAT_BOS);
        size_t begin = r.b.n;
        sb_puts(&r.b, text);
        r_span(&r, begin, r.b.n);   // with the BOS unsupervised, all but the first token
    } else {   // caption
        const char *cap;
        if (get_str(c, obj, "caption", "caption", 1, &cap)) return -1;
        if (!cap[0]) return CTX_ERR(c, "field 'caption': expected the caption text, found an empty string");
        if (resolve_image(c, obj, rec)) return -1;
        sb_puts(&r.b, CHAT_BOS);
        r.split = (int64_t)r.b.n;
        sb_puts(&r.b, cap);
        sb_puts(&r.b, T_EOS);
        r_span(&r, (size_t)r.split, r.b.n);
    }
    if (!rc && encode_render(rd, &r, rec)) rc = CTX_ERR(c, "cannot encode the record: %s", err_get());
    r_free(&r);
    return rc;
}

// cJSON decodes \u0000 into a NUL that ends its C strings, which would silently cut a text (or
// an image path) short. Finds the first string value (or key) of a valid JSON text holding the
// escape \u0000 and writes its path ("messages[1].content") to path[cap]; 0 when there is none.
static int find_nul_escape(const char *t, size_t n, char *path, size_t cap) {
    enum { MAXD = 32 };
    struct { int obj, index; char key[48]; } st[MAXD];
    int d = -1, want_key = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = t[i];
        if (ch == '{' || ch == '[') {
            d++;
            if (d < MAXD) st[d].obj = ch == '{', st[d].index = 0, st[d].key[0] = 0;
            want_key = ch == '{';
        } else if (ch == '}' || ch == ']') {
            d--;
            want_key = 0;
        } else if (ch == ',') {
            if (d >= 0 && d < MAXD && !st[d].obj) st[d].index++;
            want_key = d >= 0 && d < MAXD && st[d].obj;
        } else if (ch == ':') {
            want_key = 0;
        } else if (ch == '"') {
            size_t b = ++i;
            int nul = 0;
            for (; i < n && t[i] != '"'; i++)
                if (t[i] == '\\') {
                    nul |= i + 5 < n && !memcmp(t + i + 1, "u0000", 5);
                    i++;
                }
            int is_key = want_key;
            if (is_key && d >= 0 && d < MAXD) {
                size_t kl = i - b < sizeof st[d].key - 1 ? i - b : sizeof st[d].key - 1;
                memcpy(st[d].key, t + b, kl);
                st[d].key[kl] = 0;
            }
            if (nul) {
                size_t at = 0;
                path[0] = 0;
                for (int k = 0; k <= d && k < MAXD && at < cap; k++) {
                    if (st[k].obj) at += (size_t)snprintf(path + at, cap - at, "%s%s", k ? "." : "", st[k].key);
                    else at += (size_t)snprintf(path + at, cap - at, "[%d]", st[k].index);
                }
                if (is_key && at < cap) snprintf(path + at, cap - at, " (a key)");
                return 1;
            }
        }
    }
    return 0;
}

// As data_record_from_json; *fatal set for configuration errors (never skipped).
static int record_from_json(data_reader *rd, const char *text, size_t len, int64_t line, data_record *rec,
                            int *fatal) {
    memset(rec, 0, sizeof *rec);
    rec->image_pos = -1;
    rec->line = line;
    ctx c = {rd, line, 0};
    *fatal = 0;
    if (!tok_utf8_valid(text, len))   // the loss mask maps token bytes back onto the text
        return err_set("%s:%lld: the line is not valid UTF-8 (JSONL files must be UTF-8)", rd->path, (long long)line);
    const char *end = NULL;
    cJSON *obj = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (obj) {   // only whitespace may follow the object
        const char *e = text + len;
        while (end < e && (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n')) end++;
        if (end < e) {
            cJSON_Delete(obj);
            return CTX_ERR(&c, "not valid JSON: text after the object at column %lld (one JSON object per line)",
                           (long long)(end - text + 1));
        }
    }
    if (!obj) {
        const char *at = cJSON_GetErrorPtr();
        long long col = at && at >= text && at <= text + len ? (long long)(at - text + 1) : 0;
        if (json_max_depth(text, len) >= CJSON_NESTING_LIMIT)
            return CTX_ERR(&c, "the JSON nests deeper than %d levels (the limit)", CJSON_NESTING_LIMIT);
        return CTX_ERR(&c, "not valid JSON (error near column %lld; each line must hold one JSON object)", col);
    }
    if (!cJSON_IsObject(obj)) {
        int rc = CTX_ERR(&c, "expected a JSON object, found %s%s", json_type(obj),
                         cJSON_IsArray(obj) ? " (JSONL holds one object per line; a JSON array file converts with "
                                              "`jq -c '.[]' in.json > out.jsonl`)"
                                            : "");
        cJSON_Delete(obj);
        return rc;
    }
    char npath[256];
    if (memmem(text, len, "\\u0000", 6) && find_nul_escape(text, len, npath, sizeof npath)) {
        cJSON_Delete(obj);
        return CTX_ERR(&c, "field '%s': the string holds \\u0000 (a NUL character), which text and paths "
                           "cannot contain", npath);
    }
    int rc = build_record(&c, obj, rec);
    cJSON_Delete(obj);
    if (rc) {
        data_record_free(rec);
        rec->line = line;
        *fatal = c.fatal;
        return -1;
    }
    return 0;
}

int data_record_from_json(data_reader *rd, const char *text, size_t len, int64_t line, data_record *rec) {
    int fatal;
    return record_from_json(rd, text, len, line, rec, &fatal);
}

// --- length policy: 1 keep, 0 drop

static int apply_length(data_reader *rd, data_record *rec) {
    int64_t max = rd->o.max_seq_len, P = rec->image_pos >= 0 ? rd->o.num_patches : 0;
    if (max <= 0 || rec->n + P <= max) return 1;
    if (!rd->o.truncate || (rec->image_pos >= 0 && rec->image_pos + P > max)) {
        rd->n_dropped_long++;
        return 0;
    }
    rec->n = max - P;
    if (data_record_n_supervised(rec) == 0) {   // nothing left to learn
        rd->n_dropped_long++;
        return 0;
    }
    rd->n_truncated++;
    return 1;
}

// --- reader

data_reader *data_reader_open(const char *path, const tok_tokenizer *tok, const data_opts *o) {
    if (data_opts_check(o)) {
        err_prefix("%s", path);
        return NULL;
    }
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        err_set("%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    data_reader *r = xcalloc(1, sizeof *r);
    r->fp = fp;
    r->path = xstrdup(path);
    r->dir = path_dirname(path);
    r->tok = tok;
    r->o = *o;
    size_t n = strlen(path);
    r->is_txt = n >= 4 && !strcmp(path + n - 4, ".txt");
    return r;
}

void data_reader_close(data_reader *r) {
    if (!r) return;
    if (r->fp) fclose(r->fp);
    free(r->path);
    free(r->dir);
    free(r->line);
    free(r);
}

static int read_txt(data_reader *rd, data_record *rec) {
    if (rd->txt_done) return 0;
    rd->txt_done = 1;
    size_t len = 0, cap = 1 << 16;
    char *buf = xmalloc(cap);
    for (;;) {
        size_t k = fread(buf + len, 1, cap - len, rd->fp);
        len += k;
        if (len < cap) break;
        cap *= 2;
        buf = xrealloc(buf, cap);
    }
    if (ferror(rd->fp)) {
        free(buf);
        return err_set("%s: read error: %s", rd->path, strerror(errno));
    }
    rd->lineno = 1;
    if (len == 0) {
        free(buf);
        return err_set("%s: empty text document", rd->path);
    }
    if (!tok_utf8_valid(buf, len)) {
        free(buf);
        return err_set("%s: the text is not valid UTF-8", rd->path);
    }
    render r = {0};
    r.split = -1;
    sb_puts(&r.b, CHAT_BOS);
    sb_put(&r.b, buf, len);
    r_span(&r, strlen(CHAT_BOS), r.b.n);
    free(buf);
    memset(rec, 0, sizeof *rec);
    rec->line = 1;
    int rc = encode_render(rd, &r, rec);
    r_free(&r);
    if (rc) return err_prefix("%s", rd->path);
    if (!apply_length(rd, rec)) {
        data_record_free(rec);
        return 0;
    }
    rd->n_records++;
    return 1;
}

int data_reader_next(data_reader *rd, data_record *rec) {
    if (rd->is_txt) return read_txt(rd, rec);
    for (;;) {
        errno = 0;
        ssize_t len = getline(&rd->line, &rd->line_cap, rd->fp);
        if (len < 0) {
            if (ferror(rd->fp)) return err_set("%s:%lld: read error: %s", rd->path, (long long)rd->lineno + 1, strerror(errno));
            return 0;
        }
        rd->lineno++;
        char *s = rd->line;
        if (rd->lineno == 1 && len >= 3 && !memcmp(s, "\xef\xbb\xbf", 3)) {   // UTF-8 byte order mark
            s += 3;
            len -= 3;
        }
        ssize_t i = 0;
        while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n')) i++;
        if (i == len) continue;   // blank line
        int fatal;
        int rc = record_from_json(rd, s, (size_t)len, rd->lineno, rec, &fatal);
        if (rc < 0 && (fatal || !rd->o.skip_bad_lines)) return -1;
        if (rc < 0) {
            rd->n_skipped_bad++;
            if (rd->o.warn) rd->o.warn(rd->o.warn_ctx, err_get());
            err_clear();
            continue;
        }
        if (!apply_length(rd, rec)) {
            data_record_free(rec);
            continue;
        }
        rd->n_records++;
        return 1;
    }
}

// --- data sets

int data_set_check_vocab(const data_set *ds, int vocab_size, const char *model_dir) {
    for (int64_t i = 0; i < ds->n; i++)
        for (int64_t k = 0; k < ds->r[i].n; k++)
            if (ds->r[i].ids[k] < 0 || ds->r[i].ids[k] >= vocab_size)
                return err_set("%s:%lld: token id %d is outside the model's vocabulary (vocab_size %d in "
                               "%s/config.json): the tokenizer in %s does not match the model",
                               ds->path ? ds->path : "data", (long long)ds->r[i].line, ds->r[i].ids[k], vocab_size,
                               model_dir, model_dir);
    return 0;
}

void data_set_push(data_set *ds, data_record *rec) {
    if (ds->n == ds->cap) {
        ds->cap = ds->cap ? 2 * ds->cap : 256;
        ds->r = xrealloc(ds->r, sizeof(data_record) * (size_t)ds->cap);
    }
    ds->r[ds->n++] = *rec;
    ds->n_tokens += rec->n;
    memset(rec, 0, sizeof *rec);
    rec->image_pos = -1;
}

void data_set_free(data_set *ds) {
    for (int64_t i = 0; i < ds->n; i++) data_record_free(&ds->r[i]);
    free(ds->r);
    free(ds->path);
    memset(ds, 0, sizeof *ds);
}

int data_load(data_set *ds, const char *path, const tok_tokenizer *tok, const data_opts *o) {
    memset(ds, 0, sizeof *ds);
    data_reader *rd = data_reader_open(path, tok, o);
    if (!rd) return -1;
    ds->path = xstrdup(path);
    data_record rec;
    int rc;
    while ((rc = data_reader_next(rd, &rec)) == 1) data_set_push(ds, &rec);
    ds->n_skipped_bad = rd->n_skipped_bad;
    ds->n_dropped_long = rd->n_dropped_long;
    ds->n_truncated = rd->n_truncated;
    data_reader_close(rd);
    if (rc < 0) {
        data_set_free(ds);
        return -1;
    }
    return 0;
}
