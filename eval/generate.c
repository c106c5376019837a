// generate.c — sampling and the KV-cached generation loop (see generate.h).
#define _GNU_SOURCE   // qsort_r
#include "generate.h"

#include <cJSON.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "records.h"

// --- the prompt

int gen_prompt_ids(const tok_tokenizer *tok, const char *prompt, int chat, int32_t bos, int image, int nrows,
                   tok_ids *ids, int64_t *image_pos) {
    char *text, *content = NULL;
    if (chat) {
        // "<|begin_of_text|>" + one user message + the assistant header, encoded at once
        if (image && !strstr(prompt, DATA_IMAGE_MARK)) {
            size_t len = strlen(DATA_IMAGE_MARK "\n") + strlen(prompt) + 1;
            content = xmalloc(len);
            snprintf(content, len, DATA_IMAGE_MARK "\n%s", prompt);
        }
        chat_msg msg = {"user", content ? content : prompt};
        text = chat_render(&msg, 1, 1);
    } else {
        tok_ids_push(ids, bos);
        text = xstrdup(prompt);
    }
    const char *mark = image ? strstr(text, DATA_IMAGE_MARK) : NULL;
    int64_t at = !image ? -1 : mark ? (int64_t)(mark - text) : 0;
    int rc = data_encode_spliced(tok, text, strlen(text), at, mark ? strlen(DATA_IMAGE_MARK) : 0, nrows, ids, image_pos);
    free(text);
    free(content);
    return rc;
}

// --- options

void gen_opts_default(gen_opts *o) {
    o->max_new_tokens = 256;
    o->temperature = 0.6f;
    o->top_k = 50;
    o->top_p = 0.9f;
    o->seed = 42;
}

int gen_opts_check(const gen_opts *o) {
    if (o->max_new_tokens < 0)
        return err_set("--max-new-tokens must be >= 0, got %lld", (long long)o->max_new_tokens);
    if (!isfinite(o->temperature) || o->temperature < 0)
        return err_set("--temperature must be a finite number >= 0 (0 = greedy), got %g", o->temperature);
    if (o->top_k < 0) return err_set("--top-k must be >= 0 (0 = off), got %d", o->top_k);
    if (!(o->top_p > 0 && o->top_p <= 1))
        return err_set("--top-p must be in (0, 1] (1 = off), got %g", o->top_p);
    return 0;
}

// --- sampling

void gen_sampler_init(gen_sampler *s, int V, const gen_opts *o) {
    s->o = *o;
    s->V = V;
    s->rng = o->seed;
    s->prob = xmalloc((size_t)V * sizeof *s->prob);
    s->idx = xmalloc((size_t)V * sizeof *s->idx);
}

void gen_sampler_free(gen_sampler *s) {
    free(s->prob);
    free(s->idx);
    memset(s, 0, sizeof *s);
}

static int32_t argmax(const float *x, int n) {
    int32_t best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;   // first maximum, as torch.argmax
    return best;
}

// k-th largest of x[n] (1 <= k <= n); scratch[n] is overwritten. Quickselect.
static float kth_largest(const float *x, int n, int k, float *scratch) {
    memcpy(scratch, x, (size_t)n * sizeof *scratch);
    int lo = 0, hi = n - 1, want = k - 1;   // index in descending order
    while (lo < hi) {
        float pivot = scratch[lo + (hi - lo) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (scratch[i] > pivot) i++;
            while (scratch[j] < pivot) j--;
            if (i <= j) {
                float t = scratch[i];
                scratch[i] = scratch[j];
                scratch[j] = t;
                i++;
                j--;
            }
        }
        if (want <= j) hi = j;
        else if (want >= i) lo = i;
        else break;
    }
    return scratch[want];
}

static int by_prob_desc(const void *a, const void *b, void *ctx) {
    const float *prob = ctx;
    int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
    float pi = prob[i], pj = prob[j];
    if (pi != pj) return pi > pj ? -1 : 1;
    return i < j ? -1 : i > j;
}

