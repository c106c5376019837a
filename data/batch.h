// batch.h — batches for the trainer: padding-free micro-batches cut from a data_set, in file
// order or a seeded per-epoch shuffle, optionally packed into rows of max_seq_len.
//
// Legend: n = rows of a batch (all its sequences' tokens and image rows, concatenated),
// S = sequences in a batch, P = visual rows per image (num_patches).
//
// A batch is one [n] row set: its sequences (one record each) sit back to back. Per row:
// the input id, the position (restarting at 0 per sequence), kv_begin (the first row of the
// row's sequence: a row attends to rows [kv_begin, itself]) and the target (the next row's id
// when that row is a supervised token of the same sequence, else -1; a sequence's last row has
// target -1). A record with an image occupies P rows at its image slot: ids = -1 there (the
// model scatters the projected visual features into those rows), target -1, positions count
// them; the row before the image has target -1 and the last image row's target is the first
// token after the image when that token is supervised (a caption's first token).
//
// Order (docs/numerics.md "Batches"): each epoch visits every record of the data set once, in file
// order (shuffle off) or in a Fisher-Yates permutation drawn from splitmix64 seeded by (seed,
// epoch) — deterministic, different per epoch. Without packing a micro-batch is the next
// batch_size records; with packing, records are placed greedily in order into rows of
// max_seq_len rows (a record that does not fit in the current row starts the next one) and a
// micro-batch holds batch_size such rows. Documents never share attention (positions restart,
// kv_begin is the document's first row); a packed row is just a stretch of the batch. At the
// end of the data set the cursor wraps to the next epoch, also inside a micro-batch, so with
// shuffle off and no packing optimizer step k (grad_accum micro-batches) consumes the next
// batch_size × grad_accum records in file order.
//
// The loader's whole state is data_pos {epoch, cursor}: a checkpoint saves it (data_loader_tell)
// and restores it (data_loader_seek); the next batch is then identical.
#ifndef LORAC_BATCH_H
#define LORAC_BATCH_H

#include <stdint.h>

#include "records.h"

typedef struct data_pos {
    int64_t epoch;    // 0-based epoch of the next record
    int64_t cursor;   // index of the next record in that epoch's order, in [0, records)
} data_pos;

typedef struct data_batch {
    int64_t n;              // rows in the batch
    int32_t *ids;           // [n] input id; -1 on image rows
    int32_t *pos;           // [n] position within the row's sequence
    int32_t *kv_begin;      // [n] first row of the row's sequence
    int32_t *targets;       // [n] next-token target or -1
    uint8_t *mask;          // [n] 1: the row is a supervised token (the record's mask)
    int64_t n_supervised;   // rows with a target (targets[i] >= 0)
    int nseq;               // S sequences
    int64_t *seq_begin;     // [S+1] first row of each sequence; seq_begin[S] = n
    int64_t *image_row;     // [S] first of the P image rows of each sequence, -1: none
    const char **image;     // [S] resolved image path (borrowed from the data set) or NULL
    int64_t *record;        // [S] index of each sequence's record in the data set
    data_pos start;         // loader position before this batch
    int64_t cap, seq_cap;   // allocated rows / sequences
} data_batch;

void data_batch_free(data_batch *b);

typedef struct data_loader_opts {
    int batch_size;         // records per micro-batch, or packed rows with packing
    int max_seq_len;        // packing: rows per packed row
    int packing;
    int shuffle;
    uint64_t seed;
    int num_patches;        // P rows per image
} data_loader_opts;

typedef struct data_loader {
    const data_set *ds;     // borrowed; must outlive the loader
    data_loader_opts o;
    data_pos pos;
    int64_t *order;         // [ds->n] record order of epoch order_epoch
    int64_t order_epoch;
} data_loader;

// 0, or -1 + err_set (empty data set, batch_size < 1, packing without max_seq_len).
int data_loader_init(data_loader *L, const data_set *ds, const data_loader_opts *o);
void data_loader_free(data_loader *L);
// Fills *b (its buffers are reused; zero-initialize it before the first call) with the next
// micro-batch and advances the position.
void data_loader_next(data_loader *L, data_batch *b);
data_pos data_loader_tell(const data_loader *L);
// Restores a saved position. -1 + err_set when it does not fit this data set.
int data_loader_seek(data_loader *L, data_pos p);
// Optimizer steps (of grad_accum micro-batches) that consume `epochs` whole epochs from the
// start (the last step may reach into the next epoch).
int64_t data_loader_steps_for_epochs(const data_loader *L, int64_t epochs, int grad_accum);

// The shuffle: order[0..n) = a permutation of 0..n-1 for (seed, epoch); identity when !shuffle.
void data_epoch_order(int64_t *order, int64_t n, int shuffle, uint64_t seed, int64_t epoch);

#endif
