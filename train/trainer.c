// trainer.c — the LoRA training loop, checkpoints, metrics and resume (see trainer.h).
#define _GNU_SOURCE
#include "trainer.h"

#include <cJSON.h>
#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "ckpt.h"
#include "dist.h"
#include "lora.h"
#include "plot.h"
#include "ppl.h"
#include "report.h"
#include "samples.h"
#include "tboard.h"
#include "h5data.h"
#include "safetensors.h"
#include "tokenizer.h"
#include "vision_ppl.h"

// --- one step

int train_micro_step(ag_ctx *c, const llama_model *m, const llama_lora *lora, const data_batch *b,
                     float norm, double *loss) {
    ag_ctx_reset(c);
    ag_tensor *h = llama_forward(c, m, lora, b->ids, NULL, b->n, b->pos, b->kv_begin);
    ag_tensor *l = ag_cross_entropy(c, h, (ag_tensor *)&m->w.lm_head, b->targets, norm);
    if (!l) return -1;
    *loss += l->data[0];
    if (b->n_supervised == 0) return 0;
    return ag_backward(c, l);
}

int train_opt_step(ag_adamw *opt, ag_params *p, float lr, float max_norm, double *grad_norm) {
    double norm = ag_grad_norm(p->grad, p->total);
    *grad_norm = norm;
    if (!isfinite(norm)) return err_set("gradient norm is not finite (%g)", norm);
    if (max_norm > 0) ag_clip_grad_norm(p->grad, p->total, max_norm);
    ag_adamw_step(opt, p->data, p->grad, lr);
    return 0;
}

// --- the run

static volatile sig_atomic_t g_interrupted;
static void on_sigint(int sig) {
    (void)sig;
    if (g_interrupted) signal(SIGINT, SIG_DFL);   // a second Ctrl-C ends at once
    g_interrupted = 1;
}

// The training modes (cfg->mode), in config order.
typedef enum { MODE_LORA, MODE_PROJECTOR, MODE_PROJECTOR_LORA, MODE_XATTN, MODE_XATTN_LORA } train_mode;

typedef struct run {
    cfg_train *cfg;
    tok_tokenizer *tok;
    llama_model model;
    lora_adapter lora;
    ag_adamw opt;
    ag_ctx ctx;
    data_set train, eval;
    data_loader loader;
    data_batch *mb;            // [grad_accum]
    // projector modes
    train_mode mode;           // cfg->mode
    int vision;                // a projector mode (every mode but lora): images, a projector
    int use_lora;              // the LoRA block trains (lora, projector+lora, xattn+lora)
    int xmode;                 // cross-attention fusion (xattn, xattn+lora)
    xattn xa;                  // xmode: the cross-attention blocks
    ag_params *blk[3];         // the trainable blocks, in optimizer order: [projector, xattn, lora]
    int nblk;
    projector proj;
    vision_tower vis;
    data_fc *fc;               // vision.features: the prepared feature cache (no tower then)
    int P, Cv;                 // patches per image (feature rows), vision hidden size
    int rows_img;              // visual rows per image in the sequence (P, or the pooled tokens)
    float **feats;             // [grad_accum] × [images·P, Cv] features of each micro-batch
    int64_t *feat_cap;         // [grad_accum] floats allocated
    int32_t **tgt;             // [grad_accum] × [n] targets with bad-image records dropped
    int64_t *tgt_cap;
    int64_t n_bad_images;      // records skipped for an undecodable image (skip_bad_lines)
    ag_params cat;             // several blocks (projector+lora, xattn...): gathered for one AdamW (data, grad)
    int64_t step, total;
    ag_schedule sched;         // the learning rate at each step (optim.lr, schedule.*)
    int64_t tokens_seen;
    uint64_t data_fp;          // fingerprint of the tokenized training data (data_fingerprint)
    int lock_fd;               // output_dir/.lorac.lock, held for the whole run
    int eval_logged;           // metrics.jsonl already holds an eval line at the resumed step
    int samples_logged;        // ... and a samples line
    // history for the loss curve
    double *hx, *hy, *ex, *ey;
    int nh, ne, caph, cape;
    FILE *metrics;
    int tty;
    tb_writer *tb;             // output_dir/tb/ (train.tensorboard), or NULL
    sample_set samples;        // train.sample_prompts
    double t_eval, t_sample;   // seconds spent in evaluation / samples
} run;

static void push(double **x, double **y, int *n, int *cap, double a, double b) {
    if (*n == *cap) {
        *cap = *cap ? 2 * *cap : 256;
        *x = xrealloc(*x, (size_t)*cap * sizeof **x);
        *y = xrealloc(*y, (size_t)*cap * sizeof **y);
    }
    (*x)[*n] = a;
    (*y)[(*n)++] = b;
}

static int write_adapter(void *user, const char *dir) { return lora_save(&((run *)user)->lora, dir); }

// The trainable weights of a projector mode: the projector (+ the adapter).
static int write_vision(void *user, const char *dir) {
    run *R = user;
    if (projector_save(&R->proj, dir, R->cfg->vision.select_layer, R->P) != 0) return -1;
    if (R->xmode && xattn_save(&R->xa, dir) != 0) return -1;
    return R->use_lora ? lora_save(&R->lora, dir) : 0;
}

static char *state_json(run *R) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "step", (double)R->step);
    cJSON_AddNumberToObject(j, "total_steps", (double)R->total);
    data_pos p = data_loader_tell(&R->loader);
    cJSON *d = cJSON_AddObjectToObject(j, "data");
    cJSON_AddNumberToObject(d, "epoch", (double)p.epoch);
    cJSON_AddNumberToObject(d, "cursor", (double)p.cursor);
    char rng[32];
    snprintf(rng, sizeof rng, "%016llx", (unsigned long long)R->ctx.rng);
    cJSON_AddStringToObject(j, "rng", rng);
    cJSON_AddNumberToObject(j, "tokens_seen", (double)R->tokens_seen);
    char fp[32];
    snprintf(fp, sizeof fp, "%016llx", (unsigned long long)R->data_fp);
    cJSON_AddStringToObject(j, "data_fingerprint", fp);
    cJSON_AddNumberToObject(j, "train_records", (double)R->train.n);
    char *cj = cfg_to_json(R->cfg);
    cJSON_AddItemToObject(j, "config", cJSON_Parse(cj));
    free(cj);
    char *s = cJSON_Print(j);
    cJSON_Delete(j);
    return s;
}

// --- data parallelism (autograd/dist.h): micro-batch k of a step runs on rank k mod N

static int mine(int k) { return k % dist_size() == dist_rank(); }

// FNV-1a of the trainable parameters (compared across ranks at every checkpoint)
static uint64_t params_checksum(const run *R) {
    uint64_t h = 0;
    for (int i = 0; i < R->nblk; i++) h = hash64(R->blk[i]->data, (size_t)R->blk[i]->total * sizeof(float), h);
    return h;
}

// The dropout RNG state after `rows` rows of a step that started at rng0: ag_lora_linear
// draws one uniform per input element of every slot with dropout (In per row, splitmix64
// advancing by γ per draw), so a rank can start micro-batch k where one process would be.
static uint64_t dropout_rng(const run *R, uint64_t rng0, int64_t rows) {
    if (!R->use_lora || R->cfg->lora.dropout <= 0) return rng0;
    uint64_t per_row = 0;
    for (int i = 0; i < R->model.cfg.num_layers * LLAMA_NPROJ; i++) {
        const llama_lora_slot *s = &R->lora.view.slots[i];
        if (s->A && s->dropout > 0) per_row += (uint64_t)s->A->shape[1];
    }
    return rng0 + (uint64_t)rows * per_row * 0x9E3779B97F4A7C15ULL;
}

// After this rank's micro-batches: the step loss (a sum of per-micro-batch means over the
// step's supervised tokens) summed in double, Ctrl-C and skipped-image counts agreed, and
// one allreduce (sum) of the gradients (gathered as [projector, xattn, lora] when several).
// g_stop: the step's Ctrl-C, read once here (every rank acts on the same value even when the
// signal lands on one rank between this agreement and the step's end).
static int g_stop;
static int reduce_step(run *R, double *loss, int64_t bad0) {
    g_stop = g_interrupted;
    if (dist_size() == 1) return 0;
    double v[3] = {*loss, (double)g_stop, (double)(R->n_bad_images - bad0)};
    if (dist_sync(0, v, 3) != 0) return -1;
    *loss = v[0];
    g_stop = v[1] > 0;
    R->n_bad_images = bad0 + (int64_t)v[2];
    if (R->nblk == 1) {
        dist_allreduce_sum_f32(R->blk[0]->grad, R->blk[0]->total);
        return 0;
    }
    int64_t off = 0;   // several blocks: one allreduce over them gathered in R->blk order
    for (int i = 0; i < R->nblk; i++) {
        memcpy(R->cat.grad + off, R->blk[i]->grad, (size_t)R->blk[i]->total * sizeof(float));
        off += R->blk[i]->total;
    }
    dist_allreduce_sum_f32(R->cat.grad, off);
    off = 0;
    for (int i = 0; i < R->nblk; i++) {
        memcpy(R->blk[i]->grad, R->cat.grad + off, (size_t)R->blk[i]->total * sizeof(float));
        off += R->blk[i]->total;
    }
    return 0;
}

