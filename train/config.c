// config.c — the training config (see config.h): YAML via libyaml's document loader and
// JSON via cJSON are both turned into one small value tree (cnode), which a table of typed
// fields applies to the struct. Errors name the file and line (YAML), the override, or the
// JSON source, the dotted key, what was expected and what was found.
#define _GNU_SOURCE
#include "config.h"

#include <cJSON.h>
#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "util.h"

const char *const cfg_lora_target_names[CFG_N_LORA_TARGETS] = {
    "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};

static const char *const modes[] = {"lora", "projector", "projector+lora", "xattn", "xattn+lora", NULL};
static const char *const formats[] = {"auto", "chat", "alpaca", "text", "caption", NULL};
static const char *const templates[] = {"llama3", "alpaca_classic", NULL};
static const char *const truncations[] = {"drop", "truncate", NULL};
static const char *const projector_types[] = {"mlp2x_gelu", "linear", NULL};
static const char *const pool_types[] = {"none", "avg", "linear", NULL};
static const char *const schedule_kinds[] = {"cosine", "linear", "constant", NULL};
static const char *const precisions[] = {"fp32", "bf16", NULL};   // ag_precision_parse's names

// --- the field table

typedef enum {
    FT_STR,      // char *, may be NULL (null in YAML)
    FT_ENUM,     // char *, one of choices
    FT_MODE,     // char mode[24], one of choices
    FT_BOOL,     // int 0/1
    FT_INT,      // int
    FT_I64,      // int64_t
    FT_U64,      // uint64_t
    FT_FLOAT,    // float
    FT_BETAS,    // optim.beta1, optim.beta2 as [b1, b2]
    FT_TARGETS,  // lora.targets / n_targets
    FT_PROMPTS,  // train.sample_prompts / n_sample_prompts, or a file name in train.sample_file
} ftype;

typedef struct {
    const char *sec;  // "" for top-level keys
    const char *key;
    ftype type;
    size_t off;
    const char *const *choices;
} field;

#define F(sec, key, type, member, choices) {sec, key, type, offsetof(cfg_train, member), choices}
static const field fields[] = {
    F("", "mode", FT_MODE, mode, modes),
    F("", "model", FT_STR, model, NULL),
    F("", "precision", FT_ENUM, precision, precisions),
    F("", "output_dir", FT_STR, output_dir, NULL),
    F("", "resume", FT_BOOL, resume, NULL),
    F("data", "train", FT_STR, data.train, NULL),
    F("data", "eval", FT_STR, data.eval, NULL),
    F("data", "format", FT_ENUM, data.format, formats),
    F("data", "template", FT_ENUM, data.template_, templates),
    F("data", "max_seq_len", FT_INT, data.max_seq_len, NULL),
    F("data", "packing", FT_BOOL, data.packing, NULL),
    F("data", "shuffle", FT_BOOL, data.shuffle, NULL),
    F("data", "train_on_prompt", FT_BOOL, data.train_on_prompt, NULL),
    F("data", "skip_bad_lines", FT_BOOL, data.skip_bad_lines, NULL),
    F("data", "truncation", FT_ENUM, data.truncation, truncations),
    F("lora", "r", FT_INT, lora.r, NULL),
    F("lora", "alpha", FT_FLOAT, lora.alpha, NULL),
    F("lora", "dropout", FT_FLOAT, lora.dropout, NULL),
    F("lora", "targets", FT_TARGETS, lora.targets, NULL),
    F("lora", "use_rslora", FT_BOOL, lora.use_rslora, NULL),
    F("lora", "init", FT_STR, lora.init, NULL),
    F("vision", "model", FT_STR, vision.model, NULL),
    F("vision", "select_layer", FT_INT, vision.select_layer, NULL),
    F("vision", "features", FT_STR, vision.features, NULL),
    F("vision", "max_pixels", FT_I64, vision.max_pixels, NULL),
    F("projector", "type", FT_ENUM, projector.type, projector_types),
    F("projector", "init", FT_STR, projector.init, NULL),
    F("projector", "pool.type", FT_ENUM, projector.pool_type, pool_types),   // projector: {pool: {type, tokens}}
    F("projector", "pool.tokens", FT_INT, projector.pool_tokens, NULL),
    F("xattn", "every", FT_INT, xattn.every, NULL),
    F("optim", "lr", FT_FLOAT, optim.lr, NULL),
    F("optim", "betas", FT_BETAS, optim.beta1, NULL),
    F("optim", "eps", FT_FLOAT, optim.eps, NULL),
    F("optim", "weight_decay", FT_FLOAT, optim.weight_decay, NULL),
    F("optim", "grad_clip", FT_FLOAT, optim.grad_clip, NULL),
    F("schedule", "kind", FT_ENUM, schedule.kind, schedule_kinds),
    F("schedule", "warmup_steps", FT_INT, schedule.warmup_steps, NULL),
    F("schedule", "warmup_ratio", FT_FLOAT, schedule.warmup_ratio, NULL),
    F("schedule", "min_lr_ratio", FT_FLOAT, schedule.min_lr_ratio, NULL),
    F("train", "batch_size", FT_INT, train.batch_size, NULL),
    F("train", "grad_accum", FT_INT, train.grad_accum, NULL),
    F("train", "epochs", FT_INT, train.epochs, NULL),
    F("train", "max_steps", FT_I64, train.max_steps, NULL),
    F("train", "seed", FT_U64, train.seed, NULL),
    F("train", "save_every", FT_INT, train.save_every, NULL),
    F("train", "eval_every", FT_INT, train.eval_every, NULL),
    F("train", "keep_last", FT_INT, train.keep_last, NULL),
    F("train", "dump_grads", FT_STR, train.dump_grads, NULL),
    F("train", "log_every", FT_INT, train.log_every, NULL),
    F("train", "arena_mb", FT_I64, train.arena_mb, NULL),
    F("train", "threads", FT_INT, train.threads, NULL),
    F("train", "activation_checkpointing", FT_BOOL, train.activation_checkpointing, NULL),
    F("train", "tensorboard", FT_BOOL, train.tensorboard, NULL),
    F("train", "sample_prompts", FT_PROMPTS, train.sample_prompts, NULL),
    F("train", "sample_every", FT_INT, train.sample_every, NULL),
    F("train", "sample_max_tokens", FT_INT, train.sample_max_tokens, NULL),
};
#undef F
#define NFIELDS (int)(sizeof fields / sizeof fields[0])

static const char *const sections[] = {"data", "lora", "vision", "projector", "xattn", "optim", "schedule", "train", NULL};

static int is_section(const char *name) {
    for (int i = 0; sections[i]; i++)
        if (!strcmp(sections[i], name)) return 1;
    return 0;
}

// Is `key` the name of a nested group of keys of sec ("pool" for "pool.type", "pool.tokens")?
static int is_group(const char *sec, const char *key) {
    size_t n = strlen(key);
    for (int i = 0; i < NFIELDS; i++)
        if (!strcmp(fields[i].sec, sec) && !strncmp(fields[i].key, key, n) && fields[i].key[n] == '.') return 1;
    return 0;
}

static const field *find_field(const char *sec, const char *key) {
    for (int i = 0; i < NFIELDS; i++)
        if (!strcmp(fields[i].sec, sec) && !strcmp(fields[i].key, key)) return &fields[i];
    return NULL;
}

#define AT(c, f, T) ((T *)((char *)(c) + (f)->off))
#define CAT(c, f, T) ((const T *)((const char *)(c) + (f)->off))

static void dotted(char *buf, size_t n, const char *sec, const char *key) {
    if (sec[0]) snprintf(buf, n, "%s.%s", sec, key);
    else snprintf(buf, n, "%s", key);
}

// --- defaults and freeing

static void free_targets(cfg_train *c) {
    for (int i = 0; i < c->lora.n_targets; i++) free(c->lora.targets[i]);
    free(c->lora.targets);
    c->lora.targets = NULL;
    c->lora.n_targets = 0;
}

static void set_all_targets(cfg_train *c) {
    free_targets(c);
    c->lora.targets = xmalloc(CFG_N_LORA_TARGETS * sizeof(char *));
    for (int i = 0; i < CFG_N_LORA_TARGETS; i++) c->lora.targets[i] = xstrdup(cfg_lora_target_names[i]);
    c->lora.n_targets = CFG_N_LORA_TARGETS;
}

void cfg_defaults(cfg_train *c) {
    memset(c, 0, sizeof *c);
    strcpy(c->mode, "lora");
    c->resume = 0;
    c->precision = xstrdup("fp32");
    c->data.format = xstrdup("auto");
    c->data.template_ = xstrdup("llama3");
    c->data.max_seq_len = 2048;
    c->data.packing = 0;
    c->data.shuffle = 1;
    c->data.train_on_prompt = 0;
    c->data.skip_bad_lines = 0;
    c->data.truncation = xstrdup("drop");
    c->lora.r = 16;
    c->lora.alpha = 32.0f;
    c->lora.dropout = 0.05f;
    set_all_targets(c);
    c->lora.use_rslora = 0;
    c->vision.select_layer = -2;
    c->vision.max_pixels = 89478485;  // PIL's Image.MAX_IMAGE_PIXELS
    c->projector.type = xstrdup("mlp2x_gelu");
    c->projector.pool_type = xstrdup("none");
    c->projector.pool_tokens = 0;
    c->xattn.every = 4;
    c->optim.lr = 2.0e-4f;
    c->optim.beta1 = 0.9f;
    c->optim.beta2 = 0.999f;
    c->optim.eps = 1.0e-8f;
    c->optim.weight_decay = 0.0f;
    c->optim.grad_clip = 1.0f;
    c->schedule.kind = xstrdup("cosine");
    c->schedule.warmup_steps = 0;
    c->schedule.warmup_ratio = 0.0f;
    c->schedule.min_lr_ratio = 0.0f;
    c->train.batch_size = 4;
    c->train.grad_accum = 1;
    c->train.epochs = 1;
    c->train.max_steps = -1;
    c->train.seed = 42;
    c->train.save_every = 200;
    c->train.eval_every = 200;
    c->train.keep_last = 3;
    c->train.log_every = 1;
    c->train.arena_mb = 0;
    c->train.threads = 0;
    c->train.tensorboard = 1;
    c->train.sample_every = 0;
    c->train.sample_max_tokens = 32;
}

static void free_prompts(cfg_train *c) {
    for (int i = 0; i < c->train.n_sample_prompts; i++) free(c->train.sample_prompts[i]);
    free(c->train.sample_prompts);
    free(c->train.sample_file);
    c->train.sample_prompts = NULL;
    c->train.sample_file = NULL;
    c->train.n_sample_prompts = 0;
}

void cfg_free(cfg_train *c) {
    if (!c) return;
    for (int i = 0; i < NFIELDS; i++) {
        const field *f = &fields[i];
        if (f->type == FT_STR || f->type == FT_ENUM) {
            free(*AT(c, f, char *));
            *AT(c, f, char *) = NULL;
        }
    }
    free_targets(c);
    free_prompts(c);
    free(c->config_path);
    memset(c, 0, sizeof *c);
}

// --- the value tree shared by YAML and JSON

typedef enum { CN_NULL, CN_SCALAR, CN_SEQ, CN_MAP } cnkind;

typedef struct cnode {
    cnkind kind;
    int line;             // 1-based source line (YAML), 0 when unknown
    char *text;           // CN_SCALAR
    int n;                // CN_SEQ items / CN_MAP pairs
    struct cnode *items;  // [n] sequence items or mapping values
    char **keys;          // [n] mapping keys
    int *key_lines;       // [n]
} cnode;

static void cnode_free(cnode *v) {
    free(v->text);
    for (int i = 0; i < v->n; i++) {
        cnode_free(&v->items[i]);
        if (v->keys) free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
    free(v->key_lines);
    memset(v, 0, sizeof *v);
}

// Where values come from, for error prefixes.
typedef enum { SRC_YAML, SRC_OVERRIDE, SRC_JSON, SRC_NONE } srckind;
typedef struct {
    srckind kind;
    const char *src;  // file path, override text, or JSON source name
} srcctx;

static int loc_err(const srcctx *x, int line, const char *fmt, ...) AG_PRINTF(3, 4);
static int loc_err(const srcctx *x, int line, const char *fmt, ...) {
    char msg[1536];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    switch (x->kind) {
    case SRC_YAML:
        if (line > 0) return err_set("%s:%d: %s", x->src, line, msg);
        return err_set("%s: %s", x->src, msg);
    case SRC_OVERRIDE: return err_set("override '%s': %s", x->src, msg);
    case SRC_JSON: return err_set("%s: %s", x->src, msg);
    default: return err_set("%s", msg);
    }
}

// "'abc'", "null", "a list", "a mapping" — for "found ..." in messages
static const char *describe(const cnode *v, char *buf, size_t n) {
    switch (v->kind) {
    case CN_NULL: return "null";
    case CN_SEQ: return "a list";
    case CN_MAP: return "a mapping";
    default:
        if (strlen(v->text) > 60) snprintf(buf, n, "'%.57s...'", v->text);
        else snprintf(buf, n, "'%s'", v->text);
        return buf;
    }
}

// --- YAML -> cnode

#define MAX_DEPTH 32
#define MAX_NODES 100000

static int is_null_scalar(const yaml_node_t *n) {
    if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return 0;
    const char *s = (const char *)n->data.scalar.value;
    return !s[0] || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

static int yaml_conv(yaml_document_t *d, yaml_node_t *n, cnode *out, int depth, long *count,
                     const srcctx *x) {
    memset(out, 0, sizeof *out);
    out->line = (int)n->start_mark.line + 1;
    if (depth > MAX_DEPTH || ++*count > MAX_NODES)
        return loc_err(x, out->line, "the document nests too deeply or is too large (recursive alias?)");
    switch (n->type) {
    case YAML_SCALAR_NODE:
        if (is_null_scalar(n)) {
            out->kind = CN_NULL;
        } else {
            out->kind = CN_SCALAR;
            out->text = xstrdup((const char *)n->data.scalar.value);
        }
        return 0;
    case YAML_SEQUENCE_NODE: {
        out->kind = CN_SEQ;
        int cnt = (int)(n->data.sequence.items.top - n->data.sequence.items.start);
        out->items = xcalloc(cnt ? cnt : 1, sizeof(cnode));
        for (int i = 0; i < cnt; i++) {
            yaml_node_t *it = yaml_document_get_node(d, n->data.sequence.items.start[i]);
            out->n = i + 1;
            if (!it || yaml_conv(d, it, &out->items[i], depth + 1, count, x)) {
                if (!it) loc_err(x, out->line, "malformed YAML sequence");
                return -1;
            }
        }
        return 0;
    }
    case YAML_MAPPING_NODE: {
        out->kind = CN_MAP;
        int cnt = (int)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
        out->items = xcalloc(cnt ? cnt : 1, sizeof(cnode));
        out->keys = xcalloc(cnt ? cnt : 1, sizeof(char *));
        out->key_lines = xcalloc(cnt ? cnt : 1, sizeof(int));
        for (int i = 0; i < cnt; i++) {
            yaml_node_pair_t *p = &n->data.mapping.pairs.start[i];
            yaml_node_t *k = yaml_document_get_node(d, p->key);
            yaml_node_t *v = yaml_document_get_node(d, p->value);
            if (!k || !v) return loc_err(x, out->line, "malformed YAML mapping");
            int kline = (int)k->start_mark.line + 1;
            if (k->type != YAML_SCALAR_NODE)
                return loc_err(x, kline, "expected a key name, found a %s as a key",
                               k->type == YAML_MAPPING_NODE ? "mapping" : "list");
            out->n = i + 1;
            out->keys[i] = xstrdup((const char *)k->data.scalar.value);
            out->key_lines[i] = kline;
            if (yaml_conv(d, v, &out->items[i], depth + 1, count, x)) return -1;
        }
        return 0;
    }
    default: return loc_err(x, out->line, "empty YAML node");
    }
}

static int yaml_parse_error(yaml_parser_t *p, const srcctx *x) {
    const char *prob = p->problem ? p->problem : "parse error";
    if (p->error == YAML_READER_ERROR)
        return loc_err(x, 0, "invalid YAML: %s at byte %zu", prob, p->problem_offset);
    char ctxbuf[160] = "";
    if (p->context)
        snprintf(ctxbuf, sizeof ctxbuf, " (%s at line %zu)", p->context, p->context_mark.line + 1);
    return loc_err(x, (int)p->problem_mark.line + 1, "invalid YAML: %s%s", prob, ctxbuf);
}

// libyaml's scanner takes time quadratic in the nesting of flow collections ("[[[[...": seconds
// for 50 KB, minutes for a few hundred KB), before yaml_conv's depth limit could apply. One linear
// pass over the text first rejects flow nesting deeper than MAX_DEPTH (quoted text and comments
// skipped; block nesting by indentation costs libyaml linear time and is limited in yaml_conv).
static int yaml_flow_depth_check(const char *text, size_t len, const srcctx *x) {
    int depth = 0, line = 1, comment = 0;
    char quote = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = text[i], prev = i ? text[i - 1] : '\n';
        if (ch == '\n') {
            line++;
            comment = 0;
            continue;
        }
        if (comment) continue;
        if (quote) {
            if (quote == '"' && ch == '\\') i++;
            else if (ch == quote && quote == '\'' && i + 1 < len && text[i + 1] == '\'') i++;
            else if (ch == quote) quote = 0;
            continue;
        }
        int after_sep = prev == ' ' || prev == '\t' || prev == '\n' || prev == '\r' || prev == '[' || prev == '{' ||
                        prev == ',' || prev == ':';
        if (ch == '#' && (prev == ' ' || prev == '\t' || prev == '\n')) comment = 1;
        else if ((ch == '"' || ch == '\'') && after_sep) quote = ch;
        else if ((ch == '[' || ch == '{') && ++depth > MAX_DEPTH)
            return loc_err(x, line, "flow collections ([...] / {...}) nest deeper than %d levels", MAX_DEPTH);
        else if ((ch == ']' || ch == '}') && depth > 0) depth--;
    }
    return 0;
}

// Parses one YAML document from text into *out (CN_NULL for an empty document).
static int yaml_to_cnode(const char *text, size_t len, cnode *out, const srcctx *x) {
    memset(out, 0, sizeof *out);
    if (yaml_flow_depth_check(text, len, x)) return -1;
    yaml_parser_t p;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&p)) return loc_err(x, 0, "cannot initialize the YAML parser");
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    if (!yaml_parser_load(&p, &doc)) {
        int rc = yaml_parse_error(&p, x);
        yaml_parser_delete(&p);
        return rc;
    }
    int rc = 0;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root) {
        long count = 0;
        rc = yaml_conv(&doc, root, out, 0, &count, x);
    }
    yaml_document_delete(&doc);
    if (!rc && root) {  // a second document is an error, not silently ignored
        yaml_document_t doc2;
        if (!yaml_parser_load(&p, &doc2)) {
            rc = yaml_parse_error(&p, x);
        } else {
            yaml_node_t *r2 = yaml_document_get_root_node(&doc2);
            if (r2) rc = loc_err(x, (int)r2->start_mark.line + 1, "expected one YAML document, found a second one");
            yaml_document_delete(&doc2);
        }
    }
    yaml_parser_delete(&p);
    if (rc) cnode_free(out);
    return rc;
}

