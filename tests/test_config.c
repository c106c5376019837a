// test_config.c — the training config: defaults, the committed configs, YAML features,
// overrides of every type, error messages with file:line, validation, the JSON round trip
// and the learning-rate schedule against a table computed independently in Python.
#include <inttypes.h>

#include "config.h"
#include "test.h"
#include "util.h"

static const char *tmp;

// writes text to <tmp>/name and returns the path (static buffer)
static const char *write_yaml(const char *name, const char *text) {
    static char path[600];
    snprintf(path, sizeof path, "%s/%s", tmp, name);
    if (file_write_atomic(path, text, strlen(text))) {
        test_fail("cannot write %s: %s", path, err_get());
        exit(test_summary());
    }
    return path;
}

// loads yaml text (with overrides); returns cfg_load's status, leaves the config in *c
static int load_text(cfg_train *c, const char *text, int n, char **ov) {
    return cfg_load(c, write_yaml("t.yaml", text), n, ov);
}

// expects loading to fail with exactly `want` (after the "<tmp>/t.yaml" path when it starts with ':')
static void expect_load_error(const char *text, int n, char **ov, const char *want) {
    cfg_train c;
    int rc = load_text(&c, text, n, ov);
    char full[1200];
    if (want[0] == ':') snprintf(full, sizeof full, "%s/t.yaml%s", tmp, want);
    else snprintf(full, sizeof full, "%s", want);
    CHECK(rc == -1, "load should fail with '%s'", full);
    CHECK(!strcmp(err_get(), full), "\n  got  '%s'\n  want '%s'", err_get(), full);
    cfg_free(&c);  // safe after a failed load
}

static const char *REQUIRED = "model: m\noutput_dir: out\ndata: {train: t.jsonl}\n";

// --- defaults

static void test_defaults(void) {
    cfg_train c;
    cfg_defaults(&c);
    CHECK(!strcmp(c.mode, "lora"), "mode %s", c.mode);
    CHECK(!strcmp(c.precision, "fp32"), "precision %s", c.precision);
    CHECK(!c.model && !c.output_dir && !c.resume && !c.config_path, "model/output_dir unset");
    CHECK(!c.data.train && !c.data.eval, "data paths unset");
    CHECK(!strcmp(c.data.format, "auto") && !strcmp(c.data.template_, "llama3"), "format/template");
    CHECK(c.data.max_seq_len == 2048 && !c.data.packing && c.data.shuffle && !c.data.train_on_prompt &&
              !c.data.skip_bad_lines && !strcmp(c.data.truncation, "drop"),
          "data defaults");
    CHECK(c.lora.r == 16 && c.lora.alpha == 32.0f && c.lora.dropout == 0.05f && !c.lora.use_rslora && !c.lora.init,
          "lora defaults");
    CHECK(c.lora.n_targets == 7, "7 targets, got %d", c.lora.n_targets);
    const char *want[7] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
    for (int i = 0; i < 7 && i < c.lora.n_targets; i++)
        CHECK(!strcmp(c.lora.targets[i], want[i]), "target %d %s", i, c.lora.targets[i]);
    CHECK(!c.vision.model && c.vision.select_layer == -2 && !c.vision.features && c.vision.max_pixels == 89478485,
          "vision defaults");
    CHECK(!strcmp(c.projector.type, "mlp2x_gelu") && !c.projector.init, "projector defaults");
    CHECK(c.optim.lr == 2.0e-4f && c.optim.beta1 == 0.9f && c.optim.beta2 == 0.999f && c.optim.eps == 1e-8f &&
              c.optim.weight_decay == 0 && c.optim.grad_clip == 1.0f,
          "optim defaults");
    CHECK(!strcmp(c.schedule.kind, "cosine") && c.schedule.warmup_steps == 0 && c.schedule.warmup_ratio == 0 &&
              c.schedule.min_lr_ratio == 0,
          "schedule defaults");
    CHECK(c.train.batch_size == 4 && c.train.grad_accum == 1 && c.train.epochs == 1 && c.train.max_steps == -1 &&
              c.train.seed == 42 && c.train.save_every == 200 && c.train.eval_every == 200 &&
              c.train.keep_last == 3 && !c.train.dump_grads && c.train.log_every == 1 && c.train.arena_mb == 0 &&
              c.train.threads == 0,
          "train defaults");
    // defaults alone are invalid only for the missing required keys
    CHECK(cfg_validate(&c) == -1 && strstr(err_get(), "model: required"), "got '%s'", err_get());
    cfg_free(&c);
    cfg_free(&c);  // idempotent
}

// --- the committed configs

