// config.c — the training config (see config.h): YAML via libyaml's document loader and
// JSON via cJSON are both turned into one small value tree (cnode, cfgtree.h), which a table of
// typed fields applies to the struct. Errors name the file and line (YAML), the override, or the
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

#include "cfgtree.h"
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
static const char *const weight_modes[] = {"auto", "f32", NULL};    // ag_weights_parse's names

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
    const char *def;  // the default, as YAML text read like any value (NULL: none, the field is 0/NULL)
} field;

// One table drives everything a key has: YAML and overrides (apply_map, cfg_override), JSON
// (cfg_to_json, cfg_from_json), the defaults (cfg_defaults) and the choices (cfg_validate).
#define F(sec, key, type, member, choices) {sec, key, type, offsetof(cfg_train, member), choices, NULL}
#define D(sec, key, type, member, choices, def) {sec, key, type, offsetof(cfg_train, member), choices, def}
static const field fields[] = {
    D("", "mode", FT_MODE, mode, modes, "lora"),
    F("", "model", FT_STR, model, NULL),
    D("", "precision", FT_ENUM, precision, precisions, "fp32"),
    D("", "weights", FT_ENUM, weights, weight_modes, "auto"),
    F("", "output_dir", FT_STR, output_dir, NULL),
    D("", "resume", FT_BOOL, resume, NULL, "false"),
    F("data", "train", FT_STR, data.train, NULL),
    F("data", "eval", FT_STR, data.eval, NULL),
    D("data", "format", FT_ENUM, data.format, formats, "auto"),
    D("data", "template", FT_ENUM, data.template_, templates, "llama3"),
    D("data", "max_seq_len", FT_INT, data.max_seq_len, NULL, "2048"),
    D("data", "packing", FT_BOOL, data.packing, NULL, "false"),
    D("data", "shuffle", FT_BOOL, data.shuffle, NULL, "true"),
    D("data", "train_on_prompt", FT_BOOL, data.train_on_prompt, NULL, "false"),
    D("data", "skip_bad_lines", FT_BOOL, data.skip_bad_lines, NULL, "false"),
    D("data", "truncation", FT_ENUM, data.truncation, truncations, "drop"),
    D("lora", "r", FT_INT, lora.r, NULL, "16"),
    D("lora", "alpha", FT_FLOAT, lora.alpha, NULL, "32"),
    D("lora", "dropout", FT_FLOAT, lora.dropout, NULL, "0.05"),
    F("lora", "targets", FT_TARGETS, lora.targets, NULL),
    D("lora", "use_rslora", FT_BOOL, lora.use_rslora, NULL, "false"),
    F("lora", "init", FT_STR, lora.init, NULL),
    F("vision", "model", FT_STR, vision.model, NULL),
    D("vision", "select_layer", FT_INT, vision.select_layer, NULL, "-2"),
    F("vision", "features", FT_STR, vision.features, NULL),
    D("vision", "max_pixels", FT_I64, vision.max_pixels, NULL, "89478485"),
    D("projector", "type", FT_ENUM, projector.type, projector_types, "mlp2x_gelu"),
    F("projector", "init", FT_STR, projector.init, NULL),
    D("projector", "pool.type", FT_ENUM, projector.pool_type, pool_types, "none"),   // projector: {pool: {type, tokens}}
    D("projector", "pool.tokens", FT_INT, projector.pool_tokens, NULL, "0"),
    D("xattn", "every", FT_INT, xattn.every, NULL, "4"),
    D("optim", "lr", FT_FLOAT, optim.lr, NULL, "2e-4"),
    D("optim", "betas", FT_BETAS, optim.beta1, NULL, "[0.9, 0.999]"),
    D("optim", "eps", FT_FLOAT, optim.eps, NULL, "1e-8"),
    D("optim", "weight_decay", FT_FLOAT, optim.weight_decay, NULL, "0"),
    D("optim", "grad_clip", FT_FLOAT, optim.grad_clip, NULL, "1"),
    D("schedule", "kind", FT_ENUM, schedule.kind, schedule_kinds, "cosine"),
    D("schedule", "warmup_steps", FT_INT, schedule.warmup_steps, NULL, "0"),
    D("schedule", "warmup_ratio", FT_FLOAT, schedule.warmup_ratio, NULL, "0"),
    D("schedule", "min_lr_ratio", FT_FLOAT, schedule.min_lr_ratio, NULL, "0"),
    D("train", "batch_size", FT_INT, train.batch_size, NULL, "4"),
    D("train", "grad_accum", FT_INT, train.grad_accum, NULL, "1"),
    D("train", "epochs", FT_INT, train.epochs, NULL, "1"),
    D("train", "max_steps", FT_I64, train.max_steps, NULL, "-1"),
    D("train", "seed", FT_U64, train.seed, NULL, "42"),
    D("train", "save_every", FT_INT, train.save_every, NULL, "200"),
    D("train", "eval_every", FT_INT, train.eval_every, NULL, "200"),
    D("train", "keep_last", FT_INT, train.keep_last, NULL, "3"),
    F("train", "dump_grads", FT_STR, train.dump_grads, NULL),
    D("train", "log_every", FT_INT, train.log_every, NULL, "1"),
    D("train", "arena_mb", FT_I64, train.arena_mb, NULL, "0"),
    D("train", "threads", FT_INT, train.threads, NULL, "0"),
    D("train", "activation_checkpointing", FT_BOOL, train.activation_checkpointing, NULL, "false"),
    D("train", "tensorboard", FT_BOOL, train.tensorboard, NULL, "true"),
    F("train", "sample_prompts", FT_PROMPTS, train.sample_prompts, NULL),
    D("train", "sample_every", FT_INT, train.sample_every, NULL, "0"),
    D("train", "sample_max_tokens", FT_INT, train.sample_max_tokens, NULL, "32"),
};
#undef F
#undef D
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
    return cn_err(x, line,
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
                rc = cn_err(x, v->items[i].line, "lora.targets[%d]: expected a target name, found %s", i,
                             cn_describe(&v->items[i], buf, sizeof buf));
                break;
            }
            lines[n] = v->items[i].line;
            names[n++] = xstrdup(v->items[i].text);
        }
    } else {
        return cn_err(x, v->line, "lora.targets: expected a list of target names or all-linear, found %s",
                       cn_describe(v, buf, sizeof buf));
    }
    for (int i = 0; !rc && i < n; i++) {
        if (!strcmp(names[i], "all-linear") && n == 1) break;
        if (target_index(names[i]) < 0) rc = targets_err(x, lines[i], names[i]);
        for (int j = 0; !rc && j < i; j++)
            if (!strcmp(names[i], names[j]))
                rc = cn_err(x, lines[i], "lora.targets: '%s' is listed twice", names[i]);
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
    const char *found = cn_describe(v, buf, sizeof buf);
    switch (f->type) {
    case FT_STR: {
        if (v->kind == CN_NULL) {
            free(*AT(c, f, char *));
            *AT(c, f, char *) = NULL;
            return 0;
        }
        if (v->kind != CN_SCALAR) return cn_err(x, v->line, "%s: expected a string, found %s", key, found);
        if (!v->text[0])
            return cn_err(x, v->line, "%s: expected a non-empty string (write null for none), found ''", key);
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
        if (!ok) return cn_err(x, v->line, "%s: expected one of %s, found %s", key, ch, found);
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
        else return cn_err(x, v->line, "%s: expected true or false, found %s", key, found);
        return 0;
    case FT_INT:
    case FT_I64: {
        int64_t iv;
        if (v->kind != CN_SCALAR || parse_i64(v->text, &iv))
            return cn_err(x, v->line, "%s: expected an integer, found %s", key, found);
        if (f->type == FT_INT) {
            if (iv < INT_MIN || iv > INT_MAX)
                return cn_err(x, v->line, "%s: expected an integer in [%d, %d], found %s", key, INT_MIN, INT_MAX,
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
            return cn_err(x, v->line, "%s: expected a non-negative integer, found %s", key, found);
        *AT(c, f, uint64_t) = uv;
        return 0;
    }
    case FT_FLOAT: {
        double d;
        if (v->kind != CN_SCALAR || parse_f64(v->text, &d))
            return cn_err(x, v->line, "%s: expected a number, found %s", key, found);
        if (fabs(d) > FLT_MAX) return cn_err(x, v->line, "%s: %s is out of the float range", key, found);
        *AT(c, f, float) = (float)d;
        return 0;
    }
    case FT_BETAS: {
        if (v->kind == CN_SEQ && v->n != 2)
            return cn_err(x, v->line, "%s: expected a list of two numbers [beta1, beta2], found a list of %d", key,
                           v->n);
        if (v->kind != CN_SEQ)
            return cn_err(x, v->line, "%s: expected a list of two numbers [beta1, beta2], found %s", key, found);
        double b[2];
        for (int i = 0; i < 2; i++)
            if (v->items[i].kind != CN_SCALAR || parse_f64(v->items[i].text, &b[i]))
                return cn_err(x, v->items[i].line, "%s[%d]: expected a number, found %s", key, i,
                               cn_describe(&v->items[i], buf, sizeof buf));
        c->optim.beta1 = (float)b[0];
        c->optim.beta2 = (float)b[1];
        return 0;
    }
    case FT_TARGETS: return set_targets(c, v, x);
    case FT_PROMPTS: {   // a list of prompts, a file name, or null
        if (v->kind == CN_SEQ)
            for (int i = 0; i < v->n; i++)
                if (v->items[i].kind != CN_SCALAR)
                    return cn_err(x, v->items[i].line, "%s[%d]: expected a prompt string, found %s", key, i,
                                   cn_describe(&v->items[i], buf, sizeof buf));
        if (v->kind == CN_MAP || (v->kind == CN_SCALAR && !v->text[0]))
            return cn_err(x, v->line, "%s: expected a list of prompts or a file name (.txt/.jsonl), found %s", key,
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
    return cn_err(x, v->line, "%s: internal error: unknown field type", key);
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
    if (sec[0]) return cn_err(x, line, "unknown key %s (valid keys of %s: %s%s)", name, sec, list, hint);
    return cn_err(x, line, "unknown key %s (valid top-level keys: %s%s)", name, list, hint);
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
                    return cn_err(x, m->key_lines[i], "duplicate key %s (first at line %d)", name, m->key_lines[j]);
                return cn_err(x, m->key_lines[i], "duplicate key %s", name);
            }
        const cnode *v = &m->items[i];
        if (!sec[0] && is_section(k)) {
            if (v->kind == CN_NULL) continue;  // "vision:" with nothing under it
            if (v->kind != CN_MAP) {
                char buf[128];
                return cn_err(x, v->line, "%s: expected a mapping of %s keys, found %s", k, k,
                               cn_describe(v, buf, sizeof buf));
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
        return cn_err(x, root->line, "expected a mapping of config keys at the top level, found %s",
                       cn_describe(root, buf, sizeof buf));
    }
    return apply_map(c, "", root, x);
}

// --- defaults: the table's, read as YAML

void cfg_defaults(cfg_train *c) {
    memset(c, 0, sizeof *c);
    srcctx x = {SRC_NONE, "default"};
    for (int i = 0; i < NFIELDS; i++) {   // each default read as its YAML text, like a config value
        const field *f = &fields[i];
        if (!f->def) continue;
        cnode v;
        int rc = cn_from_yaml(f->def, strlen(f->def), &v, &x);
        AG_ASSERT(rc == 0, "default of %s.%s", f->sec, f->key);
        rc = set_field(c, f, &v, &x);
        AG_ASSERT(rc == 0, "default of %s.%s: %s", f->sec, f->key, err_get());
        cnode_free(&v);
    }
    set_all_targets(c);   // lora.targets: all-linear
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
    if (!eq || eq == kv) return cn_err(&x, 0, "expected dotted.key=value, e.g. optim.lr=1e-4");
    size_t klen = (size_t)(eq - kv);
    char key[128];
    if (klen >= sizeof key) return cn_err(&x, 0, "key too long");
    memcpy(key, kv, klen);
    key[klen] = 0;
    if (strchr(key, ' ')) return cn_err(&x, 0, "expected dotted.key=value without spaces around '='");
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
    int rc = cn_from_yaml(val, strlen(val), &v, &x);
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
            rc = cn_err(&x, 0, "%s is a section: name a key inside it (e.g. %s.%s=...) or give a mapping", section,
                         section, first_key(section));
        else rc = apply_map(c, section, &v, &x);
    } else if (group) {
        if (v.kind != CN_MAP)
            rc = cn_err(&x, 0, "%s.%s is a group of keys: give a mapping (e.g. {type: avg, tokens: 16})", group_sec,
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
        int rc = cn_from_yaml(text, len, &root, &x);
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
        cn_err(&x, 0, "invalid JSON near '%.20s'", e ? e : "");
        cfg_free(c);
        return -1;
    }
    cnode root;
    int rc = cn_from_json(j, &root, 0, &x);
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

ag_schedule cfg_schedule(const cfg_train *c) {
    ag_schedule s = {.lr = c->optim.lr, .kind = AG_SCHED_CONSTANT, .warmup_steps = c->schedule.warmup_steps,
                     .warmup_ratio = c->schedule.warmup_ratio, .min_lr_ratio = c->schedule.min_lr_ratio};
    ag_sched_kind_parse(c->schedule.kind, &s.kind);   // checked by cfg_validate; another word: constant
    return s;
}

int64_t cfg_warmup_steps(const cfg_train *c, int64_t N) {
    ag_schedule s = cfg_schedule(c);
    return ag_warmup_steps(&s, N);
}

float cfg_lr_at(const cfg_train *c, int64_t n, int64_t N) {
    ag_schedule s = cfg_schedule(c);
    return ag_lr_at(&s, n, N);
}
