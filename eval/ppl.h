// ppl.h — perplexity with the sliding window of docs/numerics.md "Perplexity".
//
// Per document of L tokens, windows [kS, min(kS+M, L)) for k = 0, 1, ... up to the first that
// reaches L; a window scores each token p in [max(prev_end, kS+1), end) whose loss-mask bit is
// set (every token but the first for `text` documents), predicted from the context inside its
// window. Windows of several documents run together as one padding-free batch (no-grad).
// With an image hook (vision_perplexity in eval/vision_ppl.h), a record's P visual rows count as
// rows of the document (never scored) and the hook builds the batch's input embeddings.
// Under mpirun (autograd/dist.h) every rank forms the same batches and runs batch k when
// k mod N is its rank (a record's image features only where needed); the NLL sums, token and
// row counts are then added up in double, so every rank returns the same totals, equal to one
// process's up to the order of the double additions. Every rank must call it (a collective).
#ifndef LORAC_PPL_H
#define LORAC_PPL_H

#include <stdint.h>

#include "ag.h"
#include "llama.h"
#include "records.h"

typedef struct eval_result {
    double nll;            // total NLL (nats) over scored tokens
    int64_t tokens;        // scored tokens
    int64_t documents;     // documents with at least one token
    int64_t empty;         // documents skipped for having fewer than 2 tokens
    int64_t rows;          // model rows run (tokens through the model)
    double seconds;
} eval_result;

typedef void (*eval_progress_fn)(void *user, int64_t done_docs, int64_t total_docs, const eval_result *sofar);

// Scores ds with windows of M tokens and stride S (S <= M), running at most batch_rows rows
// per forward. lora may be NULL. Uses c in no-grad mode (restored on return). Records with
// an image are an error naming their line.
int eval_perplexity(ag_ctx *c, const llama_model *m, const llama_lora *lora, const data_set *ds,
                    int64_t M, int64_t S, int64_t batch_rows, eval_result *res,
                    eval_progress_fn progress, void *user);

// --- records with images

// How a record's image enters the model: its P visual rows (features of Cv values each) go
// before ids[image_pos]. Legend (ag.h): n rows of a window batch, m visual rows of it.
typedef struct eval_image_hook {
    int P, Cv;
    // Writes the features of record r's image into out [P, Cv]. 0, or -1 + err_set. NULL:
    // records with an image are an error naming their line.
    int (*features)(void *user, const data_record *r, float *out);
    // Input embeddings [n, Ct] of a window batch: ids [n] (-1 on visual rows), with rows[j]
    // (j < m) taking feats [m, Cv]. Called only when m > 0. NULL + err_set on failure.
    ag_tensor *(*embed)(void *user, ag_ctx *c, const int32_t *ids, int64_t n, const float *feats,
                        const int32_t *rows, int64_t m);
    void *user;
    // Cross-attention fusion (P = 0: the image takes no rows): each window of a record with an
    // image carries the image's R feature rows (features writes [R, Cv]), and forward replaces
    // llama_forward: ids/pos/begin [n] as for llama_forward, feats [nimg·R, Cv], img [n] the
    // window image of each row (-1: none). Returns h [n, C], or NULL + err_set. NULL: unused.
    int R;
    ag_tensor *(*forward)(void *user, ag_ctx *c, const int32_t *ids, int64_t n, const int32_t *pos,
                          const int32_t *begin, const float *feats, int nimg, const int32_t *img);
} eval_image_hook;

// eval_perplexity, with records that have an image (image_pos >= 0) scored over their
// r->n + P rows (windows of M rows, stride S, counting visual rows; only tokens are
// scored). img NULL: as eval_perplexity.
int eval_perplexity_img(ag_ctx *c, const llama_model *m, const llama_lora *lora, const eval_image_hook *img,
                        const data_set *ds, int64_t M, int64_t S, int64_t batch_rows, eval_result *res,
                        eval_progress_fn progress, void *user);

#endif