static void test_committed_configs(void) {
    const char *files[] = {"configs/tiny-lora.yaml", "configs/tiny-projector.yaml", "configs/llama-3.2-1b-lora.yaml",
                           "configs/llama-3.2-3b-lora.yaml", "configs/siglip-llava-projector.yaml"};
    for (int i = 0; i < 5; i++) {
        cfg_train c;
        int rc = cfg_load(&c, files[i], 0, NULL);
        CHECK(rc == 0, "%s: %s", files[i], err_get());
        if (rc) continue;
        CHECK(cfg_validate(&c) == 0, "%s: %s", files[i], err_get());
        CHECK(c.config_path && !strcmp(c.config_path, files[i]), "config_path");
        cfg_free(&c);
    }
    cfg_train c;
    if (cfg_load(&c, "configs/tiny-lora.yaml", 0, NULL) == 0) {
        CHECK(!strcmp(c.model, "build/tiny-llama") && !strcmp(c.output_dir, "build/demo-lora"), "tiny paths");
        CHECK(!strcmp(c.data.train, "data/demo/train.jsonl") && !strcmp(c.data.eval, "data/demo/eval.jsonl"),
              "tiny data");
        CHECK(c.lora.n_targets == 7 && !strcmp(c.lora.targets[6], "down_proj"), "all-linear expanded");
        cfg_free(&c);
    }
    if (cfg_load(&c, "configs/siglip-llava-projector.yaml", 0, NULL) == 0) {
        CHECK(!strcmp(c.mode, "projector") && c.optim.lr == 1e-3f && !strcmp(c.schedule.kind, "cosine") &&
                  c.schedule.warmup_ratio == 0.03f && c.train.batch_size * c.train.grad_accum == 256 &&
                  !strcmp(c.projector.type, "mlp2x_gelu") && c.vision.select_layer == -2,
              "LLaVA stage-1 recipe");
        cfg_free(&c);
    }
    if (cfg_load(&c, "configs/llama-3.2-1b-lora.yaml", 0, NULL) == 0) {
        CHECK(!strcmp(c.model, "models/Llama-3.2-1B-Instruct") && c.lora.r == 16 && c.lora.alpha == 32 &&
                  c.optim.lr == 2e-4f && c.lora.n_targets == 7,
              "1b config");
        cfg_free(&c);
    }
    // the real-model configs train in bf16 (issue 9 item 7); the tiny demos stay fp32
    for (int i = 0; i < 5; i++)
        if (cfg_load(&c, files[i], 0, NULL) == 0) {
            CHECK(!strcmp(c.precision, strstr(files[i], "tiny") ? "fp32" : "bf16"), "%s: precision %s", files[i],
                  c.precision);
            cfg_free(&c);
        }
}

// --- YAML features

