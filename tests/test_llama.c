// test_llama.c — model/llama and eval/generate against the PyTorch reference
// (tests/gen_llama.py: the HF Llama forward on tiny BF16 and F32 model folders).
#include <cJSON.h>
#include <cblas.h>

#include "fixture.h"
#include "generate.h"
#include "llama.h"
#include "safetensors.h"
#include "test.h"

static const char *model_dirs[2] = {"tests/fixtures/tiny-llama-bf16", "tests/fixtures/tiny-llama-f32"};
static const char *golden_files[2] = {"tests/fixtures/llama_bf16.safetensors", "tests/fixtures/llama_f32.safetensors"};

#define ARENA ((size_t)256 << 20)

// logits [N,V] = h [N,C] · lm_headᵀ
static float *all_logits(const llama_model *m, const ag_tensor *h) {
    int64_t N = h->shape[0], C = m->cfg.hidden_size, V = m->cfg.vocab_size;
    float *l = malloc((size_t)(N * V) * sizeof *l);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, (int)V, (int)C, 1.0f, h->data, (int)C,
                m->w.lm_head.data, (int)C, 0.0f, l, (int)V);
    return l;
}

static int32_t *iota(int64_t n, int32_t start) {
    int32_t *p = malloc((size_t)n * sizeof *p);
    for (int64_t i = 0; i < n; i++) p[i] = start + (int32_t)i;
    return p;
}

// Forward of one document (positions 0..n-1), logits [n,V] (malloc'd).
static float *doc_logits(ag_ctx *c, const llama_model *m, const llama_lora *lora, const int32_t *ids,
                         ag_tensor *emb, int64_t n) {
    int32_t *pos = iota(n, 0);
    ag_tensor *h = llama_forward(c, m, lora, ids, emb, n, pos, NULL);
    free(pos);
    CHECK(h != NULL, "forward failed: %s", err_get());
    return h ? all_logits(m, h) : NULL;
}

// --- logits against the reference, in no-grad and grad mode

static void test_logits(void) {
    for (int k = 0; k < 2; k++) {
        llama_model m;
        int rc = llama_load(model_dirs[k], &m);
        CHECK(rc == 0, "%s: %s", model_dirs[k], err_get());
        if (rc) continue;
        fixture *fx = fixture_load(golden_files[k]);
        long na, nb, nla, nlb;
        const int32_t *a = fixture_i32(fx, "ids_a", &na), *b = fixture_i32(fx, "ids_b", &nb);
        const float *ga = fixture_f32(fx, "logits_a", &nla), *gb = fixture_f32(fx, "logits_b", &nlb);
        long nf;
        const float *inv = fixture_f32(fx, "inv_freq", &nf);
        CHECK(nf == m.cfg.head_dim / 2 && max_rel_err(m.inv_freq, inv, nf, 0) < 1e-6, "%s: inv_freq",
              model_dirs[k]);
        ag_ctx c;
        ag_ctx_init(&c, ARENA);
        for (int grad = 0; grad < 2; grad++) {
            ag_set_grad(&c, grad);
            float *la = doc_logits(&c, &m, NULL, a, NULL, na);
            float *lb = doc_logits(&c, &m, NULL, b, NULL, nb);
            if (la && lb) {
                double ea = max_rel_err(la, ga, nla, 1e-3), eb = max_rel_err(lb, gb, nlb, 1e-3);
                CHECK(ea <= 1e-4 && eb <= 1e-4, "%s (grad %d): logits rel err %.3g / %.3g > 1e-4",
                      model_dirs[k], grad, ea, eb);
                if (getenv("TEST_VERBOSE"))
                    printf("  %s grad %d: logits rel err %.3g %.3g\n", model_dirs[k], grad, ea, eb);
            }
            free(la);
            free(lb);
            ag_ctx_reset(&c);
        }
        ag_ctx_free(&c);
        fixture_free(fx);
        llama_free(&m);
    }
}

// --- packed documents equal separate sequences (and the reference); the loss

