// util.c — errors, asserts, allocation and atomic file helpers (see util.h).
#define _GNU_SOURCE
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

// --- errors

static _Thread_local char err_buf[2048];

int err_set(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_buf, sizeof err_buf, fmt, ap);
    va_end(ap);
    return -1;
}

int err_prefix(const char *fmt, ...) {
    char pre[1024], old[sizeof err_buf];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    memcpy(old, err_buf, sizeof old);
    size_t n = strlen(pre);
    if (n > sizeof err_buf - 3) n = sizeof err_buf - 3;
    memcpy(err_buf, pre, n);
    memcpy(err_buf + n, ": ", 2);
    size_t m = strlen(old);
    if (m > sizeof err_buf - n - 3) m = sizeof err_buf - n - 3;
    memcpy(err_buf + n + 2, old, m);
    err_buf[n + 2 + m] = 0;
    return -1;
}

const char *err_get(void) { return err_buf; }
void err_clear(void) { err_buf[0] = 0; }

void ag_assert_fail(const char *file, int line, const char *cond, const char *fmt, ...) {
    fprintf(stderr, "internal error: %s:%d: assertion '%s' failed: ", file, line, cond);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

static _Noreturn void oom(size_t n) {
    fprintf(stderr, "error: out of memory allocating %zu bytes\n", n);
    exit(1);
}

void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) oom(n);
    return p;
}
void *xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) oom(n * size);
    return p;
}
void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) oom(n);
    return q;
}
char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = xmalloc(n);
    memcpy(d, s, n);
    return d;
}

// --- growing strings

void sb_put(strbuf *b, const char *p, size_t n) {
    if (b->n + n + 1 > b->cap) {
        b->cap = 2 * (b->n + n + 1) + 256;
        b->s = xrealloc(b->s, b->cap);
    }
    memcpy(b->s + b->n, p, n);
    b->n += n;
    b->s[b->n] = 0;
}

void sb_puts(strbuf *b, const char *p) { sb_put(b, p, strlen(p)); }

// --- numbers as text

void float_text(float v, char *buf, size_t n) {
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(buf, n, "%.*g", prec, (double)v);
        if (strtof(buf, NULL) == v) return;
    }
    snprintf(buf, n, "%.9g", (double)v);
}

// --- files

char *file_read_all(const char *path, size_t *len_out) {
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        err_set("%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, len = 0;
    char *buf = xmalloc(cap + 1);
    for (;;) {
        size_t n = fread(buf + len, 1, cap - len, fp);
        len += n;
        if (len < cap) break;
        cap *= 2;
        buf = xrealloc(buf, cap + 1);
    }
    int bad = ferror(fp);
    fclose(fp);
    if (bad) {
        free(buf);
        err_set("%s: read error", path);
        return NULL;
    }
    buf[len] = 0;
    if (len_out) *len_out = len;
    return buf;
}

int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int dir_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int mkdir_p(const char *path) {
    char *p = xstrdup(path);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = 0;
        if (mkdir(p, 0777) != 0 && errno != EEXIST) {
            err_set("%s: cannot create folder: %s", p, strerror(errno));
            free(p);
            return -1;
        }
        *s = '/';
    }
    int rc = 0;
    if (mkdir(p, 0777) != 0 && errno != EEXIST) rc = err_set("%s: cannot create folder: %s", p, strerror(errno));
    else if (!dir_exists(p)) rc = err_set("%s: exists and is not a folder", p);
    free(p);
    return rc;
}

int rm_rf(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return errno == ENOENT ? 0 : err_set("%s: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (!d) return err_set("%s: cannot open folder: %s", path, strerror(errno));
        struct dirent *e;
        int rc = 0;
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char *sub = path_join(path, e->d_name);
            if (rm_rf(sub) != 0) rc = -1;
            free(sub);
        }
        closedir(d);
        if (rc) return rc;
        if (rmdir(path) != 0) return err_set("%s: cannot remove folder: %s", path, strerror(errno));
        return 0;
    }
    if (unlink(path) != 0) return err_set("%s: cannot remove: %s", path, strerror(errno));
    fault_point2("removed", path);
    return 0;
}