static void test_yaml_features(void) {
    const char *y =
        "# a comment line\n"
        "mode: 'projector+lora'   # quoted\n"
        "model: \"models/with space\"\n"
        "output_dir: out\n"
        "resume: true\n"
        "data:\n"
        "  train: t.jsonl\n"
        "  eval: ~\n"
        "  format: chat\n"
        "  template: alpaca_classic\n"
        "  max_seq_len: 1e3\n"  // integral float accepted for an int
        "  packing: True\n"
        "  shuffle: false\n"
        "  truncation: truncate\n"
        "lora: {r: 4, alpha: 8.5, dropout: 0, targets: [q_proj, v_proj], use_rslora: true, init: null}\n"
        "vision:\n"
        "  model: sig\n"
        "  select_layer: -1\n"
        "  max_pixels: 1000000\n"
        "projector:\n"
        "  type: linear\n"
        "optim:\n"
        "  lr: 2.0e-4\n"
        "  betas:\n"
        "    - 0.8\n"
        "    - 0.95\n"
        "  eps: 1e-6\n"
        "  weight_decay: .01\n"
        "schedule: {kind: linear, warmup_steps: 7, min_lr_ratio: 0.25}\n"
        "train:\n"
        "  batch_size: 2\n"
        "  max_steps: 12345678901\n"
        "  seed: 18446744073709551615\n"
        "  dump_grads: g.safetensors\n"
        "vision_unused_section_is_not_here: null\n";
    cfg_train c;
    // the last line is an unknown key: first check the error, then load without it
    int rc = load_text(&c, y, 0, NULL);
    CHECK(rc == -1 && strstr(err_get(), "t.yaml:35: unknown key vision_unused_section_is_not_here"), "got '%s'",
          err_get());
    cfg_free(&c);
    char *y2 = xstrdup(y);
    *strstr(y2, "vision_unused") = 0;
    rc = load_text(&c, y2, 0, NULL);
    free(y2);
    CHECK(rc == 0, "load: %s", err_get());
    if (rc) return;
    CHECK(cfg_validate(&c) == 0, "validate: %s", err_get());
    CHECK(!strcmp(c.mode, "projector+lora"), "mode %s", c.mode);
    CHECK(!strcmp(c.model, "models/with space") && c.resume == 1, "model/resume");
    CHECK(!c.data.eval && !strcmp(c.data.format, "chat") && !strcmp(c.data.template_, "alpaca_classic"), "data strs");
    CHECK(c.data.max_seq_len == 1000 && c.data.packing == 1 && c.data.shuffle == 0, "data ints");
    CHECK(!strcmp(c.data.truncation, "truncate"), "truncation");
    CHECK(c.lora.r == 4 && c.lora.alpha == 8.5f && c.lora.dropout == 0 && c.lora.use_rslora == 1 && !c.lora.init,
          "lora flow mapping");
    CHECK(c.lora.n_targets == 2 && !strcmp(c.lora.targets[0], "q_proj") && !strcmp(c.lora.targets[1], "v_proj"),
          "flow list");
    CHECK(!strcmp(c.vision.model, "sig") && c.vision.select_layer == -1 && c.vision.max_pixels == 1000000, "vision");
    CHECK(!strcmp(c.projector.type, "linear"), "projector");
    CHECK(c.optim.lr == 2.0e-4f && c.optim.beta1 == 0.8f && c.optim.beta2 == 0.95f && c.optim.eps == 1e-6f &&
              c.optim.weight_decay == 0.01f,
          "optim: lr %g b %g %g", c.optim.lr, c.optim.beta1, c.optim.beta2);
    CHECK(!strcmp(c.schedule.kind, "linear") && c.schedule.warmup_steps == 7 && c.schedule.min_lr_ratio == 0.25f,
          "schedule");
    CHECK(c.train.batch_size == 2 && c.train.max_steps == 12345678901LL && c.train.seed == UINT64_MAX &&
              !strcmp(c.train.dump_grads, "g.safetensors"),
          "train: max_steps %" PRId64 " seed %" PRIu64, c.train.max_steps, c.train.seed);
    CHECK(c.train.grad_accum == 1 && c.train.epochs == 1, "unset keys keep defaults");
    cfg_free(&c);

    // an empty file and empty sections give the defaults; anchors/aliases work
    rc = load_text(&c, "# nothing\n", 0, NULL);
    CHECK(rc == 0 && c.lora.r == 16, "empty file: %s", err_get());
    cfg_free(&c);
    rc = load_text(&c, "vision:\nlora:\n  targets: &t [k_proj]\n", 0, NULL);
    CHECK(rc == 0 && c.lora.n_targets == 1 && !strcmp(c.lora.targets[0], "k_proj"), "empty section: %s", err_get());
    cfg_free(&c);
    // a recursive alias is an error, not a hang
    rc = load_text(&c, "lora: &a {targets: *a}\n", 0, NULL);
    CHECK(rc == -1, "recursive alias must fail");
    cfg_free(&c);
}

// --- overrides

static void test_overrides(void) {
    char *ov[] = {
        "lora.r=8",                               // int
        "optim.lr=1e-4",                          // float
        "data.packing=true",                      // bool
        "model=other/model",                      // string
        "lora.targets=[q_proj, v_proj]",          // list
        "lora.init=adapters/a",                   // string, then null below
        "lora.init=null",                         // null
        "data.eval=",                             // empty value = null
        "train.seed=12345678901234567890",        // u64
        "train.max_steps=500",                    // i64
        "optim.betas=[0.85,0.99]",                // list of numbers
        "optim={eps: 1.0e-6, weight_decay: 0.1}",  // a section mapping
        "mode=projector",
        "vision.model=sig",
        "schedule.kind=constant",
    };
    cfg_train c;
    int rc = cfg_load(&c, "configs/tiny-lora.yaml", (int)(sizeof ov / sizeof ov[0]), ov);
    CHECK(rc == 0, "load: %s", err_get());
    if (rc) return;
    CHECK(c.lora.r == 8, "r %d", c.lora.r);
    CHECK(c.optim.lr == 1e-4f, "lr %g", c.optim.lr);
    CHECK(c.data.packing == 1, "packing");
    CHECK(!strcmp(c.model, "other/model"), "model %s", c.model);
    CHECK(c.lora.n_targets == 2 && !strcmp(c.lora.targets[1], "v_proj"), "targets");
    CHECK(!c.lora.init, "lora.init null");
    CHECK(!c.data.eval, "data.eval null");
    CHECK(c.train.seed == 12345678901234567890ULL, "seed %" PRIu64, c.train.seed);
    CHECK(c.train.max_steps == 500, "max_steps");
    CHECK(c.optim.beta1 == 0.85f && c.optim.beta2 == 0.99f, "betas");
    CHECK(c.optim.eps == 1e-6f && c.optim.weight_decay == 0.1f && c.optim.lr == 1e-4f, "section override");
    CHECK(!strcmp(c.mode, "projector") && !strcmp(c.schedule.kind, "constant"), "enums");
    CHECK(cfg_validate(&c) == 0, "validate: %s", err_get());
    // later overrides win; all-linear and comma lists
    CHECK(cfg_override(&c, "lora.targets=all-linear") == 0 && c.lora.n_targets == 7, "all-linear");
    CHECK(cfg_override(&c, "lora.targets=gate_proj,up_proj") == 0 && c.lora.n_targets == 2 &&
              !strcmp(c.lora.targets[0], "gate_proj") && !strcmp(c.lora.targets[1], "up_proj"),
          "comma list");
    CHECK(cfg_override(&c, "lora.targets=[all-linear]") == 0 && c.lora.n_targets == 7, "[all-linear]");
    CHECK(cfg_override(&c, "data.shuffle=false") == 0 && c.data.shuffle == 0, "bool false");
    CHECK(cfg_override(&c, "output_dir=runs/x y") == 0 && !strcmp(c.output_dir, "runs/x y"), "string with space");
    CHECK(cfg_override(&c, "output_dir=runs/a: b") == 0 && !strcmp(c.output_dir, "runs/a: b"), "path as written");
    CHECK(cfg_override(&c, "output_dir={x}") == 0 && !strcmp(c.output_dir, "{x}"), "path as written");
    CHECK(cfg_override(&c, "train.dump_grads=~") == 0 && !c.train.dump_grads, "~ is null");
    CHECK(cfg_override(&c, "resume=true") == 0 && c.resume == 1, "top-level bool");
    cfg_free(&c);

    // overrides alone (no YAML file)
    char *ov2[] = {"model=m", "output_dir=o", "data.train=t"};
    rc = cfg_load(&c, NULL, 3, ov2);
    CHECK(rc == 0 && cfg_validate(&c) == 0 && !c.config_path, "no yaml: %s", err_get());
    cfg_free(&c);
}