// --- JSON -> cnode

static void num_text(double v, char *buf, size_t n) {
    if (v == (double)(int64_t)v && fabs(v) < 9e15) snprintf(buf, n, "%" PRId64, (int64_t)v);
    else snprintf(buf, n, "%.17g", v);
}

static int json_conv(const cJSON *j, cnode *out, int depth, const srcctx *x) {
    memset(out, 0, sizeof *out);
    if (depth > MAX_DEPTH) return loc_err(x, 0, "JSON nests too deeply");
    if (cJSON_IsNull(j)) {
        out->kind = CN_NULL;
    } else if (cJSON_IsBool(j)) {
        out->kind = CN_SCALAR;
        out->text = xstrdup(cJSON_IsTrue(j) ? "true" : "false");
    } else if (cJSON_IsNumber(j)) {
        char buf[64];
        num_text(j->valuedouble, buf, sizeof buf);
        out->kind = CN_SCALAR;
        out->text = xstrdup(buf);
    } else if (cJSON_IsString(j)) {
        out->kind = CN_SCALAR;
        out->text = xstrdup(j->valuestring);
    } else if (cJSON_IsArray(j) || cJSON_IsObject(j)) {
        int cnt = cJSON_GetArraySize(j), obj = cJSON_IsObject(j);
        out->kind = obj ? CN_MAP : CN_SEQ;
        out->items = xcalloc(cnt ? cnt : 1, sizeof(cnode));
        if (obj) {
            out->keys = xcalloc(cnt ? cnt : 1, sizeof(char *));
            out->key_lines = xcalloc(cnt ? cnt : 1, sizeof(int));
        }
        int i = 0;
        for (const cJSON *e = j->child; e && i < cnt; e = e->next, i++) {
            out->n = i + 1;
            if (obj) out->keys[i] = xstrdup(e->string ? e->string : "");
            if (json_conv(e, &out->items[i], depth + 1, x)) return -1;
        }
    } else {
        return loc_err(x, 0, "unsupported JSON value");
    }
    return 0;
}