static void test_packed_and_loss(void) {
    for (int k = 0; k < 2; k++) {
        llama_model m;
        if (llama_load(model_dirs[k], &m) != 0) {
            CHECK(0, "%s", err_get());
            continue;
        }
        int64_t V = m.cfg.vocab_size;
        fixture *fx = fixture_load(golden_files[k]);
        long na, nb, nl, n1;
        const int32_t *a = fixture_i32(fx, "ids_a", &na), *b = fixture_i32(fx, "ids_b", &nb);
        const float *ga = fixture_f32(fx, "logits_a", &nl), *gb = fixture_f32(fx, "logits_b", &nl);
        const float *gloss = fixture_f32(fx, "loss", &n1);
        int64_t N = na + nb;
        int32_t *ids = malloc((size_t)N * sizeof *ids), *pos = malloc((size_t)N * sizeof *pos);
        int32_t *kvb = malloc((size_t)N * sizeof *kvb), *tgt = malloc((size_t)N * sizeof *tgt);
        for (int64_t i = 0; i < N; i++) {
            int first = i < na;
            ids[i] = first ? a[i] : b[i - na];
            pos[i] = first ? (int32_t)i : (int32_t)(i - na);
            kvb[i] = first ? 0 : (int32_t)na;
            int last = i == na - 1 || i == N - 1;
            tgt[i] = last ? -1 : (first ? a[i + 1] : b[i - na + 1]);
        }
        ag_ctx c;
        ag_ctx_init(&c, ARENA);
        ag_set_grad(&c, 0);
        float *sa = doc_logits(&c, &m, NULL, a, NULL, na);
        float *sb = doc_logits(&c, &m, NULL, b, NULL, nb);
        ag_tensor *h = llama_forward(&c, &m, NULL, ids, NULL, N, pos, kvb);
        CHECK(h != NULL, "packed forward: %s", err_get());
        if (h && sa && sb) {
            float *lp = all_logits(&m, h);
            double e1 = max_rel_err(lp, ga, na * V, 1e-3), e2 = max_rel_err(lp + na * V, gb, nb * V, 1e-3);
            CHECK(e1 <= 1e-4 && e2 <= 1e-4, "%s: packed vs reference %.3g %.3g", model_dirs[k], e1, e2);
            double s1 = max_rel_err(lp, sa, na * V, 1e-3), s2 = max_rel_err(lp + na * V, sb, nb * V, 1e-3);
            CHECK(s1 <= 1e-5 && s2 <= 1e-5, "%s: packed vs separate %.3g %.3g", model_dirs[k], s1, s2);
            free(lp);
            // loss: fused lm-head cross-entropy over both documents
            ag_tensor *loss = ag_cross_entropy(&c, h, llama_lm_head(&m), tgt, (float)(N - 2));
            CHECK(loss && fabsf(loss->data[0] - gloss[0]) <= 1e-5f * fabsf(gloss[0]),
                  "%s: loss %.7f, reference %.7f (%s)", model_dirs[k], loss ? loss->data[0] : NAN, gloss[0],
                  err_get());
            float *nll = calloc((size_t)N, sizeof *nll);
            CHECK(ag_nll_rows(&c, h, &m.w.lm_head, tgt, nll) == 0, "nll_rows: %s", err_get());
            double s = 0;
            for (int64_t i = 0; i < N; i++) s += nll[i];
            CHECK(fabs(s / (double)(N - 2) - gloss[0]) <= 1e-5 * fabs(gloss[0]), "%s: nll_rows mean %.7f vs %.7f",
                  model_dirs[k], s / (double)(N - 2), gloss[0]);
            free(nll);
        }
        free(sa);
        free(sb);
        free(ids);
        free(pos);
        free(kvb);
        free(tgt);
        ag_ctx_free(&c);
        fixture_free(fx);
        llama_free(&m);
    }
}

// --- input embeddings instead of ids (the path visual tokens take)