static int save_checkpoint(run *R) {
    if (dist_same_u64(params_checksum(R), "the trainable parameters") != 0) return err_prefix("step %lld", (long long)R->step);
    if (dist_rank() != 0) return dist_sync(0, NULL, 0);   // rank 0 alone writes
    char *s = state_json(R);
    int rc = ckpt_save(R->cfg->output_dir, R->step, R->vision ? write_vision : write_adapter, R, &R->opt, s,
                       R->cfg->train.keep_last);
    free(s);
    return dist_sync(rc, NULL, 0);
}

// The training data as the run sees it (token ids, loss masks, image positions and
// references of every record, in file order): a checkpoint records it, resume compares it.
static uint64_t data_fingerprint(const data_set *d) {
    uint64_t h = hash64(&d->n, sizeof d->n, 0x6C6F726163ULL);
    for (int64_t i = 0; i < d->n; i++) {
        const data_record *r = &d->r[i];
        const char *img = r->image_ref ? r->image_ref : r->image ? r->image : "";
        h = hash64(&r->n, sizeof r->n, h);
        if (r->n > 0) {
            h = hash64(r->ids, (size_t)r->n * sizeof *r->ids, h);
            h = hash64(r->mask, (size_t)r->n, h);
        }
        h = hash64(&r->image_pos, sizeof r->image_pos, h);
        h = hash64(img, strlen(img) + 1, h);
    }
    return h;
}

// an integer field >= lo (JSON numbers are doubles: exact up to 2^53)
static int json_int(const cJSON *o, const char *key, int64_t lo, int64_t *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v)) return -1;
    double d = v->valuedouble;
    if (!(d == floor(d)) || d < (double)lo || d > 9007199254740992.0) return -1;
    *out = (int64_t)d;
    return 0;
}

static void set_str(char **dst, const char *src) {
    free(*dst);
    *dst = src ? xstrdup(src) : NULL;
}

// Keys that may change between a run and its resume (configs/README.md "Resuming"): how long
// to train, where the files are, how often to save, evaluate and log, and machine settings.
// Everything else must equal the checkpoint's config. 0 same run, -1 unreadable, -2 another run.
static int check_run_config(const run *R, const cJSON *cf, const char *path) {
    char *txt = cJSON_PrintUnformatted(cf);
    cfg_train old;
    int rc = cfg_from_json(&old, txt, path);
    free(txt);
    if (rc) return -1;
    const cfg_train *c = R->cfg;
    if (old.train.threads != c->train.threads)
        fprintf(stderr, "warning: train.threads differs from the checkpoint's (%d, now %d); results are bit-exact "
                        "only for one thread count\n", old.train.threads, c->train.threads);
    old.resume = c->resume;
    old.train.max_steps = c->train.max_steps;
    old.train.epochs = c->train.epochs;
    old.train.save_every = c->train.save_every;
    old.train.eval_every = c->train.eval_every;
    old.train.keep_last = c->train.keep_last;
    old.train.log_every = c->train.log_every;
    old.train.arena_mb = c->train.arena_mb;
    old.train.threads = c->train.threads;
    old.train.activation_checkpointing = c->train.activation_checkpointing;   // the same gradients either way
    set_str(&old.output_dir, c->output_dir);
    set_str(&old.weights, c->weights);   // storage only: results are bit-identical
    set_str(&old.data.train, c->data.train);   // the data itself is compared by its fingerprint
    set_str(&old.data.eval, c->data.eval);
    set_str(&old.train.dump_grads, c->train.dump_grads);
    old.train.tensorboard = c->train.tensorboard;   // what is logged and sampled, not what is trained
    old.train.sample_every = c->train.sample_every;
    old.train.sample_max_tokens = c->train.sample_max_tokens;
    set_str(&old.train.sample_file, c->train.sample_file);
    for (int i = 0; i < old.train.n_sample_prompts; i++) free(old.train.sample_prompts[i]);
    free(old.train.sample_prompts);
    old.train.n_sample_prompts = c->train.n_sample_prompts;
    old.train.sample_prompts = xcalloc((size_t)c->train.n_sample_prompts + 1, sizeof(char *));
    for (int i = 0; i < c->train.n_sample_prompts; i++) old.train.sample_prompts[i] = xstrdup(c->train.sample_prompts[i]);
    const char *k = cfg_first_diff(&old, c);
    if (k)
        rc = err_set("%s: the checkpoint belongs to a run with another config: %s differs (resume may change only "
                     "the length, paths, save/eval/log/sample settings, threads and weights); start the new run in a new output_dir",
                     path, k);
    cfg_free(&old);
    return rc ? -2 : 0;
}

// Reads checkpoint DIR, checks that it belongs to this run, then loads it into R. Nothing of
// R changes unless every check passes. 0 ok; -1 the checkpoint is damaged (err_set names the
// file); -2 it belongs to another run or lies beyond this run's length (err_set says why).
static int restore(run *R, const char *dir) {
    char *path = path_join(dir, "trainer_state.json");
    char *s = file_read_all(path, NULL);
    cJSON *j = s ? cJSON_Parse(s) : NULL;
    free(s);
    int rc = -1;
    lora_adapter tl = {0};
    projector tp = {0};
    xattn tx = {0};
    float *m = NULL, *v = NULL;
    if (!s) goto done;
    if (!cJSON_IsObject(j)) {
        err_set("%s: not a JSON object", path);
        goto done;
    }
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(j, "data"), *rng = cJSON_GetObjectItemCaseSensitive(j, "rng");
    const cJSON *cf = cJSON_GetObjectItemCaseSensitive(j, "config"), *fp = cJSON_GetObjectItemCaseSensitive(j, "data_fingerprint");
    int64_t step, epoch, cursor, tokens = 0;
    char *end = NULL;
    uint64_t rng_v = cJSON_IsString(rng) ? strtoull(rng->valuestring, &end, 16) : 0;
    const char *bad = NULL;
    if (json_int(j, "step", 1, &step)) bad = "step (an integer >= 1)";
    else if (!cJSON_IsObject(d) || json_int(d, "epoch", 0, &epoch)) bad = "data.epoch (an integer >= 0)";
    else if (json_int(d, "cursor", 0, &cursor)) bad = "data.cursor (an integer >= 0)";
    else if (!end || end == rng->valuestring || *end || strlen(rng->valuestring) != 16) bad = "rng (16 hex digits)";
    else if (cJSON_GetObjectItemCaseSensitive(j, "tokens_seen") && json_int(j, "tokens_seen", 0, &tokens))
        bad = "tokens_seen (an integer >= 0)";
    else if (!cJSON_IsObject(cf)) bad = "config (an object)";
    else if (!cJSON_IsString(fp)) bad = "data_fingerprint (a string)";
    if (bad) {
        err_set("%s: field %s is missing or malformed", path, bad);
        goto done;
    }
    // this run's checkpoint?
    if ((rc = check_run_config(R, cf, path)) != 0) goto done;
    rc = -2;
    char want[32];
    snprintf(want, sizeof want, "%016llx", (unsigned long long)R->data_fp);
    if (strcmp(fp->valuestring, want)) {
        err_set("%s: the checkpoint was trained on other data (fingerprint %s, %s gives %s): "
                "resume needs the same training records; start a new run in a new output_dir",
                path, fp->valuestring, R->cfg->data.train, want);
        goto done;
    }
    if (step > R->total) {
        err_set("%s: the checkpoint is at step %lld, beyond this run's %lld steps (train.max_steps / train.epochs): "
                "raise train.max_steps to at least %lld, or start a new run in a new output_dir",
                dir, (long long)step, (long long)R->total, (long long)step);
        goto done;
    }
    rc = -1;
    // the weights and the optimizer, into temporaries
    if (R->vision) {
        if (projector_load(&tp, dir) != 0) goto done;
        if (tp.params.total != R->proj.params.total || tp.type != R->proj.type || tp.pool != R->proj.pool ||
            tp.pool_tokens != R->proj.pool_tokens) {
            err_set("%s: the checkpoint's projector (%s, pool %s to %d tokens, %lld parameters) differs from this "
                    "run's (%s, pool %s to %d tokens, %lld)", dir, projector_type_name(tp.type),
                    projector_pool_name(tp.pool), tp.pool_tokens, (long long)tp.params.total,
                    projector_type_name(R->proj.type), projector_pool_name(R->proj.pool), R->proj.pool_tokens,
                    (long long)R->proj.params.total);
            goto done;
        }
    }
    if (R->xmode) {   // the cross-attention blocks (checked against the model and xattn.every)
        if (xattn_load(&tx, dir, &R->model.cfg) != 0) goto done;
        if (tx.every != R->xa.every) {
            err_set("%s/xattn_config.json: every %d, this run's xattn.every is %d", dir, tx.every, R->xa.every);
            goto done;
        }
    }
    if (R->use_lora) {
        if (lora_load(&tl, &R->model.cfg, dir) != 0) goto done;
        if (tl.params.total != R->lora.params.total) {
            err_set("%s: the adapter has %lld parameters, this run's config makes %lld", dir,
                    (long long)tl.params.total, (long long)R->lora.params.total);
            goto done;
        }
    }
    int64_t n = R->opt.n, t = 0;
    m = xmalloc((size_t)(n ? n : 1) * sizeof *m);
    v = xmalloc((size_t)(n ? n : 1) * sizeof *v);
    if (ckpt_load_optimizer(dir, n, m, v, &t) != 0) goto done;
    if (data_loader_seek(&R->loader, (data_pos){epoch, cursor}) != 0) {   // same data: a damaged position
        err_prefix("%s", path);
        goto done;
    }
    // every check passed: use it
    if (R->vision) memcpy(R->proj.params.data, tp.params.data, (size_t)tp.params.total * sizeof(float));
    if (R->xmode) memcpy(R->xa.params.data, tx.params.data, (size_t)tx.params.total * sizeof(float));
    for (int i = 0; R->use_lora && i < R->lora.params.n; i++) {
        ag_tensor *a = R->lora.params.t[i], *b = ag_params_find(&tl.params, a->name);
        AG_ASSERT(b && b->numel == a->numel, "adapter layout");
        memcpy(a->data, b->data, (size_t)a->numel * sizeof(float));
    }
    memcpy(R->opt.m, m, (size_t)n * sizeof *m);
    memcpy(R->opt.v, v, (size_t)n * sizeof *v);
    R->opt.t = t;
    R->step = step;
    R->ctx.rng = rng_v;
    R->tokens_seen = tokens;
    rc = 0;
done:
    if (tl.slots) lora_free(&tl);
    if (tp.params.n) projector_free(&tp);
    if (tx.params.n) xattn_free(&tx);
    free(m);
    free(v);
    free(path);
    cJSON_Delete(j);
    return rc;
}

