// util.c — errors, asserts, allocation and atomic file helpers (see util.h).
#define _GNU_SOURCE
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
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
    if (!rc && fsync(fileno(af->fp)) != 0) rc = err_set("%s: fsync failed: %s", af->path, strerror(errno));
    if (fclose(af->fp) != 0 && !rc) rc = err_set("%s: close failed: %s", af->path, strerror(errno));
    if (!rc && rename(af->tmp, af->path) != 0) rc = err_set("%s: rename failed: %s", af->path, strerror(errno));
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
