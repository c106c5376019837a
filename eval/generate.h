// generate.h — text generation with a KV cache: sampling (greedy, temperature, top-k,
// top-p as Hugging Face's logits warpers) and the prefill + decode loop that streams
// decoded text as tokens come.
#ifndef LORAC_GENERATE_H
#define LORAC_GENERATE_H

#include <stdint.h>
#include <stdio.h>

#include "llama.h"
#include "tokenizer.h"

// --- the prompt

// The prompt's ids, appended to ids (generate's rule; the image goes through records.h's one
// splice, data_encode_spliced):
//   plain (chat 0): bos, then the prompt encoded (special tokens recognized);
//   chat:           the prompt rendered as one user message + the assistant header (chat.h),
//                   encoded at once.
// With an image (image 1), nrows ids -1 stand where the prompt says `<image>` (the text before
// and after it encoded separately); without `<image>` a plain prompt has them right after bos
// and a chat prompt gets "<image>\n" put before its text (LLaVA's "<image>\n" + question).
// *image_pos: the first visual row's index (-1 without an image). 0, or -1 + err_set.
int gen_prompt_ids(const tok_tokenizer *tok, const char *prompt, int chat, int32_t bos, int image, int nrows,
                   tok_ids *ids, int64_t *image_pos);

// --- sampling

typedef struct gen_opts {
    int64_t max_new_tokens;   // >= 0
    float temperature;        // 0: greedy (argmax, top-k/top-p unused); > 0: logits / T
    int top_k;                // keep the k most likely (ties at the k-th kept, as HF); 0 = off
    float top_p;              // nucleus in (0, 1]: keep the smallest set of most likely tokens
                              // whose probability reaches top_p (always >= 1 token); 1 = off
    uint64_t seed;            // sampling RNG seed
} gen_opts;

// Llama 3.2's generation_config defaults (as HF generate applies them): 256 new tokens,
// temperature 0.6, top_k 50, top_p 0.9, seed 42.
void gen_opts_default(gen_opts *o);
// 0, or -1 + err_set naming the bad option (nothing is clamped).
int gen_opts_check(const gen_opts *o);

typedef struct gen_sampler {
    gen_opts o;
    int V;
    uint64_t rng;
    float *prob;     // [V] scratch
    int32_t *idx;    // [V] scratch
} gen_sampler;

void gen_sampler_init(gen_sampler *s, int V, const gen_opts *o);
void gen_sampler_free(gen_sampler *s);
// Picks the next token from logits [V] (overwritten as scratch). -1 + err_set when the logits
// hold NaN or +Inf, or are all -Inf.
int32_t gen_sample(gen_sampler *s, float *logits);

// --- the generation loop

typedef struct gen_stats {
    int64_t prompt_tokens, new_tokens;
    double prefill_s;    // prompt forward (all chunks)
    double decode_s;     // token-by-token forwards (new_tokens - 1 of them, or fewer at EOS)
    int64_t decode_steps;
    int stopped;         // 0 at max_new_tokens, 1 at a stop id, 2 at max_position_embeddings
} gen_stats;

// Stop ids for a model folder: config.json's eos_token_id(s) plus generation_config.json's
// when present. Returns their count (at most max).
int gen_stop_ids(const llama_model *m, int32_t *ids, int max);

// Runs the prompt (ids [n_prompt]; or embeds [n_prompt, C] when given, e.g. with visual
// tokens spliced in) through the model with a KV cache, then samples up to
// o->max_new_tokens tokens, stopping at any of stop[nstop] (the stop token is neither
// written nor counted). Each new token's text (tok_decode_step) is written to out and
// flushed as it comes, when tok and out are given; new ids go to out_ids
// [max_new_tokens] when given. lora may be NULL. 0, or -1 + err_set.
int gen_generate(const llama_model *m, const llama_lora *lora, const tok_tokenizer *tok,
                 const int32_t *prompt, int64_t n_prompt, ag_tensor *embeds,
                 const gen_opts *o, const int32_t *stop, int nstop, FILE *out,
                 int32_t *out_ids, gen_stats *st);
// The same with a decoder-layer hook on every forward (e.g. cross-attention blocks; NULL: none).
int gen_generate_hooked(const llama_model *m, const llama_lora *lora, const llama_hook *hook,
                        const tok_tokenizer *tok, const int32_t *prompt, int64_t n_prompt, ag_tensor *embeds,
                        const gen_opts *o, const int32_t *stop, int nstop, FILE *out,
                        int32_t *out_ids, gen_stats *st);

#endif
