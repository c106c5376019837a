// cmd_eval.c — `lorac eval --model DIR --data FILE [--adapter DIR] [--vision DIR --projector
// DIR] [--max-length N] [--stride S] [--json]`: perplexity with docs/numerics.md's sliding window.
// With --vision/--projector, records with an image (caption, chat with <image>) get their P
// visual rows (SigLIP features of the projector's select_layer, projected) and the windows
// count those rows; only supervised tokens are scored. A projector folder written in mode
// xattn (xattn_config.json present) instead runs its cross-attention blocks: the image takes
// no rows and every token of the record attends its visual rows.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "opts.h"
#include "h5data.h"
#include "lora.h"
#include "ppl.h"
#include "tokenizer.h"
#include "vision_ppl.h"

typedef struct progress_state {
    int tty;
    double t0;
} progress_state;

static void on_progress(void *user, int64_t done, int64_t total, const eval_result *r) {
    progress_state *p = user;
    if (!p->tty) return;
    double dt = now_seconds() - p->t0;
    fprintf(stderr, "\r\033[Keval: %lld/%lld documents  ppl %.3f  %.0f tok/s", (long long)done, (long long)total,
            r->tokens ? exp(r->nll / (double)r->tokens) : NAN, dt > 0 ? r->rows / dt : 0);
}

