// ppl.h — perplexity with the contract's sliding window (CONTRACT.md "Perplexity").
//
// Per document of L tokens, windows [kS, min(kS+M, L)) for k = 0, 1, ... up to the first that
// reaches L; a window scores each token p in [max(prev_end, kS+1), end) whose loss-mask bit is
// set (every token but the first for `text` documents), predicted from the context inside its
// window. Windows of several documents run together as one padding-free batch (no-grad).
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
// per forward. lora may be NULL. Uses c in no-grad mode (restored on return).
int eval_perplexity(ag_ctx *c, const llama_model *m, const llama_lora *lora, const data_set *ds,
                    int64_t M, int64_t S, int64_t batch_rows, eval_result *res,
                    eval_progress_fn progress, void *user);

#endif
