// util.h — errors, asserts and small file helpers shared by every module.
//
// Two kinds of failure are kept apart:
//   - internal invariants: AG_ASSERT(cond, fmt, ...) prints file:line and aborts. Bugs only.
//   - user input and I/O: functions return -1 (or NULL) after err_set(...) recorded one
//     message naming the file, the line/tensor/key, what was expected and what was found.
//     The CLI prints it as a single `error: <message>` line and exits 1.
#ifndef LORAC_UTIL_H
#define LORAC_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#if defined(__GNUC__)
#define AG_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define AG_PRINTF(a, b)
#endif

static inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }

// --- errors

// Records the message (printf-style, thread-local) and returns -1, so `return err_set(...)`.
int err_set(const char *fmt, ...) AG_PRINTF(1, 2);
// Prepends "prefix: " to the current message (e.g. the file name added by a caller).
int err_prefix(const char *fmt, ...) AG_PRINTF(1, 2);
const char *err_get(void);   // "" when no error was recorded
void err_clear(void);

// Always-on internal invariant check (never for user input).
#define AG_ASSERT(cond, ...)                                                              \
    do {                                                                                   \
        if (!(cond)) ag_assert_fail(__FILE__, __LINE__, #cond, __VA_ARGS__);              \
    } while (0)
_Noreturn void ag_assert_fail(const char *file, int line, const char *cond, const char *fmt,
                              ...) AG_PRINTF(4, 5);

// Allocation that cannot fail silently: aborts with the size on out-of-memory.
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);

// --- growing strings
// A NUL-terminated string that grows as text is appended: `strbuf b = {0}; sb_puts(&b, "x");`
// then b.s (malloc'd, owned by the caller: free(b.s)) holds b.n bytes plus the NUL.
typedef struct strbuf {
    char *s;
    size_t n, cap;
} strbuf;
void sb_put(strbuf *b, const char *p, size_t n);   // appends p[0..n)
void sb_puts(strbuf *b, const char *p);            // appends the C string p

// --- files

// Reads a whole file into a NUL-terminated buffer. Returns NULL (err_set) on failure.
char *file_read_all(const char *path, size_t *len_out);
int file_exists(const char *path);
int dir_exists(const char *path);
int mkdir_p(const char *path);            // like `mkdir -p`; -1 + err_set on failure
int rm_rf(const char *path);              // removes a file or a folder tree; -1 on failure
// path join into a fresh malloc'd string: a + "/" + b
char *path_join(const char *a, const char *b);
// folder part of a path ("." when none), malloc'd
char *path_dirname(const char *path);

// Atomic output: write to "<path>.tmp.<pid>", fsync, rename over path, fsync the folder.
// Usage: af = afile_open(path); fwrite(..., af->fp); ...; afile_commit(af) or afile_abort(af).
typedef struct afile {
    FILE *fp;
    char *path;
    char *tmp;
} afile;
afile *afile_open(const char *path);      // NULL + err_set on failure
int afile_commit(afile *af);              // checks every write, fsyncs, renames; frees af
void afile_abort(afile *af);              // removes the temp file; frees af
int file_write_atomic(const char *path, const void *data, size_t len);
int fsync_dir(const char *dir);

// Renames folder `from` to `to`; when `to` exists the two are exchanged in one step
// (renameat2 RENAME_EXCHANGE) and the old one, now at `from`, is removed: `to` always names a
// complete folder. -1 + err_set on failure (`to` untouched).
int dir_replace(const char *from, const char *to);

// --- file sets: several files of one folder replaced as one unit
// The new files are written complete into `stage` (a folder inside `dir`, e.g. made by
// publish_stage_name). dir_publish then writes the journal DIR/.lorac-publish naming them (one
// atomic write: the commit point), renames each over its old copy, and removes the journal and
// the stage. A crash before the commit leaves the old set (and a stale stage), after it
// publish_recover(dir) finishes the renames: every lorac reader and writer of such a folder
// calls it first, so the set it sees is the previous complete one or the new one, never a mix.
char *publish_stage_name(const char *dir);   // DIR/.stage.tmp.<pid> (malloc'd)
int dir_publish(const char *stage, const char *dir);
// Finishes an interrupted dir_publish (no journal: nothing to do). -1 + err_set naming the
// journal when it cannot (e.g. a read-only folder).
int publish_recover(const char *dir);
// Removes what interrupted atomic writes left in dir: files and folders named
// "*.tmp.<digits>" (afile_open's, the stage). Only for a folder this process owns (a lock).
void remove_stale_tmp(const char *dir);

// Exclusive advisory lock (flock) on `path`, created if needed, held until the process ends
// (or lock_release). Returns the fd; -1 + err_set when another process holds it ("... is
// locked by process PID") or the file cannot be created.
int lock_acquire(const char *path);
void lock_release(int fd);

// A JSON number for a metrics/result line: printf(fmt, v), or "null" when v is NaN or ±Inf
// (JSON has no such numbers). buf needs 64 bytes; returns buf.
const char *json_num(char *buf, const char *fmt, double v);

// --- test-only fault injection (tests/test_hostile*.sh)
// Every step of an atomic write calls fault_point(label). LORAC_TEST_KILL=N[:WORD] sends the
// process SIGKILL at the N-th point (counting only labels containing WORD); LORAC_TEST_TRACE=1
// prints "fault: LABEL" on stderr at each point. Neither is set outside tests.
void fault_point(const char *label);
void fault_point2(const char *what, const char *path);   // label "WHAT PATH"

// --- hashing (FNV-1a 64 over bytes; used for tokenizer/model identity attributes)
uint64_t hash64(const void *data, size_t len, uint64_t seed);
int file_hash64(const char *path, uint64_t *out);   // -1 + err_set on I/O failure

// --- numbers as text
// The shortest "%.*g" text (1 to 9 digits) that reads back as v with strtof (0.03, not
// 0.0299999993): how lorac writes floats into JSON and how it reads a ratio as written.
void float_text(float v, char *buf, size_t n);

// --- time
double now_seconds(void);   // monotonic clock

// --- memory
// Bytes the kernel could still give this process without swapping (MemAvailable of
// /proc/meminfo), or -1 when unknown. LORAC_MEM_AVAILABLE_MB in the environment overrides it
// (tests of the out-of-memory refusals).
double mem_available_bytes(void);
// Peak resident set size of this process so far, in bytes (getrusage ru_maxrss).
double mem_peak_rss_bytes(void);

// --- JSON limits
// The deepest nesting of [ and { in JSON text s[0..n) (string contents skipped). Parsers whose
// JSON library refuses deep nesting (cJSON: CJSON_NESTING_LIMIT levels) use it to name that limit
// in their message instead of a bare "not valid JSON".
int json_max_depth(const char *s, size_t n);

#endif