int cmd_eval(int argc, char **argv) {
    const char *model = NULL, *data = NULL, *adapter = NULL, *vision = NULL, *proj_dir = NULL, *format = "auto",
               *template_ = "llama3", *prec = "fp32", *weights_s = "auto";
    int64_t M = 1024, S = -1, batch_rows = 0;   // S default: M / 2 (512 for the default M)
    int json = 0;
    const cli_opt opts[] = {
        CLI_MODEL(&model, &adapter),
        CLI_TEXT("data", OPT_FILE, &data, "FILE", "JSONL records, a .txt document or a prepared .h5 file (required)"),
        CLI_VISION(&vision, &proj_dir),
        CLI_TEXT("format", OPT_STR, &format, "F", "record format: auto (default), chat, alpaca, text, caption"),
        CLI_TEXT("template", OPT_STR, &template_, "T", "llama3 (default) or alpaca_classic"),
        CLI_PRECISION(&prec),
        CLI_WEIGHTS(&weights_s, "frozen weight storage: auto (default: as the file holds them, mapped) or f32"),
        CLI_INT("max-length", &M, "N", 2, INT64_MAX, "windows of N rows (default 1024)"),
        CLI_INT("stride", &S, "S", 1, INT64_MAX, "window stride, at most N (default N / 2)"),
        CLI_INT("batch-tokens", &batch_rows, "N", 1, INT64_MAX, "rows per forward (default: the larger of 2048 and N)"),
        CLI_FLAG("json", &json, "one JSON object on stdout instead of the text summary"),
    };
    const cli_spec spec = {"eval", "--model DIR --data FILE [--adapter DIR] [--vision DIR --projector DIR]\n"
                                   "                  [--max-length N] [--stride S] [--precision fp32|bf16] [--weights auto|f32] [--json]",
                           NULL, opts, CLI_NOPTS(opts), NULL, 0};
    int npos, prc = cli_parse(&spec, argc, argv, NULL, 0, &npos, 0, NULL);
    if (prc) return prc == 1 ? 0 : prc;
    ag_precision precision = AG_PREC_FP32;
    ag_precision_parse(prec, &precision);
    ag_weights weights = AG_WEIGHTS_AUTO;
    ag_weights_parse(weights_s, &weights);
    if (!model) return cli_usage("eval", "--model DIR is required");
    if (!data) return cli_usage("eval", "--data FILE is required");
    if (S < 0) S = M / 2;
    if (S > M) return cli_usage("eval", "--stride (%lld) must not exceed --max-length (%lld)", (long long)S, (long long)M);
    if ((vision != NULL) != (proj_dir != NULL)) return cli_usage("eval", "--vision and --projector go together");
    int status = 1;
    tok_tokenizer *tok = NULL;
    llama_model m = {0};
    lora_adapter lora = {0};
    data_set ds = {0};
    ag_ctx c = {0};
    vision_tower vt = {0};
    projector proj = {0};
    xattn xa = {0};
    int has_xa = 0;   // the projector folder holds cross-attention blocks (mode xattn)
    if (!(tok = tok_load(model)) || llama_load_opts(model, &m, precision, weights) != 0) goto out;
    if (vision && vision_open_projected(&vt, &proj, vision, proj_dir, &m, model) != 0) goto out;
    if (vision && (has_xa = vision_open_xattn(&xa, proj_dir, &m)) < 0) goto out;
    if (adapter && lora_load(&lora, &m.cfg, adapter) != 0) goto out;
    if (adapter) lora_set_dropout(&lora, 0);
    data_opts o = data_opts_default();
    o.format = format;
    o.template_ = template_;
    o.num_patches = vision && !has_xa ? projector_rows(&proj) : 0;
    o.image_outside = has_xa;
    if (data_load_any(&ds, data, tok, &o) != 0 || data_set_check_vocab(&ds, m.cfg.vocab_size, model) != 0) goto out;
    if (!batch_rows) batch_rows = M > 2048 ? M : 2048;
    int64_t hint = (int64_t)m.cfg.num_layers * (12 * (int64_t)m.cfg.hidden_size + 5 * (int64_t)m.cfg.intermediate_size) * 4;
    if (ag_ctx_init(&c, (size_t)(batch_rows * (int64_t)(m.cfg.hidden_size * 16 + m.cfg.intermediate_size * 4) * 4 + hint + ((int64_t)1 << 28))) != 0)
        goto out;
    llama_log_memory(&m);   // here, after every input check: a failed run's stderr is its error line
    fprintf(stderr, "memory: activation arena %.2f GB reserved (committed as touched; no-grad: about one layer's "
                    "activations of %lld rows at a time)\n",
            (double)c.arena.cap / 1e9, (long long)batch_rows);
    progress_state ps = {isatty(2) && !json, now_seconds()};
    eval_result r;
    vision_source src = vision ? vision_tower_source(&vt) : (vision_source){0};
    if (vision ? vision_perplexity_xattn(&c, &m, adapter ? &lora.view : NULL, &src, &proj, has_xa ? &xa : NULL, &ds, M,
                                         S, batch_rows, &r, on_progress, &ps)
               : eval_perplexity(&c, &m, adapter ? &lora.view : NULL, &ds, M, S, batch_rows, &r, on_progress, &ps))
        goto out;
    if (ps.tty) fputc('\n', stderr);
    if (r.tokens == 0) {
        err_set("%s: no tokens to score (%lld documents, %lld too short)", data, (long long)r.documents, (long long)r.empty);
        goto out;
    }
    double nll = r.nll / (double)r.tokens, ppl = exp(nll);
    if (!isfinite(nll)) {   // NaN/Inf in the weights or the adapter: no perplexity to report
        err_set("%s: the mean NLL over %lld tokens is not finite (%g): NaN/Inf in the model%s", data,
                (long long)r.tokens, nll, adapter ? " or the adapter" : "");
        goto out;
    }
    char pj[64];   // exp() of a finite NLL over ~709 overflows: null in JSON (the NLL is exact)
    if (json)
        printf("{\"ppl\": %s, \"nll\": %.6f, \"tokens\": %lld, \"documents\": %lld}\n", json_num(pj, "%.6f", ppl), nll,
               (long long)r.tokens, (long long)r.documents);
    else {
        printf("ppl        %.4f\nnll        %.6f nats/token\ntokens     %lld scored\ndocuments  %lld", ppl, nll,
               (long long)r.tokens, (long long)r.documents);
        if (r.empty) printf(" (+%lld empty, skipped)", (long long)r.empty);
        printf("\nspeed      %.0f tokens/s (%lld tokens through the model in %.2fs)\n", r.rows / r.seconds,
               (long long)r.rows, r.seconds);
    }
    fprintf(stderr, "memory: peak RSS %.2f GB (activation arena high-water %.2f GB)\n", mem_peak_rss_bytes() / 1e9,
            (double)c.arena.high / 1e9);
    status = 0;
out:
    if (status) cli_fail();
    ag_ctx_free(&c);
    vision_close(&vt);
    projector_free(&proj);
    if (has_xa > 0) xattn_free(&xa);
    data_set_free(&ds);
    if (lora.slots) lora_free(&lora);
    llama_free(&m);
    if (tok) tok_free(tok);
    return status;
}