// --- errors with file:line

static void test_errors(void) {
    // the message format of the brief
    expect_load_error("model: m\noptim:\n  lr: abc\n", 0, NULL, ":3: optim.lr: expected a number, found 'abc'");
    // unknown key names the line, lists the section's keys and suggests the close one
    expect_load_error("model: m\noptim:\n  lr: 1e-3\n  lrr: 2\n", 0, NULL,
                      ":4: unknown key optim.lrr (valid keys of optim: lr, betas, eps, weight_decay, grad_clip; did "
                      "you mean optim.lr?)");
    expect_load_error("lr: 1\n", 0, NULL,
                      ":1: unknown key lr (valid top-level keys: mode, model, precision, weights, output_dir, resume, data, lora, vision, "
                      "projector, xattn, optim, schedule, train; did you mean optim.lr?)");
    expect_load_error("trian:\n  epochs: 2\n", 0, NULL,
                      ":1: unknown key trian (valid top-level keys: mode, model, precision, weights, output_dir, resume, data, lora, "
                      "vision, projector, xattn, optim, schedule, train; did you mean train?)");
    // wrong types
    expect_load_error("data:\n  packing: yes\n", 0, NULL, ":2: data.packing: expected true or false, found 'yes'");
    expect_load_error("lora:\n  r: [1, 2]\n", 0, NULL, ":2: lora.r: expected an integer, found a list");
    expect_load_error("model: {a: 1}\n", 0, NULL, ":1: model: expected a string, found a mapping");
    expect_load_error("optim: 5\n", 0, NULL, ":1: optim: expected a mapping of optim keys, found '5'");
    expect_load_error("- a\n- b\n", 0, NULL, ":1: expected a mapping of config keys at the top level, found a list");
    expect_load_error("mode: lroa\n", 0, NULL,
                      ":1: mode: expected one of lora, projector, projector+lora, xattn, xattn+lora, found 'lroa'");
    expect_load_error("precision: fp16\n", 0, NULL, ":1: precision: expected one of fp32, bf16, found 'fp16'");
    {
        cfg_train c;
        char *ov[] = {"precision=bf16"};
        CHECK(load_text(&c, REQUIRED, 1, ov) == 0 && cfg_validate(&c) == 0 && !strcmp(c.precision, "bf16"),
              "precision=bf16 override: %s", err_get());
        cfg_free(&c);
    }
    expect_load_error("optim:\n  betas: [0.9]\n", 0, NULL,
                      ":2: optim.betas: expected a list of two numbers [beta1, beta2], found a list of 1");
    expect_load_error("optim:\n  betas: [0.9,\n    x]\n", 0, NULL, ":3: optim.betas[1]: expected a number, found 'x'");
    expect_load_error("lora:\n  targets:\n    - q_proj\n    - qq_proj\n", 0, NULL,
                      ":4: lora.targets: unknown target 'qq_proj' (expected names among q_proj, k_proj, v_proj, "
                      "o_proj, gate_proj, up_proj, down_proj, or all-linear)");
    expect_load_error("lora:\n  targets: [q_proj, q_proj]\n", 0, NULL, ":2: lora.targets: 'q_proj' is listed twice");
    expect_load_error("model: ''\n", 0, NULL,
                      ":1: model: expected a non-empty string (write null for none), found ''");
    // bad numbers
    expect_load_error("lora:\n  r: 1.5\n", 0, NULL, ":2: lora.r: expected an integer, found '1.5'");
    expect_load_error("lora:\n  r: 3000000000\n", 0, NULL,
                      ":2: lora.r: expected an integer in [-2147483648, 2147483647], found '3000000000'");
    expect_load_error("optim:\n  lr: 1e999\n", 0, NULL, ":2: optim.lr: expected a number, found '1e999'");
    expect_load_error("optim:\n  lr: .nan\n", 0, NULL, ":2: optim.lr: expected a number, found '.nan'");
    expect_load_error("optim:\n  lr: 2e-4x\n", 0, NULL, ":2: optim.lr: expected a number, found '2e-4x'");
    expect_load_error("train:\n  seed: -1\n", 0, NULL, ":2: train.seed: expected a non-negative integer, found '-1'");
    expect_load_error("train:\n  epochs: null\n", 0, NULL, ":2: train.epochs: expected an integer, found null");
    // duplicate keys, at any level
    expect_load_error("optim:\n  lr: 1\n  lr: 2\n", 0, NULL, ":3: duplicate key optim.lr (first at line 2)");
    expect_load_error("model: a\ndata: {train: x}\nmodel: b\n", 0, NULL, ":3: duplicate key model (first at line 1)");
    // invalid YAML syntax
    cfg_train c;
    CHECK(load_text(&c, "model: m\noptim:\n  lr: 1\n bad: [\n", 0, NULL) == -1, "syntax error must fail");
    char want[700];
    snprintf(want, sizeof want, "%s/t.yaml:", tmp);
    CHECK(!strncmp(err_get(), want, strlen(want)) && strstr(err_get(), "invalid YAML:"), "got '%s'", err_get());
    cfg_free(&c);
    CHECK(load_text(&c, "model: m\n\tlr: 1\n", 0, NULL) == -1 && strstr(err_get(), "t.yaml:2: invalid YAML"),
          "tab: got '%s'", err_get());
    cfg_free(&c);
    expect_load_error("model: m\n---\nmodel: n\n", 0, NULL, ":3: expected one YAML document, found a second one");
    // a missing file names the path
    CHECK(cfg_load(&c, "/nonexistent/c.yaml", 0, NULL) == -1 && strstr(err_get(), "/nonexistent/c.yaml"),
          "missing file: '%s'", err_get());
    cfg_free(&c);

    // bad overrides
    struct {
        char *ov;
        const char *want;
    } bad[] = {
        {"optim.lr", "override 'optim.lr': expected dotted.key=value, e.g. optim.lr=1e-4"},
        {"=1", "override '=1': expected dotted.key=value, e.g. optim.lr=1e-4"},
        {"optim.lrr=1",
         "override 'optim.lrr=1': unknown key optim.lrr (valid keys of optim: lr, betas, eps, weight_decay, "
         "grad_clip; did you mean optim.lr?)"},
        {"optimm.lr=1",
         "override 'optimm.lr=1': unknown key optimm.lr (valid top-level keys: mode, model, precision, weights, output_dir, resume, "
         "data, lora, vision, projector, xattn, optim, schedule, train; did you mean optim?)"},
        {"optim.lr.x=1",
         "override 'optim.lr.x=1': unknown key optim.lr.x (valid keys of optim: lr, betas, eps, weight_decay, "
         "grad_clip)"},
        {"optim.lr=abc", "override 'optim.lr=abc': optim.lr: expected a number, found 'abc'"},
        {"lora.r=", "override 'lora.r=': lora.r: expected an integer, found null"},
        {"optim=1", "override 'optim=1': optim is a section: name a key inside it (e.g. optim.lr=...) or give a mapping"},
        {"train.epochs=1 ", NULL},  // trailing space is fine (YAML trims)
        {"lora.targets=[q_proj", NULL},
    };
    for (int i = 0; i < (int)(sizeof bad / sizeof bad[0]); i++) {
        char *ov[] = {bad[i].ov};
        int rc = load_text(&c, REQUIRED, 1, ov);
        if (!bad[i].want && !strcmp(bad[i].ov, "train.epochs=1 ")) {
            CHECK(rc == 0, "'%s': %s", bad[i].ov, err_get());
        } else if (!bad[i].want) {
            CHECK(rc == -1 && strstr(err_get(), "override 'lora.targets=[q_proj': invalid YAML"), "'%s': got '%s'",
                  bad[i].ov, err_get());
        } else {
            CHECK(rc == -1 && !strcmp(err_get(), bad[i].want), "'%s':\n  got  '%s'\n  want '%s'", bad[i].ov,
                  err_get(), bad[i].want);
        }
        cfg_free(&c);
    }
}