// Resume: the newest checkpoint that reads back whole; damaged newer ones are named and set
// aside (step_N.damaged). 0 (R->step 0 when there is none), -1 + err_set.
static int resume_from_checkpoints(run *R) {
    const char *out = R->cfg->output_dir;
    int n, rc = -1;
    int64_t *steps = ckpt_steps(out, &n);
    if (n == 0) {
        fprintf(stderr, "resume: no checkpoint in %s/checkpoints, starting from scratch\n", out);
        rc = 0;
    }
    char first_err[1024] = "";
    for (int i = 0; i < n; i++) {
        char *dir = ckpt_path(out, steps[i]);
        int r = restore(R, dir);
        if (r == 0) {
            for (int k = 0; k < i; k++) {   // the damaged newer ones
                char *bad = ckpt_path(out, steps[k]);
                if (dist_rank() == 0 && ckpt_set_aside(bad) == 0) fprintf(stderr, "resume: %s set aside as %s.damaged\n", bad, bad);
                free(bad);
            }
            fprintf(stderr, "resume: continuing from %s (step %lld of %lld)\n", dir, (long long)R->step, (long long)R->total);
            free(dir);
            rc = 0;
            break;
        }
        free(dir);
        if (r == -2) break;
        fprintf(stderr, "warning: %s: damaged checkpoint, trying the previous one\n", err_get());
        if (!first_err[0]) snprintf(first_err, sizeof first_err, "%s", err_get());
        if (i == n - 1) err_set("%s/checkpoints: no usable checkpoint (the newest: %s)", out, first_err);
    }
    free(steps);
    return rc;
}

// Keeps metrics.jsonl lines up to `step` (a resumed run rewrites what came after) and
// reloads the loss history from them.
static int metrics_open(run *R, int64_t keep_upto) {
    char *path = path_join(R->cfg->output_dir, "metrics.jsonl");
    char *old = keep_upto > 0 ? file_read_all(path, NULL) : NULL;
    err_clear();
    afile *af = afile_open(path);
    if (!af) {
        free(path);
        free(old);
        return -1;
    }
    for (char *line = old ? strtok(old, "\n") : NULL; line; line = strtok(NULL, "\n")) {
        cJSON *j = cJSON_Parse(line);
        cJSON *s = j ? cJSON_GetObjectItem(j, "step") : NULL;
        if (cJSON_IsNumber(s) && s->valuedouble <= keep_upto) {
            fprintf(af->fp, "%s\n", line);
            cJSON *l = cJSON_GetObjectItem(j, "loss"), *e = cJSON_GetObjectItem(j, "eval_loss");
            if (cJSON_IsNumber(l)) push(&R->hx, &R->hy, &R->nh, &R->caph, s->valuedouble, l->valuedouble);
            if (cJSON_IsNumber(e)) push(&R->ex, &R->ey, &R->ne, &R->cape, s->valuedouble, e->valuedouble);
            if (e && s->valuedouble == keep_upto) R->eval_logged = 1;
            if (cJSON_GetObjectItem(j, "samples") && s->valuedouble == keep_upto) R->samples_logged = 1;
        }
        cJSON_Delete(j);
    }
    free(old);
    int rc = afile_commit(af);
    if (rc == 0) {
        R->metrics = fopen(path, "a");
        if (!R->metrics) rc = err_set("%s: cannot append", path);
    }
    free(path);
    return rc;
}

static void fmt_eta(char *buf, size_t n, double s) {
    if (!isfinite(s) || s < 0) s = 0;
    long t = (long)s;
    snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
}

static int run_eval(run *R, double *loss, double *ppl) {
    double t0 = now_seconds();
    int64_t M = R->cfg->data.max_seq_len;
    eval_result res;
    int rc;
    if (R->vision) {
        if (R->use_lora) lora_set_dropout(&R->lora, 0);
        vision_source src = R->fc ? vision_cache_source(R->fc) : vision_tower_source(&R->vis);
        rc = vision_perplexity_xattn(&R->ctx, &R->model, R->use_lora ? &R->lora.view : NULL, &src, &R->proj,
                                     R->xmode ? &R->xa : NULL, &R->eval, M,
                               M, 4 * M, &res, NULL, NULL);
        if (R->use_lora) lora_set_dropout(&R->lora, R->cfg->lora.dropout);
    } else {
        lora_set_dropout(&R->lora, 0);
        rc = eval_perplexity(&R->ctx, &R->model, &R->lora.view, &R->eval, M, M, 4 * M, &res, NULL, NULL);
        lora_set_dropout(&R->lora, R->cfg->lora.dropout);
    }
    R->t_eval += now_seconds() - t0;
    if (rc) return -1;
    *loss = res.tokens ? res.nll / (double)res.tokens : NAN;
    *ppl = exp(*loss);
    return 0;
}

// One line of metrics.jsonl, flushed to the file (a write error is an error, not a lost line).
static int metrics_line(run *R, const char *line) {
    fault_point("metrics.jsonl: before a line");
    if (fputs(line, R->metrics) == EOF || fflush(R->metrics) != 0) {
        char *p = path_join(R->cfg->output_dir, "metrics.jsonl");
        err_set("%s: write failed: %s", p, strerror(errno));
        free(p);
        return -1;
    }
    fault_point("metrics.jsonl: after a line");
    return 0;
}