char *path_join(const char *a, const char *b) {
    if (b[0] == '/' || !a[0]) return xstrdup(b);
    size_t la = strlen(a), lb = strlen(b);
    char *s = xmalloc(la + lb + 2);
    memcpy(s, a, la);
    size_t k = la;
    if (a[la - 1] != '/') s[k++] = '/';
    memcpy(s + k, b, lb + 1);
    return s;
}

char *path_dirname(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return xstrdup(".");
    if (slash == path) return xstrdup("/");
    size_t n = (size_t)(slash - path);
    char *s = xmalloc(n + 1);
    memcpy(s, path, n);
    s[n] = 0;
    return s;
}

int fsync_dir(const char *dir) {
    fault_point2("fsync folder", dir);
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return err_set("%s: cannot open folder: %s", dir, strerror(errno));
    int rc = fsync(fd);
    close(fd);
    return rc == 0 ? 0 : err_set("%s: fsync failed: %s", dir, strerror(errno));
}

afile *afile_open(const char *path) {
    afile *af = xcalloc(1, sizeof *af);
    af->path = xstrdup(path);
    size_t n = strlen(path) + 32;
    af->tmp = xmalloc(n);
    snprintf(af->tmp, n, "%s.tmp.%d", path, (int)getpid());
    af->fp = fopen(af->tmp, "wb");
    if (!af->fp) {
        err_set("%s: cannot create: %s", af->tmp, strerror(errno));
        free(af->tmp);
        free(af->path);
        free(af);
        return NULL;
    }
    fault_point2("created", af->tmp);
    return af;
}

static void afile_free(afile *af) {
    free(af->tmp);
    free(af->path);
    free(af);
}

int afile_commit(afile *af) {
    int rc = 0;
    if (fflush(af->fp) != 0 || ferror(af->fp)) rc = err_set("%s: write failed: %s", af->path, strerror(errno));
    if (!rc) fault_point2("written", af->tmp);
    if (!rc && fsync(fileno(af->fp)) != 0) rc = err_set("%s: fsync failed: %s", af->path, strerror(errno));
    if (fclose(af->fp) != 0 && !rc) rc = err_set("%s: close failed: %s", af->path, strerror(errno));
    if (!rc) fault_point2("fsynced", af->tmp);
    if (!rc && rename(af->tmp, af->path) != 0) rc = err_set("%s: rename failed: %s", af->path, strerror(errno));
    if (!rc) fault_point2("renamed", af->path);
    if (rc) {
        unlink(af->tmp);
    } else {
        char *d = path_dirname(af->path);
        rc = fsync_dir(d);
        free(d);
    }
    afile_free(af);
    return rc;
}

void afile_abort(afile *af) {
    fclose(af->fp);
    unlink(af->tmp);
    afile_free(af);
}

int file_write_atomic(const char *path, const void *data, size_t len) {
    afile *af = afile_open(path);
    if (!af) return -1;
    if (len && fwrite(data, 1, len, af->fp) != len) {
        afile_abort(af);
        return err_set("%s: write failed: %s", path, strerror(errno));
    }
    return afile_commit(af);
}

// --- folders replaced in one step

int dir_replace(const char *from, const char *to) {
    if (rename(from, to) == 0) return 0;
    if (errno != ENOTEMPTY && errno != EEXIST) return err_set("%s: cannot rename to %s: %s", from, to, strerror(errno));
    if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_EXCHANGE) != 0)
        return err_set("%s: cannot replace %s (atomic exchange: %s)", from, to, strerror(errno));
    fault_point2("exchanged", to);
    rm_rf(from);   // the old folder; a leftover is a stale temporary
    return 0;
}