static void test_embeds(void) {
    for (int k = 0; k < 2; k++) {
        llama_model m;
        if (llama_load(model_dirs[k], &m) != 0) {
            CHECK(0, "%s", err_get());
            continue;
        }
        fixture *fx = fixture_load(golden_files[k]);
        long ne, nl;
        const float *emb = fixture_f32(fx, "emb", &ne), *gl = fixture_f32(fx, "logits_emb", &nl);
        int64_t n = ne / m.cfg.hidden_size;
        ag_tensor e = ag_wrap2((float *)emb, n, m.cfg.hidden_size, "emb");
        ag_ctx c;
        ag_ctx_init(&c, ARENA);
        float *l = doc_logits(&c, &m, NULL, NULL, &e, n);
        if (l) {
            double err = max_rel_err(l, gl, nl, 1e-3);
            CHECK(err <= 1e-4, "%s: embeds logits rel err %.3g", model_dirs[k], err);
        }
        free(l);
        // both or neither of ids/embeds: an error, not a crash
        int32_t pos[1] = {0}, id[1] = {0};
        CHECK(!llama_forward(&c, &m, NULL, id, &e, 1, pos, NULL), "ids and embeds accepted together");
        CHECK(!llama_forward(&c, &m, NULL, NULL, NULL, 1, pos, NULL), "no input accepted");
        ag_ctx_free(&c);
        fixture_free(fx);
        llama_free(&m);
    }
}

// --- LoRA hooks: a LoRA slot equals merging s·B·A into the weight; gradients flow

static void fill(float *x, int64_t n, float sd, uint64_t *rng) {
    for (int64_t i = 0; i < n; i++) x[i] = sd * ag_rng_normal(rng);
}

static double lora_loss(ag_ctx *c, const llama_model *m, const llama_lora *lora, const int32_t *ids,
                        const int32_t *pos, const int32_t *tgt, int64_t n, int backward) {
    ag_ctx_reset(c);
    ag_tensor *h = llama_forward(c, m, lora, ids, NULL, n, pos, NULL);
    ag_tensor *loss = ag_cross_entropy(c, h, llama_lm_head(m), tgt, (float)(n - 1));
    if (!loss) return NAN;
    if (backward && ag_backward(c, loss) != 0) return NAN;
    return loss->data[0];
}