// --- validation

static void test_validate(void) {
    struct {
        char *ov;
        const char *want;  // substring of the message
    } cases[] = {
        {"lora.r=0", "lora.r: expected an integer > 0, found 0"},
        {"lora.alpha=0", "lora.alpha: expected a number > 0"},
        {"lora.dropout=1", "lora.dropout: expected 0 <= dropout < 1, found 1"},
        {"lora.dropout=-0.1", "lora.dropout: expected 0 <= dropout < 1"},
        {"lora.targets=[]", "lora.targets: expected at least one target"},
        {"optim.lr=0", "optim.lr: expected a number > 0, found 0"},
        {"optim.lr=-1e-4", "optim.lr: expected a number > 0"},
        {"optim.betas=[0.9, 1.0]", "optim.betas[1]: expected 0 <= beta2 < 1, found 1"},
        {"optim.eps=0", "optim.eps: expected a number > 0"},
        {"optim.weight_decay=-1", "optim.weight_decay: expected a number >= 0"},
        {"optim.grad_clip=-1", "optim.grad_clip: expected a number >= 0"},
        {"schedule.warmup_steps=-1", "schedule.warmup_steps: expected an integer >= 0"},
        {"schedule.warmup_ratio=1", "schedule.warmup_ratio: expected 0 <= warmup_ratio < 1"},
        {"schedule.min_lr_ratio=1.5", "schedule.min_lr_ratio: expected 0 <= min_lr_ratio <= 1"},
        {"train.batch_size=0", "train.batch_size: expected an integer >= 1, found 0"},
        {"train.grad_accum=0", "train.grad_accum: expected an integer >= 1"},
        {"train.epochs=0", "train.epochs: expected an integer >= 1"},
        {"train.max_steps=0", "train.max_steps: expected -1 (use epochs) or an integer >= 1, found 0"},
        {"train.save_every=-1", "train.save_every: expected an integer >= 0"},
        {"train.keep_last=-2", "train.keep_last: expected an integer >= 0"},
        {"train.log_every=0", "train.log_every: expected an integer >= 1"},
        {"train.threads=-1", "train.threads: expected an integer >= 0"},
        {"data.max_seq_len=1", "data.max_seq_len: expected an integer >= 2, found 1"},
        {"vision.max_pixels=0", "vision.max_pixels: expected an integer > 0"},
        {"mode=projector", "vision.model: required in projector mode"},
        {"model=null", "model: required"},
        {"output_dir=null", "output_dir: required"},
        {"data.train=null", "data.train: required"},
    };
    for (int i = 0; i < (int)(sizeof cases / sizeof cases[0]); i++) {
        cfg_train c;
        char *ov[] = {cases[i].ov};
        int rc = load_text(&c, REQUIRED, 1, ov);
        CHECK(rc == 0, "'%s' loads: %s", cases[i].ov, err_get());
        if (rc) continue;
        rc = cfg_validate(&c);
        CHECK(rc == -1 && strstr(err_get(), cases[i].want) && strstr(err_get(), "t.yaml: "), "'%s': got '%s'",
              cases[i].ov, err_get());
        cfg_free(&c);
    }
    // projector mode does not look at LoRA hyperparameters; vision.features can stand in for the model
    cfg_train c;
    char *ok[] = {"mode=projector", "vision.features=f.h5", "lora.r=0"};
    CHECK(load_text(&c, REQUIRED, 3, ok) == 0 && cfg_validate(&c) == 0, "projector ok: %s", err_get());
    cfg_free(&c);
    // a config changed in code is validated too (targets, enums)
    CHECK(load_text(&c, REQUIRED, 0, NULL) == 0, "load");
    free(c.lora.targets[0]);
    c.lora.targets[0] = xstrdup("bogus");
    CHECK(cfg_validate(&c) == -1 && strstr(err_get(), "unknown target 'bogus'"), "got '%s'", err_get());
    free(c.schedule.kind);
    c.schedule.kind = xstrdup("exp");
    CHECK(cfg_validate(&c) == -1 && strstr(err_get(), "schedule.kind: expected one of cosine, linear, constant"),
          "got '%s'", err_get());
    cfg_free(&c);
}

