// test_limits.c — hostile input at the library level (issue 12 "resource limits", issue 16
// "quiet wrong answers and poor limits"): each case failed (crash, huge allocation, hang, silent
// truncation or default) before its fix and must give one error naming the file and the field.
// The CLI-level cases (merge --out, flags, eval stride, batch sizes) are in test_limits.sh.
#include <float.h>
#include <hdf5.h>
#include <stdint.h>
#include <time.h>

#include "config.h"
#include "fuzz/fuzz_common.h"
#include "h5data.h"
#include "h5util.h"
#include "hfconfig.h"
#include "image.h"
#include "llama.h"
#include "lora.h"
#include "records.h"
#include "safetensors.h"
#include "test.h"

static const char *T;   // scratch folder

#define HAS(s) (strstr(err_get(), (s)) != NULL)

static char *write_file(const char *name, const void *data, size_t n) {
    char *p = path_join(T, name);
    char *slash = strrchr(p, '/');
    *slash = 0;
    mkdir_p(p);
    *slash = '/';
    if (file_write_atomic(p, data, n)) printf("FAIL cannot write %s: %s\n", p, err_get());
    return p;
}
static char *write_str(const char *name, const char *s) { return write_file(name, s, strlen(s)); }

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// --- JSONL records: \u0000 inside a string

static int load_jsonl(const char *name, const char *text, data_set *ds) {
    char *p = write_str(name, text);
    data_opts o = data_opts_default();
    int rc = data_load(ds, p, fz_tiny_tokenizer(), &o);
    free(p);
    return rc;
}

static void test_jsonl_nul_escape(void) {
    data_set ds = {0};
    CHECK(load_jsonl("nul1.jsonl", "{\"text\": \"plain\"}\n{\"text\": \"ab\\u0000cd\"}\n", &ds) != 0 &&
              HAS("nul1.jsonl:2") && HAS("field 'text'") && HAS("\\u0000"),
          "text with \\u0000: %s", err_get());
    data_set_free(&ds);
    CHECK(load_jsonl("nul2.jsonl",
                     "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", "
                     "\"content\": \"x\\u0000\"}]}\n",
                     &ds) != 0 &&
              HAS("nul2.jsonl:1") && HAS("field 'messages[1].content'"),
          "chat content with \\u0000: %s", err_get());
    data_set_free(&ds);
    CHECK(load_jsonl("nul3.jsonl", "{\"image\": \"a\\u0000.png\", \"caption\": \"c\"}\n", &ds) != 0 &&
              HAS("field 'image'"),
          "image path with \\u0000: %s", err_get());
    data_set_free(&ds);
    // an escaped backslash followed by u0000 is ordinary text, and the record loads whole
    CHECK(load_jsonl("nul4.jsonl", "{\"text\": \"a\\\\u0000b\"}\n", &ds) == 0 && ds.n == 1, "escaped backslash: %s",
          err_get());
    if (ds.n == 1) {
        char *txt = tok_decode(fz_tiny_tokenizer(), ds.r[0].ids, (size_t)ds.r[0].n);
        CHECK(txt && strstr(txt, "a\\u0000b"), "decoded '%s'", txt ? txt : "");
        free(txt);
    }
    data_set_free(&ds);
}

// --- HF / PEFT config files: wrong JSON types, floats beyond the float range, huge sizes

static const char tiny_llama[] =
    "{\"model_type\": \"llama\", \"vocab_size\": 256, \"hidden_size\": 32, \"intermediate_size\": 64, "
    "\"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"head_dim\": 8%s}";

static int parse_llama(const char *extra) {
    char buf[1024];
    snprintf(buf, sizeof buf, tiny_llama, extra);
    hf_llama_config c;
    return hf_llama_config_parse(buf, "m/config.json", &c);
}

