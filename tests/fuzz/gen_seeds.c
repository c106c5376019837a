// gen_seeds.c — writes the seed files that need lorac itself to make (`make fuzz-seeds`):
//   corpus/h5data/*     prepared datasets made with the harness's tiny tokenizer (a hash match is
//                       needed to get past the first check);
//   corpus/featcache/*  small feature caches (2 images, 4 patches, hidden 8);
//   corpus/lora/*       adapter_config.json + NUL + adapter_model.safetensors for fuzz_lora's model.
// The other seeds are copies of committed fixtures (scripts/fuzz.sh seeds).
#include "featcache.h"
#include "fuzz_common.h"
#include "h5data.h"
#include "lora.h"

static void copy_to(const char *src, const char *dst) {
    size_t n;
    char *d = file_read_all(src, &n);
    if (!d || file_write_atomic(dst, d, n)) {
        fprintf(stderr, "gen_seeds: %s\n", err_get());
        exit(1);
    }
    free(d);
}

static void h5_seed(const char *name, const char *jsonl, int compress) {
    char *src = fz_write("src.jsonl", jsonl, strlen(jsonl));
    free(fz_write("a.png", "png", 3));   // records check that image files exist
    free(fz_write("b.png", "png", 3));
    data_opts o = data_opts_default();
    o.num_patches = 4;
    char out[256];
    snprintf(out, sizeof out, "tests/fuzz/corpus/h5data/%s", name);
    char *tmp = path_join(fz_dir(), "seed.h5");
    if (data_h5_prepare(tmp, src, fz_tiny_tokenizer(), &o, compress, NULL, NULL)) {
        fprintf(stderr, "gen_seeds: %s\n", err_get());
        exit(1);
    }
    copy_to(tmp, out);
    free(tmp);
    free(src);
}

static void fc_seed(const char *name, int n) {
    data_fc_ident id = {.select_layer = -2, .image_size = 32, .patch_size = 16, .num_patches = 4,
                        .hidden_size = 8, .image_mean = {0.5f, 0.5f, 0.5f}, .image_std = {0.5f, 0.5f, 0.5f},
                        .rescale_factor = 1.0f / 255.0f};
    snprintf(id.model_hash, sizeof id.model_hash, "0123456789abcdef");
    snprintf(id.resize, sizeof id.resize, "bicubic");
    snprintf(id.precision, sizeof id.precision, "fp32");
    char *tmp = path_join(fz_dir(), "seed_fc.h5");
    data_fc_writer *w = data_fc_writer_open(tmp, &id, "train.jsonl");
    float feat[4 * 8];
    for (int i = 0; w && i < n; i++) {
        char ref[32];
        snprintf(ref, sizeof ref, "images/%d.png", i);
        for (int k = 0; k < 32; k++) feat[k] = (float)(i * 32 + k) / 8.0f;
        if (data_fc_writer_add(w, ref, feat)) w = NULL;
    }
    if (!w || data_fc_writer_commit(w)) {
        fprintf(stderr, "gen_seeds: %s\n", err_get());
        exit(1);
    }
    char out[256];
    snprintf(out, sizeof out, "tests/fuzz/corpus/featcache/%s", name);
    copy_to(tmp, out);
    free(tmp);
}

static void lora_seed(const char *name, int r, unsigned targets, const char *extra) {
    static const char model_cfg[] =
        "{\"model_type\": \"llama\", \"vocab_size\": 256, \"hidden_size\": 32, \"intermediate_size\": 64, "
        "\"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"head_dim\": 8}";
    hf_llama_config mc;
    if (hf_llama_config_parse(model_cfg, "config.json", &mc)) exit(1);
    lora_config lc = {.r = r, .alpha = 2.0f * r, .targets = targets};
    lora_adapter a;
    char *dir = path_join(fz_dir(), name);
    if (lora_create(&a, &mc, &lc, 7) || mkdir_p(dir) || lora_save(&a, dir)) {
        fprintf(stderr, "gen_seeds: %s\n", err_get());
        exit(1);
    }
    lora_free(&a);
    char *cp = path_join(dir, "adapter_config.json"), *wp = path_join(dir, "adapter_model.safetensors");
    size_t cn, wn;
    char *c = file_read_all(cp, &cn), *wt = file_read_all(wp, &wn);
    if (extra) {   // an extra key before the closing brace
        char *close = strrchr(c, '}');
        size_t head = (size_t)(close - c);
        char *c2 = xmalloc(head + strlen(extra) + 8);
        memcpy(c2, c, head);
        sprintf(c2 + head, ", %s}", extra);
        free(c);
        c = c2;
        cn = strlen(c);
    }
    char *both = xmalloc(cn + 1 + wn);
    memcpy(both, c, cn);
    both[cn] = 0;
    memcpy(both + cn + 1, wt, wn);
    char out[256];
    snprintf(out, sizeof out, "tests/fuzz/corpus/lora/%s", name);
    if (file_write_atomic(out, both, cn + 1 + wn)) exit(1);
    free(both);
    free(c);
    free(wt);
    free(cp);
    free(wp);
    free(dir);
}

int main(void) {
    h5_seed("alpaca.h5",
            "{\"instruction\": \"Add 2 and 3.\", \"input\": \"\", \"output\": \"5\"}\n"
            "{\"text\": \"plain text record\"}\n"
            "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"hello\"}]}\n",
            1);
    h5_seed("images.h5",
            "{\"image\": \"a.png\", \"caption\": \"a red square\"}\n"
            "{\"image\": \"b.png\", \"caption\": \"a blue circle\"}\n",
            1);
    fc_seed("two.h5", 2);
    fc_seed("one.h5", 1);
    lora_seed("qv_r2", 2, 1u << LLAMA_Q | 1u << LLAMA_V, NULL);
    lora_seed("all_r1_rslora", 1, (1u << LLAMA_NPROJ) - 1, "\"use_rslora\": true");
    return 0;
}
