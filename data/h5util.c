// h5util.c — HDF5 helpers shared by h5data.c and featcache.c (see h5util.h).
#define _GNU_SOURCE   // memmem
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "h5util.h"

// --- errors

void h5u_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

// HDF5's exit handler closes what is still open; a file whose close failed (a full disk)
// stays half-closed in its tables and that handler then crashes. Every file lorac writes is
// closed (or discarded) explicitly, so the handler is not needed: turn it off before HDF5
// starts (H5dont_atexit only works before the library's first call).
__attribute__((constructor)) static void h5u_no_atexit(void) { H5dont_atexit(); }

// The innermost message, on one line; for a failed system call just "what: strerror" (HDF5's
// text also holds a time stamp, the buffer address and sizes, over two lines).
static herr_t walk_innermost(unsigned n, const H5E_error2_t *e, void *ctx) {
    if (n != 0 || !e->desc) return 0;
    char *d = ctx;
    snprintf(d, 256, "%s", e->desc);
    const char *em = strstr(e->desc, "error message = '");
    char *colon = strstr(d, ": time = ");
    if (em && colon) {
        em += strlen("error message = '");
        size_t k = strcspn(em, "'");
        snprintf(colon, 256 - (size_t)(colon - d), ": %.*s", (int)k, em);
    }
    for (char *p = d; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    return 0;
}

int h5u_fail(const char *fmt, ...) {
    char msg[1024], d[256] = "";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, walk_innermost, d);
    H5Eclear2(H5E_DEFAULT);
    if (d[0]) return err_set("%s (HDF5: %s)", msg, d);
    return err_set("%s", msg);
}

// --- types and property lists

hid_t h5u_file_access(void) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_file_locking(fapl, 1, 1);   // use locks, ignored where the file system has none
    return fapl;
}

hid_t h5u_vlen_utf8(void) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    return t;
}

// --- attributes

int h5u_attr_write(hid_t loc, const char *name, hid_t type, int n, const void *v) {
    hsize_t dims = (hsize_t)n;
    hid_t sp = n > 0 ? H5Screate_simple(1, &dims, NULL) : H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(loc, name, type, sp, H5P_DEFAULT, H5P_DEFAULT);
    int rc = a < 0 || H5Awrite(a, type, v) < 0 ? -1 : 0;
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    return rc;
}

int h5u_attr_str(hid_t loc, const char *name, const char *s) {
    hid_t t = h5u_vlen_utf8();
    const char *p = s ? s : "";
    int rc = h5u_attr_write(loc, name, t, 0, &p);
    H5Tclose(t);
    return rc;
}

int h5u_attr_i64(hid_t loc, const char *name, int64_t v) { return h5u_attr_write(loc, name, H5T_STD_I64LE, 0, &v); }
int h5u_attr_f64(hid_t loc, const char *name, double v) { return h5u_attr_write(loc, name, H5T_IEEE_F64LE, 0, &v); }

int h5u_attr_read_str(hid_t loc, const char *path, const char *name, const char *hint, char **out) {
    *out = NULL;
    if (H5Aexists(loc, name) <= 0) return 0;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    if (a < 0) return h5u_fail("%s: attribute '%s': cannot open", path, name);
    hid_t t = H5Aget_type(a), sp = H5Aget_space(a);
    int rc = -1;
    if (H5Tget_class(t) != H5T_STRING || H5Sget_simple_extent_npoints(sp) != 1) {
        err_set("%s: attribute '%s': expected a string, found another type (%s)", path, name, hint);
    } else if (H5Tis_variable_str(t) > 0) {
        hid_t mt = h5u_vlen_utf8();
        char *s = NULL;
        if (H5Aread(a, mt, &s) < 0) {
            h5u_fail("%s: attribute '%s': read failed", path, name);
        } else {
            *out = xstrdup(s ? s : "");
            H5free_memory(s);
            rc = 1;
        }
        H5Tclose(mt);
    } else {
        size_t n = H5Tget_size(t);
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, n + 1);
        char *s = xcalloc(n + 2, 1);
        if (H5Aread(a, mt, s) < 0) {
            free(s);
            h5u_fail("%s: attribute '%s': read failed", path, name);
        } else {
            *out = s;
            rc = 1;
        }
        H5Tclose(mt);
    }
    H5Tclose(t);
    H5Sclose(sp);
    H5Aclose(a);
    return rc;
}

int h5u_attr_read_num(hid_t loc, const char *path, const char *name, int n, hid_t mem_type, const char *want,
                      const char *hint, void *out) {
    if (H5Aexists(loc, name) <= 0) return 0;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    if (a < 0) return h5u_fail("%s: attribute '%s': cannot open", path, name);
    hid_t t = H5Aget_type(a), sp = H5Aget_space(a);
    H5T_class_t cl = H5Tget_class(t), other = H5Tget_class(mem_type) == H5T_FLOAT ? H5T_FLOAT : H5T_ENUM;
    int rc = 1;
    if ((cl != H5T_INTEGER && cl != other) || H5Sget_simple_extent_npoints(sp) != n)
        rc = err_set("%s: attribute '%s': expected %s, found another type or size (%s)", path, name, want, hint);
    else if (H5Aread(a, mem_type, out) < 0)
        rc = h5u_fail("%s: attribute '%s': read failed", path, name);
    H5Tclose(t);
    H5Sclose(sp);
    H5Aclose(a);
    return rc;
}

