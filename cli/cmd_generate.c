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
#include "opts.h"
#include "lora.h"
#include "generate.h"
#include "llama.h"
#include "tokenizer.h"
#include "util.h"
#include "vision.h"

// --- the options

typedef struct gen_args {
    const char *model, *adapter, *vision, *proj_dir, *image, *prompt;
    int chat;
    ag_precision precision;
    ag_weights weights;
    gen_opts o;
} gen_args;

// 0 when parsed, 1 after --help, 2 after a usage error.
static int parse_args(int argc, char **argv, gen_args *g) {
    const char *prec = "fp32", *weights = "auto";
    *g = (gen_args){0};
    gen_opts_default(&g->o);
    int64_t max_new = g->o.max_new_tokens, top_k = g->o.top_k;
    const cli_opt opts[] = {
        CLI_MODEL(&g->model, &g->adapter),
        CLI_VISION(&g->vision, &g->proj_dir),
        CLI_TEXT("image", OPT_FILE, &g->image, "FILE", "the image (with --vision): where the prompt says <image>, else first"),
        CLI_TEXT("prompt", OPT_STR, &g->prompt, "TEXT", "the prompt (required)"),
        CLI_FLAG("chat", &g->chat, "render the prompt as one user message + the assistant header"),
        CLI_INT("max-new-tokens", &max_new, "N", 0, INT64_MAX, "at most N new tokens (default 256); stops earlier at an EOS id"),
        {.name = "temperature", .type = OPT_F32, .dst = &g->o.temperature, .arg = "T", .lo = 0, .hi = INFINITY,
         .expect = "a number >= 0 (0 = greedy)", .help = "0 = greedy; default 0.6"},
        {.name = "top-k", .type = OPT_INT, .dst = &top_k, .arg = "K", .lo = 0, .hi = INT32_MAX,
         .expect = "an integer >= 0 (0 = off)", .help = "keep the K most likely tokens (default 50; 0 = off)"},
        {.name = "top-p", .type = OPT_F32, .dst = &g->o.top_p, .arg = "P", .lo = 0, .hi = 1, .lo_open = 1,
         .expect = "a number in (0, 1] (1 = off)", .help = "nucleus sampling in (0, 1] (default 0.9; 1 = off)"},
        {.name = "seed", .type = OPT_U64, .dst = &g->o.seed, .arg = "S", .help = "sampling seed (default 42)"},
        CLI_PRECISION(&prec),
        CLI_WEIGHTS(&weights, "auto (default: as the file holds them, mapped when possible) or f32 (fp32 heap copies); the output is the same"),
    };
    const cli_spec spec = {"generate",
                           "--model DIR [--adapter DIR] [--vision DIR --projector DIR --image FILE]\n"
                           "                      --prompt TEXT [--chat] [--max-new-tokens N] [--temperature T]\n"
                           "                      [--top-k K] [--top-p P] [--seed S] [--precision fp32|bf16] [--weights auto|f32]",
                           NULL, opts, CLI_NOPTS(opts), "stdout: the generated text only (streamed); stderr: statistics\n", 0};
    int npos, prc = cli_parse(&spec, argc, argv, NULL, 0, &npos, 0, NULL);
    if (prc) return prc;
    g->o.max_new_tokens = max_new;
    g->o.top_k = (int)top_k;
    ag_precision_parse(prec, &g->precision);
    ag_weights_parse(weights, &g->weights);
    if (!g->model) return cli_usage("generate", "--model DIR is required");
    if (!g->prompt) return cli_usage("generate", "--prompt TEXT is required");
    if ((g->vision || g->proj_dir || g->image) && !(g->vision && g->proj_dir && g->image))
        return cli_usage("generate", "--vision, --projector and --image go together");
    return 0;
}

// --- the command

int cmd_generate(int argc, char **argv) {
    gen_args g;
    int prc = parse_args(argc, argv, &g);
    if (prc) return prc == 1 ? 0 : prc;
    const char *model = g.model, *adapter = g.adapter, *vision = g.vision, *proj_dir = g.proj_dir, *image = g.image;
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
    if (llama_load_opts(model, &m, g.precision, g.weights) != 0) return cli_fail();
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
    if (gen_prompt_ids(tok, g.prompt, g.chat, bos, vision != NULL, nrows, &ids, &image_pos) != 0) goto done;
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
                            &g.o, stop, nstop, stdout, NULL, &st) != 0)
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