static void test_hf_config_values(void) {
    CHECK(parse_llama("") == 0, "tiny config: %s", err_get());
    CHECK(parse_llama(", \"rms_norm_eps\": 1e39") != 0 && HAS("m/config.json") && HAS("rms_norm_eps") &&
              HAS("float range"),
          "rms_norm_eps 1e39: %s", err_get());
    CHECK(parse_llama(", \"rope_theta\": 1e300") != 0 && HAS("rope_theta") && HAS("float range"), "rope_theta: %s",
          err_get());
    CHECK(parse_llama(", \"rope_theta\": \"500000\"") != 0 && HAS("rope_theta"), "rope_theta as a string: %s", err_get());
    hf_llama_config hc;
    CHECK(hf_llama_config_parse("{\"vocab_size\": 256, \"hidden_size\": 2147483640, \"intermediate_size\": 64, "
                                "\"num_hidden_layers\": 2, \"num_attention_heads\": 8}",
                                "m/config.json", &hc) != 0 &&
              HAS("m/config.json") && HAS("hidden_size") && HAS("limit on model sizes"),
          "hidden_size 2^31: %s", err_get());
    // SigLIP: a huge image_size overflowed (image_size / patch_size)^2 (undefined behaviour)
    char *cfg = write_str("siglip/config.json", "{\"model_type\": \"siglip_vision_model\", \"image_size\": 2000000000, "
                                                "\"patch_size\": 1}");
    char *dir = path_join(T, "siglip");
    hf_siglip_config sc;
    CHECK(hf_siglip_config_load(dir, &sc) != 0 && HAS("siglip/config.json") && HAS("image_size"), "image_size 2e9: %s",
          err_get());
    free(cfg);
    cfg = write_str("siglip/config.json", "{\"model_type\": \"siglip_vision_model\", \"image_size\": 8192, "
                                          "\"patch_size\": 1}");
    CHECK(hf_siglip_config_load(dir, &sc) != 0 && HAS("patches per image"), "8192/1 patches: %s", err_get());
    free(cfg);
    cfg = write_str("siglip/config.json", "{\"model_type\": \"siglip_vision_model\"}");
    char *pre = write_str("siglip/preprocessor_config.json", "{\"image_mean\": [0.5, 1e39, 0.5]}");
    CHECK(hf_siglip_config_load(dir, &sc) != 0 && HAS("preprocessor_config.json") && HAS("image_mean[1]") &&
              HAS("float range"),
          "image_mean 1e39: %s", err_get());
    free(pre);
    pre = write_str("siglip/preprocessor_config.json", "{\"image_std\": 1e39}");
    CHECK(hf_siglip_config_load(dir, &sc) != 0 && HAS("image_std") && HAS("float range"), "image_std 1e39: %s",
          err_get());
    free(pre);
    free(cfg);
    free(dir);
}

// A tiny model's adapter (r = 2, q_proj + v_proj) saved in T/NAME; its config rewritten with `cfg`.
static char *adapter_dir(const char *name, const hf_llama_config *mc, const char *cfg) {
    lora_config lc = {.r = 2, .alpha = 4, .targets = 1u << LLAMA_Q | 1u << LLAMA_V};
    lora_adapter a;
    char *dir = path_join(T, name);
    CHECK(lora_create(&a, mc, &lc, 1) == 0 && mkdir_p(dir) == 0 && lora_save(&a, dir) == 0, "adapter: %s", err_get());
    lora_free(&a);
    char *p = path_join(dir, "adapter_config.json");
    CHECK(file_write_atomic(p, cfg, strlen(cfg)) == 0, "write %s", p);
    free(p);
    return dir;
}