static int log_eval(run *R, double loss, double ppl) {
    char line[256], a[64], b[64];   // a non-finite value (no tokens to score) is null
    snprintf(line, sizeof line, "{\"step\": %lld, \"eval_loss\": %s, \"eval_ppl\": %s}\n", (long long)R->step,
             json_num(a, "%.6f", loss), json_num(b, "%.4f", ppl));
    if (metrics_line(R, line) != 0) return -1;
    if (R->tb && (tb_scalar(R->tb, R->step, "eval/loss", loss) || tb_scalar(R->tb, R->step, "eval/ppl", ppl) ||
                  tb_flush(R->tb)))
        return -1;
    if (isfinite(loss)) push(&R->ex, &R->ey, &R->ne, &R->cape, (double)R->step, loss);
    fprintf(stderr, "%sstep %lld/%lld  eval_loss %.4f  eval_ppl %.3f\n", R->tty ? "\r\033[K" : "",
            (long long)R->step, (long long)R->total, loss, ppl);
    return 0;
}

// The final weights (adapter pair, projector pair, or both) replace the previous ones in
// output_dir as one unit (dir_publish).
static int publish_final(run *R) {
    const char *out = R->cfg->output_dir;
    char *stage = publish_stage_name(out);
    int rc = rm_rf(stage) || mkdir_p(stage) || (R->vision ? write_vision(R, stage) : write_adapter(R, stage)) ||
             dir_publish(stage, out);
    if (rc) {
        err_prefix("%s: saving the final weights", out);
        rm_rf(stage);
    }
    free(stage);
    return rc ? -1 : 0;
}

// Takes output_dir for this run: the lock (one run per folder), then finishes or removes what
// an interrupted run left (a half-published final set, temporaries).
static int claim_output_dir(run *R) {
    const char *out = R->cfg->output_dir;
    if (mkdir_p(out) != 0) return err_prefix("output_dir");
    char *lock = path_join(out, ".lorac.lock");
    R->lock_fd = lock_acquire(lock);
    free(lock);
    if (R->lock_fd < 0) return err_prefix("output_dir %s: another `lorac train` is using it", out);
    if (publish_recover(out) != 0) return -1;
    remove_stale_tmp(out);
    char *tb = path_join(out, "tb");   // the TensorBoard event file's rewrite on resume
    remove_stale_tmp(tb);
    free(tb);
    ckpt_remove_stale(out);
    return 0;
}

// Greedy samples of train.sample_prompts with the current adapter (dropout off).
static int run_samples(run *R) {
    if (!R->samples.n) return 0;
    double t0 = now_seconds();
    if (R->tty) fputs("\r\033[K", stderr);
    lora_set_dropout(&R->lora, 0);
    int rc = samples_run(&R->samples, R->step, &R->model, &R->lora.view, R->tok, R->cfg->train.sample_max_tokens,
                         R->metrics, NULL);
    lora_set_dropout(&R->lora, R->cfg->lora.dropout);
    R->t_sample += now_seconds() - t0;
    return rc;
}

// report.html, and the summary on the terminal when the run is complete.
static int finish_report(run *R, const char *status, double t_load, double t_begin, int summary) {
    if (dist_rank() != 0) return dist_sync(0, NULL, 0);   // rank 0 alone writes
    cfg_train *cfg = R->cfg;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    char *cj = cfg_to_json(cfg), title[512];
    snprintf(title, sizeof title, "lorac train %s", cfg->config_path ? cfg->config_path : "");
    double wall = now_seconds() - t_begin;
    report_info ri = {title, status, cj, R->step, R->total, R->tokens_seen, R->train.n, R->train.n_tokens,
                     R->train.n_skipped_bad, R->train.n_dropped_long, R->train.n_truncated, R->eval.n, R->n_bad_images,
                     (R->use_lora ? R->lora.params.total : 0) + (R->vision ? R->proj.params.total : 0) +
                         (R->xmode ? R->xa.params.total : 0), t_load,
                     wall - t_load - R->t_eval - R->t_sample, R->t_eval, R->t_sample, wall, ru.ru_maxrss / 1024.0};
    report_best best;
    int rc = report_write(cfg->output_dir, &ri, &best);
    if (rc == 0 && summary)
        report_print_summary(stderr, cfg->output_dir, &ri, &best, cfg->model, cfg->data.eval, R->vision != 0, cfg->vision.model);
    free(cj);
    return dist_sync(rc, NULL, 0);
}

// Activations the largest possible micro-batch keeps on the tape until backward (the arena
// estimate's per-row-per-layer floats, once: no gradients), for the out-of-memory check before
// the run (with activation checkpointing: each layer's input, plus one layer). Rows: the batch_size longest records together (each at most max_seq_len), or full
// rows when packing. *rows is set to that count.
static double saved_activation_bytes(const cfg_train *cfg, const hf_llama_config *mc, const data_set *ds, int P,
                                     int64_t *rows) {
    int B = cfg->train.batch_size;
    int64_t *top = xcalloc((size_t)B, sizeof *top), r = 0;   // the B largest row counts, descending
    for (int64_t i = 0; i < ds->n && !cfg->data.packing; i++) {
        int64_t n = data_record_rows(&ds->r[i], P);
        if (n > cfg->data.max_seq_len) n = cfg->data.max_seq_len;
        for (int k = 0; k < B; k++)
            if (n > top[k]) {
                int64_t t = top[k];
                top[k] = n, n = t;
            }
    }
    for (int k = 0; k < B; k++) r += cfg->data.packing ? cfg->data.max_seq_len : top[k];
    free(top);
    *rows = r;
    double layer = 12.0 * mc->hidden_size + 5.0 * mc->intermediate_size;   // floats per row of one layer
    if (cfg->train.activation_checkpointing)   // every layer's input, and one layer recomputed at a time
        return (double)r * (mc->num_layers * (double)mc->hidden_size + layer) * 4.0;
    return (double)r * mc->num_layers * layer * 4.0;
}

static int64_t arena_bytes(const cfg_train *cfg, const hf_llama_config *mc) {
    if (cfg->train.arena_mb > 0) return cfg->train.arena_mb << 20;
    // activations kept per row per layer: about 10 C + 4 I floats (+ attention, LoRA); take
    // twice that for gradients, for the largest micro-batch, then reserve (pages are only
    // committed when touched)
    int64_t rows = (int64_t)cfg->data.max_seq_len * cfg->train.batch_size;
    int64_t per = (int64_t)mc->num_layers * (12 * (int64_t)mc->hidden_size + 5 * (int64_t)mc->intermediate_size) * 4;
    int64_t need = 2 * rows * per + ((int64_t)1 << 28);
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGE_SIZE);
    int64_t ram = (int64_t)pages * psz;
    return need < ram ? need : ram;
}

// --- projector modes

// Visual features of micro-batch k (its sequences with an image, in order) into R->feats[k],
// and its targets into R->tgt[k] with the records of undecodable images dropped
// (skip_bad_lines; otherwise such an image is an error naming the JSONL line). *nsup +=
// the supervised rows left.
static int prepare_images(run *R, int k, int64_t *nsup) {
    data_batch *b = &R->mb[k];
    int ni = 0;
    for (int s = 0; s < b->nseq; s++) ni += b->image_row[s] >= 0;
    int64_t need = (int64_t)ni * R->P * R->Cv;
    if (need > R->feat_cap[k]) {
        R->feat_cap[k] = need;
        R->feats[k] = xrealloc(R->feats[k], (size_t)need * sizeof(float));
    }
    if (b->n > R->tgt_cap[k]) {
        R->tgt_cap[k] = b->n;
        R->tgt[k] = xrealloc(R->tgt[k], (size_t)b->n * sizeof(int32_t));
    }
    memcpy(R->tgt[k], b->targets, (size_t)b->n * sizeof(int32_t));
    const char **paths = xmalloc((size_t)(ni ? ni : 1) * sizeof *paths);
    int *seq = xmalloc((size_t)(ni ? ni : 1) * sizeof *seq);
    uint8_t *bad = xcalloc((size_t)(ni ? ni : 1), 1);
    int j = 0;
    for (int s = 0; s < b->nseq; s++)
        if (b->image_row[s] >= 0) {
            seq[j] = s;
            paths[j++] = b->image[s];
        }
    int rc = 0;
    if (R->fc) {   // the cache: one row per image; an image missing from it is a bad image
        for (int i = 0; rc == 0 && i < ni; i++) {
            const data_record *rec = &R->train.r[b->record[seq[i]]];
            float *out = R->feats[k] + (size_t)i * R->P * R->Cv;
            if (data_fc_read(R->fc, rec->image_ref ? rec->image_ref : rec->image, out) == 0) continue;
            if (!R->cfg->data.skip_bad_lines) {
                rc = err_prefix("%s:%lld", R->cfg->data.train, (long long)rec->line);
            } else {
                fprintf(stderr, "warning: %s\n", err_get());
                bad[i] = 1;
                memset(out, 0, (size_t)R->P * R->Cv * sizeof(float));
            }
        }
    } else if (ni) {
        rc = vision_features(&R->vis, paths, ni, R->feats[k], R->cfg->data.skip_bad_lines ? bad : NULL);
        if (rc != 0 && R->vis.failed >= 0)
            err_prefix("%s:%lld", R->cfg->data.train, (long long)R->train.r[b->record[seq[R->vis.failed]]].line);
    }
    for (int i = 0; rc == 0 && i < ni; i++) {
        if (!bad[i]) continue;
        int s = seq[i];
        for (int64_t r = b->seq_begin[s]; r < b->seq_begin[s + 1]; r++) R->tgt[k][r] = -1;
        R->n_bad_images++;
        fprintf(stderr, "warning: %s:%lld: record skipped (undecodable image, data.skip_bad_lines)\n", R->cfg->data.train,
                (long long)R->train.r[b->record[s]].line);
    }
    for (int64_t r = 0; rc == 0 && r < b->n; r++) *nsup += R->tgt[k][r] >= 0;
    free(paths);
    free(seq);
    free(bad);
    return rc;
}

