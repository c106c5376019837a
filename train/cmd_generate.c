// cmd_generate.c — `lorac generate`: sample from a Llama model folder with a KV cache,
// streaming the generated text to stdout and statistics to stderr.
//
// With --vision DIR --projector DIR --image FILE the image's P visual rows (SigLIP features
// of the projector's select_layer, projected) are spliced into the prompt embeddings:
//   plain prompt: <|begin_of_text|>, the image, the prompt (as the caption format puts it);
//   --chat:       the prompt as one user message with the image where it says `<image>`,
//                 or, without `<image>`, at the start of the message followed by "\n" (LLaVA's
//                 "<image>\n" + question), then the assistant header.
// A projector folder written in mode xattn (xattn_config.json present) puts no image rows in
// the prompt: its cross-attention blocks let every token attend the image's visual rows.
// A plain prompt containing `<image>` also puts the image there. The text before and after
// the image is encoded separately (special tokens recognized): gen_prompt_ids (generate.h).
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "lora.h"
#include "generate.h"
#include "llama.h"
#include "tokenizer.h"
#include "util.h"
#include "vision.h"

// --- strict option parsing (bad values are usage errors, never clamped)

static int parse_i64(const char *s, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno) return -1;
    *out = v;
    return 0;
}

static int parse_u64(const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    if (!*s || *s == '-' || *s == ' ') return -1;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end || errno) return -1;
    *out = v;
    return 0;
}