static void test_lora(void) {
    llama_model m;
    if (llama_load(model_dirs[1], &m) != 0) {
        CHECK(0, "%s", err_get());
        return;
    }
    fixture *fx = fixture_load(golden_files[1]);
    long na;
    const int32_t *a = fixture_i32(fx, "ids_a", &na);
    int L = m.cfg.num_layers, r = 4;
    llama_lora_slot *slots = calloc((size_t)L * LLAMA_NPROJ, sizeof *slots);
    llama_lora lora = {slots};
    ag_params P = {0};
    // LoRA on q of layer 0, v of layer 1 and down of the last layer
    const int sl[3][2] = {{0, LLAMA_Q}, {1, LLAMA_V}, {L - 1, LLAMA_DOWN}};
    for (int j = 0; j < 3; j++) {
        ag_tensor *W = llama_proj_weight(&m, sl[j][0], (llama_proj)sl[j][1]);
        int64_t sa[2] = {r, W->shape[1]}, sb[2] = {W->shape[0], r};
        char name[64];
        snprintf(name, sizeof name, "A%d", j);
        slots[sl[j][0] * LLAMA_NPROJ + sl[j][1]].A = ag_params_add(&P, name, 2, sa);
        snprintf(name, sizeof name, "B%d", j);
        slots[sl[j][0] * LLAMA_NPROJ + sl[j][1]].B = ag_params_add(&P, name, 2, sb);
        slots[sl[j][0] * LLAMA_NPROJ + sl[j][1]].scale = 0.5f + j;
    }
    ag_params_alloc(&P);
    uint64_t rng = 7;
    fill(P.data, P.total, 0.2f, &rng);
    ag_ctx c;
    ag_ctx_init(&c, ARENA);
    int32_t *pos = iota(na, 0), *tgt = malloc((size_t)na * sizeof *tgt);
    for (long i = 0; i < na; i++) tgt[i] = i + 1 < na ? a[i + 1] : -1;
    // forward with LoRA (grad mode, recording) vs the merged weights without LoRA
    ag_tensor *h = llama_forward(&c, &m, &lora, a, NULL, na, pos, NULL);
    CHECK(h && h->requires_grad, "LoRA forward does not record: %s", err_get());
    float *l1 = h ? all_logits(&m, h) : NULL;
    float *saved[3];
    for (int j = 0; j < 3; j++) {
        llama_lora_slot *s = &slots[sl[j][0] * LLAMA_NPROJ + sl[j][1]];
        ag_tensor *W = llama_proj_weight(&m, sl[j][0], (llama_proj)sl[j][1]);
        saved[j] = malloc((size_t)W->numel * sizeof(float));
        memcpy(saved[j], W->data, (size_t)W->numel * sizeof(float));
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)W->shape[0], (int)W->shape[1], r, s->scale,
                    s->B->data, r, s->A->data, (int)W->shape[1], 1.0f, W->data, (int)W->shape[1]);
    }
    ag_ctx_reset(&c);
    float *l2 = doc_logits(&c, &m, NULL, a, NULL, na);
    if (l1 && l2) {
        double e = max_rel_err(l1, l2, na * m.cfg.vocab_size, 1e-3);
        CHECK(e <= 1e-5, "LoRA forward vs merged weights: rel err %.3g", e);
    }
    for (int j = 0; j < 3; j++) {
        ag_tensor *W = llama_proj_weight(&m, sl[j][0], (llama_proj)sl[j][1]);
        memcpy(W->data, saved[j], (size_t)W->numel * sizeof(float));
        free(saved[j]);
    }
    // the KV-cached path with the same LoRA (prefill 4, then row by row) equals the full forward
    llama_kv_cache kv;
    llama_kv_cache_init(&kv, &m, na);
    double worst = 0;
    float *row = malloc((size_t)m.cfg.vocab_size * sizeof *row);
    for (int64_t done = 0; done < na && l1;) {
        int64_t n = done ? 1 : 4;
        ag_ctx_reset(&c);
        ag_tensor *hc = llama_forward_cached(&c, &m, &lora, &kv, a + done, NULL, n);
        if (!hc) {
            CHECK(0, "cached LoRA forward: %s", err_get());
            break;
        }
        for (int64_t i = 0; i < n; i++) {
            llama_logits(&m, hc->data + i * m.cfg.hidden_size, row);
            double e = max_rel_err(row, l1 + (done + i) * m.cfg.vocab_size, m.cfg.vocab_size, 1e-3);
            if (e > worst) worst = e;
        }
        done += n;
    }
    CHECK(worst <= 1e-5, "cached LoRA forward vs full: rel err %.3g", worst);
    free(row);
    llama_kv_cache_free(&kv);
    free(l1);
    free(l2);
    // gradients of the loss w.r.t. LoRA factors against central differences (double-sided,
    // fp32 forward: loose tolerance; the ops' own gradchecks are the precise ones)
    ag_params_zero_grad(&P);
    double l0 = lora_loss(&c, &m, &lora, a, pos, tgt, na, 1);
    CHECK(isfinite(l0), "LoRA backward failed: %s", err_get());
    const int64_t probe[4] = {0, 5, P.total / 2 + 3, P.total - 2};
    for (int j = 0; j < 4 && isfinite(l0); j++) {
        int64_t i = probe[j];
        float g = P.grad[i], x = P.data[i], eps = 1e-2f;
        P.data[i] = x + eps;
        double lp = lora_loss(&c, &m, &lora, a, pos, tgt, na, 0);
        P.data[i] = x - eps;
        double lm = lora_loss(&c, &m, &lora, a, pos, tgt, na, 0);
        P.data[i] = x;
        double fd = (lp - lm) / (2 * eps);
        CHECK(fabs(fd - g) <= 2e-3 + 2e-2 * fabs(fd), "LoRA grad[%lld] %.6g vs central difference %.6g",
              (long long)i, g, fd);
    }
    free(pos);
    free(tgt);
    ag_ctx_free(&c);
    ag_params_free(&P);
    free(slots);
    fixture_free(fx);
    llama_free(&m);
}

// --- KV cache: prefill + token by token equals the full forward

