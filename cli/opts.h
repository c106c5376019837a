// opts.h — the one option parser of every subcommand: a table of options (name, type, range,
// help text) read with libc's getopt_long, so every command gives the same `error:` wording
// (cli.h: exit 2, "(usage: lorac CMD --help)") and the same --help layout:
//
//   usage: lorac CMD SYNOPSIS
//   [about]
//   options:
//     --name ARG        help text
//   [footer]
//
// Rules for every command: `--name VALUE` or `--name=VALUE`; names are matched whole (no
// abbreviations); an option given twice counts once, the last (or, with spec.once, is an
// error: bench); `-h`/`--help` prints the help on stdout.
// Numbers are strict: the value must be entirely a decimal integer (or, for OPT_F32/OPT_F64, a
// finite number) in the option's range — "512x", " 5", "+5", "1e3" (for integers), "" and
// "nan" are usage errors, never clamped. Arguments that are not options (CONFIG, key=value,
// TEXT) come back in order, as do all arguments after `--`.
//
// Wording of the usage errors (after `error: `):
//   unknown option '--bogus'            --iters needs a value            --tokens given twice (once)
//   --chat takes no value               --model: empty folder name (OPT_DIR; OPT_FILE: file)
//   --tokens: expected an integer in 2..65536, found '512x'
//   --stride: expected an integer >= 1, found '0'
//   --top-p: expected a number in (0, 1], found '0'
//   --precision: expected one of fp32 bf16, found 'fp16'
//   --rank does not apply to bench eval (a command with kinds: bench)
#ifndef LORAC_OPTS_H
#define LORAC_OPTS_H

#include <stdint.h>

typedef enum {
    OPT_FLAG,   // no value: *(int *)dst = 1
    OPT_STR,    // any text, "" included: *(const char **)dst
    OPT_DIR,    // a folder name, not empty: *(const char **)dst
    OPT_FILE,   // a file name, not empty: *(const char **)dst
    OPT_WORD,   // one of `words` (space separated): *(const char **)dst
    OPT_INT,    // a decimal integer in [lo, hi]: *(int64_t *)dst
    OPT_U64,    // a decimal integer >= 0 (up to 2^64 - 1): *(uint64_t *)dst
    OPT_F32,    // a finite number in the range: *(float *)dst (parsed with strtof)
    OPT_F64,    // a finite number in the range: *(double *)dst (parsed with strtod)
} opt_type;

// Number ranges: OPT_INT [lo, hi] with INT64_MIN / INT64_MAX for no bound; OPT_F32 / OPT_F64
// [lo, hi] with -INFINITY / INFINITY for no bound, lo_open 1 for (lo, hi].
typedef struct cli_opt {
    const char *name;      // without the leading "--"
    opt_type type;
    void *dst;
    const char *arg;       // the value in --help: DIR, FILE, N, T (NULL for a flag)
    const char *help;      // one line of --help (NULL: the option is not listed)
    double lo, hi;         // OPT_INT, OPT_F32, OPT_F64
    int lo_open;           // OPT_F32, OPT_F64: lo itself is out of range
    const char *words;     // OPT_WORD: the choices, space separated
    const char *expect;    // NULL, or what the error says is expected (instead of the range or words)
    unsigned kinds;        // a command with kinds (bench): the kinds it applies to (0: all)
} cli_opt;

// Table rows (designated, so unset fields are 0): a flag, a text (OPT_STR/OPT_DIR/OPT_FILE), one
// of some words, an integer in [lo, hi], a number (OPT_F32/OPT_F64) in [lo, hi] or (lo, hi].
#define CLI_FLAG(n, d, h) {.name = (n), .type = OPT_FLAG, .dst = (d), .help = (h)}
#define CLI_TEXT(n, t, d, a, h) {.name = (n), .type = (t), .dst = (d), .arg = (a), .help = (h)}
#define CLI_WORD(n, d, a, w, h) {.name = (n), .type = OPT_WORD, .dst = (d), .arg = (a), .help = (h), .words = (w)}
// The model options eval and generate share: --model DIR (required), --adapter DIR.
#define CLI_MODEL(m, a)                                                          \
    CLI_TEXT("model", OPT_DIR, (m), "DIR", "Llama model folder (required)"),   \
    CLI_TEXT("adapter", OPT_DIR, (a), "DIR", "a LoRA adapter folder (PEFT layout) applied to the model")
// --vision DIR --projector DIR (eval, generate)
#define CLI_VISION(v, p)                                                                       \
    CLI_TEXT("vision", OPT_DIR, (v), "DIR", "SigLIP folder (with --projector)"),             \
    CLI_TEXT("projector", OPT_DIR, (p), "DIR", "projector folder written by a projector-mode run (with --vision)")
// --precision fp32|bf16 (eval, generate): "--precision: expected fp32 or bf16, found 'x'"
#define CLI_PRECISION(d)                                                                                \
    {.name = "precision", .type = OPT_WORD, .dst = (d), .arg = "P", .words = "fp32 bf16", .expect = "fp32 or bf16", \
     .help = "fp32 (default) or bf16: frozen weights in BF16, BF16 matmuls"}
#define CLI_INT(n, d, a, l, u, h) {.name = (n), .type = OPT_INT, .dst = (d), .arg = (a), .help = (h), .lo = (l), .hi = (u)}
#define CLI_NUM(n, t, d, a, l, u, open, h) \
    {.name = (n), .type = (t), .dst = (d), .arg = (a), .help = (h), .lo = (l), .hi = (u), .lo_open = (open)}

// --weights auto|f32 (eval, generate, merge): "--weights: expected auto or f32, found 'x'"
#define CLI_WEIGHTS(d, h) \
    {.name = "weights", .type = OPT_WORD, .dst = (d), .arg = "W", .words = "auto f32", .expect = "auto or f32", .help = (h)}

typedef struct cli_spec {
    const char *cmd;       // "eval": errors say "(usage: lorac eval --help)"
    const char *synopsis;  // after "usage: lorac CMD " (may hold "\n" + indentation)
    const char *about;     // NULL, or lines between the synopsis and the options
    const cli_opt *opts;
    int nopts;
    const char *footer;    // NULL, or lines after the options
    int once;              // 1: an option given twice is an error (bench); 0: the last one counts
} cli_spec;

#define CLI_NOPTS(a) (int)(sizeof(a) / sizeof((a)[0]))

// Parses argv[1..argc) against spec (argv[0] is the command's name). The arguments that are no
// options go to pos[0..*npos) (at most maxpos; one more is the error `unexpected argument`
// with `extra_hint` appended when given). kind / kind_name: for a command with kinds (bench),
// the chosen one (0 / NULL otherwise). Returns 0 when parsed, 1 after printing --help (the
// command then exits 0), 2 after printing a usage error (the command exits 2).
int cli_parse(const cli_spec *spec, int argc, char **argv, char **pos, int maxpos, int *npos, unsigned kind,
              const char *kind_name);

// Prints the --help text of spec on stdout.
void cli_help(const cli_spec *spec);

#endif
