// samples.h — greedy samples during training (train.sample_prompts, train.sample_every): the
// completions of a few prompts with the current adapter, printed, logged in metrics.jsonl and
// shown in report.html.
//
// Prompts come from the config: a YAML list of strings (each one user message), or a file —
// `.txt`: one prompt per non-empty line; `.jsonl`: chat records (`messages`; the prompt is every
// message before the last assistant one, which is the expected answer) or alpaca records
// (`instruction` [+ `input`] -> `output`). Each prompt is rendered as the chat template does
// with the assistant header (like `lorac generate --chat`) and completed greedily up to
// train.sample_max_tokens tokens or a stop id. When expected answers are known, the share of
// completions exactly equal to them (both trimmed) is reported as `sample_exact`.
//
// metrics.jsonl line: {"step": N, "samples": [{"prompt": .., "output": .., "expected": ..,
// "exact": true|false}, ...], "sample_exact": 0.87}  (expected/exact/sample_exact only with answers)
#ifndef LORAC_SAMPLES_H
#define LORAC_SAMPLES_H

#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "llama.h"
#include "tokenizer.h"

typedef struct sample_set {
    int n;
    char **shown;      // [n] the prompt as shown (the last user message)
    char **rendered;   // [n] the chat rendering + assistant header
    char **expected;   // [n] expected answers (entries NULL when unknown)
    int n_expected;    // how many have one
} sample_set;

// From cfg->train (list or file). 0 (s->n may be 0), or -1 + err_set naming the file and line.
int samples_load(sample_set *s, const cfg_train *cfg);
void samples_free(sample_set *s);

// Greedy completions at `step` with lora (may be NULL); appends the metrics line to `metrics`,
// prints "samples at step N" with the first few completions to stderr. *exact (when not NULL)
// gets the exact share, or -1 without expected answers. 0, or -1 + err_set.
int samples_run(const sample_set *s, int64_t step, const llama_model *m, const llama_lora *lora,
                const tok_tokenizer *tok, int max_new_tokens, FILE *metrics, double *exact);

#endif