static void test_kv_cache(void) {
    for (int k = 0; k < 2; k++) {
        llama_model m;
        if (llama_load(model_dirs[k], &m) != 0) {
            CHECK(0, "%s", err_get());
            continue;
        }
        int64_t C = m.cfg.hidden_size, V = m.cfg.vocab_size;
        fixture *fx = fixture_load(golden_files[k]);
        long na, ne;
        const int32_t *a = fixture_i32(fx, "ids_a", &na);
        const float *emb = fixture_f32(fx, "emb", &ne);
        ag_ctx c;
        ag_ctx_init(&c, ARENA);
        ag_set_grad(&c, 0);
        float *full = doc_logits(&c, &m, NULL, a, NULL, na);
        float *logit = malloc((size_t)V * sizeof *logit);
        // prefill splits: 5 then 1 by 1; 3 + 4 then 1 by 1; all at once
        const int splits[3][3] = {{5, 0, 0}, {3, 4, 0}, {13, 0, 0}};
        for (int s = 0; s < 3 && full; s++) {
            llama_kv_cache kv;
            CHECK(llama_kv_cache_init(&kv, &m, na) == 0, "kv init: %s", err_get());
            double worst = 0;
            int64_t done = 0;
            for (int part = 0; done < na; part++) {
                int64_t n = part < 3 && splits[s][part] ? splits[s][part] : 1;
                if (done + n > na) n = na - done;
                ag_ctx_reset(&c);
                ag_tensor *h = llama_forward_cached(&c, &m, NULL, &kv, a + done, NULL, n);
                CHECK(h != NULL, "cached forward: %s", err_get());
                if (!h) break;
                for (int64_t i = 0; i < n; i++) {
                    llama_logits(&m, h->data + i * C, logit);
                    double e = max_rel_err(logit, full + (done + i) * V, V, 1e-3);
                    if (e > worst) worst = e;
                }
                done += n;
            }
            CHECK(worst <= 1e-5, "%s split %d: cached logits rel err %.3g", model_dirs[k], s, worst);
            if (getenv("TEST_VERBOSE")) printf("  %s split %d: cached rel err %.3g\n", model_dirs[k], s, worst);
            CHECK(kv.len == na, "cache length %lld", (long long)kv.len);
            // full cache: an error, not an overflow
            ag_ctx_reset(&c);
            CHECK(!llama_forward_cached(&c, &m, NULL, &kv, a, NULL, 1) && strstr(err_get(), "cache full"),
                  "overflowing the cache: '%s'", err_get());
            llama_kv_cache_free(&kv);
        }
        // embeddings through the cache, 4 + 1 + 1
        int64_t n = ne / C;
        ag_tensor e = ag_wrap2((float *)emb, n, C, "emb");
        ag_ctx_reset(&c);
        float *fe = doc_logits(&c, &m, NULL, NULL, &e, n);
        llama_kv_cache kv;
        llama_kv_cache_init(&kv, &m, n);
        double worst = 0;
        for (int64_t done = 0; done < n && fe;) {
            int64_t step = done ? 1 : 4;
            ag_tensor part = ag_wrap2((float *)emb + done * C, step, C, "emb part");
            ag_ctx_reset(&c);
            ag_tensor *h = llama_forward_cached(&c, &m, NULL, &kv, NULL, &part, step);
            if (!h) {
                CHECK(0, "cached embeds: %s", err_get());
                break;
            }
            for (int64_t i = 0; i < step; i++) {
                llama_logits(&m, h->data + i * C, logit);
                double err = max_rel_err(logit, fe + (done + i) * V, V, 1e-3);
                if (err > worst) worst = err;
            }
            done += step;
        }
        CHECK(worst <= 1e-5, "%s: cached embeds rel err %.3g", model_dirs[k], worst);
        llama_kv_cache_free(&kv);
        free(fe);
        free(full);
        free(logit);
        ag_ctx_free(&c);
        fixture_free(fx);
        llama_free(&m);
    }
}

// --- generation: greedy equals argmax of full recomputation; stop ids