// Several trainable blocks: one AdamW over all of them, gathered in R->blk order (projector,
// xattn, lora), so the optimizer state and the global-norm clipping span them all.
static void cat_gather(run *R) {
    int64_t off = 0;
    for (int i = 0; i < R->nblk; i++) {
        int64_t n = R->blk[i]->total;
        memcpy(R->cat.data + off, R->blk[i]->data, (size_t)n * sizeof(float));
        memcpy(R->cat.grad + off, R->blk[i]->grad, (size_t)n * sizeof(float));
        off += n;
    }
}
static void cat_scatter(run *R) {
    int64_t off = 0;
    for (int i = 0; i < R->nblk; i++) {
        memcpy(R->blk[i]->data, R->cat.data + off, (size_t)R->blk[i]->total * sizeof(float));
        off += R->blk[i]->total;
    }
}

// The projector: projector.init, or fresh (PyTorch's Linear init from the seed).
static int setup_projector(run *R) {
    cfg_train *cfg = R->cfg;
    int Ct = R->model.cfg.hidden_size;
    if (cfg->projector.init) {
        if (projector_load(&R->proj, cfg->projector.init) != 0) return -1;
        if (R->proj.vision_hidden != R->Cv || R->proj.text_hidden != Ct)
            return err_set("%s: the projector maps %d -> %d, this run needs %d (vision hidden) -> %d (text hidden)",
                           cfg->projector.init, R->proj.vision_hidden, R->proj.text_hidden, R->Cv, Ct);
        if (strcmp(projector_type_name(R->proj.type), cfg->projector.type))
            return err_set("%s: the projector is %s, the config says projector.type %s", cfg->projector.init,
                           projector_type_name(R->proj.type), cfg->projector.type);
        if (R->proj.select_layer != cfg->vision.select_layer)
            fprintf(stderr, "warning: %s was trained with select_layer %d, this run uses %d\n", cfg->projector.init,
                    R->proj.select_layer, cfg->vision.select_layer);
        fprintf(stderr, "projector: starting from %s\n", cfg->projector.init);
        if (strcmp(projector_pool_name(R->proj.pool), cfg->projector.pool_type) ||
            (R->proj.pool != POOL_NONE && R->proj.pool_tokens != cfg->projector.pool_tokens) ||
            (R->proj.pool != POOL_NONE && R->proj.num_patches != R->P))
            return err_set("%s: the projector pools %s to %d tokens from %d patches, this run needs projector.pool "
                           "{type: %s, tokens: %d} from %d patches",
                           cfg->projector.init, projector_pool_name(R->proj.pool), R->proj.pool_tokens,
                           R->proj.num_patches, cfg->projector.pool_type, cfg->projector.pool_tokens, R->P);
    } else if (projector_create_pooled(&R->proj, cfg->projector.type, R->Cv, Ct, cfg->projector.pool_type, R->P,
                                       cfg->projector.pool_tokens, cfg->train.seed) != 0) {
        return -1;
    }
    R->proj.num_patches = R->P;
    R->proj.select_layer = cfg->vision.select_layer;
    return 0;
}

// --- the run, in its parts: setup, one step, its logs, the finish

// The mode's inputs and the ranks against grad_accum (nothing read yet). 0, or -1 + err_set.
static int check_mode(run *R) {
    cfg_train *cfg = R->cfg;
    static const char *const names[] = {"lora", "projector", "projector+lora", "xattn", "xattn+lora"};
    for (int i = 0; i < 5; i++)
        if (!strcmp(cfg->mode, names[i])) R->mode = (train_mode)i;
    R->vision = R->mode != MODE_LORA;
    R->use_lora = R->mode == MODE_LORA || R->mode == MODE_PROJECTOR_LORA || R->mode == MODE_XATTN_LORA;
    R->xmode = R->mode == MODE_XATTN || R->mode == MODE_XATTN_LORA;
    if (R->vision && !cfg->vision.model && !cfg->vision.features)
        return err_set("%s: vision.model: required in %s mode (or vision.features)",
                       cfg->config_path ? cfg->config_path : "config", cfg->mode);
    if (dist_size() > cfg->train.grad_accum)
        return err_set("%d ranks but train.grad_accum is %d: each rank runs whole micro-batches of a step; "
                       "raise train.grad_accum to at least %d (a multiple of %d balances the ranks)",
                       dist_size(), cfg->train.grad_accum, dist_size(), dist_size());
    return 0;
}

// output_dir for this run (rank 0 owns it under mpirun); a fresh run never mixes with another
// run's checkpoints. 0, or -1 + err_set.
static int claim_run(run *R) {
    cfg_train *cfg = R->cfg;
    if (dist_rank() == 0 && claim_output_dir(R) != 0) return -1;
    if (!cfg->resume) {
        char *last = ckpt_find_latest(cfg->output_dir);
        if (last) {
            err_set("%s: output_dir holds checkpoints of an earlier run (newest: %s); continue it with resume=true, "
                    "or start this run in a new output_dir (or remove %s/checkpoints)",
                    cfg->output_dir, last, cfg->output_dir);
            free(last);
            return -1;
        }
    }
    return 0;
}

// The frozen models: tokenizer, Llama, and in projector modes the vision features (a prepared
// cache, or the tower). 0, or -1 + err_set.
static int setup_models(run *R, ag_precision precision, ag_weights weights) {
    cfg_train *cfg = R->cfg;
    R->tok = tok_load(cfg->model);
    if (!R->tok || llama_load_opts(cfg->model, &R->model, precision, weights) != 0) return -1;
    if (R->vision && cfg->vision.features) {
        // the cache is checked against vision.model (weights hash, layer, preprocessing) when given
        data_fc_ident id;
        hf_siglip_config sc;
        if (cfg->vision.model && (hf_siglip_config_load(cfg->vision.model, &sc) != 0 ||
                                  data_fc_ident_init(&id, cfg->vision.model, &sc, cfg->vision.select_layer, precision) != 0))
            return -1;
        if (!(R->fc = data_fc_open(cfg->vision.features, cfg->vision.model ? &id : NULL))) return -1;
        if (data_fc_check_precision(R->fc, precision)) return -1;
        if (data_fc_get_ident(R->fc)->select_layer != cfg->vision.select_layer)
            return err_set("%s: attribute 'select_layer': expected %d (vision.select_layer), found %d (re-run `lorac prepare`)",
                           cfg->vision.features, cfg->vision.select_layer, data_fc_get_ident(R->fc)->select_layer);
        R->P = data_fc_patches(R->fc);
        R->Cv = data_fc_hidden(R->fc);
        fprintf(stderr, "vision: features from %s (%lld images), the vision tower is not loaded\n", cfg->vision.features,
                (long long)data_fc_count(R->fc));
    } else if (R->vision) {
        if (vision_open(&R->vis, cfg->vision.model, cfg->vision.select_layer, cfg->vision.max_pixels,
                        cfg->train.batch_size, precision, weights) != 0)
            return -1;
        R->P = R->vis.P;
        R->Cv = R->vis.C;
    }
    if (R->vision && strcmp(cfg->projector.pool_type, "none") && cfg->projector.pool_tokens > R->P)
        return err_set("projector.pool.tokens: expected at most %d (the vision features' patches per image), found %d", R->P,
                       cfg->projector.pool_tokens);
    // visual rows per image in the sequences: the pooled tokens, or every patch; none with
    // cross-attention (the image stays outside the sequence)
    R->rows_img = R->vision && strcmp(cfg->projector.pool_type, "none") ? cfg->projector.pool_tokens : R->P;
    return 0;
}