// --- scalar parsing

static int parse_f64(const char *s, double *out) {
    if (!s || !s[0]) return -1;
    char *end;
    double v = strtod(s, &end);
    if (*end || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

static int parse_i64(const char *s, int64_t *out) {
    if (!s || !s[0]) return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*end && !errno) {
        *out = v;
        return 0;
    }
    double d;  // "1e4", "2.0": an integral number written as a float
    if (parse_f64(s, &d) || d != floor(d) || fabs(d) >= 9.2e18) return -1;
    *out = (int64_t)d;
    return 0;
}

static int parse_u64(const char *s, uint64_t *out) {
    if (!s || !s[0] || strchr(s, '-')) return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (!*end && !errno) {
        *out = v;
        return 0;
    }
    double d;
    if (parse_f64(s, &d) || d != floor(d) || d < 0 || d >= 1.8e19) return -1;
    *out = (uint64_t)d;
    return 0;
}

// the shortest decimal that reads back as the same float ("0.0002", not "0.000199999995")
static void float_text(float v, char *buf, size_t n) {
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(buf, n, "%.*g", prec, (double)v);
        if (strtof(buf, NULL) == v) return;
    }
    snprintf(buf, n, "%.9g", (double)v);
}

// --- applying values to fields

static int join_choices(char *buf, size_t n, const char *const *ch) {
    size_t used = 0;
    buf[0] = 0;
    for (int i = 0; ch[i] && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, "%s%s", i ? ", " : "", ch[i]);
    return 0;
}

