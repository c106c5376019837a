// cfgtree.h — the small value tree (cnode) that YAML (libyaml's document loader) and JSON
// (cJSON) are both turned into before train/config.c's field table applies it: scalars as
// their text, lists, mappings with their keys' lines. Errors name where the value came from.
#ifndef LORAC_CFGTREE_H
#define LORAC_CFGTREE_H

#include <cJSON.h>
#include <stddef.h>

#include "util.h"

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

// Where values come from, for error prefixes.
typedef enum { SRC_YAML, SRC_OVERRIDE, SRC_JSON, SRC_NONE } srckind;
typedef struct {
    srckind kind;
    const char *src;  // file path, override text, or JSON source name
} srcctx;

void cnode_free(cnode *v);
// `fmt` prefixed with where it came from: "FILE:LINE: " (YAML), "override 'k=v': ", "SOURCE: "
// (JSON). Returns -1 (err_set).
int cn_err(const srcctx *x, int line, const char *fmt, ...) AG_PRINTF(3, 4);
// "'abc'", "null", "a list", "a mapping" — for "found ..." in messages (buf holds the text).
const char *cn_describe(const cnode *v, char *buf, size_t n);
// YAML text[0..len) -> *out (one document; nesting and node counts bounded). 0, or -1 + err_set.
int cn_from_yaml(const char *text, size_t len, cnode *out, const srcctx *x);
// A cJSON value -> *out (depth: the nesting so far, 0 at the root). 0, or -1 + err_set.
int cn_from_json(const cJSON *j, cnode *out, int depth, const srcctx *x);

#endif