// --- file sets

#define PUBLISH_JOURNAL ".lorac-publish"

char *publish_stage_name(const char *dir) {
    char name[64];
    snprintf(name, sizeof name, ".stage.tmp.%d", (int)getpid());
    return path_join(dir, name);
}

static const char *base_name(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

// the renames of a committed journal (text: "lorac-publish 1\nSTAGE\nNAME\n...")
static int publish_finish(const char *dir, const char *journal, char *text) {
    char *save = NULL, *line = strtok_r(text, "\n", &save);
    char *stage_name = line ? strtok_r(NULL, "\n", &save) : NULL;
    if (!line || strcmp(line, "lorac-publish 1") || !stage_name || strchr(stage_name, '/') ||
        !strcmp(stage_name, ".") || !strcmp(stage_name, ".."))
        return err_set("%s: not a lorac publish journal (remove it to keep the files as they are)", journal);
    char *stage = path_join(dir, stage_name);
    int rc = 0;
    for (char *name = strtok_r(NULL, "\n", &save); name && rc == 0; name = strtok_r(NULL, "\n", &save)) {
        if (strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, "..")) {
            rc = err_set("%s: bad file name '%s'", journal, name);
            break;
        }
        char *src = path_join(stage, name), *dst = path_join(dir, name);
        if (rename(src, dst) != 0 && errno != ENOENT)   // ENOENT: renamed before the interruption
            rc = err_set("%s: cannot rename to %s: %s", src, dst, strerror(errno));
        else
            fault_point2("published", dst);
        free(src);
        free(dst);
    }
    if (rc == 0) rc = fsync_dir(dir);
    if (rc == 0 && unlink(journal) != 0 && errno != ENOENT)
        rc = err_set("%s: cannot remove: %s", journal, strerror(errno));
    if (rc == 0) {
        fault_point2("journal removed", journal);
        rm_rf(stage);   // empty now; what is left of it is a stale temporary
        rc = fsync_dir(dir);
    }
    free(stage);
    return rc;
}

int dir_publish(const char *stage, const char *dir) {
    DIR *d = opendir(stage);
    if (!d) return err_set("%s: cannot open folder: %s", stage, strerror(errno));
    size_t cap = 256, len = 0;
    char *text = xmalloc(cap);
    len = (size_t)snprintf(text, cap, "lorac-publish 1\n%s\n", base_name(stage));
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        size_t n = strlen(e->d_name);
        if (len + n + 2 > cap) text = xrealloc(text, cap = 2 * (len + n + 2));
        memcpy(text + len, e->d_name, n);
        len += n;
        text[len++] = '\n';
        text[len] = 0;
    }
    closedir(d);
    char *journal = path_join(dir, PUBLISH_JOURNAL);
    int rc = fsync_dir(stage);
    if (rc == 0) rc = file_write_atomic(journal, text, len);   // the commit point
    if (rc == 0) rc = publish_finish(dir, journal, text);
    free(journal);
    free(text);
    return rc;
}

int publish_recover(const char *dir) {
    char *journal = path_join(dir, PUBLISH_JOURNAL);
    int rc = 0;
    if (file_exists(journal)) {
        char *text = file_read_all(journal, NULL);
        rc = text ? publish_finish(dir, journal, text) : -1;
        if (rc == 0) fprintf(stderr, "note: %s: finished an interrupted save of its files\n", dir);
        else err_prefix("%s: an interrupted save could not be finished", dir);
        free(text);
    }
    free(journal);
    return rc;
}

// "NAME.tmp.<digits>"
static int is_stale_tmp(const char *name) {
    const char *t = strstr(name, ".tmp.");
    if (!t) return 0;
    const char *p = t + 5;
    if (!*p) return 0;
    for (; *p; p++)
        if (*p < '0' || *p > '9') return 0;
    return 1;
}

