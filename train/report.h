// report.h — output_dir/report.html: one self-contained page about a training run (no
// network, no scripts, charts as inline SVG from plot.h) and the end-of-run summary printed
// on the terminal.
//
// The page is rebuilt from output_dir/metrics.jsonl (so a resumed run shows its whole
// history): training loss with the eval loss, eval perplexity, learning rate, gradient norm
// and tokens/s against the optimizer step; the run's numbers (steps, tokens, data counts,
// timings, peak memory); the greedy samples (train/samples.h) with their exact-match share;
// the resolved config.
#ifndef LORAC_REPORT_H
#define LORAC_REPORT_H

#include <stdint.h>
#include <stdio.h>

typedef struct report_info {
    const char *title;          // e.g. "lorac train configs/tiny-lora.yaml"
    const char *status;         // "finished", "interrupted (resume with resume=true)", ...
    const char *config_json;    // the resolved config (cfg_to_json)
    int64_t step, total_steps;  // optimizer steps done / planned
    int64_t tokens_seen;        // tokens through the model in training (all steps, with resume)
    int64_t n_records, n_tokens, n_skipped_bad, n_dropped_long, n_truncated;   // training data
    int64_t n_eval_records, n_bad_images;
    int64_t n_trainable;        // trainable parameters
    double load_s, train_s, eval_s, sample_s, wall_s;   // this process's timings
    double peak_rss_mb;
} report_info;

// What the summary needs from metrics.jsonl.
typedef struct report_best {
    double eval_ppl;            // lowest eval perplexity (NAN when none)
    int64_t eval_step;
    double first_eval_ppl;      // the first evaluation's (before training when it ran at step 0)
    double last_exact, first_exact;   // sample_exact at the last / first sampling (-1: none)
} report_best;

// Writes output_dir/report.html (atomic). *best (when not NULL) gets the summary numbers.
// 0, or -1 + err_set.
int report_write(const char *output_dir, const report_info *info, report_best *best);

// The end-of-run summary on f: steps, tokens, wall time, best eval perplexity and its step,
// where every output is, and the next commands to try (model/eval paths from the run).
void report_print_summary(FILE *f, const char *output_dir, const report_info *info, const report_best *best,
                          const char *model, const char *eval_data, int projector_mode, const char *vision_model);

#endif