int32_t gen_sample(gen_sampler *s, float *logits) {
    int V = s->V;
    // NaN or +Inf (a NaN in the adapter, absurd inputs) has no distribution to sample from;
    // -Inf is a token that cannot come, but some token must be possible
    int finite = 0;
    for (int i = 0; i < V; i++) {
        if (isnan(logits[i]) || logits[i] == INFINITY)
            return err_set("the model's logits are not finite (token %d: %g): NaN/Inf in the weights, the adapter "
                           "or the inputs", i, logits[i]);
        finite += logits[i] > -INFINITY;
    }
    if (!finite) return err_set("the model's logits are all -inf: no token can be sampled");
    if (s->o.temperature == 0) return argmax(logits, V);
    float T = s->o.temperature;
    // top-k: keep logits >= the k-th largest (HF TopKLogitsWarper keeps ties)
    float thr = -INFINITY;
    if (s->o.top_k > 0 && s->o.top_k < V) thr = kth_largest(logits, V, s->o.top_k, s->prob);
    float mx = logits[argmax(logits, V)];
    // softmax(logits / T) over the kept tokens, unnormalized
    double sum = 0;
    int nkeep = 0;
    for (int i = 0; i < V; i++) {
        float p = logits[i] >= thr ? expf((logits[i] - mx) / T) : 0.0f;
        s->prob[i] = p;
        sum += p;
        nkeep += logits[i] >= thr;
    }
    int32_t *cand = s->idx;
    int n = 0;
    double total = sum;
    if (s->o.top_p < 1 && nkeep > 1) {
        // A token with probability below (1-p)/nkeep cannot be in the nucleus (the tokens at
        // or below it, itself included, are at most nkeep and sum to less than 1-p); skip
        // those before sorting. The bound holds for the maximum too, so at least one token
        // stays (with (nkeep-1) instead, tied maxima could all be cut: an empty list). The
        // 0.99 margin only lets in more candidates; the exact cut is made on the sorted list.
        double cutoff = 0.99 * (1.0 - s->o.top_p) / nkeep * sum;
        for (int i = 0; i < V; i++)
            if (s->prob[i] > 0 && s->prob[i] >= cutoff) cand[n++] = i;
        qsort_r(cand, (size_t)n, sizeof *cand, by_prob_desc, s->prob);
        // keep tokens while the mass before them is below p (HF: drop where the ascending
        // cumulative probability is <= 1-p); the first token is always kept
        double cum = 0, limit = s->o.top_p * sum;
        int keep = 0;
        while (keep < n && (keep == 0 || cum < limit)) cum += s->prob[cand[keep++]];
        n = keep;
        total = cum;
    } else {
        for (int i = 0; i < V; i++)
            if (s->prob[i] > 0) cand[n++] = i;
    }
    double r = (double)ag_rng_uniform(&s->rng) * total, acc = 0;
    for (int j = 0; j < n; j++) {
        acc += s->prob[cand[j]];
        if (r < acc) return cand[j];
    }
    AG_ASSERT(n > 0, "no sampling candidate");   // finite logits keep at least their maximum
    return cand[n - 1];   // rounding at the top end
}

// --- stop ids

static int add_eos(cJSON *e, int32_t *ids, int n, int max) {
    cJSON *it;
    if (cJSON_IsNumber(e)) {
        int32_t id = (int32_t)e->valuedouble;
        for (int i = 0; i < n; i++)
            if (ids[i] == id) return n;
        if (n < max) ids[n++] = id;
    } else if (cJSON_IsArray(e)) {
        cJSON_ArrayForEach(it, e) n = add_eos(it, ids, n, max);
    }
    return n;
}

int gen_stop_ids(const llama_model *m, int32_t *ids, int max) {
    int n = 0;
    for (int i = 0; i < m->cfg.n_eos && n < max; i++) ids[n++] = m->cfg.eos_ids[i];
    // generation_config.json is what HF generate stops on; it may list more (e.g. <|eot_id|>)
    char *path = path_join(m->dir, "generation_config.json");
    if (file_exists(path)) {
        char *text = file_read_all(path, NULL);
        cJSON *j = text ? cJSON_Parse(text) : NULL;
        if (j) n = add_eos(cJSON_GetObjectItemCaseSensitive(j, "eos_token_id"), ids, n, max);
        cJSON_Delete(j);
        free(text);
        err_clear();   // an unreadable generation_config.json only loses the extra stop ids
    }
    free(path);
    return n;
}

// --- the generation loop

#define PREFILL_CHUNK 256

static int is_stop(int32_t id, const int32_t *stop, int nstop) {
    for (int i = 0; i < nstop; i++)
        if (stop[i] == id) return 1;
    return 0;
}

static int emit(const tok_tokenizer *tok, tok_decoder *dec, int32_t id, FILE *out, char *buf,
                size_t cap) {
    if (!tok || !out) return 0;
    size_t n = tok_decode_step(tok, dec, id, buf, cap);
    if (n && fwrite(buf, 1, n, out) != n) return err_set("generate: writing the output failed");
    if (fflush(out) != 0) return err_set("generate: writing the output failed");
    return 0;
}

int gen_generate(const llama_model *m, const llama_lora *lora, const tok_tokenizer *tok,
                 const int32_t *prompt, int64_t n_prompt, ag_tensor *embeds,
                 const gen_opts *o, const int32_t *stop, int nstop, FILE *out,
                 int32_t *out_ids, gen_stats *st) {
    return gen_generate_hooked(m, lora, NULL, tok, prompt, n_prompt, embeds, o, stop, nstop, out, out_ids, st);
}