static int target_index(const char *name) {
    for (int i = 0; i < CFG_N_LORA_TARGETS; i++)
        if (!strcmp(cfg_lora_target_names[i], name)) return i;
    return -1;
}

static int targets_err(const srcctx *x, int line, const char *name) {
    return loc_err(x, line,
                   "lora.targets: unknown target '%s' (expected names among q_proj, k_proj, v_proj, o_proj, "
                   "gate_proj, up_proj, down_proj, or all-linear)",
                   name);
}

static int set_targets(cfg_train *c, const cnode *v, const srcctx *x) {
    char buf[128];
    char **names = NULL;
    int *lines = NULL, n = 0, rc = 0;
    if (v->kind == CN_SCALAR && !strcmp(v->text, "all-linear")) {
        set_all_targets(c);
        return 0;
    }
    if (v->kind == CN_SCALAR) {  // "q_proj,v_proj"
        char *s = xstrdup(v->text), *save = NULL;
        names = xcalloc(strlen(s) + 1, sizeof(char *));
        lines = xcalloc(strlen(s) + 1, sizeof(int));
        for (char *t = strtok_r(s, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            while (*t == ' ') t++;
            size_t L = strlen(t);
            while (L && t[L - 1] == ' ') t[--L] = 0;
            lines[n] = v->line;
            names[n++] = xstrdup(t);
        }
        free(s);
    } else if (v->kind == CN_SEQ) {
        names = xcalloc(v->n + 1, sizeof(char *));
        lines = xcalloc(v->n + 1, sizeof(int));
        for (int i = 0; i < v->n; i++) {
            if (v->items[i].kind != CN_SCALAR) {
                rc = loc_err(x, v->items[i].line, "lora.targets[%d]: expected a target name, found %s", i,
                             describe(&v->items[i], buf, sizeof buf));
                break;
            }
            lines[n] = v->items[i].line;
            names[n++] = xstrdup(v->items[i].text);
        }
    } else {
        return loc_err(x, v->line, "lora.targets: expected a list of target names or all-linear, found %s",
                       describe(v, buf, sizeof buf));
    }
    for (int i = 0; !rc && i < n; i++) {
        if (!strcmp(names[i], "all-linear") && n == 1) break;
        if (target_index(names[i]) < 0) rc = targets_err(x, lines[i], names[i]);
        for (int j = 0; !rc && j < i; j++)
            if (!strcmp(names[i], names[j]))
                rc = loc_err(x, lines[i], "lora.targets: '%s' is listed twice", names[i]);
    }
    if (!rc && n == 1 && !strcmp(names[0], "all-linear")) {
        free(names[0]);
        free(names);
        free(lines);
        set_all_targets(c);
        return 0;
    }
    if (rc) {
        for (int i = 0; i < n; i++) free(names[i]);
        free(names);
    } else {
        free_targets(c);
        c->lora.targets = names;
        c->lora.n_targets = n;
    }
    free(lines);
    return rc;
}

static int set_field(cfg_train *c, const field *f, const cnode *v, const srcctx *x) {
    char key[96], buf[128], ch[256];
    dotted(key, sizeof key, f->sec, f->key);
    const char *found = describe(v, buf, sizeof buf);
    switch (f->type) {
    case FT_STR: {
        if (v->kind == CN_NULL) {
            free(*AT(c, f, char *));
            *AT(c, f, char *) = NULL;
            return 0;
        }
        if (v->kind != CN_SCALAR) return loc_err(x, v->line, "%s: expected a string, found %s", key, found);
        if (!v->text[0])
            return loc_err(x, v->line, "%s: expected a non-empty string (write null for none), found ''", key);
        free(*AT(c, f, char *));
        *AT(c, f, char *) = xstrdup(v->text);
        return 0;
    }
    case FT_ENUM:
    case FT_MODE: {
        join_choices(ch, sizeof ch, f->choices);
        int ok = 0;
        if (v->kind == CN_SCALAR)
            for (int i = 0; f->choices[i]; i++) ok |= !strcmp(f->choices[i], v->text);
        if (!ok) return loc_err(x, v->line, "%s: expected one of %s, found %s", key, ch, found);
        if (f->type == FT_MODE) {
            snprintf(AT(c, f, char), sizeof c->mode, "%s", v->text);
        } else {
            free(*AT(c, f, char *));
            *AT(c, f, char *) = xstrdup(v->text);
        }
        return 0;
    }
    case FT_BOOL:
        if (v->kind == CN_SCALAR && !strcasecmp(v->text, "true")) *AT(c, f, int) = 1;
        else if (v->kind == CN_SCALAR && !strcasecmp(v->text, "false")) *AT(c, f, int) = 0;
        else return loc_err(x, v->line, "%s: expected true or false, found %s", key, found);
        return 0;
    case FT_INT:
    case FT_I64: {
        int64_t iv;
        if (v->kind != CN_SCALAR || parse_i64(v->text, &iv))
            return loc_err(x, v->line, "%s: expected an integer, found %s", key, found);
        if (f->type == FT_INT) {
            if (iv < INT_MIN || iv > INT_MAX)
                return loc_err(x, v->line, "%s: expected an integer in [%d, %d], found %s", key, INT_MIN, INT_MAX,
                               found);
            *AT(c, f, int) = (int)iv;
        } else {
            *AT(c, f, int64_t) = iv;
        }
        return 0;
    }
    case FT_U64: {
        uint64_t uv;
        if (v->kind != CN_SCALAR || parse_u64(v->text, &uv))
            return loc_err(x, v->line, "%s: expected a non-negative integer, found %s", key, found);
        *AT(c, f, uint64_t) = uv;
        return 0;
    }
    case FT_FLOAT: {
        double d;
        if (v->kind != CN_SCALAR || parse_f64(v->text, &d))
            return loc_err(x, v->line, "%s: expected a number, found %s", key, found);
        if (fabs(d) > FLT_MAX) return loc_err(x, v->line, "%s: %s is out of the float range", key, found);
        *AT(c, f, float) = (float)d;
        return 0;
    }
    case FT_BETAS: {
        if (v->kind == CN_SEQ && v->n != 2)
            return loc_err(x, v->line, "%s: expected a list of two numbers [beta1, beta2], found a list of %d", key,
                           v->n);
        if (v->kind != CN_SEQ)
            return loc_err(x, v->line, "%s: expected a list of two numbers [beta1, beta2], found %s", key, found);
        double b[2];
        for (int i = 0; i < 2; i++)
            if (v->items[i].kind != CN_SCALAR || parse_f64(v->items[i].text, &b[i]))
                return loc_err(x, v->items[i].line, "%s[%d]: expected a number, found %s", key, i,
                               describe(&v->items[i], buf, sizeof buf));
        c->optim.beta1 = (float)b[0];
        c->optim.beta2 = (float)b[1];
        return 0;
    }
    case FT_TARGETS: return set_targets(c, v, x);
    case FT_PROMPTS: {   // a list of prompts, a file name, or null
        if (v->kind == CN_SEQ)
            for (int i = 0; i < v->n; i++)
                if (v->items[i].kind != CN_SCALAR)
                    return loc_err(x, v->items[i].line, "%s[%d]: expected a prompt string, found %s", key, i,
                                   describe(&v->items[i], buf, sizeof buf));
        if (v->kind == CN_MAP || (v->kind == CN_SCALAR && !v->text[0]))
            return loc_err(x, v->line, "%s: expected a list of prompts or a file name (.txt/.jsonl), found %s", key,
                           found);
        free_prompts(c);
        if (v->kind == CN_SCALAR) c->train.sample_file = xstrdup(v->text);
        for (int i = 0; v->kind == CN_SEQ && i < v->n; i++) {
            c->train.sample_prompts = xrealloc(c->train.sample_prompts, (size_t)(i + 1) * sizeof(char *));
            c->train.sample_prompts[c->train.n_sample_prompts++] = xstrdup(v->items[i].text);
        }
        return 0;
    }
    }
    return loc_err(x, v->line, "%s: internal error: unknown field type", key);
}

// --- unknown-key messages

static int edit_distance(const char *a, const char *b) {
    int la = (int)strlen(a), lb = (int)strlen(b);
    if (la > 40 || lb > 40) return 99;
    int d[41][41];
    for (int i = 0; i <= la; i++) d[i][0] = i;
    for (int j = 0; j <= lb; j++) d[0][j] = j;
    for (int i = 1; i <= la; i++)
        for (int j = 1; j <= lb; j++) {
            int m = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < m) m = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < m) m = d[i][j - 1] + 1;
            d[i][j] = m;
        }
    return d[la][lb];
}

