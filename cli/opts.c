// opts.c — the table-driven option parser on getopt_long (see opts.h).
#include "opts.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "util.h"

// --- values

// A decimal integer and nothing else: an optional '-' then digits ("512x", " 5", "+5", "1e3"
// and "" are not). 0, or -1 when it is no such number or does not fit.
static int strict_i64(const char *s, int64_t *out) {
    if (!(isdigit((unsigned char)s[0]) || (s[0] == '-' && isdigit((unsigned char)s[1])))) return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*end || errno) return -1;
    *out = v;
    return 0;
}

static int strict_u64(const char *s, uint64_t *out) {
    if (!isdigit((unsigned char)s[0])) return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end || errno) return -1;
    *out = v;
    return 0;
}

// A finite number, all of s (no leading space, nothing after it).
static int strict_f64(const char *s, int is_f32, double *out) {
    if (!*s || isspace((unsigned char)s[0])) return -1;
    char *end;
    errno = 0;
    double v = is_f32 ? (double)strtof(s, &end) : strtod(s, &end);
    if (*end || errno || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

static int is_word(const char *words, const char *s) {
    size_t n = strlen(s);
    for (const char *c = words; *c;) {
        size_t k = strcspn(c, " ");
        if (n && k == n && !strncmp(c, s, n)) return 1;
        c += k + (c[k] == ' ');
    }
    return 0;
}

// What a number option expects, as the error says it: "an integer in 2..65536", "an integer
// >= 1", "a number in (0, 1]", "a number >= 0".
static void expected(const cli_opt *o, char *buf, size_t cap) {
    if (o->expect) {
        snprintf(buf, cap, "%s", o->expect);
        return;
    }
    if (o->type == OPT_U64) {
        snprintf(buf, cap, "an integer >= 0");
    } else if (o->type == OPT_INT) {
        if (o->hi >= (double)INT64_MAX) snprintf(buf, cap, "an integer >= %.0f", o->lo);
        else snprintf(buf, cap, "an integer in %.0f..%.0f", o->lo, o->hi);
    } else if (isinf(o->hi)) {
        snprintf(buf, cap, "a number %s %g", o->lo_open ? ">" : ">=", o->lo);
    } else {
        snprintf(buf, cap, "a number in %c%g, %g]", o->lo_open ? '(' : '[', o->lo, o->hi);
    }
}

// Stores one option's value. 0, or 2 after the usage error.
static int set_value(const cli_spec *spec, const cli_opt *o, const char *v) {
    char want[160];
    switch (o->type) {
    case OPT_FLAG: *(int *)o->dst = 1; return 0;
    case OPT_STR: *(const char **)o->dst = v; return 0;
    case OPT_DIR:
    case OPT_FILE:
        if (!*v) return cli_usage(spec->cmd, "--%s: empty %s name", o->name, o->type == OPT_DIR ? "folder" : "file");
        *(const char **)o->dst = v;
        return 0;
    case OPT_WORD:
        if (!is_word(o->words, v)) {
            if (o->expect) return cli_usage(spec->cmd, "--%s: expected %s, found '%s'", o->name, o->expect, v);
            return cli_usage(spec->cmd, "--%s: expected one of %s, found '%s'", o->name, o->words, v);
        }
        *(const char **)o->dst = v;
        return 0;
    case OPT_INT: {
        int64_t x;
        if (strict_i64(v, &x) || (double)x < o->lo || (double)x > o->hi) break;
        *(int64_t *)o->dst = x;
        return 0;
    }
    case OPT_U64: {
        uint64_t x;
        if (strict_u64(v, &x)) break;
        *(uint64_t *)o->dst = x;
        return 0;
    }
    case OPT_F32:
    case OPT_F64: {
        double x;
        if (strict_f64(v, o->type == OPT_F32, &x) || x < o->lo || x > o->hi || (o->lo_open && x == o->lo)) break;
        if (o->type == OPT_F32) *(float *)o->dst = (float)x;
        else *(double *)o->dst = x;
        return 0;
    }
    }
    expected(o, want, sizeof want);
    return cli_usage(spec->cmd, "--%s: expected %s, found '%s'", o->name, want, v);
}

// --- the parse

// The option name of argv element a ("--name" or "--name=value"), into buf.
static const char *name_of(const char *a, char *buf, size_t cap) {
    size_t n = strcspn(a, "=");
    snprintf(buf, cap, "%.*s", (int)(n < cap ? n : cap - 1), a);
    return buf;
}

int cli_parse(const cli_spec *spec, int argc, char **argv, char **pos, int maxpos, int *npos, unsigned kind,
              const char *kind_name) {
    int n = spec->nopts;
    struct option *lo = xcalloc((size_t)n + 2, sizeof *lo);
    for (int k = 0; k < n; k++)
        lo[k] = (struct option){spec->opts[k].name, spec->opts[k].type == OPT_FLAG ? no_argument : required_argument,
                                NULL, 256 + k};
    lo[n] = (struct option){"help", no_argument, NULL, 'h'};
    uint8_t *seen = xcalloc((size_t)n + 1, 1);
    *npos = 0;
    int rc = 0, c;
    char name[128];
    opterr = 0;
    optind = 0;   // a fresh scan (glibc: also resets its internal state)
    // "-": arguments that are no options come back in order (code 1); ":": a missing value is ':'
    while (!rc && (c = getopt_long(argc, argv, "-:h", lo, NULL)) != -1) {
        const char *a = argv[optind - 1];   // the element just read (or the value of the option)
        if (c == 1) {
            if (*npos >= maxpos) rc = cli_usage(spec->cmd, "unexpected argument '%s'", optarg);
            else pos[(*npos)++] = optarg;
        } else if (c == 'h') {
            if (strcmp(a, "-h") && strcmp(a, "--help")) {
                rc = cli_usage(spec->cmd, "unknown option '%s'", name_of(a, name, sizeof name));
            } else {
                cli_help(spec);
                rc = 1;
            }
        } else if (c == ':') {   // optopt: the option missing its value
            if (optopt >= 256) rc = cli_usage(spec->cmd, "--%s needs a value", spec->opts[optopt - 256].name);
            else rc = cli_usage(spec->cmd, "%s needs a value", name_of(a, name, sizeof name));
        } else if (c == '?') {   // optopt: a flag given a value, an unknown short option, or 0
            if (optopt >= 256) rc = cli_usage(spec->cmd, "--%s takes no value", spec->opts[optopt - 256].name);
            else if (optopt > 0 && optopt != 'h') rc = cli_usage(spec->cmd, "unknown option '-%c'", optopt);
            else rc = cli_usage(spec->cmd, "unknown option '%s'", name_of(a, name, sizeof name));
        } else {
            const cli_opt *o = &spec->opts[c - 256];
            // the option's own element: the one before its value when the value was separate
            const char *el = optarg && optarg == argv[optind - 1] && optind >= 2 ? argv[optind - 2] : a;
            name_of(el, name, sizeof name);
            if (strncmp(name, "--", 2) || strcmp(name + 2, o->name)) {   // an abbreviation: not accepted
                rc = cli_usage(spec->cmd, "unknown option '%s'", name);
            } else if (kind && o->kinds && !(o->kinds & kind)) {
                rc = cli_usage(spec->cmd, "--%s does not apply to %s %s", o->name, spec->cmd, kind_name);
            } else if (seen[c - 256]++ && spec->once) {
                rc = cli_usage(spec->cmd, "--%s given twice", o->name);
            } else {
                rc = set_value(spec, o, o->type == OPT_FLAG ? NULL : optarg);
            }
        }
    }
    // after "--": the rest are arguments
    for (int i = optind; !rc && i < argc; i++) {
        if (*npos >= maxpos) rc = cli_usage(spec->cmd, "unexpected argument '%s'", argv[i]);
        else pos[(*npos)++] = argv[i];
    }
    free(lo);
    free(seen);
    return rc;
}

void cli_help(const cli_spec *spec) {
    printf("usage: lorac %s %s\n", spec->cmd, spec->synopsis);
    if (spec->about) printf("%s", spec->about);
    int w = 0;
    char col[96];
    for (int k = 0; k < spec->nopts; k++) {
        const cli_opt *o = &spec->opts[k];
        int len = snprintf(col, sizeof col, "--%s%s%s", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
        if (o->help && len > w) w = len;
    }
    printf("options:\n");
    for (int k = 0; k < spec->nopts; k++) {
        const cli_opt *o = &spec->opts[k];
        if (!o->help) continue;
        snprintf(col, sizeof col, "--%s%s%s", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
        printf("  %-*s  %s\n", w, col, o->help);
    }
    printf("  %-*s  %s\n", w, "-h, --help", "this text");
    if (spec->footer) printf("%s", spec->footer);
}
