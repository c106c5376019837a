// fuzz_common.h — helpers shared by the libFuzzer harnesses (tests/fuzz/fuzz_*.c).
//
// Every harness defines LLVMFuzzerTestOneInput(data, size): it feeds the bytes to one parser of
// untrusted input exactly as lorac reads that input (a file on disk for the parsers that open
// paths), and returns 0. A parser may reject the input (err_set, -1): that is the expected
// outcome for most inputs. What must never happen: a crash, a sanitizer report, a leak, an
// allocation the machine cannot serve, or a hang.
//
// The same files build two ways:
//   - `make fuzz`: clang -fsanitize=fuzzer,address,undefined, one binary per harness;
//   - `make test`: gcc, each harness renamed (-DFUZZ_NAME=...) and linked into
//     build/tests/test_fuzz_replay, which replays tests/fuzz/corpus/NAME and
//     tests/fuzz/regressions/NAME through it.
//
// Files a harness writes go to one private folder per process (FUZZ_TMPDIR, else $TMPDIR or
// /tmp, plus lorac-fuzz-PID), removed at exit.
#ifndef LORAC_FUZZ_COMMON_H
#define LORAC_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tokenizer.h"
#include "util.h"

// The harness entry point: LLVMFuzzerTestOneInput under libFuzzer, FUZZ_NAME(name) in the replay.
#ifdef FUZZ_REPLAY_NAME
#define FUZZ_ENTRY FUZZ_REPLAY_NAME
#else
#define FUZZ_ENTRY LLVMFuzzerTestOneInput
#endif
int FUZZ_ENTRY(const uint8_t *data, size_t size);

static char fz_dir_path[512];

static void fz_cleanup(void) {
    if (!fz_dir_path[0]) return;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fz_dir_path);
    if (system(cmd) != 0) fprintf(stderr, "fuzz: could not remove %s\n", fz_dir_path);
}

// The private scratch folder of this process (created on first use).
static inline const char *fz_dir(void) {
    if (!fz_dir_path[0]) {
        const char *base = getenv("FUZZ_TMPDIR");
        if (!base || !*base) base = getenv("TMPDIR");
        if (!base || !*base) base = "/tmp";
        snprintf(fz_dir_path, sizeof fz_dir_path, "%s/lorac-fuzz-%d", base, (int)getpid());
        mkdir(fz_dir_path, 0700);
        atexit(fz_cleanup);
    }
    return fz_dir_path;
}

// Writes data[0..n) to fz_dir()/name (sub folders created) and returns the malloc'd path.
static inline char *fz_write(const char *name, const void *data, size_t n) {
    char *path = path_join(fz_dir(), name);
    char *slash = strrchr(path, '/');
    *slash = 0;
    mkdir_p(path);
    *slash = '/';
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(data, 1, n, f) != n) || fclose(f)) {
        fprintf(stderr, "fuzz: cannot write %s\n", path);
        abort();
    }
    return path;
}

// Splits the input at its first NUL byte: a = data[0..an), b = the rest (bn = 0 when no NUL).
static inline void fz_split(const uint8_t *data, size_t n, const uint8_t **a, size_t *an, const uint8_t **b,
                            size_t *bn) {
    const uint8_t *z = memchr(data, 0, n);
    *a = data;
    *an = z ? (size_t)(z - data) : n;
    *b = z ? z + 1 : data + n;
    *bn = z ? n - *an - 1 : 0;
}

// A NUL-terminated malloc'd copy of data[0..n).
static inline char *fz_str(const uint8_t *data, size_t n) {
    char *s = xmalloc(n + 1);
    memcpy(s, data, n);
    s[n] = 0;
    return s;
}

// A tiny byte-level tokenizer (256 single-byte tokens from a tiktoken file, plus the 256 Llama 3
// special tokens that tok_load adds after them): the records and HDF5 harnesses need one, and
// the real 9 MB Llama 3 tokenizer would make every run slow. Loaded once per process.
static inline tok_tokenizer *fz_tiny_tokenizer(void) {
    static tok_tokenizer *tok;
    if (tok) return tok;
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char text[256 * 12], *p = text;
    for (int b = 0; b < 256; b++)
        p += sprintf(p, "%c%c== %d\n", b64[b >> 2], b64[(b & 3) << 4], b);
    char *path = fz_write("tok/tokenizer.model", text, (size_t)(p - text));
    free(path);
    char *dir = path_join(fz_dir(), "tok");
    tok = tok_load(dir);
    free(dir);
    if (!tok) {
        fprintf(stderr, "fuzz: tiny tokenizer: %s\n", err_get());
        abort();
    }
    return tok;
}

#endif
