// report.c — the run report (report.html) and the end-of-run summary (see report.h).
#define _GNU_SOURCE
#include "report.h"

#include <cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "plot.h"
#include "util.h"

// --- metrics.jsonl as columns

typedef struct column {
    double *x, *y;
    int n, cap;
} column;

static void col_push(column *c, double x, double y) {
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 256;
        c->x = xrealloc(c->x, (size_t)c->cap * sizeof *c->x);
        c->y = xrealloc(c->y, (size_t)c->cap * sizeof *c->y);
    }
    c->x[c->n] = x;
    c->y[c->n++] = y;
}

enum { C_LOSS, C_LR, C_GNORM, C_TPS, C_EVAL_LOSS, C_EVAL_PPL, C_EXACT, NCOL };
static const char *const col_key[NCOL] = {"loss", "lr", "grad_norm", "tokens_per_s", "eval_loss", "eval_ppl",
                                          "sample_exact"};

typedef struct metrics {
    column col[NCOL];
    cJSON **samples;   // the "samples" lines, in order
    int n_samples;
} metrics;

static int metrics_read(metrics *M, const char *path) {
    memset(M, 0, sizeof *M);
    char *text = file_read_all(path, NULL);
    if (!text) return -1;
    char *save = NULL;
    for (char *ln = strtok_r(text, "\n", &save); ln; ln = strtok_r(NULL, "\n", &save)) {
        cJSON *j = cJSON_Parse(ln);
        cJSON *s = j ? cJSON_GetObjectItem(j, "step") : NULL;
        if (!cJSON_IsNumber(s)) {
            cJSON_Delete(j);
            continue;
        }
        for (int k = 0; k < NCOL; k++) {
            cJSON *v = cJSON_GetObjectItem(j, col_key[k]);
            if (cJSON_IsNumber(v)) col_push(&M->col[k], s->valuedouble, v->valuedouble);
        }
        if (cJSON_IsArray(cJSON_GetObjectItem(j, "samples"))) {
            M->samples = xrealloc(M->samples, (size_t)(M->n_samples + 1) * sizeof *M->samples);
            M->samples[M->n_samples++] = j;
        } else {
            cJSON_Delete(j);
        }
    }
    free(text);
    return 0;
}

static void metrics_free(metrics *M) {
    for (int k = 0; k < NCOL; k++) free(M->col[k].x), free(M->col[k].y);
    for (int i = 0; i < M->n_samples; i++) cJSON_Delete(M->samples[i]);
    free(M->samples);
}

// --- HTML

static void esc(FILE *f, const char *s) {
    for (; s && *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
    }
}

static void row(FILE *f, const char *k, const char *fmt, ...) AG_PRINTF(3, 4);
static void row(FILE *f, const char *k, const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fprintf(f, "<tr><th>%s</th><td>", k);
    esc(f, buf);
    fputs("</td></tr>\n", f);
}

static void chart(FILE *f, const char *title, const column *a, const char *la, const column *b, const char *lb,
                  int logy) {
    plot_series s[2] = {{a->x, a->y, a->n, la, "#1f77b4", 0}, {b ? b->x : NULL, b ? b->y : NULL, b ? b->n : 0, lb, "#d62728", 1}};
    if (!a->n && b && b->n) {   // only evaluations
        s[0] = s[1];
        b = NULL;
    }
    fputs("<figure>", f);
    plot_svg(f, title, s, b && b->n ? 2 : 1, logy);
    fputs("</figure>\n", f);
}

