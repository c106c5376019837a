// cmd_generate.c — `lorac generate`: sample from a Llama model folder with a KV cache,
// streaming the generated text to stdout and statistics to stderr.
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chat.h"
#include "cli.h"
#include "generate.h"
#include "llama.h"
#include "tokenizer.h"
#include "util.h"

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
    "stdout: the generated text only (streamed); stderr: statistics\n";

int cmd_generate(int argc, char **argv) {
    const char *model = NULL, *adapter = NULL, *vision = NULL, *projector = NULL, *image = NULL;
    const char *prompt = NULL;
    int chat = 0;
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
            if (i + 1 >= argc) return cli_usage("generate", "option %s needs a value", a);
            val = argv[++i];
        }
        int64_t iv;
        if (!strcmp(name, "--model")) model = val;
        else if (!strcmp(name, "--adapter")) adapter = val;
        else if (!strcmp(name, "--vision")) vision = val;
        else if (!strcmp(name, "--projector")) projector = val;
        else if (!strcmp(name, "--image")) image = val;
        else if (!strcmp(name, "--prompt")) prompt = val;
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
    if ((vision || projector || image) && !(vision && projector && image))
        return cli_usage("generate", "--vision, --projector and --image go together");
    if (vision) {
        // Hook for the lead: load SigLIP + projector, compute the image's P visual embeddings
        // and splice them into the prompt embeddings (ag_embedding + ag_scatter_rows), then
        // pass them to gen_generate as `embeds`.
        err_set("--vision: image input is not supported yet (needs model/siglip and the projector)");
        return cli_fail();
    }
    if (adapter) {
        // Hook for the lead: load the PEFT adapter (model/lora) into a llama_lora with one
        // slot per adapted projection and pass it to gen_generate instead of NULL.
        err_set("%s: adapters not supported yet (--adapter needs the model/lora module)", adapter);
        return cli_fail();
    }

    llama_model m;
    tok_tokenizer *tok = NULL;
    tok_ids ids = {0};
    char *text = NULL;
    int rc = 1;
    double t0 = now_seconds();
    if (llama_load(model, &m) != 0) return cli_fail();
    double load_s = now_seconds() - t0;
    if (!(tok = tok_load(model))) goto done;
    int32_t bos = tok_special(tok, "<|begin_of_text|>");
    if (bos < 0) bos = m.cfg.bos_id;
    if (bos < 0) {
        err_set("%s: the tokenizer has no <|begin_of_text|> and config.json no bos_token_id", model);
        goto done;
    }
    if (chat) {
        // "<|begin_of_text|>" + one user message + the assistant header, encoded at once
        chat_msg msg = {"user", prompt};
        text = chat_render(&msg, 1, 1);
    } else {
        tok_ids_push(&ids, bos);
        text = xstrdup(prompt);
    }
    if (tok_encode(tok, text, strlen(text), 1, &ids) != 0) goto done;
    for (size_t i = 0; i < ids.n; i++)
        if (ids.ids[i] < 0 || ids.ids[i] >= m.cfg.vocab_size) {
            err_set("%s: prompt token id %d is outside the model's vocabulary (vocab_size %d): "
                    "tokenizer and model do not match",
                    model, ids.ids[i], m.cfg.vocab_size);
            goto done;
        }
    int32_t stop[16];
    int nstop = gen_stop_ids(&m, stop, 16);
    gen_stats st;
    if (gen_generate(&m, NULL, tok, ids.ids, (int64_t)ids.n, NULL, &o, stop, nstop, stdout, NULL, &st) != 0)
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
    free(text);
    tok_ids_free(&ids);
    tok_free(tok);
    llama_free(&m);
    return rc;
}