// --- JSON round trip

static void test_json(void) {
    char *ov[] = {"train.seed=18446744073709551557", "lora.targets=[v_proj,q_proj]", "optim.lr=3.3e-5",
                  "model=\"a \\\"quoted\\\" path é\"", "schedule.warmup_ratio=0.03", "lora.init=null",
                  "train.max_steps=9007199254740993", "vision.model=v", "optim.betas=[0.91, 0.98]"};
    cfg_train a, b;
    int rc = cfg_load(&a, "configs/tiny-lora.yaml", (int)(sizeof ov / sizeof ov[0]), ov);
    CHECK(rc == 0, "load: %s", err_get());
    if (rc) return;
    CHECK(!strcmp(a.model, "a \"quoted\" path é"), "model '%s'", a.model);
    char *js = cfg_to_json(&a);
    CHECK(strstr(js, "\"lr\":\t3.3e-05") || strstr(js, "\"lr\":\t3.3e-5"), "shortest float text in %s", js);
    CHECK(strstr(js, "\"init\":\tnull"), "null in JSON");
    rc = cfg_from_json(&b, js, "state.json");
    CHECK(rc == 0, "from_json: %s\n%s", err_get(), js);
    if (!rc) {
        const char *d = cfg_first_diff(&a, &b);
        CHECK(!d, "round trip differs at %s", d);
        CHECK(b.train.seed == 18446744073709551557ULL && b.train.max_steps == 9007199254740993LL,
              "64-bit ints exact: %" PRIu64 " %" PRId64, b.train.seed, b.train.max_steps);
        CHECK(!strcmp(b.config_path, "state.json"), "config_path names the JSON source");
        // the diff notices a change
        CHECK(cfg_override(&b, "train.max_steps=100") == 0, "override");
        d = cfg_first_diff(&a, &b);
        CHECK(d && !strcmp(d, "train.max_steps"), "diff %s", d ? d : "(none)");
        cfg_free(&b);
    }
    free(js);
    cfg_free(&a);

    // defaults round-trip too
    cfg_defaults(&a);
    js = cfg_to_json(&a);
    rc = cfg_from_json(&b, js, "d.json");
    CHECK(rc == 0 && !cfg_first_diff(&a, &b), "defaults round trip");
    free(js);
    cfg_free(&a);
    cfg_free(&b);

    // errors name the JSON source
    CHECK(cfg_from_json(&b, "{\"optim\": {\"lr\": \"x\"}}", "ckpt/state.json") == -1 &&
              !strcmp(err_get(), "ckpt/state.json: optim.lr: expected a number, found 'x'"),
          "got '%s'", err_get());
    CHECK(cfg_from_json(&b, "{\"optim\": {\"lrr\": 1}}", "s.json") == -1 && strstr(err_get(), "s.json: unknown key optim.lrr"),
          "got '%s'", err_get());
    CHECK(cfg_from_json(&b, "{\"optim\": {", "s.json") == -1 && strstr(err_get(), "s.json: invalid JSON"), "got '%s'",
          err_get());
    CHECK(cfg_from_json(&b, "{\"lora\": {\"r\": 4}}", "s.json") == 0 && b.lora.r == 4 && b.lora.n_targets == 7,
          "missing keys keep defaults");
    cfg_free(&b);
}