// edits tolerated when suggesting a name: 1 for short names, 2 from five characters on
static int max_typo(const char *name) { return strlen(name) >= 5 ? 2 : 1; }

// `shown`: the name to print when it differs from sec.key (an override's full dotted key)
static int unknown_key(const srcctx *x, int line, const char *sec, const char *key, const char *shown) {
    char list[512] = "", name[128], hint[160] = "";
    size_t used = 0;
    int best = 3;
    const char *best_name = NULL, *elsewhere = NULL;
    for (int i = 0; i < NFIELDS; i++) {
        if (strcmp(fields[i].sec, sec)) {
            if (!strcmp(fields[i].key, key) && !elsewhere) elsewhere = fields[i].sec;
            continue;
        }
        used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", used ? ", " : "", fields[i].key);
        int dd = edit_distance(key, fields[i].key);
        if (dd < best && dd <= max_typo(fields[i].key)) best = dd, best_name = fields[i].key;
    }
    if (!sec[0])
        for (int i = 0; sections[i]; i++) {
            used += (size_t)snprintf(list + used, sizeof list - used, ", %s", sections[i]);
            int dd = edit_distance(key, sections[i]);
            if (dd < best && dd <= max_typo(sections[i])) best = dd, best_name = sections[i];
        }
    if (elsewhere && elsewhere[0]) {  // the key exists in another section: "lr" -> optim.lr
        snprintf(hint, sizeof hint, "; did you mean %s.%s?", elsewhere, key);
    } else if (best_name) {
        dotted(name, sizeof name, sec, best_name);
        snprintf(hint, sizeof hint, "; did you mean %s?", name);
    }
    if (shown) snprintf(name, sizeof name, "%s", shown);
    else dotted(name, sizeof name, sec, key);
    if (sec[0]) return loc_err(x, line, "unknown key %s (valid keys of %s: %s%s)", name, sec, list, hint);
    return loc_err(x, line, "unknown key %s (valid top-level keys: %s%s)", name, list, hint);
}

// Applies mapping m to section sec ("" = the top level).
static int apply_map(cfg_train *c, const char *sec, const cnode *m, const srcctx *x) {
    for (int i = 0; i < m->n; i++) {
        const char *k = m->keys[i];
        for (int j = 0; j < i; j++)
            if (!strcmp(m->keys[j], k)) {
                char name[128];
                dotted(name, sizeof name, sec, k);
                if (m->key_lines[j] > 0)
                    return loc_err(x, m->key_lines[i], "duplicate key %s (first at line %d)", name, m->key_lines[j]);
                return loc_err(x, m->key_lines[i], "duplicate key %s", name);
            }
        const cnode *v = &m->items[i];
        if (!sec[0] && is_section(k)) {
            if (v->kind == CN_NULL) continue;  // "vision:" with nothing under it
            if (v->kind != CN_MAP) {
                char buf[128];
                return loc_err(x, v->line, "%s: expected a mapping of %s keys, found %s", k, k,
                               describe(v, buf, sizeof buf));
            }
            if (apply_map(c, k, v, x)) return -1;
            continue;
        }
        const field *f = find_field(sec, k);
        if (!f && is_group(sec, k) && v->kind == CN_MAP) {   // a nested group: pool: {type, tokens}
            for (int j = 0; j < v->n; j++) {
                char sub[112];
                snprintf(sub, sizeof sub, "%s.%s", k, v->keys[j]);
                const field *g = find_field(sec, sub);
                if (!g) return unknown_key(x, v->key_lines[j], sec, sub, NULL);
                if (set_field(c, g, &v->items[j], x)) return -1;
            }
            continue;
        }
        if (!f) return unknown_key(x, m->key_lines[i], sec, k, NULL);
        if (set_field(c, f, v, x)) return -1;
    }
    return 0;
}