static void samples_table(FILE *f, cJSON *j) {
    cJSON *st = cJSON_GetObjectItem(j, "step"), *ex = cJSON_GetObjectItem(j, "sample_exact");
    cJSON *arr = cJSON_GetObjectItem(j, "samples");
    fprintf(f, "<h3>step %.0f", st->valuedouble);
    if (cJSON_IsNumber(ex)) fprintf(f, " &mdash; %.1f%% exactly right", 100 * ex->valuedouble);
    fputs("</h3>\n<table class=\"samples\"><tr><th>prompt</th><th>greedy completion</th><th>expected</th></tr>\n", f);
    int n = cJSON_GetArraySize(arr), shown = 0;
    for (int i = 0; i < n && shown < 20; i++, shown++) {
        cJSON *e = cJSON_GetArrayItem(arr, i), *x = cJSON_GetObjectItem(e, "exact");
        const char *cls = cJSON_IsBool(x) ? (cJSON_IsTrue(x) ? " class=\"ok\"" : " class=\"bad\"") : "";
        fputs("<tr><td>", f);
        esc(f, cJSON_GetStringValue(cJSON_GetObjectItem(e, "prompt")));
        fprintf(f, "</td><td%s>", cls);
        esc(f, cJSON_GetStringValue(cJSON_GetObjectItem(e, "output")));
        fputs("</td><td>", f);
        esc(f, cJSON_GetStringValue(cJSON_GetObjectItem(e, "expected")));
        fputs("</td></tr>\n", f);
    }
    if (n > shown) fprintf(f, "<tr><td colspan=\"3\">&hellip; and %d more in metrics.jsonl</td></tr>\n", n - shown);
    fputs("</table>\n", f);
}

static const char *css =
    "body{font-family:sans-serif;margin:24px;max-width:1500px;color:#222;background:#fff}"
    "h1{font-size:22px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ccc}"
    "h3{font-size:15px}table{border-collapse:collapse;margin:8px 0}"
    "th,td{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top;font-size:13px}"
    "th{background:#f3f3f3}.grid{display:flex;flex-wrap:wrap;gap:12px}"
    "figure{margin:0;border:1px solid #ddd}.ok{background:#e3f6e3}.bad{background:#fbe4e4}"
    "pre{background:#f7f7f7;border:1px solid #ddd;padding:8px;font-size:12px;overflow:auto}";

int report_write(const char *output_dir, const report_info *I, report_best *best) {
    char *mpath = path_join(output_dir, "metrics.jsonl"), *path = path_join(output_dir, "report.html");
    metrics M;
    int rc = metrics_read(&M, mpath);
    free(mpath);
    if (rc != 0) {
        free(path);
        return -1;
    }
    const column *ppl = &M.col[C_EVAL_PPL], *ex = &M.col[C_EXACT];
    report_best b = {NAN, -1, NAN, -1, -1};
    for (int i = 0; i < ppl->n; i++)
        if (!(ppl->y[i] >= b.eval_ppl)) b.eval_ppl = ppl->y[i], b.eval_step = (int64_t)ppl->x[i];
    if (ppl->n) b.first_eval_ppl = ppl->y[0];
    if (ex->n) b.first_exact = ex->y[0], b.last_exact = ex->y[ex->n - 1];
    if (best) *best = b;

    afile *af = afile_open(path);
    free(path);
    if (!af) {
        metrics_free(&M);
        return -1;
    }
    FILE *f = af->fp;
    fprintf(f, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>lorac report</title>"
               "<style>%s</style></head><body>\n<h1>lorac training report: ", css);
    esc(f, output_dir);
    fputs("</h1>\n<p>", f);
    esc(f, I->title);
    fputs(" &mdash; ", f);
    esc(f, I->status);
    time_t now = time(NULL);
    char when[64];
    strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", gmtime(&now));
    fprintf(f, " &mdash; written %s</p>\n", when);

    fputs("<h2>Run</h2>\n<table>\n", f);
    row(f, "optimizer steps", "%lld of %lld", (long long)I->step, (long long)I->total_steps);
    row(f, "tokens trained on", "%lld", (long long)I->tokens_seen);
    row(f, "trainable parameters", "%lld", (long long)I->n_trainable);
    if (ppl->n)
        row(f, "eval perplexity", "first %.4g, best %.4g at step %lld, last %.4g", b.first_eval_ppl, b.eval_ppl,
            (long long)b.eval_step, ppl->y[ppl->n - 1]);
    if (ex->n)
        row(f, "samples exactly right", "first %.1f%%, last %.1f%%", 100 * b.first_exact, 100 * b.last_exact);
    row(f, "training data", "%lld records, %lld tokens", (long long)I->n_records, (long long)I->n_tokens);
    row(f, "records not used", "%lld dropped (over max_seq_len), %lld malformed lines skipped, %lld truncated, %lld with a bad image",
        (long long)I->n_dropped_long, (long long)I->n_skipped_bad, (long long)I->n_truncated, (long long)I->n_bad_images);
    row(f, "eval data", "%lld records", (long long)I->n_eval_records);
    row(f, "timings (this process)", "wall %.1f s: load %.1f s, training steps %.1f s, evaluation %.1f s, samples %.1f s",
        I->wall_s, I->load_s, I->train_s, I->eval_s, I->sample_s);
    row(f, "peak memory (RSS)", "%.0f MB", I->peak_rss_mb);
    fputs("</table>\n<h2>Curves</h2>\n<div class=\"grid\">\n", f);
    chart(f, "loss", &M.col[C_LOSS], "train loss", &M.col[C_EVAL_LOSS], "eval loss", 0);
    chart(f, "eval perplexity (log scale)", &(column){0}, "", ppl, "eval ppl", 1);
    chart(f, "learning rate", &M.col[C_LR], "lr", NULL, NULL, 0);
    chart(f, "gradient norm (before clipping, log scale)", &M.col[C_GNORM], "grad norm", NULL, NULL, 1);
    chart(f, "throughput", &M.col[C_TPS], "tokens/s", NULL, NULL, 0);
    if (ex->n) chart(f, "samples exactly right (share)", &(column){0}, "", ex, "exact", 0);
    fputs("</div>\n", f);
    if (M.n_samples) {
        fputs("<h2>Samples (greedy, with the adapter at that step)</h2>\n", f);
        // the first and the last sampling in full; the ones between only as the share above
        samples_table(f, M.samples[0]);
        if (M.n_samples > 1) samples_table(f, M.samples[M.n_samples - 1]);
    }
    fputs("<h2>Config</h2>\n<pre>", f);
    esc(f, I->config_json);
    fputs("</pre>\n<p>Files: adapter or projector safetensors + config, <code>metrics.jsonl</code>, "
          "<code>loss.svg</code>, <code>tb/</code> (TensorBoard), <code>checkpoints/</code>.</p>\n</body></html>\n", f);
    metrics_free(&M);
    return afile_commit(af);
}