// --- the learning-rate schedule

// Hand-computed: lr 1e-3, warmup 4, N 12, m 0: warmup 0.25e-3, 0.5e-3, 0.75e-3, 1e-3, then
// p = (n-4)/8; linear at n=8: p = 0.5 -> 0.5e-3; cosine at n=8: (1+cos(pi/2))/2 = 0.5 -> 0.5e-3;
// with m = 0.2, cosine at n=10: p = 0.75, f = (1+cos(0.75pi))/2 = 0.1464466, lr = 0.2+0.8f = 0.3171573e-3.
static void test_lr_hand(void) {
    cfg_train c;
    cfg_defaults(&c);
    c.optim.lr = 1e-3f;
    c.schedule.warmup_steps = 4;
    const float warm[4] = {0.25e-3f, 0.5e-3f, 0.75e-3f, 1e-3f};
    const char *kinds[3] = {"cosine", "linear", "constant"};
    for (int k = 0; k < 3; k++) {
        free(c.schedule.kind);
        c.schedule.kind = xstrdup(kinds[k]);
        for (int n = 0; n < 4; n++)
            CHECK(fabsf(cfg_lr_at(&c, n, 12) - warm[n]) < 1e-9f, "%s warmup n=%d: %g", kinds[k], n, cfg_lr_at(&c, n, 12));
        CHECK(fabsf(cfg_lr_at(&c, 4, 12) - 1e-3f) < 1e-9f, "%s n=W starts at lr", kinds[k]);
        float want8 = k == 2 ? 1e-3f : 0.5e-3f;
        CHECK(fabsf(cfg_lr_at(&c, 8, 12) - want8) < 1e-9f, "%s n=8: %g want %g", kinds[k], cfg_lr_at(&c, 8, 12), want8);
    }
    free(c.schedule.kind);
    c.schedule.kind = xstrdup("cosine");
    c.schedule.min_lr_ratio = 0.2f;
    CHECK(fabsf(cfg_lr_at(&c, 10, 12) - 0.3171573e-3f) < 1e-9f, "cosine m=0.2 n=10: %.9g", cfg_lr_at(&c, 10, 12));
    // N == warmup: the warmup covers the run; past it the schedule sits at its end (lr·m)
    c.schedule.warmup_steps = 5;
    CHECK(fabsf(cfg_lr_at(&c, 4, 5) - 1e-3f) < 1e-9f, "N == W, last step");
    CHECK(fabsf(cfg_lr_at(&c, 5, 5) - 0.2e-3f) < 1e-9f && isfinite(cfg_lr_at(&c, 5, 5)), "N == W guard");
    // warmup_ratio: ceil(0.03 * 1000) = 30 exactly (float 0.03 is 0.0299999993), ceil(0.03 * 101) = 4
    c.schedule.warmup_steps = 0;
    c.schedule.warmup_ratio = 0.03f;
    CHECK(cfg_warmup_steps(&c, 1000) == 30, "ratio 0.03 of 1000: %" PRId64, cfg_warmup_steps(&c, 1000));
    CHECK(cfg_warmup_steps(&c, 101) == 4, "ratio 0.03 of 101: %" PRId64, cfg_warmup_steps(&c, 101));
    c.schedule.warmup_ratio = 0.1f;
    CHECK(cfg_warmup_steps(&c, 100) == 10, "ratio 0.1 of 100: %" PRId64, cfg_warmup_steps(&c, 100));
    c.schedule.warmup_steps = 7;
    CHECK(cfg_warmup_steps(&c, 100) == 7, "warmup_steps wins over warmup_ratio");
    cfg_free(&c);
}