static void test_peft_config_values(void) {
    char buf[1024];
    snprintf(buf, sizeof buf, tiny_llama, "");
    hf_llama_config mc;
    CHECK(hf_llama_config_parse(buf, "config.json", &mc) == 0, "model: %s", err_get());
    static const struct {
        const char *extra, *want;
    } bad[] = {
        {"\"lora_alpha\": \"16\"", "lora_alpha"},        // was: the default 8
        {"\"lora_alpha\": 1e39", "lora_alpha"},          // was: inf
        {"\"lora_dropout\": \"0.1\"", "lora_dropout"},   // was: 0
        {"\"use_rslora\": \"true\"", "use_rslora"},      // was: false
        {"\"fan_in_fan_out\": 1", "fan_in_fan_out"},     // was: ignored
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char cfg[512];
        snprintf(cfg, sizeof cfg,
                 "{\"peft_type\": \"LORA\", \"r\": 2, \"target_modules\": [\"q_proj\", \"v_proj\"], %s}", bad[i].extra);
        char *dir = adapter_dir("adapter_types", &mc, cfg);
        lora_adapter a = {0};
        CHECK(lora_load(&a, &mc, dir) != 0 && HAS("adapter_config.json") && HAS(bad[i].want), "%s: %s", bad[i].extra,
              err_get());
        free(dir);
    }
    // the valid spelling of the same keys loads
    char *dir = adapter_dir("adapter_ok", &mc,
                            "{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 16, \"lora_dropout\": 0.1, "
                            "\"use_rslora\": true, \"fan_in_fan_out\": false, \"target_modules\": [\"q_proj\", \"v_proj\"]}");
    lora_adapter a = {0};
    CHECK(lora_load(&a, &mc, dir) == 0 && a.cfg.alpha == 16 && a.cfg.use_rslora, "valid adapter: %s", err_get());
    if (a.slots) lora_free(&a);
    free(dir);
    // a huge rank is checked against the adapter's tensors before anything is allocated (it was
    // 2 layers x 2 targets x (r x 32 + 32 x r) floats = 51 GB: out of memory)
    dir = adapter_dir("adapter_rank", &mc, "{\"peft_type\": \"LORA\", \"r\": 100000000, \"target_modules\": [\"q_proj\", \"v_proj\"]}");
    CHECK(lora_load(&a, &mc, dir) != 0 && HAS("adapter_model.safetensors") && HAS("lora_A") && HAS("100000000"),
          "r = 1e8: %s", err_get());
    free(dir);
}

// config.json claims more layers than the weights hold: an error before the per-layer arrays
static void test_layers_against_weights(void) {
    char *cfg = path_join("tests/fixtures/tiny-llama-f32", "config.json");
    size_t n;
    char *txt = file_read_all(cfg, &n);
    free(cfg);
    CHECK(txt, "read tiny-llama-f32/config.json: %s", err_get());
    if (!txt) return;
    char *at = strstr(txt, "\"num_hidden_layers\": 3");
    CHECK(at != NULL, "fixture layout changed");
    if (!at) {
        free(txt);
        return;
    }
    char edited[8192];
    snprintf(edited, sizeof edited, "%.*s\"num_hidden_layers\": 16000000%s", (int)(at - txt), txt,
             at + strlen("\"num_hidden_layers\": 3"));
    free(txt);
    char *c = write_str("layers/config.json", edited);
    char *w = path_join(T, "layers/model.safetensors");
    unlink(w);
    char *real = realpath("tests/fixtures/tiny-llama-f32/model.safetensors", NULL);
    CHECK(real && symlink(real, w) == 0, "symlink");
    free(real);
    char *dir = path_join(T, "layers");
    llama_model m;
    double t0 = now();
    CHECK(llama_load(dir, &m) != 0 && HAS("num_hidden_layers 16000000") && HAS("only 3 layers"), "layers: %s",
          err_get());
    CHECK(now() - t0 < 5, "the check took %.1f s", now() - t0);
    free(dir);
    free(w);
    free(c);
}

// --- HDF5 datasets: extents checked against the bytes the file stores