static int parse_f32(const char *s, float *out) {
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (!*s || *end || errno || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

// --- the command

static const char usage_text[] =
    "usage: lorac generate --model DIR [--adapter DIR] [--vision DIR --projector DIR --image FILE]\n"
    "                      --prompt TEXT [--chat] [--max-new-tokens N] [--temperature T]\n"
    "                      [--top-k K] [--top-p P] [--seed S]\n"
    "  --chat              render the prompt as one user message + the assistant header\n"
    "  --max-new-tokens N  at most N new tokens (default 256); stops earlier at an EOS id\n"
    "  --temperature T     0 = greedy; default 0.6\n"
    "  --top-k K           keep the K most likely tokens (default 50; 0 = off)\n"
    "  --top-p P           nucleus sampling in (0, 1] (default 0.9; 1 = off)\n"
    "  --seed S            sampling seed (default 42)\n"
    "  --precision P       fp32 (default) or bf16: frozen weights in BF16, BF16 matmuls\n"
    "stdout: the generated text only (streamed); stderr: statistics\n";

int cmd_generate(int argc, char **argv) {
    const char *model = NULL, *adapter = NULL, *vision = NULL, *proj_dir = NULL, *image = NULL;
    const char *prompt = NULL;
    int chat = 0;
    ag_precision precision = AG_PREC_FP32;
    gen_opts o;
    gen_opts_default(&o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("%s", usage_text);
            return 0;
        }
        if (!strcmp(a, "--chat")) {
            chat = 1;
            continue;
        }
        if (strncmp(a, "--", 2)) return cli_usage("generate", "unexpected argument '%s'", a);
        // --opt VALUE or --opt=VALUE
        char name[64];
        const char *val = NULL, *eq = strchr(a, '=');
        if (eq) {
            snprintf(name, sizeof name, "%.*s", (int)(eq - a), a);
            val = eq + 1;
        } else {
            snprintf(name, sizeof name, "%s", a);
        }
        // every option handled below (so a missing value is told apart from an unknown flag)
        static const char *const known[] = {"--model", "--adapter", "--vision", "--projector", "--image", "--prompt",
                                            "--max-new-tokens", "--temperature", "--top-k", "--top-p", "--seed",
                                            "--precision"};
        int is_known = 0;
        for (size_t k = 0; k < sizeof known / sizeof *known; k++) is_known |= !strcmp(name, known[k]);
        if (!is_known) return cli_usage("generate", "unknown option '%s'", name);
        if (!eq) {
            if (i + 1 >= argc) return cli_usage("generate", "option %s needs a value", a);
            val = argv[++i];
        }
        int64_t iv;
        if (!strcmp(name, "--model")) model = val;
        else if (!strcmp(name, "--adapter")) adapter = val;
        else if (!strcmp(name, "--vision")) vision = val;
        else if (!strcmp(name, "--projector")) proj_dir = val;
        else if (!strcmp(name, "--image")) image = val;
        else if (!strcmp(name, "--prompt")) prompt = val;
        else if (!strcmp(name, "--precision")) {
            if (ag_precision_parse(val, &precision))
                return cli_usage("generate", "--precision: expected fp32 or bf16, got '%s'", val);
        }
        else if (!strcmp(name, "--max-new-tokens")) {
            if (parse_i64(val, &iv) || iv < 0)
                return cli_usage("generate", "--max-new-tokens: expected an integer >= 0, got '%s'", val);
            o.max_new_tokens = iv;
        } else if (!strcmp(name, "--temperature")) {
            if (parse_f32(val, &o.temperature) || o.temperature < 0)
                return cli_usage("generate", "--temperature: expected a number >= 0 (0 = greedy), got '%s'", val);
        } else if (!strcmp(name, "--top-k")) {
            if (parse_i64(val, &iv) || iv < 0 || iv > INT32_MAX)
                return cli_usage("generate", "--top-k: expected an integer >= 0 (0 = off), got '%s'", val);
            o.top_k = (int)iv;
        } else if (!strcmp(name, "--top-p")) {
            if (parse_f32(val, &o.top_p) || !(o.top_p > 0 && o.top_p <= 1))
                return cli_usage("generate", "--top-p: expected a number in (0, 1] (1 = off), got '%s'", val);
        } else if (!strcmp(name, "--seed")) {
            if (parse_u64(val, &o.seed))
                return cli_usage("generate", "--seed: expected an integer >= 0, got '%s'", val);
        } else {
            return cli_usage("generate", "unknown option '%s'", name);
        }
    }
    if (!model) return cli_usage("generate", "--model DIR is required");
    if (!prompt) return cli_usage("generate", "--prompt TEXT is required");
    if ((vision || proj_dir || image) && !(vision && proj_dir && image))
        return cli_usage("generate", "--vision, --projector and --image go together");

    llama_model m;
    lora_adapter lora = {0};
    tok_tokenizer *tok = NULL;
    tok_ids ids = {0};
    projector proj = {0};
    xattn xa = {0};
    int has_xa = 0;   // the projector folder holds cross-attention blocks (mode xattn)
    xattn_run xrun = {0};
    llama_hook hook = {0};
    vision_tower vt = {0};
    ag_ctx vc = {0};
    ag_tensor *embeds = NULL;
    float *feats = NULL;
    int32_t *rows = NULL;
    int rc = 1;
    double t0 = now_seconds();
    if (llama_load_precision(model, &m, precision) != 0) return cli_fail();
    double load_s = now_seconds() - t0;
    if (!(tok = tok_load(model))) goto done;
    if (adapter) {
        if (lora_load(&lora, &m.cfg, adapter) != 0) goto done;
        lora_set_dropout(&lora, 0);
    }
    int32_t bos = tok_special(tok, "<|begin_of_text|>");
    if (bos < 0) bos = m.cfg.bos_id;
    if (bos < 0) {
        err_set("%s: the tokenizer has no <|begin_of_text|> and config.json no bos_token_id", model);
        goto done;
    }
    int64_t image_pos = -1;
    int nrows = 0;   // visual rows of the image in the prompt
    if (vision) {
        if (vision_open_projected(&vt, &proj, vision, proj_dir, &m, model) != 0) goto done;
        if ((has_xa = vision_open_xattn(&xa, proj_dir, &m)) < 0) goto done;
        nrows = has_xa ? 0 : projector_rows(&proj);   // the pooled tokens, or every patch; none with xattn
    }
    if (gen_prompt_ids(tok, prompt, chat, bos, vision != NULL, nrows, &ids, &image_pos) != 0) goto done;
    for (size_t i = 0; i < ids.n; i++)
        if ((ids.ids[i] < 0 && !(image_pos >= 0 && (int64_t)i >= image_pos && (int64_t)i < image_pos + nrows)) ||
            ids.ids[i] >= m.cfg.vocab_size) {
            err_set("%s: prompt token id %d is outside the model's vocabulary (vocab_size %d): "
                    "tokenizer and model do not match",
                    model, ids.ids[i], m.cfg.vocab_size);
            goto done;
        }
    if (vision) {   // the prompt embeddings with the image's projected features spliced in (or,
                    // with cross-attention, the visual rows every token attends)
        feats = xmalloc((size_t)vt.P * vt.C * sizeof(float));
        rows = xmalloc((size_t)nrows * sizeof(int32_t));
        if (vision_features(&vt, &image, 1, feats, NULL) != 0) goto done;
        for (int k = 0; k < nrows; k++) rows[k] = (int32_t)(image_pos + k);
        if (ag_ctx_init(&vc, (size_t)ids.n * m.cfg.hidden_size * 3 * sizeof(float) +
                                 (size_t)vt.P * (vt.C + 3 * m.cfg.hidden_size) * sizeof(float) + ((size_t)1 << 20)) != 0)
            goto done;
        ag_set_grad(&vc, 0);
        if (has_xa) {
            xrun = (xattn_run){&xa, vision_xattn_rows(&vc, &proj, feats, 1), NULL, NULL};
            if (!xrun.vis) goto done;
            hook = xattn_hook(&xrun);
        } else if (!(embeds = vision_embed(&vc, &m, &proj, ids.ids, (int64_t)ids.n, feats, rows, nrows))) {
            goto done;
        }
    }
    int32_t stop[16];
    int nstop = gen_stop_ids(&m, stop, 16);
    gen_stats st;
    if (gen_generate_hooked(&m, adapter ? &lora.view : NULL, has_xa ? &hook : NULL, tok, ids.ids, (int64_t)ids.n, embeds,
                            &o, stop, nstop, stdout, NULL, &st) != 0)
        goto done;
    fprintf(stderr, "%sprompt tokens: %lld, generated tokens: %lld%s, load %.2f s, prefill %.3f s (%.1f tokens/s), "
            "decode %.2f tokens/s\n",
            isatty(STDOUT_FILENO) ? "\n" : "", (long long)st.prompt_tokens, (long long)st.new_tokens,
            st.stopped == 1 ? " (stop token)" : st.stopped == 2 ? " (max_position_embeddings reached)" : "", load_s, st.prefill_s,
            st.prefill_s > 0 ? st.prompt_tokens / st.prefill_s : 0.0,
            st.decode_s > 0 ? st.decode_steps / st.decode_s : 0.0);
    rc = 0;
done:
    if (rc) cli_fail();
    free(feats);
    free(rows);
    ag_ctx_free(&vc);
    vision_close(&vt);
    projector_free(&proj);
    if (has_xa > 0) xattn_free(&xa);
    tok_ids_free(&ids);
    tok_free(tok);
    if (lora.slots) lora_free(&lora);
    llama_free(&m);
    return rc;
}