static int apply_root(cfg_train *c, const cnode *root, const srcctx *x) {
    if (root->kind == CN_NULL) return 0;
    if (root->kind != CN_MAP) {
        char buf[128];
        return loc_err(x, root->line, "expected a mapping of config keys at the top level, found %s",
                       describe(root, buf, sizeof buf));
    }
    return apply_map(c, "", root, x);
}

// --- loading

static const char *first_key(const char *sec) {
    for (int i = 0; i < NFIELDS; i++)
        if (!strcmp(fields[i].sec, sec)) return fields[i].key;
    return "?";
}

int cfg_override(cfg_train *c, const char *kv) {
    srcctx x = {SRC_OVERRIDE, kv};
    const char *eq = strchr(kv, '=');
    if (!eq || eq == kv) return loc_err(&x, 0, "expected dotted.key=value, e.g. optim.lr=1e-4");
    size_t klen = (size_t)(eq - kv);
    char key[128];
    if (klen >= sizeof key) return loc_err(&x, 0, "key too long");
    memcpy(key, kv, klen);
    key[klen] = 0;
    if (strchr(key, ' ')) return loc_err(&x, 0, "expected dotted.key=value without spaces around '='");
    // the key first: a misspelled key is reported as such whatever the value
    const char *section = NULL;  // "optim={lr: 1e-4}" sets several keys of a section at once
    const char *group = NULL, *group_sec = NULL;   // a nested group of keys: pool = pool.type, pool.tokens
    const field *f = NULL;
    char *dot = strchr(key, '.');
    if (!dot) {
        if (is_section(key)) section = key;
        else if (!(f = find_field("", key))) return unknown_key(&x, 0, "", key, NULL);
    } else {
        *dot = 0;
        const char *sec = key, *k = dot + 1;
        if (!is_section(sec)) {
            char shown[260];
            snprintf(shown, sizeof shown, "%s.%s", sec, k);
            return unknown_key(&x, 0, "", sec, shown);
        }
        if (!(f = find_field(sec, k)) && !is_group(sec, k)) return unknown_key(&x, 0, sec, k, NULL);
        if (!f) group_sec = sec, group = k;   // "projector.pool={type: avg, tokens: 16}"
    }
    const char *val = eq + 1;
    cnode v;
    int rc = yaml_to_cnode(val, strlen(val), &v, &x);
    if (f && f->type == FT_STR && (rc || v.kind == CN_SEQ || v.kind == CN_MAP)) {
        // a path YAML would read as something else ("runs/a: b", "{x}") is taken as written
        if (!rc) cnode_free(&v);
        err_clear();
        memset(&v, 0, sizeof v);
        v.kind = CN_SCALAR;
        v.text = xstrdup(val);
        rc = 0;
    }
    if (rc) return -1;
    if (section) {
        if (v.kind == CN_NULL) rc = 0;
        else if (v.kind != CN_MAP)
            rc = loc_err(&x, 0, "%s is a section: name a key inside it (e.g. %s.%s=...) or give a mapping", section,
                         section, first_key(section));
        else rc = apply_map(c, section, &v, &x);
    } else if (group) {
        if (v.kind != CN_MAP)
            rc = loc_err(&x, 0, "%s.%s is a group of keys: give a mapping (e.g. {type: avg, tokens: 16})", group_sec,
                         group);
        char *gk = (char *)group;
        int gl = 0;
        cnode w = {.kind = CN_MAP, .n = 1, .items = &v, .keys = &gk, .key_lines = &gl};
        if (!rc) rc = apply_map(c, group_sec, &w, &x);
    } else {
        rc = set_field(c, f, &v, &x);
    }
    cnode_free(&v);
    return rc;
}

int cfg_load(cfg_train *c, const char *yaml_path, int n_overrides, char **overrides) {
    cfg_defaults(c);
    if (yaml_path) {
        c->config_path = xstrdup(yaml_path);
        size_t len = 0;
        char *text = file_read_all(yaml_path, &len);
        if (!text) {
            cfg_free(c);
            return -1;
        }
        srcctx x = {SRC_YAML, yaml_path};
        cnode root;
        int rc = yaml_to_cnode(text, len, &root, &x);
        free(text);
        if (!rc) {
            rc = apply_root(c, &root, &x);
            cnode_free(&root);
        }
        if (rc) {
            cfg_free(c);
            return -1;
        }
    }
    for (int i = 0; i < n_overrides; i++)
        if (cfg_override(c, overrides[i])) {
            cfg_free(c);
            return -1;
        }
    return 0;
}

// --- validation

static int verr(const cfg_train *c, const char *fmt, ...) AG_PRINTF(2, 3);
static int verr(const cfg_train *c, const char *fmt, ...) {
    char msg[1536];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (c->config_path) return err_set("%s: %s", c->config_path, msg);
    return err_set("config: %s", msg);
}

static int in_choices(const char *s, const char *const *ch) {
    if (!s) return 0;
    for (int i = 0; ch[i]; i++)
        if (!strcmp(s, ch[i])) return 1;
    return 0;
}