static void test_h5_extent(void) {
    char *src = write_str("h5/src.jsonl", "{\"text\": \"one\"}\n{\"text\": \"two\"}\n");
    char *out = path_join(T, "h5/big.h5");
    data_opts o = data_opts_default();
    CHECK(data_h5_prepare(out, src, fz_tiny_tokenizer(), &o, 1, NULL, NULL) == 0, "prepare: %s", err_get());
    // claim 2^36 tokens (256 GB as int32) in the dataset and the counter attribute
    h5u_quiet();
    hid_t f = H5Fopen(out, H5F_ACC_RDWR, H5P_DEFAULT);
    const char *names[2] = {"tokens", "loss_mask"};
    for (int i = 0; i < 2; i++) {
        hid_t d = H5Dopen2(f, names[i], H5P_DEFAULT);
        hsize_t big = (hsize_t)1 << 36;
        CHECK(d >= 0 && H5Dset_extent(d, &big) >= 0, "extend %s", names[i]);
        H5Dclose(d);
    }
    CHECK(H5Adelete(f, "tokens") >= 0 && h5u_attr_i64(f, "tokens", (int64_t)1 << 36) == 0, "attribute tokens");
    H5Fclose(f);
    data_set ds = {0};
    CHECK(data_h5_load(&ds, out, fz_tiny_tokenizer(), &o) != 0 && HAS("big.h5") && HAS("dataset 'tokens'") &&
              HAS("68719476736 values"),
          "2^36 tokens: %s", err_get());
    data_set_free(&ds);
    free(out);
    free(src);
}

// --- images: truncated BMP, PNG size limits

static uint32_t crc32_png(const unsigned char *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    }
    return c ^ 0xFFFFFFFFu;
}
static void put_be32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24), p[1] = (unsigned char)(v >> 16), p[2] = (unsigned char)(v >> 8), p[3] = (unsigned char)v;
}

static void test_image_limits(void) {
    size_t n;
    unsigned char *bmp = (unsigned char *)file_read_all("tests/fixtures/images/rgb.bmp", &n);
    img_u8 im;
    CHECK(bmp && img_decode_rgb("rgb.bmp", bmp, n, 0, &im) == 0, "whole BMP: %s", err_get());
    img_free(&im);
    // PIL: "image file is truncated"; stb_image decoded the missing rows as zeros
    CHECK(bmp && img_decode_rgb("cut.bmp", bmp, n - 100, 0, &im) != 0 && HAS("cut.bmp") && HAS("truncated BMP"),
          "truncated BMP: %s", err_get());
    free(bmp);

    unsigned char *png = (unsigned char *)file_read_all("tests/fixtures/images/rgb.png", &n);
    CHECK(png && n > 33 && !memcmp(png + 12, "IHDR", 4), "rgb.png starts with IHDR");
    if (!png || n <= 33) return;
    uint32_t sizes[2][2] = {{0, 16}, {30000, 30000}};
    const char *want[2] = {"zero size", "over the limit of 89478485 pixels"};
    for (int k = 0; k < 2; k++) {   // IHDR width/height with a correct CRC
        unsigned char *d = xmalloc(n);
        memcpy(d, png, n);
        put_be32(d + 16, sizes[k][0]);
        put_be32(d + 20, sizes[k][1]);
        put_be32(d + 29, crc32_png(d + 12, 17));
        CHECK(img_decode_rgb("edited.png", d, n, 0, &im) != 0 && HAS("edited.png") && HAS(want[k]), "%ux%u PNG: %s",
              sizes[k][0], sizes[k][1], err_get());
        free(d);
    }
    free(png);
}

// --- YAML configs: deep flow nesting is rejected in linear time; arena_mb is bounded

