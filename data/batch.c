// batch.c — padding-free micro-batches, packing and the seeded per-epoch shuffle (see batch.h).
#include "batch.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

// --- shuffle: Fisher-Yates over splitmix64

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void data_epoch_order(int64_t *order, int64_t n, int shuffle, uint64_t seed, int64_t epoch) {
    for (int64_t i = 0; i < n; i++) order[i] = i;
    if (!shuffle) return;
    uint64_t a = seed, b = (uint64_t)epoch ^ 0x5851f42d4c957f2dULL;
    uint64_t st = splitmix64(&a) ^ splitmix64(&b);
    for (int64_t i = n - 1; i > 0; i--) {
        // j uniform in [0, i]: the high word of a 64x64 product (Lemire), no modulo
        uint64_t j = (uint64_t)(((unsigned __int128)splitmix64(&st) * (uint64_t)(i + 1)) >> 64);
        int64_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
}

// --- loader

int data_loader_init(data_loader *L, const data_set *ds, const data_loader_opts *o) {
    memset(L, 0, sizeof *L);
    if (ds->n < 1) return err_set("%s: no records to train on", ds->path ? ds->path : "data set");
    if (o->batch_size < 1) return err_set("train.batch_size: expected >= 1, found %d", o->batch_size);
    if (o->packing && o->max_seq_len < 1)
        return err_set("data.max_seq_len: packing needs a row length >= 1, found %d", o->max_seq_len);
    L->ds = ds;
    L->o = *o;
    L->order = xmalloc(sizeof(int64_t) * (size_t)ds->n);
    L->order_epoch = 0;
    data_epoch_order(L->order, ds->n, o->shuffle, o->seed, 0);
    return 0;
}

void data_loader_free(data_loader *L) {
    free(L->order);
    memset(L, 0, sizeof *L);
}

data_pos data_loader_tell(const data_loader *L) { return L->pos; }

static void ensure_order(data_loader *L) {
    if (L->order_epoch == L->pos.epoch) return;
    data_epoch_order(L->order, L->ds->n, L->o.shuffle, L->o.seed, L->pos.epoch);
    L->order_epoch = L->pos.epoch;
}

int data_loader_seek(data_loader *L, data_pos p) {
    if (p.epoch < 0 || p.cursor < 0 || p.cursor >= L->ds->n)
        return err_set("data position (epoch %lld, record %lld) does not fit a data set of %lld records "
                       "(was the training data changed since the checkpoint?)",
                       (long long)p.epoch, (long long)p.cursor, (long long)L->ds->n);
    L->pos = p;
    ensure_order(L);
    return 0;
}

static void advance(data_loader *L) {
    if (++L->pos.cursor == L->ds->n) {
        L->pos.cursor = 0;
        L->pos.epoch++;
        ensure_order(L);
    }
}

// Packing state of one micro-batch: rows started and the fill of the current one.
typedef struct fill {
    int64_t count, rows_used, row_fill;
} fill;

// Whether a record of `rows` rows joins the micro-batch (and books it).
static int fits(const data_loader *L, fill *f, int64_t rows) {
    if (!L->o.packing) {
        if (f->count == L->o.batch_size) return 0;
        f->count++;
        return 1;
    }
    if (f->rows_used == 0 || f->row_fill + rows > L->o.max_seq_len) {
        if (f->rows_used == L->o.batch_size) return 0;
        f->rows_used++;   // a longer-than-a-row record gets a row of its own
        f->row_fill = 0;
    }
    f->row_fill += rows;
    f->count++;
    return 1;
}

// --- batch buffers

void data_batch_free(data_batch *b) {
    free(b->ids);
    free(b->pos);
    free(b->kv_begin);
    free(b->targets);
    free(b->mask);
    free(b->seq_begin);
    free(b->image_row);
    free(b->image);
    free(b->record);
    memset(b, 0, sizeof *b);
}

static void batch_reserve(data_batch *b, int64_t rows, int64_t seqs) {
    if (rows > b->cap) {
        int64_t c = b->cap ? b->cap : 256;
        while (c < rows) c *= 2;
        b->ids = xrealloc(b->ids, sizeof(int32_t) * (size_t)c);
        b->pos = xrealloc(b->pos, sizeof(int32_t) * (size_t)c);
        b->kv_begin = xrealloc(b->kv_begin, sizeof(int32_t) * (size_t)c);
        b->targets = xrealloc(b->targets, sizeof(int32_t) * (size_t)c);
        b->mask = xrealloc(b->mask, (size_t)c);
        b->cap = c;
    }
    if (seqs + 1 > b->seq_cap) {
        int64_t c = b->seq_cap ? b->seq_cap : 16;
        while (c < seqs + 1) c *= 2;
        b->seq_begin = xrealloc(b->seq_begin, sizeof(int64_t) * (size_t)c);
        b->image_row = xrealloc(b->image_row, sizeof(int64_t) * (size_t)c);
        b->image = xrealloc(b->image, sizeof(char *) * (size_t)c);
        b->record = xrealloc(b->record, sizeof(int64_t) * (size_t)c);
        b->seq_cap = c;
    }
}

static void batch_append(data_batch *b, const data_record *r, int64_t rec_index, int P) {
    int64_t P_ = r->image_pos >= 0 ? P : 0, rows = r->n + P_, s = b->n;
    batch_reserve(b, s + rows, b->nseq + 1);
    AG_ASSERT(s + rows <= INT32_MAX, "batch of %lld rows exceeds int32 positions", (long long)(s + rows));
    int64_t k = s;
    for (int64_t i = 0; i <= r->n; i++) {
        if (i == r->image_pos)
            for (int64_t p = 0; p < P_; p++, k++) {
                b->ids[k] = -1;
                b->mask[k] = 0;
            }
        if (i == r->n) break;
        b->ids[k] = r->ids[i];
        b->mask[k] = r->mask[i] != 0;
        k++;
    }
    AG_ASSERT(k == s + rows, "record rows %lld != %lld", (long long)(k - s), (long long)rows);
    for (k = s; k < s + rows; k++) {
        b->pos[k] = (int32_t)(k - s);
        b->kv_begin[k] = (int32_t)s;
        b->targets[k] = k + 1 < s + rows && b->mask[k + 1] ? b->ids[k + 1] : -1;
        b->n_supervised += b->targets[k] >= 0;
    }
    b->seq_begin[b->nseq] = s;
    b->image_row[b->nseq] = r->image_pos >= 0 ? s + r->image_pos : -1;
    b->image[b->nseq] = r->image;
    b->record[b->nseq] = rec_index;
    b->nseq++;
    b->n = s + rows;
    b->seq_begin[b->nseq] = b->n;
}

void data_loader_next(data_loader *L, data_batch *b) {
    b->n = 0;
    b->nseq = 0;
    b->n_supervised = 0;
    b->start = L->pos;
    batch_reserve(b, 1, 1);
    b->seq_begin[0] = 0;
    fill f = {0, 0, 0};
    for (;;) {
        ensure_order(L);
        int64_t idx = L->order[L->pos.cursor];
        const data_record *r = &L->ds->r[idx];
        if (!fits(L, &f, data_record_rows(r, L->o.num_patches))) break;
        batch_append(b, r, idx, L->o.num_patches);
        advance(L);
    }
}

int64_t data_loader_steps_for_epochs(const data_loader *L, int64_t epochs, int grad_accum) {
    if (epochs <= 0) return 0;
    if (grad_accum < 1) grad_accum = 1;
    int64_t micro = 0;
    if (!L->o.packing) {
        int64_t recs = epochs * L->ds->n;
        micro = (recs + L->o.batch_size - 1) / L->o.batch_size;
    } else {   // simulate the greedy packing (the shuffle changes it per epoch)
        data_loader sim = *L;
        sim.order = xmalloc(sizeof(int64_t) * (size_t)L->ds->n);
        sim.pos = (data_pos){0, 0};
        sim.order_epoch = 0;
        data_epoch_order(sim.order, L->ds->n, L->o.shuffle, L->o.seed, 0);
        while (sim.pos.epoch < epochs) {
            fill f = {0, 0, 0};
            for (;;) {
                const data_record *r = &sim.ds->r[sim.order[sim.pos.cursor]];
                if (!fits(&sim, &f, data_record_rows(r, L->o.num_patches))) break;
                advance(&sim);
            }
            micro++;
        }
        free(sim.order);
    }
    return (micro + grad_accum - 1) / grad_accum;
}