int cfg_validate(const cfg_train *c) {
    char ch[256];
    for (int i = 0; i < NFIELDS; i++) {
        const field *f = &fields[i];
        const char *s = f->type == FT_MODE ? CAT(c, f, char) : f->type == FT_ENUM ? *CAT(c, f, char *) : NULL;
        if ((f->type == FT_MODE || f->type == FT_ENUM) && !in_choices(s, f->choices)) {
            char key[96];
            dotted(key, sizeof key, f->sec, f->key);
            join_choices(ch, sizeof ch, f->choices);
            return verr(c, "%s: expected one of %s, found '%s'", key, ch, s ? s : "null");
        }
    }
    int lora = !strcmp(c->mode, "lora") || !strcmp(c->mode, "projector+lora") || !strcmp(c->mode, "xattn+lora");
    int proj = strcmp(c->mode, "lora") != 0;   // projector, projector+lora, xattn, xattn+lora
    if (!c->model) return verr(c, "model: required (the text model folder), found nothing");
    if (!c->output_dir) return verr(c, "output_dir: required, found nothing");
    if (!c->data.train) return verr(c, "data.train: required (the training JSONL), found nothing");
    if (c->data.max_seq_len < 2)
        return verr(c, "data.max_seq_len: expected an integer >= 2, found %d", c->data.max_seq_len);
    if (lora) {
        if (c->lora.r <= 0) return verr(c, "lora.r: expected an integer > 0, found %d", c->lora.r);
        if (!(c->lora.alpha > 0)) return verr(c, "lora.alpha: expected a number > 0, found %g", c->lora.alpha);
        if (c->lora.n_targets < 1)
            return verr(c, "lora.targets: expected at least one target (or all-linear), found an empty list");
    }
    if (!(c->lora.dropout >= 0 && c->lora.dropout < 1))
        return verr(c, "lora.dropout: expected 0 <= dropout < 1, found %g", c->lora.dropout);
    for (int i = 0; i < c->lora.n_targets; i++) {
        if (target_index(c->lora.targets[i]) < 0) {
            srcctx x = {SRC_NONE, NULL};
            targets_err(&x, 0, c->lora.targets[i]);
            return err_prefix("%s", c->config_path ? c->config_path : "config");
        }
        for (int j = 0; j < i; j++)
            if (!strcmp(c->lora.targets[i], c->lora.targets[j]))
                return verr(c, "lora.targets: '%s' is listed twice", c->lora.targets[i]);
    }
    if (proj && !c->vision.model && !c->vision.features)
        return verr(c, "vision.model: required in %s mode (the SigLIP folder), found nothing", c->mode);
    if (c->xattn.every < 1) return verr(c, "xattn.every: expected an integer >= 1, found %d", c->xattn.every);
    if (strcmp(c->projector.pool_type, "none") && c->projector.pool_tokens < 1)
        return verr(c, "projector.pool.tokens: expected an integer >= 1 with pool.type %s, found %d",
                    c->projector.pool_type, c->projector.pool_tokens);
    if (c->vision.max_pixels <= 0)
        return verr(c, "vision.max_pixels: expected an integer > 0, found %" PRId64, c->vision.max_pixels);
    if (!(c->optim.lr > 0)) return verr(c, "optim.lr: expected a number > 0, found %g", c->optim.lr);
    if (!(c->optim.beta1 >= 0 && c->optim.beta1 < 1))
        return verr(c, "optim.betas[0]: expected 0 <= beta1 < 1, found %g", c->optim.beta1);
    if (!(c->optim.beta2 >= 0 && c->optim.beta2 < 1))
        return verr(c, "optim.betas[1]: expected 0 <= beta2 < 1, found %g", c->optim.beta2);
    if (!(c->optim.eps > 0)) return verr(c, "optim.eps: expected a number > 0, found %g", c->optim.eps);
    if (!(c->optim.weight_decay >= 0))
        return verr(c, "optim.weight_decay: expected a number >= 0, found %g", c->optim.weight_decay);
    if (!(c->optim.grad_clip >= 0))
        return verr(c, "optim.grad_clip: expected a number >= 0 (0 disables clipping), found %g", c->optim.grad_clip);
    if (c->schedule.warmup_steps < 0)
        return verr(c, "schedule.warmup_steps: expected an integer >= 0, found %d", c->schedule.warmup_steps);
    if (!(c->schedule.warmup_ratio >= 0 && c->schedule.warmup_ratio < 1))
        return verr(c, "schedule.warmup_ratio: expected 0 <= warmup_ratio < 1, found %g", c->schedule.warmup_ratio);
    if (!(c->schedule.min_lr_ratio >= 0 && c->schedule.min_lr_ratio <= 1))
        return verr(c, "schedule.min_lr_ratio: expected 0 <= min_lr_ratio <= 1, found %g", c->schedule.min_lr_ratio);
    if (c->train.batch_size < 1)
        return verr(c, "train.batch_size: expected an integer >= 1, found %d", c->train.batch_size);
    if (c->train.grad_accum < 1)
        return verr(c, "train.grad_accum: expected an integer >= 1, found %d", c->train.grad_accum);
    if (c->train.batch_size > CFG_MAX_BATCH || c->train.grad_accum > CFG_MAX_BATCH)
        return verr(c, "train.%s: expected at most %d (the limit on batch sizes), found %d",
                    c->train.batch_size > CFG_MAX_BATCH ? "batch_size" : "grad_accum", CFG_MAX_BATCH,
                    c->train.batch_size > CFG_MAX_BATCH ? c->train.batch_size : c->train.grad_accum);
    if (c->train.epochs < 1) return verr(c, "train.epochs: expected an integer >= 1, found %d", c->train.epochs);
    if (c->train.max_steps != -1 && c->train.max_steps < 1)
        return verr(c, "train.max_steps: expected -1 (use epochs) or an integer >= 1, found %" PRId64,
                    c->train.max_steps);
    if (c->train.save_every < 0)
        return verr(c, "train.save_every: expected an integer >= 0 (0: only at the end), found %d", c->train.save_every);
    if (c->train.eval_every < 0)
        return verr(c, "train.eval_every: expected an integer >= 0 (0: only at the end), found %d", c->train.eval_every);
    if (c->train.keep_last < 0)
        return verr(c, "train.keep_last: expected an integer >= 0 (0: keep all), found %d", c->train.keep_last);
    if (c->train.log_every < 1)
        return verr(c, "train.log_every: expected an integer >= 1, found %d", c->train.log_every);
    if (c->train.arena_mb < 0 || c->train.arena_mb > CFG_MAX_ARENA_MB)   // MiB, shifted to bytes: must not overflow
        return verr(c, "train.arena_mb: expected an integer in [0, %lld] (0: automatic), found %" PRId64,
                    (long long)CFG_MAX_ARENA_MB, c->train.arena_mb);
    if (c->train.threads < 0)
        return verr(c, "train.threads: expected an integer >= 0 (0: OpenMP's default), found %d", c->train.threads);
    if (c->train.sample_every < 0)
        return verr(c, "train.sample_every: expected an integer >= 0 (0: before training and at the end), found %d",
                    c->train.sample_every);
    if (c->train.sample_max_tokens < 1)
        return verr(c, "train.sample_max_tokens: expected an integer >= 1, found %d", c->train.sample_max_tokens);
    if ((c->train.n_sample_prompts || c->train.sample_file) && strcmp(c->mode, "lora"))
        return verr(c, "train.sample_prompts: samples are text prompts, for mode lora (found mode %s)", c->mode);
    return 0;
}

// --- JSON