// The training and eval records, checked against the vocabulary and the step size. 0, or -1.
static int setup_data(run *R) {
    cfg_train *cfg = R->cfg;
    data_opts o = data_opts_default();
    o.num_patches = R->xmode ? 0 : R->rows_img;
    o.image_outside = R->xmode;
    o.format = cfg->data.format;
    o.template_ = cfg->data.template_;
    o.train_on_prompt = cfg->data.train_on_prompt;
    o.skip_bad_lines = cfg->data.skip_bad_lines;
    o.max_seq_len = cfg->data.max_seq_len;
    o.truncate = !strcmp(cfg->data.truncation, "truncate");
    if (data_load_any(&R->train, cfg->data.train, R->tok, &o) != 0 ||
        data_set_check_vocab(&R->train, R->model.cfg.vocab_size, cfg->model) != 0)
        return -1;
    if (R->train.n == 0)
        return err_set("%s: no usable records (%lld malformed, %lld over max_seq_len=%d)", cfg->data.train,
                       (long long)R->train.n_skipped_bad, (long long)R->train.n_dropped_long, cfg->data.max_seq_len);
    // one optimizer step must not see a record twice (a micro-batch would repeat records): sizes
    // against the data, before anything is allocated per micro-batch
    if ((int64_t)cfg->train.batch_size * cfg->train.grad_accum > R->train.n)
        return err_set("%s: train.batch_size (%d) x train.grad_accum (%d) = %lld records per optimizer step, but the data "
                       "holds only %lld usable records (lower train.batch_size or train.grad_accum)", cfg->data.train,
                       cfg->train.batch_size, cfg->train.grad_accum,
                       (long long)cfg->train.batch_size * cfg->train.grad_accum, (long long)R->train.n);
    data_opts eo = o;   // eval documents are scored with the sliding window, never dropped
    eo.max_seq_len = 0;
    if (cfg->data.eval && (data_load_any(&R->eval, cfg->data.eval, R->tok, &eo) != 0 ||
                           data_set_check_vocab(&R->eval, R->model.cfg.vocab_size, cfg->model) != 0))
        return -1;
    fprintf(stderr, "data: %s: %lld records, %lld tokens (%lld malformed skipped, %lld dropped and %lld truncated at max_seq_len=%d)\n",
            cfg->data.train, (long long)R->train.n, (long long)R->train.n_tokens, (long long)R->train.n_skipped_bad,
            (long long)R->train.n_dropped_long, (long long)R->train.n_truncated, cfg->data.max_seq_len);
    if (cfg->data.eval)
        fprintf(stderr, "data: %s: %lld eval records\n", cfg->data.eval, (long long)R->eval.n);
    return 0;
}

// The trainable blocks (projector, cross-attention blocks, adapter: R->blk in optimizer order)
// and one AdamW over them. 0, or -1 + err_set.
static int setup_trainables(run *R) {
    cfg_train *cfg = R->cfg;
    if (R->vision && setup_projector(R) != 0) return -1;
    // the cross-attention blocks: fresh (gates 0), from their own splitmix64 stream
    if (R->xmode && xattn_create(&R->xa, &R->model.cfg, cfg->xattn.every, cfg->train.seed ^ 0x78617474ULL) != 0) return -1;
    lora_config lc = {.r = cfg->lora.r, .alpha = cfg->lora.alpha, .dropout = cfg->lora.dropout, .use_rslora = cfg->lora.use_rslora};
    snprintf(lc.base_model, sizeof lc.base_model, "%s", cfg->model);
    for (int i = 0; i < cfg->lora.n_targets; i++)
        if (lora_parse_target(cfg->lora.targets[i], &lc.targets, "lora.targets") != 0) return -1;
    if (R->use_lora && cfg->lora.init) {   // the adapter: lora.init, or fresh
        if (lora_load(&R->lora, &R->model.cfg, cfg->lora.init) != 0) return -1;
        lora_set_dropout(&R->lora, cfg->lora.dropout);
        fprintf(stderr, "lora: starting from %s (r=%d, alpha=%g)\n", cfg->lora.init, R->lora.cfg.r, R->lora.cfg.alpha);
    } else if (R->use_lora && lora_create(&R->lora, &R->model.cfg, &lc, cfg->train.seed) != 0) {
        return -1;
    }
    if (R->vision) R->blk[R->nblk++] = &R->proj.params;
    if (R->xmode) R->blk[R->nblk++] = &R->xa.params;
    if (R->use_lora) R->blk[R->nblk++] = &R->lora.params;
    int64_t n_train = 0;
    for (int i = 0; i < R->nblk; i++) n_train += R->blk[i]->total;
    if (R->nblk > 1) {
        R->cat.total = n_train;
        R->cat.data = xmalloc((size_t)n_train * sizeof(float));
        R->cat.grad = xmalloc((size_t)n_train * sizeof(float));
    }
    return ag_adamw_init(&R->opt, n_train, cfg->optim.beta1, cfg->optim.beta2, cfg->optim.eps, cfg->optim.weight_decay);
}

// The arena, the loader, the step count, resume, and the outputs (metrics, TensorBoard,
// samples). 0, or -1 + err_set.
static int setup_run(run *R) {
    cfg_train *cfg = R->cfg;
    hf_llama_config acfg = R->model.cfg;   // the blocks' activations are about a decoder layer's each
    if (R->xmode) acfg.num_layers += R->xa.nblocks;
    {   // where memory goes; refuse before allocating what cannot fit (never the OOM killer)
        int64_t arena = arena_bytes(cfg, &acfg);
        double state = 4.0 * 4.0 * (double)R->opt.n;   // parameters, gradients, AdamW m and v (fp32)
        int64_t rows;
        double saved = saved_activation_bytes(cfg, &acfg, &R->train, R->xmode ? 0 : R->rows_img, &rows);
        double avail = mem_available_bytes();
        llama_log_memory(&R->model);
        fprintf(stderr, "memory: trainable state %.1f MB (%lld parameters: values, gradients, AdamW moments); "
                        "activation arena %.2f GB reserved (committed as touched; ~%.2f GB saved for backward by "
                        "the largest micro-batch, %lld rows)\n",
                state / 1e6, (long long)R->opt.n, (double)arena / 1e9, saved / 1e9, (long long)rows);
        if (avail >= 0 && state + saved > avail) {
            err_set("out of memory: the trainable state (%.3g GB) and the activations the largest micro-batch (%lld "
                    "rows: the %d longest records) saves for backward (~%.3g GB) do not fit in the %.3g GB available "
                    "(MemAvailable, after loading %.3g GB of weights); lower data.max_seq_len or train.batch_size, "
                    "set train.activation_checkpointing: true or precision: bf16",
                    state / 1e9, (long long)rows, cfg->train.batch_size, saved / 1e9, avail / 1e9,
                    (R->model.mem.bytes16 + R->model.mem.bytes32) / 1e9);
            return -1;
        }
        if (ag_ctx_init(&R->ctx, (size_t)arena) != 0) return -1;
    }
    R->ctx.training = 1;
    R->ctx.checkpoint = cfg->train.activation_checkpointing;   // bit-identical gradients, less memory
    if (R->ctx.checkpoint)
        fprintf(stderr, "train: activation checkpointing: each decoder layer keeps only its input and is "
                        "recomputed in backward\n");
    R->ctx.rng = cfg->train.seed * 0x9E3779B97F4A7C15ULL + 1;
    data_loader_opts lo = {.batch_size = cfg->train.batch_size, .max_seq_len = cfg->data.max_seq_len,
                           .packing = cfg->data.packing, .shuffle = cfg->data.shuffle, .seed = cfg->train.seed,
                           .num_patches = R->xmode ? 0 : R->rows_img};
    if (data_loader_init(&R->loader, &R->train, &lo) != 0) return -1;
    R->data_fp = data_fingerprint(&R->train);
    R->total = cfg->train.max_steps > 0 ? cfg->train.max_steps
                                        : data_loader_steps_for_epochs(&R->loader, cfg->train.epochs, cfg->train.grad_accum);
    if (cfg->resume && resume_from_checkpoints(R) != 0) return -1;
    R->sched = cfg_schedule(cfg);
    if (R->step > 0 && R->step == R->total)
        fprintf(stderr, "resume: the run is complete at step %lld; writing its final outputs again\n", (long long)R->step);
    if (dist_rank() == 0 ? metrics_open(R, R->step) != 0 : !(R->metrics = fopen("/dev/null", "w"))) return -1;
    if (dist_rank() == 0) {   // the rest of the outputs: rank 0 alone writes (and samples)
        if (cfg->train.tensorboard && !(R->tb = tb_open(cfg->output_dir, R->step))) return -1;
        if (samples_load(&R->samples, cfg) != 0) return -1;
    }
    return 0;
}