static void test_generate_greedy(void) {
    llama_model m;
    if (llama_load(model_dirs[0], &m) != 0) {
        CHECK(0, "%s", err_get());
        return;
    }
    int64_t V = m.cfg.vocab_size;
    fixture *fx = fixture_load(golden_files[0]);
    long nb;
    const int32_t *b = fixture_i32(fx, "ids_b", &nb);
    gen_opts o;
    gen_opts_default(&o);
    o.temperature = 0;
    o.max_new_tokens = 8;
    int32_t out[8];
    gen_stats st;
    int rc = gen_generate(&m, NULL, NULL, b, nb, NULL, &o, NULL, 0, NULL, out, &st);
    CHECK(rc == 0 && st.new_tokens == 8 && st.prompt_tokens == nb && !st.stopped, "generate: %s", err_get());
    // reference: recompute the whole sequence for every new token
    int32_t seq[64];
    memcpy(seq, b, (size_t)nb * sizeof *seq);
    ag_ctx c;
    ag_ctx_init(&c, ARENA);
    ag_set_grad(&c, 0);
    for (int i = 0; i < 8 && rc == 0; i++) {
        ag_ctx_reset(&c);
        float *l = doc_logits(&c, &m, NULL, seq, NULL, nb + i);
        if (!l) break;
        const float *last = l + (nb + i - 1) * V;
        int32_t best = 0;
        for (int64_t j = 1; j < V; j++)
            if (last[j] > last[best]) best = (int32_t)j;
        CHECK(out[i] == best, "greedy token %d: %d, full recomputation argmax %d", i, out[i], best);
        seq[nb + i] = best;
        free(l);
    }
    // stopping at the first greedy token generates nothing
    int32_t stop[2] = {V - 1, out[0]};
    rc = gen_generate(&m, NULL, NULL, b, nb, NULL, &o, stop, 2, NULL, out, &st);
    CHECK(rc == 0 && st.new_tokens == 0 && st.stopped, "stop id: %d new tokens, stopped %d", (int)st.new_tokens,
          st.stopped);
    // same seed, same samples; another seed, other samples (almost surely, over 8 tokens)
    int32_t s1[8], s2[8], s3[8];
    o.temperature = 1.5f;
    o.top_k = 0;
    o.top_p = 1;
    gen_generate(&m, NULL, NULL, b, nb, NULL, &o, NULL, 0, NULL, s1, &st);
    gen_generate(&m, NULL, NULL, b, nb, NULL, &o, NULL, 0, NULL, s2, &st);
    o.seed++;
    gen_generate(&m, NULL, NULL, b, nb, NULL, &o, NULL, 0, NULL, s3, &st);
    CHECK(!memcmp(s1, s2, sizeof s1), "sampling with a seed is not deterministic");
    CHECK(memcmp(s1, s3, sizeof s1), "different seeds gave the same 8 samples");
    // the context ends at max_position_embeddings (256): 256 - nb positions forwarded, and the
    // token sampled from the last one
    o.temperature = 0;
    o.max_new_tokens = 1000;
    int32_t *many = calloc(1000, sizeof *many);
    rc = gen_generate(&m, NULL, NULL, b, nb, NULL, &o, NULL, 0, NULL, many, &st);
    CHECK(rc == 0 && st.stopped == 2 && st.new_tokens == 256 - nb + 1, "context limit: rc %d, stopped %d, %lld tokens",
          rc, st.stopped, (long long)st.new_tokens);
    rc = gen_generate(&m, NULL, NULL, many, 257, NULL, &o, NULL, 0, NULL, NULL, &st);
    CHECK(rc != 0 && strstr(err_get(), "max_position_embeddings"), "prompt longer than the context: '%s'", err_get());
    free(many);
    // stop ids come from config.json (eos_token_id [2, 3])
    int32_t ids[16];
    int n = gen_stop_ids(&m, ids, 16);
    CHECK(n == 2 && ids[0] == 2 && ids[1] == 3, "stop ids: %d", n);
    ag_ctx_free(&c);
    fixture_free(fx);
    llama_free(&m);
}

// --- sampler: frequencies follow the warped distribution

static void freq(gen_opts *o, const float *logits, int V, int draws, double *f) {
    gen_sampler s;
    gen_sampler_init(&s, V, o);
    float *tmp = malloc((size_t)V * sizeof *tmp);
    for (int i = 0; i < V; i++) f[i] = 0;
    for (int d = 0; d < draws; d++) {
        memcpy(tmp, logits, (size_t)V * sizeof *tmp);
        f[gen_sample(&s, tmp)] += 1.0 / draws;
    }
    free(tmp);
    gen_sampler_free(&s);
}