// --- extendible 1-D datasets

hid_t h5u_create_1d(hid_t file, const char *name, hid_t type, hsize_t chunk, int compress) {
    hsize_t dims = 0, maxdims = H5S_UNLIMITED;
    hid_t sp = H5Screate_simple(1, &dims, &maxdims);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, 1, &chunk);
    H5Pset_obj_track_times(dcpl, 0);   // no timestamps: the same input gives the same bytes
    if (compress) {
        H5Pset_shuffle(dcpl);
        H5Pset_deflate(dcpl, 1);
    }
    hid_t d = H5Dcreate2(file, name, type, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    H5Pclose(dcpl);
    H5Sclose(sp);
    return d;
}

int h5u_check_extent(hid_t ds, const char *path, const char *name, uint64_t nelem, size_t elem_size,
                     const char *hint) {
    uint64_t need;
    if (__builtin_mul_overflow(nelem, (uint64_t)elem_size, &need)) need = UINT64_MAX;
    uint64_t stored = (uint64_t)H5Dget_storage_size(ds);
    if (need <= stored * H5U_MAX_INFLATE + 4096) return 0;
    H5Eclear2(H5E_DEFAULT);
    return err_set("%s: dataset '%s': %llu values (%llu bytes), but the file stores %llu bytes for it (at most %d "
                   "times that; corrupt file? %s)",
                   path, name, (unsigned long long)nelem, (unsigned long long)need, (unsigned long long)stored,
                   H5U_MAX_INFLATE, hint);
}

static uint64_t le_u64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

int h5u_check_heaps(const char *path, const char *hint) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return err_set("%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || sb.st_size < 16) {
        close(fd);
        return 0;   // H5Fopen reports what is wrong
    }
    size_t len = (size_t)sb.st_size;
    const unsigned char *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return err_set("%s: cannot map: %s", path, strerror(errno));
    madvise((void *)map, len, MADV_SEQUENTIAL);
    int rc = 0;
    // collection: "GCOL", version 1, 3 reserved, size (8 bytes, header included); then objects:
    // index (2), reference count (2), reserved (4), size (8), data padded to 8; index 0 = free space
    for (const unsigned char *g = map; rc == 0 && (g = memmem(g, len - (size_t)(g - map), "GCOL", 4)); g += 4) {
        size_t at = (size_t)(g - map);
        if (len - at < 16 || g[4] != 1) continue;
        uint64_t size = le_u64(g + 8), end = size < len - at ? size : len - at;   // HDF5 fails reading past EOF
        for (uint64_t p = 16; p + 16 <= end;) {
            unsigned idx = g[p] | (unsigned)g[p + 1] << 8;
            uint64_t osz = le_u64(g + p + 8);
            uint64_t need = idx ? 16 + ((osz + 7) & ~(uint64_t)7) : osz;
            if (need == 0 || osz > (UINT64_MAX >> 1)) {
                rc = err_set("%s: corrupt HDF5 global heap at byte %zu: object %u has size %llu (%s)", path,
                             at + (size_t)p, idx, (unsigned long long)osz, hint);
                break;
            }
            if (need > end - p) break;   // HDF5's walk ends past the collection
            p += need;
        }
    }
    munmap((void *)map, len);
    return rc;
}

int h5u_append_1d(hid_t d, hid_t mt, int64_t at, int64_t n, const void *buf) {
    if (n <= 0) return 0;
    hsize_t size = (hsize_t)(at + n), start = (hsize_t)at, count = (hsize_t)n;
    if (H5Dset_extent(d, &size) < 0) return -1;
    hid_t fs = H5Dget_space(d);
    hid_t ms = H5Screate_simple(1, &count, NULL);
    int rc = H5Sselect_hyperslab(fs, H5S_SELECT_SET, &start, NULL, &count, NULL) < 0 ||
                     H5Dwrite(d, mt, ms, fs, H5P_DEFAULT, buf) < 0
                 ? -1
                 : 0;
    H5Sclose(ms);
    H5Sclose(fs);
    return rc;
}

// --- atomic output

char *h5u_tmp_name(const char *path) {
    size_t n = strlen(path) + 32;
    char *tmp = xmalloc(n);
    snprintf(tmp, n, "%s.tmp.%d", path, (int)getpid());
    return tmp;
}

int h5u_close_publish(hid_t *file, hid_t *const *ds, int n, const char *tmp, const char *path) {
    int bad = 0;
    for (int i = 0; i < n; i++) {
        if (*ds[i] >= 0 && H5Dclose(*ds[i]) < 0) bad = 1;
        *ds[i] = -1;
    }
    if (H5Fclose(*file) < 0) bad = 1;
    *file = -1;
    if (bad) return h5u_fail("%s: write failed while closing (disk full?)", path);
    int fd = open(tmp, O_RDONLY);
    if (fd < 0 || fsync(fd) != 0) {
        err_set("%s: fsync failed: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    close(fd);
    if (rename(tmp, path) != 0) return err_set("%s: cannot rename to %s: %s", tmp, path, strerror(errno));
    char *dir = path_dirname(path);
    int rc = fsync_dir(dir);
    free(dir);
    return rc;
}

void h5u_discard_tmp(char *tmp) {
    H5Eclear2(H5E_DEFAULT);
    unlink(tmp);
    free(tmp);
}