// What trains: the projector, the cross-attention blocks, the adapter, the steps.
static void print_setup(const run *R, double t_load) {
    const cfg_train *cfg = R->cfg;
    if (R->vision)
        fprintf(stderr, "projector: %s %d -> %d (%lld parameters), select_layer %d, %d visual rows per image (pool %s)%s\n",
                projector_type_name(R->proj.type), R->Cv, R->proj.text_hidden, (long long)R->proj.params.total,
                cfg->vision.select_layer, R->xmode ? 0 : R->rows_img, projector_pool_name(R->proj.pool),
                R->use_lora ? "; with LoRA:" : "");
    if (R->xmode)
        fprintf(stderr, "xattn: %d gated cross-attention blocks (after every %d decoder layers, %d visual rows per "
                        "image as keys/values): %lld parameters\n",
                R->xa.nblocks, R->xa.every, R->rows_img, (long long)R->xa.params.total);
    if (!R->use_lora)
        fprintf(stderr, "%lld optimizer steps of %d x %d records; loaded in %.1fs\n", (long long)R->total,
                cfg->train.batch_size, cfg->train.grad_accum, now_seconds() - t_load);
    else
        fprintf(stderr, "lora: r=%d alpha=%g (scale %g) on %d projections x %d layers: %lld trainable parameters; "
                        "%lld optimizer steps of %d x %d records; loaded in %.1fs\n",
                R->lora.cfg.r, R->lora.cfg.alpha, R->lora.scale, __builtin_popcount(R->lora.cfg.targets),
                R->model.cfg.num_layers, (long long)R->lora.params.total, (long long)R->total, cfg->train.batch_size,
                cfg->train.grad_accum, now_seconds() - t_load);
}

// train.dump_grads: the first step's gradients of every trainable block (projector, xattn,
// adapter, in R->blk order) under their key names.
static int dump_grads(const run *R) {
    st_writer *w = st_writer_new();
    for (int b = 0; b < R->nblk; b++)
        for (int i = 0; i < R->blk[b]->n; i++) {
            ag_tensor *t = R->blk[b]->t[i];
            st_writer_add(w, t->name, ST_F32, t->ndim, t->shape, t->grad);
        }
    int rc = st_writer_write(w, R->cfg->train.dump_grads);
    st_writer_free(w);
    return rc;
}

typedef struct step_stats {
    double loss, gnorm;
    float lr;
    int64_t rows, nsup;   // the step's rows and supervised tokens, over every rank
    double seconds;
} step_stats;

// One optimizer step: the micro-batches (forward + backward, each rank its own), the sum over
// ranks, the update. 0, or -1 + err_set (the parameters untouched when the loss or the
// gradient norm is not finite).
static int train_step(run *R, step_stats *s) {
    cfg_train *cfg = R->cfg;
    int accum = cfg->train.grad_accum;
    double t0 = now_seconds();
    int64_t nsup = 0, rows = 0;
    for (int k = 0; k < accum; k++) {
        data_loader_next(&R->loader, &R->mb[k]);
        if (!mine(k)) {
            rows += R->mb[k].n;
            continue;
        }
        if (!R->vision) nsup += R->mb[k].n_supervised;
        else if (prepare_images(R, k, &nsup) != 0) return -1;
        rows += R->mb[k].n;
    }
    double nv = (double)nsup;   // the step's supervised tokens, over every rank's micro-batches
    if (dist_size() > 1 && dist_sync(0, &nv, 1) != 0) return -1;
    nsup = (int64_t)nv;
    uint64_t rng0 = R->ctx.rng;
    int64_t bad0 = R->n_bad_images, done = 0;
    for (int i = 0; i < R->nblk; i++) ag_params_zero_grad(R->blk[i]);
    double loss = 0, gnorm = 0;
    float lr = ag_lr_at(&R->sched, R->step, R->total);
    const llama_lora *lora = R->use_lora ? &R->lora.view : NULL;
    for (int k = 0; k < accum; k++) {
        R->ctx.rng = dropout_rng(R, rng0, done);
        done += R->mb[k].n;
        if (!mine(k)) continue;
        float norm = nsup > 0 ? (float)nsup : 1.0f;
        int rc = R->xmode    ? vision_xattn_micro_step(&R->ctx, &R->model, lora, &R->proj, &R->xa, &R->mb[k], R->feats[k],
                                                       R->tgt[k], norm, &loss)
                 : R->vision ? vision_micro_step(&R->ctx, &R->model, lora, &R->proj, &R->mb[k], R->feats[k], R->tgt[k],
                                                 norm, &loss)
                             : train_micro_step(&R->ctx, &R->model, &R->lora.view, &R->mb[k], norm, &loss);
        if (rc != 0) return -1;
        AG_ASSERT(R->ctx.rng == dropout_rng(R, rng0, done), "dropout RNG draws per row (dropout_rng)");
    }
    R->ctx.rng = dropout_rng(R, rng0, done);
    if (reduce_step(R, &loss, bad0) != 0) return -1;
    if (R->step == 0 && cfg->train.dump_grads && dist_rank() == 0 && dump_grads(R) != 0) return -1;
    if (!isfinite(loss)) {
        char *last = ckpt_find_latest(cfg->output_dir);
        err_set("step %lld: the loss is not finite (%g); stopping without an update (last good checkpoint: %s)",
                (long long)R->step + 1, loss, last ? last : "none");   // steps count from 1, as in metrics.jsonl
        free(last);
        return -1;
    }
    if (R->nblk > 1) cat_gather(R);
    ag_params *blk = R->nblk > 1 ? &R->cat : R->blk[0];
    if (train_opt_step(&R->opt, blk, lr, cfg->optim.grad_clip, &gnorm) != 0) {
        char *last = ckpt_find_latest(cfg->output_dir);
        err_prefix("step %lld", (long long)R->step + 1);
        fprintf(stderr, "note: last good checkpoint: %s\n", last ? last : "none");
        free(last);
        return -1;
    }
    if (R->nblk > 1) cat_scatter(R);
    R->step++;
    R->tokens_seen += rows;
    *s = (step_stats){loss, gnorm, lr, rows, nsup, now_seconds() - t0};
    return 0;
}

// The step's logs: metrics.jsonl, TensorBoard, the loss history, the progress line. 0, or -1.
static int log_step(run *R, const step_stats *s, double t_start, int64_t first_step) {
    cfg_train *cfg = R->cfg;
    double dt = s->seconds, elapsed = now_seconds() - t_start;
    double eta = elapsed / (double)(R->step - first_step) * (double)(R->total - R->step);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    char line[512], n1[64], n2[64], n3[64], n4[64], n5[64];
    snprintf(line, sizeof line,
             "{\"step\": %lld, \"loss\": %s, \"lr\": %s, \"grad_norm\": %s, \"tokens\": %lld, "
             "\"supervised\": %lld, \"tokens_per_s\": %s, \"step_s\": %s, \"epoch\": %lld, \"peak_rss_mb\": %.0f}\n",
             (long long)R->step, json_num(n1, "%.6f", s->loss), json_num(n2, "%.6g", s->lr), json_num(n3, "%.6f", s->gnorm),
             (long long)s->rows, (long long)s->nsup, json_num(n4, "%.1f", s->rows / dt), json_num(n5, "%.3f", dt),
             (long long)data_loader_tell(&R->loader).epoch, ru.ru_maxrss / 1024.0);
    if (metrics_line(R, line) != 0) return -1;
    if (R->tb && (tb_scalar(R->tb, R->step, "train/loss", s->loss) || tb_scalar(R->tb, R->step, "train/lr", s->lr) ||
                  tb_scalar(R->tb, R->step, "train/grad_norm", s->gnorm) ||
                  tb_scalar(R->tb, R->step, "train/tokens_per_s", s->rows / dt) || tb_flush(R->tb)))
        return -1;
    push(&R->hx, &R->hy, &R->nh, &R->caph, (double)R->step, s->loss);
    char e[32];
    fmt_eta(e, sizeof e, eta);
    if (R->tty)
        fprintf(stderr, "\r\033[Kstep %lld/%lld  loss %.4f  lr %.3g  gnorm %.3f  %.0f tok/s  ETA %s", (long long)R->step,
                (long long)R->total, s->loss, s->lr, s->gnorm, s->rows / dt, e);
    else if (cfg->train.log_every <= 1 || R->step % cfg->train.log_every == 0 || R->step == R->total)
        fprintf(stderr, "step %lld/%lld  loss %.4f  lr %.3g  gnorm %.3f  %.0f tok/s  ETA %s\n", (long long)R->step,
                (long long)R->total, s->loss, s->lr, s->gnorm, s->rows / dt, e);
    return 0;
}