int gen_generate_hooked(const llama_model *m, const llama_lora *lora, const llama_hook *hook,
                        const tok_tokenizer *tok, const int32_t *prompt, int64_t n_prompt, ag_tensor *embeds,
                        const gen_opts *o, const int32_t *stop, int nstop, FILE *out,
                        int32_t *out_ids, gen_stats *st) {
    memset(st, 0, sizeof *st);
    if (gen_opts_check(o) != 0) return -1;
    if (n_prompt <= 0) return err_set("generate: the prompt is empty");
    const hf_llama_config *g = &m->cfg;
    int64_t C = g->hidden_size, V = g->vocab_size;
    if (embeds && (embeds->ndim != 2 || embeds->shape[0] != n_prompt || embeds->shape[1] != C))
        return err_set("generate: prompt embeddings must be [%lld, %lld]", (long long)n_prompt, (long long)C);
    int64_t QD = (int64_t)g->num_heads * g->head_dim, KD = (int64_t)g->num_kv_heads * g->head_dim;
    // activations of one chunk of one layer (the arena is rewound per layer) with margin;
    // the arena is reserved, not committed, so a generous size costs nothing
    size_t arena = ((size_t)64 << 20) +
                   (size_t)PREFILL_CHUNK * (size_t)(8 * C + 4 * QD + 8 * KD + 8 * g->intermediate_size) *
                       sizeof(float) * 2;
    ag_ctx c;
    if (ag_ctx_init(&c, arena) != 0) return -1;
    llama_kv_cache kv;
    // positions beyond max_position_embeddings are not generated (reported in st->stopped)
    int64_t maxpos = g->max_position_embeddings > 0 ? g->max_position_embeddings : INT64_MAX;
    if (n_prompt > maxpos) {
        ag_ctx_free(&c);
        return err_set("generate: the prompt has %lld tokens, more than the model's "
                       "max_position_embeddings (%lld)",
                       (long long)n_prompt, (long long)maxpos);
    }
    int64_t cap = n_prompt + (o->max_new_tokens > 0 ? o->max_new_tokens : 1);
    if (cap > maxpos) cap = maxpos;
    if (llama_kv_cache_init(&kv, m, cap) != 0) {
        ag_ctx_free(&c);
        return -1;
    }
    float *logits = xmalloc((size_t)V * sizeof *logits);
    gen_sampler s;
    gen_sampler_init(&s, (int)V, o);
    tok_decoder dec = {0};
    size_t textcap = tok ? tok_decode_cap(tok) : 0;
    char *text = tok ? xmalloc(textcap) : NULL;
    int rc = -1, nthreads = 0;
    st->prompt_tokens = n_prompt;

    double t0 = now_seconds();
    ag_tensor *h = NULL;
    for (int64_t off = 0; off < n_prompt; off += PREFILL_CHUNK) {
        int64_t n = n_prompt - off < PREFILL_CHUNK ? n_prompt - off : PREFILL_CHUNK;
        ag_ctx_reset(&c);
        if (embeds) {
            ag_tensor e = ag_wrap2(embeds->data + off * C, n, C, "prompt embeddings");
            h = llama_forward_cached_hooked(&c, m, lora, &kv, NULL, &e, n, hook);
        } else {
            h = llama_forward_cached_hooked(&c, m, lora, &kv, prompt + off, NULL, n, hook);
        }
        if (!h) goto done;
    }
    llama_logits(m, h->data + (h->shape[0] - 1) * C, logits);
    st->prefill_s = now_seconds() - t0;

    // Decoding one row: the matrix-vector products (OpenBLAS threads) are all the work; the
    // ops' element-wise loops are too small for a parallel region, and waking OpenMP workers
    // that spin against OpenBLAS's own threads costs more than the loops (measured: 3x
    // slower decode on 2 cores). So the decode steps run those loops on one thread.
    nthreads = omp_get_max_threads();
    omp_set_num_threads(1);
    double t1 = now_seconds();
    for (int64_t i = 0; i < o->max_new_tokens; i++) {
        int32_t id = gen_sample(&s, logits);
        if (id < 0) {
            err_prefix("generate: new token %lld", (long long)i + 1);
            goto done;
        }
        if (is_stop(id, stop, nstop)) {
            st->stopped = 1;
            break;
        }
        if (out_ids) out_ids[i] = id;
        st->new_tokens++;
        if (emit(tok, &dec, id, out, text, textcap) != 0) goto done;
        if (i + 1 == o->max_new_tokens) break;   // the last token needs no forward
        if (kv.len == kv.cap) {
            st->stopped = 2;   // max_position_embeddings reached
            break;
        }
        ag_ctx_reset(&c);
        if (!(h = llama_forward_cached_hooked(&c, m, lora, &kv, &id, NULL, 1, hook))) goto done;
        llama_logits(m, h->data, logits);
        st->decode_steps++;
    }
    st->decode_s = now_seconds() - t1;
    omp_set_num_threads(nthreads);
    // bytes of an incomplete UTF-8 character at the end decode as U+FFFD (as HF does)
    if (tok && out) {
        size_t n = tok_decode_flush(&dec, text, textcap);
        if (n && fwrite(text, 1, n, out) != n) {
            err_set("generate: writing the output failed");
            goto done;
        }
    }
    if (out && fflush(out) != 0) {
        err_set("generate: writing the output failed");
        goto done;
    }
    rc = 0;
done:
    if (nthreads > 0) omp_set_num_threads(nthreads);
    free(text);
    gen_sampler_free(&s);
    free(logits);
    llama_kv_cache_free(&kv);
    ag_ctx_free(&c);
    return rc;
}