void remove_stale_tmp(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!is_stale_tmp(e->d_name)) continue;
        char *p = path_join(dir, e->d_name);
        rm_rf(p);
        free(p);
    }
    closedir(d);
}

// --- locks

int lock_acquire(const char *path) {
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0) return err_set("%s: cannot create the lock file: %s", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        char buf[32] = "";
        ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
        buf[n > 0 ? n : 0] = 0;
        buf[strcspn(buf, "\n")] = 0;
        close(fd);
        if (e == EWOULDBLOCK)
            return err_set("%s: locked by another lorac process%s%s%s", path, buf[0] ? " (pid " : "", buf,
                           buf[0] ? ")" : "");
        return err_set("%s: cannot lock: %s", path, strerror(e));
    }
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%d\n", (int)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, buf, (size_t)n, 0) != n) {
        int e = errno;
        close(fd);
        return err_set("%s: cannot write the lock file: %s", path, strerror(e));
    }
    return fd;
}

void lock_release(int fd) {
    if (fd >= 0) close(fd);
}

// --- JSON numbers

const char *json_num(char *buf, const char *fmt, double v) {
    if (!isfinite(v)) return strcpy(buf, "null");
    snprintf(buf, 64, fmt, v);
    return buf;
}

// --- fault injection (tests only)

static long fault_n = -1, fault_seen;
static const char *fault_word;
static int fault_trace;

static void fault_init(void) {
    static int done;
    if (done) return;
    done = 1;
    const char *k = getenv("LORAC_TEST_KILL");
    if (k && *k) {
        char *end;
        fault_n = strtol(k, &end, 10);
        if (*end == ':') fault_word = end + 1;
    }
    const char *t = getenv("LORAC_TEST_TRACE");
    fault_trace = t && *t && strcmp(t, "0");
}

void fault_point2(const char *what, const char *path) {
    fault_init();
    if (fault_n < 0 && !fault_trace) return;
    char label[1200];
    snprintf(label, sizeof label, "%s %s", what, path ? path : "");
    fault_point(label);
}

void fault_point(const char *label) {
    fault_init();
    if (fault_trace) fprintf(stderr, "fault: %s\n", label);
    if (fault_n < 0 || (fault_word && !strstr(label, fault_word))) return;
    if (++fault_seen == fault_n) {
        kill(getpid(), SIGKILL);   // as a crash would: stdio buffers are lost
    }
}

// --- hashing

uint64_t hash64(const void *data, size_t len, uint64_t seed) {
    const unsigned char *p = data;
    uint64_t h = 1469598103934665603ULL ^ seed;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

int file_hash64(const char *path, uint64_t *out) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return err_set("%s: cannot open: %s", path, strerror(errno));
    uint64_t h = 0;
    unsigned char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, fp)) > 0) h = hash64(buf, n, h);
    int bad = ferror(fp);
    fclose(fp);
    if (bad) return err_set("%s: read error", path);
    *out = h;
    return 0;
}

double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double mem_available_bytes(void) {
    const char *o = getenv("LORAC_MEM_AVAILABLE_MB");
    if (o && *o) return atof(o) * 1048576.0;
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return -1;
    char line[256];
    double kb = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %lf kB", &kb) == 1) break;
    fclose(f);
    return kb < 0 ? -1 : kb * 1024.0;
}

double mem_peak_rss_bytes(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss * 1024.0;
}

int json_max_depth(const char *s, size_t n) {
    int depth = 0, max = 0, in_str = 0;
    for (size_t i = 0; i < n && s[i]; i++) {
        char c = s[i];
        if (in_str) {
            if (c == '\\') i++;
            else if (c == '"') in_str = 0;
        } else if (c == '"') {
            in_str = 1;
        } else if (c == '[' || c == '{') {
            if (++depth > max) max = depth;
        } else if ((c == ']' || c == '}') && depth > 0) {
            depth--;
        }
    }
    return max;
}