static void test_sampler(void) {
    // probabilities 0.5, 0.3, 0.15, 0.05 at temperature 1
    const float p[4] = {0.5f, 0.3f, 0.15f, 0.05f};
    float logits[4] = {logf(p[2]), logf(p[0]), logf(p[3]), logf(p[1])};   // shuffled: ids 1, 3, 0, 2
    double f[4];
    gen_opts o = {.max_new_tokens = 1, .temperature = 1, .top_k = 0, .top_p = 1, .seed = 3};
    int draws = 40000;
    freq(&o, logits, 4, draws, f);
    const double want[4] = {0.15, 0.5, 0.05, 0.3};
    for (int i = 0; i < 4; i++) CHECK(fabs(f[i] - want[i]) < 0.01, "plain: token %d freq %.4f want %.4f", i, f[i], want[i]);
    // top-p 0.75: the nucleus is {0.5, 0.3} -> 0.625 / 0.375
    o.top_p = 0.75f;
    freq(&o, logits, 4, draws, f);
    const double wp[4] = {0, 0.625, 0, 0.375};
    for (int i = 0; i < 4; i++) CHECK(fabs(f[i] - wp[i]) < 0.01, "top-p: token %d freq %.4f want %.4f", i, f[i], wp[i]);
    // top-p 0.85: {0.5, 0.3, 0.15}
    o.top_p = 0.85f;
    freq(&o, logits, 4, draws, f);
    const double wp2[4] = {0.15 / 0.95, 0.5 / 0.95, 0, 0.3 / 0.95};
    for (int i = 0; i < 4; i++) CHECK(fabs(f[i] - wp2[i]) < 0.01, "top-p .85: token %d freq %.4f", i, f[i]);
    // tiny top-p keeps one token (always >= 1)
    o.top_p = 0.01f;
    freq(&o, logits, 4, 100, f);
    CHECK(f[1] > 0.999, "top-p tiny: argmax freq %.3f", f[1]);
    // top-k 2 (top-p off)
    o.top_p = 1;
    o.top_k = 2;
    freq(&o, logits, 4, draws, f);
    for (int i = 0; i < 4; i++) CHECK(fabs(f[i] - wp[i]) < 0.01, "top-k: token %d freq %.4f want %.4f", i, f[i], wp[i]);
    // top-k 3 then top-p 0.9: top-k keeps {.5,.3,.15} (renormalized .526,.316,.158); the
    // nucleus needs all three (.842 < .9)
    o.top_k = 3;
    o.top_p = 0.9f;
    freq(&o, logits, 4, draws, f);
    for (int i = 0; i < 4; i++) CHECK(fabs(f[i] - wp2[i]) < 0.01, "top-k+top-p: token %d freq %.4f", i, f[i]);
    // temperature 0.5 sharpens: p^2 normalized
    o.top_k = 0;
    o.top_p = 1;
    o.temperature = 0.5f;
    freq(&o, logits, 4, draws, f);
    double z = 0.25 + 0.09 + 0.0225 + 0.0025;
    CHECK(fabs(f[1] - 0.25 / z) < 0.01 && fabs(f[3] - 0.09 / z) < 0.01, "temperature: %.4f %.4f", f[1], f[3]);
    // temperature 0 is argmax, first maximum on ties
    o.temperature = 0;
    float tie[4] = {1, 3, 3, 2};
    gen_sampler s;
    gen_sampler_init(&s, 4, &o);
    CHECK(gen_sample(&s, tie) == 1, "greedy tie");
    gen_sampler_free(&s);
    // option checks
    gen_opts bad = o;
    bad.top_p = 0;
    CHECK(gen_opts_check(&bad) != 0, "top_p 0 accepted");
    bad = o;
    bad.temperature = -1;
    CHECK(gen_opts_check(&bad) != 0, "negative temperature accepted");
    bad = o;
    bad.top_k = -1;
    CHECK(gen_opts_check(&bad) != 0, "negative top_k accepted");
}

// --- load errors name the file and the tensor