static cJSON *raw_num(const char *fmt, ...) AG_PRINTF(1, 2);
static cJSON *raw_num(const char *fmt, ...) {
    char buf[64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return cJSON_CreateRaw(buf);
}

static cJSON *field_json(const cfg_train *c, const field *f) {
    char buf[64];
    switch (f->type) {
    case FT_STR:
    case FT_ENUM: {
        const char *s = *CAT(c, f, char *);
        return s ? cJSON_CreateString(s) : cJSON_CreateNull();
    }
    case FT_MODE: return cJSON_CreateString(CAT(c, f, char));
    case FT_BOOL: return cJSON_CreateBool(*CAT(c, f, int) != 0);
    case FT_INT: return raw_num("%d", *CAT(c, f, int));
    case FT_I64: {
        // JSON readers hold numbers as doubles: integers beyond 2^53 stay exact as strings
        int64_t v = *CAT(c, f, int64_t);
        if (v <= (1ll << 53) && v >= -(1ll << 53)) return raw_num("%" PRId64, v);
        snprintf(buf, sizeof buf, "%" PRId64, v);
        return cJSON_CreateString(buf);
    }
    case FT_U64: {
        uint64_t u = *CAT(c, f, uint64_t);
        if (u <= (1ull << 53)) return raw_num("%" PRIu64, u);
        snprintf(buf, sizeof buf, "%" PRIu64, u);
        return cJSON_CreateString(buf);
    }
    case FT_FLOAT: float_text(*CAT(c, f, float), buf, sizeof buf); return cJSON_CreateRaw(buf);
    case FT_BETAS: {
        cJSON *a = cJSON_CreateArray();
        float_text(c->optim.beta1, buf, sizeof buf);
        cJSON_AddItemToArray(a, cJSON_CreateRaw(buf));
        float_text(c->optim.beta2, buf, sizeof buf);
        cJSON_AddItemToArray(a, cJSON_CreateRaw(buf));
        return a;
    }
    case FT_TARGETS: {
        cJSON *a = cJSON_CreateArray();
        for (int i = 0; i < c->lora.n_targets; i++) cJSON_AddItemToArray(a, cJSON_CreateString(c->lora.targets[i]));
        return a;
    }
    case FT_PROMPTS: {
        if (c->train.sample_file) return cJSON_CreateString(c->train.sample_file);
        if (!c->train.n_sample_prompts) return cJSON_CreateNull();
        cJSON *a = cJSON_CreateArray();
        for (int i = 0; i < c->train.n_sample_prompts; i++)
            cJSON_AddItemToArray(a, cJSON_CreateString(c->train.sample_prompts[i]));
        return a;
    }
    }
    return cJSON_CreateNull();
}

char *cfg_to_json(const cfg_train *c) {
    cJSON *root = cJSON_CreateObject();
    for (int i = 0; i < NFIELDS; i++) {
        const field *f = &fields[i];
        cJSON *parent = root;
        if (f->sec[0]) {
            parent = cJSON_GetObjectItemCaseSensitive(root, f->sec);
            if (!parent) {
                parent = cJSON_CreateObject();
                cJSON_AddItemToObject(root, f->sec, parent);
            }
        }
        cJSON_AddItemToObject(parent, f->key, field_json(c, f));
    }
    char *s = cJSON_Print(root);
    cJSON_Delete(root);
    AG_ASSERT(s, "cJSON_Print failed");
    char *out = xstrdup(s);  // callers free() it; cJSON may use its own allocator
    cJSON_free(s);
    return out;
}

int cfg_from_json(cfg_train *c, const char *json, const char *what) {
    cfg_defaults(c);
    c->config_path = xstrdup(what ? what : "config JSON");
    srcctx x = {SRC_JSON, c->config_path};
    cJSON *j = cJSON_Parse(json);
    if (!j) {
        const char *e = cJSON_GetErrorPtr();
        loc_err(&x, 0, "invalid JSON near '%.20s'", e ? e : "");
        cfg_free(c);
        return -1;
    }
    cnode root;
    int rc = json_conv(j, &root, 0, &x);
    cJSON_Delete(j);
    if (!rc) rc = apply_root(c, &root, &x);
    cnode_free(&root);
    if (rc) {
        cfg_free(c);
        return -1;
    }
    return 0;
}

const char *cfg_first_diff(const cfg_train *a, const cfg_train *b) {
    static _Thread_local char name[96];
    for (int i = 0; i < NFIELDS; i++) {
        const field *f = &fields[i];
        int same = 1;
        switch (f->type) {
        case FT_STR:
        case FT_ENUM: {
            const char *x = *CAT(a, f, char *), *y = *CAT(b, f, char *);
            same = (!x && !y) || (x && y && !strcmp(x, y));
            break;
        }
        case FT_MODE: same = !strcmp(CAT(a, f, char), CAT(b, f, char)); break;
        case FT_BOOL:
        case FT_INT: same = *CAT(a, f, int) == *CAT(b, f, int); break;
        case FT_I64: same = *CAT(a, f, int64_t) == *CAT(b, f, int64_t); break;
        case FT_U64: same = *CAT(a, f, uint64_t) == *CAT(b, f, uint64_t); break;
        case FT_FLOAT: same = *CAT(a, f, float) == *CAT(b, f, float); break;
        case FT_BETAS: same = a->optim.beta1 == b->optim.beta1 && a->optim.beta2 == b->optim.beta2; break;
        case FT_TARGETS:
            same = a->lora.n_targets == b->lora.n_targets;
            for (int k = 0; same && k < a->lora.n_targets; k++) same = !strcmp(a->lora.targets[k], b->lora.targets[k]);
            break;
        case FT_PROMPTS: {
            const char *x = a->train.sample_file, *y = b->train.sample_file;
            same = ((!x && !y) || (x && y && !strcmp(x, y))) && a->train.n_sample_prompts == b->train.n_sample_prompts;
            for (int k = 0; same && k < a->train.n_sample_prompts; k++)
                same = !strcmp(a->train.sample_prompts[k], b->train.sample_prompts[k]);
            break;
        }
        }
        if (!same) {
            dotted(name, sizeof name, f->sec, f->key);
            return name;
        }
    }
    return NULL;
}

// --- learning-rate schedule

int64_t cfg_warmup_steps(const cfg_train *c, int64_t N) {
    if (c->schedule.warmup_steps > 0) return c->schedule.warmup_steps;
    if (!(c->schedule.warmup_ratio > 0) || N <= 0) return 0;
    // ceil(ratio * N) on the ratio as written (0.03, not float's 0.0299999993)
    char buf[32];
    float_text(c->schedule.warmup_ratio, buf, sizeof buf);
    double x = strtod(buf, NULL) * (double)N;
    int64_t w = (int64_t)x;
    if (x - (double)w > 1e-9 * (x > 1 ? x : 1)) w++;
    return w;
}

float cfg_lr_at(const cfg_train *c, int64_t n, int64_t N) {
    double lr = c->optim.lr;
    int64_t W = cfg_warmup_steps(c, N);
    if (n < W) return (float)(lr * (double)(n + 1) / (double)W);
    double m = c->schedule.min_lr_ratio;
    double p = N > W ? (double)(n - W) / (double)(N - W) : 1.0;
    if (p < 0) p = 0;
    if (p > 1) p = 1;
    double f = 1.0;
    const char *k = c->schedule.kind ? c->schedule.kind : "constant";
    if (!strcmp(k, "cosine")) f = 0.5 * (1.0 + cos(M_PI * p));
    else if (!strcmp(k, "linear")) f = 1.0 - p;
    return (float)(lr * (m + (1.0 - m) * f));
}
