// tboard.c — TensorBoard event-file writer (see tboard.h): TFRecord framing + hand-encoded
// Event/Summary protobufs (only the fields written here), and the truncation on resume.
#define _GNU_SOURCE
#include "tboard.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "util.h"

struct tb_writer {
    FILE *fp;
    char *path;
};

// --- CRC-32C

uint32_t tb_crc32c(const void *data, size_t n) {
    static uint32_t table[256];
    static int ready;   // filled once; the values are the same whichever thread gets here first
    if (!ready) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
            table[i] = c;
        }
        ready = 1;
    }
    const unsigned char *p = data;
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) c = table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

uint32_t tb_masked_crc(const void *data, size_t n) {
    uint32_t c = tb_crc32c(data, n);
    return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

// --- protobuf encoding (wire types: 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32)

typedef struct pbuf {
    unsigned char b[512];
    size_t n;
} pbuf;

static void pb_varint(pbuf *p, uint64_t v) {
    do {
        AG_ASSERT(p->n < sizeof p->b, "protobuf buffer");
        p->b[p->n++] = (unsigned char)((v & 0x7F) | (v > 0x7F ? 0x80 : 0));
        v >>= 7;
    } while (v);
}
static void pb_key(pbuf *p, int field, int wire) { pb_varint(p, (uint64_t)field << 3 | (uint64_t)wire); }
static void pb_fixed(pbuf *p, const void *le, size_t n) {   // x86-64 is little endian, as the wire
    AG_ASSERT(p->n + n <= sizeof p->b, "protobuf buffer");
    memcpy(p->b + p->n, le, n);
    p->n += n;
}
static void pb_bytes(pbuf *p, int field, const void *s, size_t n) {
    pb_key(p, field, 2);
    pb_varint(p, n);
    pb_fixed(p, s, n);
}

static double wall_time(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + tv.tv_usec * 1e-6;
}

// Event{wall_time, step, file_version | summary} — summary is an encoded Summary or NULL.
static void event(pbuf *e, int64_t step, const char *file_version, const pbuf *summary) {
    double wt = wall_time();
    pb_key(e, 1, 1);
    pb_fixed(e, &wt, 8);
    if (summary) {   // scalars carry their step (also 0: before training)
        pb_key(e, 2, 0);
        pb_varint(e, (uint64_t)step);
    }
    if (file_version) pb_bytes(e, 3, file_version, strlen(file_version));
    if (summary) pb_bytes(e, 5, summary->b, summary->n);
}

static int write_record(tb_writer *w, const void *data, size_t n) {
    unsigned char head[12];
    uint64_t len = n;
    memcpy(head, &len, 8);
    uint32_t hc = tb_masked_crc(head, 8), dc = tb_masked_crc(data, n);
    memcpy(head + 8, &hc, 4);
    if (fwrite(head, 1, 12, w->fp) != 12 || fwrite(data, 1, n, w->fp) != n || fwrite(&dc, 1, 4, w->fp) != 4)
        return err_set("%s: write failed", w->path);
    return 0;
}

int tb_scalar(tb_writer *w, int64_t step, const char *tag, double value) {
    pbuf v = {0}, s = {0}, e = {0};
    float f = (float)value;
    pb_bytes(&v, 1, tag, strlen(tag));   // Summary.Value.tag
    pb_key(&v, 2, 5);                    // Summary.Value.simple_value (float)
    pb_fixed(&v, &f, 4);
    pb_bytes(&s, 1, v.b, v.n);           // Summary.value
    event(&e, step, NULL, &s);
    return write_record(w, e.b, e.n);
}

// --- reading our own records back (resume)

static uint64_t rd_varint(const unsigned char *p, size_t n, size_t *i, int *bad) {
    uint64_t v = 0;
    for (int sh = 0; sh < 64; sh += 7) {
        if (*i >= n) break;
        unsigned char c = p[(*i)++];
        v |= (uint64_t)(c & 0x7F) << sh;
        if (!(c & 0x80)) return v;
    }
    *bad = 1;
    return 0;
}

// The Event's step (0 when absent), or -1 for a malformed message; *summary: it has one.
static int64_t event_step(const unsigned char *p, size_t n, int *summary) {
    size_t i = 0;
    int bad = 0;
    int64_t step = 0;
    *summary = 0;
    while (i < n && !bad) {
        uint64_t key = rd_varint(p, n, &i, &bad), wire = key & 7;
        if (wire == 0) {
            uint64_t v = rd_varint(p, n, &i, &bad);
            if (key >> 3 == 2) step = (int64_t)v;
        } else if (wire == 1 || wire == 5) {
            i += wire == 1 ? 8 : 4;
        } else if (wire == 2) {
            uint64_t len = rd_varint(p, n, &i, &bad);
            *summary |= key >> 3 == 5;
            if (len > n - i) bad = 1;
            else i += len;
        } else {
            bad = 1;
        }
    }
    return bad || i != n ? -1 : step;
}

// Copies the scalar records of old (len bytes) with step <= keep into w (the file_version
// record, without a summary, is written anew by the caller).
static int keep_records(tb_writer *w, const unsigned char *old, size_t len, int64_t keep) {
    size_t pos = 0;
    while (pos < len) {
        uint64_t n;
        uint32_t hc, dc;
        if (len - pos < 12) return err_set("%s: truncated record header at byte %zu", w->path, pos);
        memcpy(&n, old + pos, 8);
        memcpy(&hc, old + pos + 8, 4);
        if (hc != tb_masked_crc(old + pos, 8)) return err_set("%s: bad length CRC at byte %zu", w->path, pos);
        if (n > len - pos - 12 || len - pos - 12 - n < 4)
            return err_set("%s: record at byte %zu runs past the end of the file", w->path, pos);
        const unsigned char *d = old + pos + 12;
        memcpy(&dc, d + n, 4);
        if (dc != tb_masked_crc(d, n)) return err_set("%s: bad data CRC in the record at byte %zu", w->path, pos);
        int summary;
        int64_t step = event_step(d, n, &summary);
        if (step < 0) return err_set("%s: the record at byte %zu is not an Event", w->path, pos);
        if (summary && step <= keep) {
            if (fwrite(old + pos, 1, 16 + n, w->fp) != 16 + n) return err_set("%s: write failed", w->path);
        }
        pos += 16 + n;
    }
    return 0;
}

// --- open / close

tb_writer *tb_open(const char *output_dir, int64_t keep_upto) {
    char *dir = path_join(output_dir, "tb");
    if (mkdir_p(dir) != 0) {
        free(dir);
        return NULL;
    }
    tb_writer *w = xcalloc(1, sizeof *w);
    w->path = path_join(dir, "events.out.tfevents.lorac");
    free(dir);
    size_t len = 0;
    unsigned char *old = keep_upto > 0 && file_exists(w->path) ? (unsigned char *)file_read_all(w->path, &len) : NULL;
    // the kept part is written to a temp file and renamed over the old one, then appended to
    afile *af = afile_open(w->path);
    if (!af || (keep_upto > 0 && file_exists(w->path) && !old)) {
        if (af) afile_abort(af);
        free(old);
        free(w->path);
        free(w);
        return NULL;
    }
    w->fp = af->fp;
    pbuf e = {0};
    event(&e, 0, "brain.Event:2", NULL);
    int rc = write_record(w, e.b, e.n);
    if (rc == 0 && old) rc = keep_records(w, old, len, keep_upto);
    free(old);
    w->fp = NULL;
    if (rc != 0) {
        afile_abort(af);
    } else {
        rc = afile_commit(af);
        if (rc == 0 && !(w->fp = fopen(w->path, "ab"))) rc = err_set("%s: cannot append", w->path);
    }
    if (rc != 0) {
        free(w->path);
        free(w);
        return NULL;
    }
    return w;
}

int tb_flush(tb_writer *w) {
    if (fflush(w->fp) != 0) return err_set("%s: write failed", w->path);
    return 0;
}

int tb_close(tb_writer *w) {
    if (!w) return 0;
    int rc = fclose(w->fp) != 0 ? err_set("%s: write failed", w->path) : 0;
    free(w->path);
    free(w);
    return rc;
}