static char *tmp_model(const char *name, const char *src, const char *cfg_key, double cfg_val) {
    const char *d = test_tmpdir(name);
    char *dir = strdup(d);
    char *cp = path_join(src, "config.json"), *dst = path_join(dir, "config.json");
    char *text = file_read_all(cp, NULL);
    cJSON *j = cJSON_Parse(text);
    if (cfg_key) cJSON_ReplaceItemInObject(j, cfg_key, cJSON_CreateNumber(cfg_val));
    char *out = cJSON_Print(j);
    file_write_atomic(dst, out, strlen(out));
    free(out);
    cJSON_Delete(j);
    free(text);
    free(cp);
    free(dst);
    return dir;
}

static void copy_weights(const char *src, const char *dir) {
    char *sp = path_join(src, "model.safetensors"), *dp = path_join(dir, "model.safetensors");
    size_t n;
    char *data = file_read_all(sp, &n);
    file_write_atomic(dp, data, n);
    free(data);
    free(sp);
    free(dp);
}

static void expect_load_error(const char *dir, const char *what, const char *s1, const char *s2) {
    llama_model m;
    int rc = llama_load(dir, &m);
    const char *e = err_get();
    CHECK(rc != 0, "%s: loaded", what);
    CHECK(rc != 0 && strstr(e, s1) && (!s2 || strstr(e, s2)), "%s: error '%s' lacks '%s' / '%s'", what, e, s1,
          s2 ? s2 : "");
    if (getenv("TEST_VERBOSE")) printf("  %s: %s\n", what, e);
    if (rc == 0) llama_free(&m);
}

static void test_load_errors(void) {
    const char *src = model_dirs[0];
    // intermediate_size disagrees with the MLP weights
    char *d = tmp_model("llama_err_ff", src, "intermediate_size", 100);
    copy_weights(src, d);
    expect_load_error(d, "intermediate_size", "model.layers.0.mlp.gate_proj.weight", "model.safetensors");
    free(d);
    // hidden_size disagrees with the embedding
    d = tmp_model("llama_err_hidden", src, "hidden_size", 32);
    copy_weights(src, d);
    expect_load_error(d, "hidden_size", "model.embed_tokens.weight", "model.safetensors");
    free(d);
    // fewer layers in the config than in the file
    d = tmp_model("llama_err_layers", src, "num_hidden_layers", 1);
    copy_weights(src, d);
    expect_load_error(d, "num_hidden_layers", "model.layers.1.", "num_hidden_layers");
    free(d);
    // more layers in the config than in the file: a missing tensor
    d = tmp_model("llama_err_missing", src, "num_hidden_layers", 3);
    copy_weights(src, d);
    expect_load_error(d, "missing layer", "model.layers.2.", "missing");
    free(d);
    // a missing tensor in the file
    d = tmp_model("llama_err_drop", src, NULL, 0);
    st_model *st = st_open(src);
    st_writer *w = st_writer_new();
    for (int i = 0; i < st_count(st); i++) {
        const st_tensor *t = st_get(st, i);
        if (strcmp(t->name, "model.layers.1.self_attn.v_proj.weight"))
            st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data);
    }
    char *dp = path_join(d, "model.safetensors");
    CHECK(st_writer_write(w, dp) == 0, "writer: %s", err_get());
    st_writer_free(w);
    st_close(st);
    free(dp);
    expect_load_error(d, "dropped tensor", "model.layers.1.self_attn.v_proj.weight", d);
    free(d);
    // unparsable config
    d = strdup(test_tmpdir("llama_err_json"));
    char *cp = path_join(d, "config.json");
    file_write_atomic(cp, "{\"hidden_size\": 64,", 19);
    copy_weights(src, d);
    expect_load_error(d, "bad json", "config.json", NULL);
    free(cp);
    free(d);
    // no folder at all
    expect_load_error("build/tmp/no-such-model", "missing folder", "no-such-model", NULL);
}

int main(void) {
    RUN(test_logits);
    RUN(test_packed_and_loss);
    RUN(test_embeds);
    RUN(test_lora);
    RUN(test_kv_cache);
    RUN(test_generate_greedy);
    RUN(test_sampler);
    RUN(test_load_errors);
    return test_summary();
}