// --- terminal summary

void report_print_summary(FILE *f, const char *out, const report_info *I, const report_best *b, const char *model,
                          const char *eval_data, int projector_mode, const char *vision_model) {
    fprintf(f, "\n== summary: %lld optimizer steps, %lld tokens, %.1f s wall (%.1f s training)\n", (long long)I->step,
            (long long)I->tokens_seen, I->wall_s, I->train_s);
    if (isfinite(b->eval_ppl))
        fprintf(f, "   eval perplexity: %.4g before -> best %.4g at step %lld\n", b->first_eval_ppl, b->eval_ppl,
                (long long)b->eval_step);
    if (b->last_exact >= 0)
        fprintf(f, "   samples exactly right: %.1f%% first -> %.1f%% last\n", 100 * b->first_exact, 100 * b->last_exact);
    fprintf(f, "   outputs in %s/: %s, metrics.jsonl, loss.svg, report.html, tb/, checkpoints/\n", out,
            projector_mode ? "projector.safetensors + projector_config.json" : "adapter_model.safetensors + adapter_config.json");
    fprintf(f, "   next:\n");
    fprintf(f, "     %s/report.html in a browser: the run report\n", out);
    fprintf(f, "     tensorboard --logdir %s/tb   (if TensorBoard is installed)\n", out);
    if (projector_mode) {
        if (eval_data && vision_model)
            fprintf(f, "     lorac eval --model %s --vision %s --projector %s --data %s\n", model, vision_model, out, eval_data);
    } else {
        if (eval_data) fprintf(f, "     lorac eval --model %s --adapter %s --data %s\n", model, out, eval_data);
        fprintf(f, "     lorac generate --model %s --adapter %s --chat --prompt \"...\" --temperature 0\n", model, out);
        fprintf(f, "     lorac merge --model %s --adapter %s --out %s-merged\n", model, out, out);
    }
}