static void test_yaml_limits(void) {
    size_t depth = 60000;   // libyaml's scanner needed ~25 s for this before the pre-check
    char *y = xmalloc(2 * depth + 16);
    strcpy(y, "model: ");
    size_t k = strlen(y);
    for (size_t i = 0; i < depth; i++) y[k++] = '[';
    for (size_t i = 0; i < depth; i++) y[k++] = ']';
    y[k++] = '\n';
    char *p = write_file("deep.yaml", y, k);
    free(y);
    cfg_train c;
    double t0 = now();
    CHECK(cfg_load(&c, p, 0, NULL) != 0 && HAS("deep.yaml:1") && HAS("nest deeper than"), "deep YAML: %s", err_get());
    double dt = now() - t0;
    CHECK(dt < 2.0, "took %.2f s (quadratic parse?)", dt);
    cfg_free(&c);
    // the same in an override value
    char ov[200] = "lora.targets=";
    for (int i = 0; i < 40; i++) strcat(ov, "[");
    char *ovs[1] = {ov};
    CHECK(cfg_load(&c, NULL, 1, ovs) != 0 && HAS("nest deeper than"), "deep override: %s", err_get());
    cfg_free(&c);
    // quoted brackets and comments do not count
    char *q = write_str("quoted.yaml", "model: \"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\" # [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\n"
                                       "output_dir: 'it''s [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[['\n");
    CHECK(cfg_load(&c, q, 0, NULL) == 0, "quoted brackets: %s", err_get());
    cfg_free(&c);
    free(q);
    free(p);
    // arena_mb << 20 overflowed int64 (undefined behaviour) for a huge setting
    char *arena[4] = {"model=m", "output_dir=o", "data.train=t.jsonl", "train.arena_mb=9000000000000"};
    CHECK(cfg_load(&c, NULL, 4, arena) == 0, "overrides: %s", err_get());
    CHECK(cfg_validate(&c) != 0 && HAS("train.arena_mb"), "arena_mb 9e12: %s", err_get());
    cfg_free(&c);
    char *gacc[4] = {"model=m", "output_dir=o", "data.train=t.jsonl", "train.grad_accum=2000000000"};
    CHECK(cfg_load(&c, NULL, 4, gacc) == 0 && cfg_validate(&c) != 0 && HAS("train.grad_accum"), "grad_accum 2e9: %s",
          err_get());
    cfg_free(&c);
}

// --- JSON nesting deeper than cJSON's limit: the message names the limit

static void test_json_depth(void) {
    size_t depth = 1500, k = 0;
    char *j = xmalloc(2 * depth + 64);
    k += (size_t)sprintf(j, "{\"text\": ");
    for (size_t i = 0; i < depth; i++) j[k++] = '[';
    for (size_t i = 0; i < depth; i++) j[k++] = ']';
    k += (size_t)sprintf(j + k, "}\n");
    data_set ds = {0};
    CHECK(load_jsonl("deep.jsonl", j, &ds) != 0 && HAS("deep.jsonl:1") && HAS("deeper than 1000 levels"),
          "deep JSONL: %s", err_get());
    data_set_free(&ds);
    hf_llama_config c;
    CHECK(hf_llama_config_parse(j, "deep/config.json", &c) != 0 && HAS("deep/config.json") &&
              HAS("deeper than 1000 levels"),
          "deep config.json: %s", err_get());
    // a safetensors header: 8-byte length + the JSON
    size_t hl = k;
    unsigned char *st = xmalloc(8 + hl);
    for (int b = 0; b < 8; b++) st[b] = (unsigned char)((uint64_t)hl >> (8 * b));
    memcpy(st + 8, j, hl);
    char *p = write_file("deep.safetensors", st, 8 + hl);
    st_model *m = st_open(p);
    CHECK(!m && HAS("deep.safetensors") && HAS("deeper than 1000 levels"), "deep header: %s", err_get());
    st_close(m);
    free(p);
    free(st);
    free(j);
}

int main(void) {
    T = test_tmpdir("limits");
    RUN(test_jsonl_nul_escape);
    RUN(test_hf_config_values);
    RUN(test_peft_config_values);
    RUN(test_layers_against_weights);
    RUN(test_h5_extent);
    RUN(test_image_limits);
    RUN(test_yaml_limits);
    RUN(test_json_depth);
    return test_summary();
}
