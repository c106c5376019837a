// cfgtree.c — YAML and JSON into one value tree (see cfgtree.h).
#define _GNU_SOURCE
#include "cfgtree.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

void cnode_free(cnode *v) {
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

int cn_err(const srcctx *x, int line, const char *fmt, ...) {
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
const char *cn_describe(const cnode *v, char *buf, size_t n) {
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
        return cn_err(x, out->line, "the document nests too deeply or is too large (recursive alias?)");
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
                if (!it) cn_err(x, out->line, "malformed YAML sequence");
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
            if (!k || !v) return cn_err(x, out->line, "malformed YAML mapping");
            int kline = (int)k->start_mark.line + 1;
            if (k->type != YAML_SCALAR_NODE)
                return cn_err(x, kline, "expected a key name, found a %s as a key",
                               k->type == YAML_MAPPING_NODE ? "mapping" : "list");
            out->n = i + 1;
            out->keys[i] = xstrdup((const char *)k->data.scalar.value);
            out->key_lines[i] = kline;
            if (yaml_conv(d, v, &out->items[i], depth + 1, count, x)) return -1;
        }
        return 0;
    }
    default: return cn_err(x, out->line, "empty YAML node");
    }
}

static int yaml_parse_error(yaml_parser_t *p, const srcctx *x) {
    const char *prob = p->problem ? p->problem : "parse error";
    if (p->error == YAML_READER_ERROR)
        return cn_err(x, 0, "invalid YAML: %s at byte %zu", prob, p->problem_offset);
    char ctxbuf[160] = "";
    if (p->context)
        snprintf(ctxbuf, sizeof ctxbuf, " (%s at line %zu)", p->context, p->context_mark.line + 1);
    return cn_err(x, (int)p->problem_mark.line + 1, "invalid YAML: %s%s", prob, ctxbuf);
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
            return cn_err(x, line, "flow collections ([...] / {...}) nest deeper than %d levels", MAX_DEPTH);
        else if ((ch == ']' || ch == '}') && depth > 0) depth--;
    }
    return 0;
}

// Parses one YAML document from text into *out (CN_NULL for an empty document).
int cn_from_yaml(const char *text, size_t len, cnode *out, const srcctx *x) {
    memset(out, 0, sizeof *out);
    if (yaml_flow_depth_check(text, len, x)) return -1;
    yaml_parser_t p;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&p)) return cn_err(x, 0, "cannot initialize the YAML parser");
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
            if (r2) rc = cn_err(x, (int)r2->start_mark.line + 1, "expected one YAML document, found a second one");
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

int cn_from_json(const cJSON *j, cnode *out, int depth, const srcctx *x) {
    memset(out, 0, sizeof *out);
    if (depth > MAX_DEPTH) return cn_err(x, 0, "JSON nests too deeply");
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
            if (cn_from_json(e, &out->items[i], depth + 1, x)) return -1;
        }
    } else {
        return cn_err(x, 0, "unsupported JSON value");
    }
    return 0;
}