// Table computed once with Python (numpy float32 inputs, double math) from the docs/numerics.md
// formula: n < W: lr*(n+1)/W; else p = (n-W)/(N-W), lr*(m + (1-m)*f(p)),
// f = (1+cos(pi p))/2 | 1-p | 1.
static void test_lr_table(void) {
    static const double cos_t[13] = {3.333333492e-04, 6.666666983e-04, 1.000000047e-03, 1.000000047e-03,
                                     9.779754788e-04, 9.140576910e-04, 8.145034025e-04, 6.890576807e-04,
                                     5.500000269e-04, 4.109423730e-04, 2.854966512e-04, 1.859423627e-04,
                                     1.220245749e-04};  // lr 1e-3, cosine, W 3, m 0.1, N 13
    static const double lin_t[10] = {5.000000237e-04, 1.000000047e-03, 1.000000047e-03, 9.000000431e-04,
                                     8.000000387e-04, 7.000000344e-04, 6.000000300e-04, 5.000000256e-04,
                                     4.000000212e-04, 3.000000169e-04};  // linear, W 2, m 0.2, N 10
    static const double const_t[8] = {2.500000119e-04, 5.000000237e-04, 7.500000356e-04, 1.000000047e-03,
                                      1.000000047e-03, 1.000000047e-03, 1.000000047e-03,
                                      1.000000047e-03};  // constant, W 4, m 0.5, N 8
    static const int ratio_n[5] = {0, 9, 10, 55, 99};
    static const double ratio_t[5] = {1.999999949e-05, 1.999999949e-04, 1.999999949e-04, 9.999999747e-05,
                                      6.091729655e-08};  // lr 2e-4, cosine, warmup_ratio 0.1 of N 100, m 0
    struct {
        const char *kind;
        float lr, m;
        int W, N, count;
        const double *t;
    } tabs[3] = {{"cosine", 1e-3f, 0.1f, 3, 13, 13, cos_t},
                 {"linear", 1e-3f, 0.2f, 2, 10, 10, lin_t},
                 {"constant", 1e-3f, 0.5f, 4, 8, 8, const_t}};
    cfg_train c;
    cfg_defaults(&c);
    for (int k = 0; k < 3; k++) {
        free(c.schedule.kind);
        c.schedule.kind = xstrdup(tabs[k].kind);
        c.optim.lr = tabs[k].lr;
        c.schedule.min_lr_ratio = tabs[k].m;
        c.schedule.warmup_steps = tabs[k].W;
        for (int n = 0; n < tabs[k].count; n++) {
            double got = cfg_lr_at(&c, n, tabs[k].N);
            CHECK(fabs(got - tabs[k].t[n]) <= 1e-6 * tabs[k].t[n], "%s n=%d: %.9e want %.9e", tabs[k].kind, n, got,
                  tabs[k].t[n]);
        }
    }
    free(c.schedule.kind);
    c.schedule.kind = xstrdup("cosine");
    c.optim.lr = 2e-4f;
    c.schedule.min_lr_ratio = 0;
    c.schedule.warmup_steps = 0;
    c.schedule.warmup_ratio = 0.1f;
    for (int i = 0; i < 5; i++) {
        double got = cfg_lr_at(&c, ratio_n[i], 100);
        CHECK(fabs(got - ratio_t[i]) <= 1e-5 * ratio_t[i], "ratio n=%d: %.9e want %.9e", ratio_n[i], got, ratio_t[i]);
    }
    cfg_free(&c);
}

int main(void) {
    tmp = test_tmpdir("config");
    RUN(test_defaults);
    RUN(test_committed_configs);
    RUN(test_yaml_features);
    RUN(test_overrides);
    RUN(test_errors);
    RUN(test_validate);
    RUN(test_json);
    RUN(test_lr_hand);
    RUN(test_lr_table);
    return test_summary();
}
