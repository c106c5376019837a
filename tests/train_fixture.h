// train_fixture.h — the batches and LoRA factors stored in tests/fixtures/train_ref.safetensors
// (tests/gen_train.py), for the tests that replay them (test_train.c, test_bf16.c).
//
//   data_batch b = trainfx_batch(fx, "b1");                 // <prefix>.ids/.pos/.begin/.targets
//   trainfx_lora(&adapter, &model.cfg, fx, "init");          // r 4, alpha 8, all seven targets
//   data_batch v = trainfx_vision_batch(fx);                 // vision_train_ref: with image rows
#ifndef LORAC_TRAIN_FIXTURE_H
#define LORAC_TRAIN_FIXTURE_H

#include "batch.h"
#include "fixture.h"
#include "lora.h"

// A data_batch over the fixture's arrays named <prefix>.ids/.pos/.begin/.targets.
static inline data_batch trainfx_batch(fixture *fx, const char *prefix) {
    data_batch b = {0};
    char k[64];
    long n = 0;
    snprintf(k, sizeof k, "%s.ids", prefix);
    b.ids = (int32_t *)fixture_i32(fx, k, &n);
    b.n = n;
    snprintf(k, sizeof k, "%s.pos", prefix);
    b.pos = (int32_t *)fixture_i32(fx, k, NULL);
    snprintf(k, sizeof k, "%s.begin", prefix);
    b.kv_begin = (int32_t *)fixture_i32(fx, k, NULL);
    snprintf(k, sizeof k, "%s.targets", prefix);
    b.targets = (int32_t *)fixture_i32(fx, k, NULL);
    for (long i = 0; i < n; i++) b.n_supervised += b.targets && b.targets[i] >= 0;
    return b;
}

// The packed batch with image rows of tests/fixtures/vision_train_ref.safetensors
// (tests/gen_vision_train.py): ids/pos/begin/targets and image_row (heap, the caller frees).
static inline data_batch trainfx_vision_batch(fixture *fx) {
    data_batch b = {0};
    long n = 0, ns = 0;
    b.ids = (int32_t *)fixture_i32(fx, "ids", &n);
    b.n = n;
    b.pos = (int32_t *)fixture_i32(fx, "pos", NULL);
    b.kv_begin = (int32_t *)fixture_i32(fx, "begin", NULL);
    b.targets = (int32_t *)fixture_i32(fx, "targets", NULL);
    const int32_t *ir = fixture_i32(fx, "image_row", &ns);
    b.nseq = (int)ns;
    b.image_row = xcalloc((size_t)(ns ? ns : 1), sizeof *b.image_row);
    for (long s = 0; s < ns; s++) b.image_row[s] = ir[s];
    for (long i = 0; i < n; i++) b.n_supervised += b.targets && b.targets[i] >= 0;
    return b;
}

// A LoRA (r 4, alpha 8, no dropout, all seven projections) holding the fixture's factors
// <prefix>.<PEFT key>. -1 when one is missing or has another size.
static inline int trainfx_lora(lora_adapter *a, const hf_llama_config *mc, fixture *fx, const char *prefix) {
    lora_config lc = {.r = 4, .alpha = 8, .dropout = 0, .targets = (1u << LLAMA_NPROJ) - 1};
    if (lora_create(a, mc, &lc, 1) != 0) return -1;
    for (int i = 0; i < a->params.n; i++) {
        char k[256];
        snprintf(k, sizeof k, "%s.%s", prefix, a->params.t[i]->name);
        long n = 0;
        const float *d = fixture_f32(fx, k, &n);
        if (!d || n != a->params.t[i]->numel) return -1;
        memcpy(a->params.t[i]->data, d, (size_t)n * sizeof(float));
    }
    return 0;
}

#endif