// After a step: the periodic eval, samples and checkpoint, and Ctrl-C (a checkpoint, then the
// report). 0 to go on, 1 when interrupted, -1 + err_set.
static int after_step(run *R, int64_t *last_saved, double t_load, double t_begin) {
    cfg_train *cfg = R->cfg;
    if (R->eval.n > 0 && cfg->train.eval_every > 0 && R->step % cfg->train.eval_every == 0 && R->step < R->total) {
        double el, ep;
        if (run_eval(R, &el, &ep) != 0 || log_eval(R, el, ep) != 0) return -1;
    }
    if (cfg->train.sample_every > 0 && R->step % cfg->train.sample_every == 0 && R->step < R->total &&
        run_samples(R) != 0)
        return -1;
    if ((cfg->train.save_every > 0 && R->step % cfg->train.save_every == 0) || R->step == R->total || g_stop) {
        if (save_checkpoint(R) != 0) return -1;
        *last_saved = R->step;
    }
    if (!g_stop) return 0;
    fprintf(stderr, "%sinterrupted: checkpoint saved at step %lld; resume with resume=true\n", R->tty ? "\n" : "",
            (long long)R->step);
    if (finish_report(R, "interrupted (continue with resume=true)", t_load, t_begin, 0) != 0)
        fprintf(stderr, "warning: report.html: %s\n", err_get());
    return 1;
}

// After the last step: the final checkpoint and eval, the published adapter/projector, the
// loss chart, the last samples, the report. 0, or -1 + err_set.
static int finish_run(run *R, int64_t first_step, int64_t last_saved, double t_load, double t_begin) {
    cfg_train *cfg = R->cfg;
    if (R->tty) fputc('\n', stderr);
    if (last_saved != R->step && save_checkpoint(R) != 0) return -1;
    if (R->eval.n > 0 && !(R->step == first_step && R->eval_logged)) {   // a finished run's eval is logged once
        double el, ep;
        if (run_eval(R, &el, &ep) != 0 || log_eval(R, el, ep) != 0) return -1;
    }
    if (dist_rank() == 0) {   // the final outputs: rank 0 alone writes
        if (publish_final(R) != 0) return -1;
        char *svg = path_join(cfg->output_dir, "loss.svg");
        int prc = plot_loss_svg(svg, R->hx, R->hy, R->nh, R->ex, R->ey, R->ne, "lorac: loss");
        free(svg);
        if (prc) return -1;
    }
    if (dist_sync(0, NULL, 0) != 0) return -1;
    if (!(R->step == first_step && R->samples_logged) && run_samples(R) != 0) return -1;   // once, as the eval
    if (R->n_bad_images)
        fprintf(stderr, "data: %lld records skipped for undecodable images (data.skip_bad_lines)\n", (long long)R->n_bad_images);
    if (R->vision)
        fprintf(stderr, "done: projector in %s (projector.safetensors, projector_config.json%s%s), metrics.jsonl, loss.svg\n",
                cfg->output_dir, R->xmode ? ", xattn.safetensors, xattn_config.json" : "",
                R->use_lora ? ", adapter_model.safetensors, adapter_config.json" : "");
    else
        fprintf(stderr, "done: adapter in %s (adapter_model.safetensors, adapter_config.json), metrics.jsonl, loss.svg\n",
                cfg->output_dir);
    if (finish_report(R, "finished", t_load, t_begin, 1) != 0) return -1;
    fprintf(stderr, "memory: peak RSS %.2f GB (activation arena high-water %.2f GB)\n", mem_peak_rss_bytes() / 1e9,
            (double)R->ctx.arena.high / 1e9);
    return 0;
}

static void run_free(run *R) {
    int accum = R->cfg->train.grad_accum;
    samples_free(&R->samples);
    for (int k = 0; R->mb && k < accum; k++) data_batch_free(&R->mb[k]);
    for (int k = 0; R->feats && k < accum; k++) free(R->feats[k]), free(R->tgt[k]);
    free(R->feats), free(R->feat_cap), free(R->tgt), free(R->tgt_cap);
    free(R->cat.data), free(R->cat.grad);
    if (R->vision) projector_free(&R->proj), vision_close(&R->vis);
    if (R->xmode) xattn_free(&R->xa);
    if (R->fc) data_fc_close(R->fc);
    free(R->mb);
    free(R->hx), free(R->hy), free(R->ex), free(R->ey);
    data_loader_free(&R->loader);
    data_set_free(&R->train);
    data_set_free(&R->eval);
    ag_ctx_free(&R->ctx);
    ag_adamw_free(&R->opt);
    if (R->lora.slots) lora_free(&R->lora);
    llama_free(&R->model);
    if (R->tok) tok_free(R->tok);
    lock_release(R->lock_fd);
}

int train_run(cfg_train *cfg) {
    run R_ = {0}, *R = &R_;
    R->cfg = cfg;
    R->tty = isatty(2);
    R->lock_fd = -1;
    if (check_mode(R) != 0) {
        fprintf(stderr, "error: %s\n", err_get());
        return 1;
    }
    if (cfg->train.threads > 0) {
        omp_set_num_threads(cfg->train.threads);
        openblas_set_num_threads(cfg->train.threads);
    }
    if (claim_run(R) != 0) {
        fprintf(stderr, "error: %s\n", err_get());
        lock_release(R->lock_fd);
        return 1;
    }
    int status = 1, accum = cfg->train.grad_accum;
    double t_load = now_seconds(), t_begin = t_load;
    ag_precision precision = AG_PREC_FP32;
    ag_precision_parse(cfg->precision, &precision);   // validated by cfg_validate
    ag_weights weights = AG_WEIGHTS_AUTO;
    ag_weights_parse(cfg->weights, &weights);
    if (setup_models(R, precision, weights) != 0 || setup_data(R) != 0 || setup_trainables(R) != 0 || setup_run(R) != 0) goto out;
    print_setup(R, t_load);
    if (dist_same_u64(params_checksum(R), "the trainable parameters at the start") != 0) goto out;
    if (R->eval.n > 0 && R->step == 0) {
        double el, ep;
        if (run_eval(R, &el, &ep) != 0 || log_eval(R, el, ep) != 0) goto out;
    }
    t_load = now_seconds() - t_load - R->t_eval;
    if (R->step == 0 && run_samples(R) != 0) goto out;

    g_interrupted = 0;
    struct sigaction sa = {0};
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    R->mb = xcalloc((size_t)accum, sizeof *R->mb);
    if (R->vision) {
        R->feats = xcalloc((size_t)accum, sizeof *R->feats);
        R->feat_cap = xcalloc((size_t)accum, sizeof *R->feat_cap);
        R->tgt = xcalloc((size_t)accum, sizeof *R->tgt);
        R->tgt_cap = xcalloc((size_t)accum, sizeof *R->tgt_cap);
    }
    double t_start = now_seconds();
    int64_t first_step = R->step;
    int64_t last_saved = R->step > 0 ? R->step : -1;   // a resumed run's checkpoint is on disk
    while (R->step < R->total) {
        step_stats s;
        if (train_step(R, &s) != 0 || log_step(R, &s, t_start, first_step) != 0) goto out;
        int rc = after_step(R, &last_saved, t_load, t_begin);
        if (rc < 0) goto out;
        if (rc > 0) {
            status = 130;
            goto out;
        }
    }
    if (finish_run(R, first_step, last_saved, t_load, t_begin) != 0) goto out;
    status = 0;
out:
    if (status == 1 && !dist_agreed()) dist_sync(-1, NULL, 0);   // the other ranks learn of it at their next agreement point
    if (status == 1) fprintf(stderr, "error: %s\n", err_get());
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    if (R->metrics) fclose(R->metrics);
    if (tb_close(R->tb) != 0 && status == 0) {
        fprintf(stderr, "error: %s\n", err_get());
        status = 1;
    }
    run_free(R);
    return status;
}
