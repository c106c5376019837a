// vision.h — the multimodal path shared by `lorac train` (projector modes), `lorac eval
// --vision` and `lorac generate --vision`: image files -> SigLIP features (frozen, no grad)
// -> the projector (on the tape) -> spliced into the Llama input embeddings at the image rows.
//
// Legend (ag.h): n rows of a batch, P visual rows per image, Cv vision hidden size, Ct text
// hidden size, m visual rows of a batch (P per image).
//
// Where an image goes (docs/formats.md "Rendering"): a caption record is <|begin_of_text|>,
// the P visual rows, the caption, <|end_of_text|>; a chat record has them where its user
// message says `<image>`. Batches (data/batch.h) hold P rows with id -1 there; the visual
// rows get the projector's outputs, every other row the token embedding.
//
// Bad images in training: images are decoded when their micro-batch is built (not at load
// time, so a large data set starts at once). A file that fails to decode stops the run with
// one error `DATA.jsonl:LINE: image 'PATH': <why>`; with data.skip_bad_lines the record
// stays in the batch (the batch layout, and so resume, are unchanged) but contributes no
// loss (all its targets are dropped), its visual rows are zeros, and it is counted and
// reported once (`warning: ... skipped`).
#ifndef LORAC_VISION_H
#define LORAC_VISION_H

#include <stdint.h>

#include "ag.h"
#include "batch.h"
#include "featcache.h"
#include "image.h"
#include "llama.h"
#include "projector.h"
#include "records.h"
#include "siglip.h"
#include "xattn.h"

// --- the frozen vision tower + its preprocessing

typedef struct vision_tower {
    siglip_model sig;
    img_norm norm;         // mean/std/rescale of the folder's preprocessor (SigLIP defaults)
    int size;              // S: images are resized to S×S
    int select_layer;      // as in the config / projector_config.json
    int P, C;              // patches per image, vision hidden size (Cv)
    int64_t max_pixels;    // decoded images larger than this are rejected
    int max_batch;         // images per siglip_features call
    ag_ctx ctx;            // the tower's own no-grad arena
    float *pixels;         // [max_batch, 3, S, S]
    int failed;            // after vision_features: index of the first undecodable image, or -1
} vision_tower;

// Loads DIR (SigLIP folder) in the given precision and weight storage and checks select_layer.
// 0, or -1 + err_set.
int vision_open(vision_tower *v, const char *dir, int select_layer, int64_t max_pixels, int max_batch,
                ag_precision precision, ag_weights weights);
void vision_close(vision_tower *v);
// For eval/generate: loads the projector of proj_dir, opens the tower of vision_dir (SigLIP
// folder) at the projector's select_layer and in m's precision (one image per call, default
// max_pixels) and checks that projector, tower and the text model m (loaded from folder
// `model`, named in messages) fit together. 0, or -1 + err_set; on failure the caller still frees both (vision_close,
// projector_free).
int vision_open_projected(vision_tower *v, projector *p, const char *vision_dir, const char *proj_dir,
                          const llama_model *m, const char *model);

// The cross-attention blocks of a projector folder written in mode xattn / xattn+lora:
// 1 when proj_dir has xattn_config.json (loaded into xa and checked against m), 0 when it
// has none (a prepend-fusion projector), -1 + err_set on a bad folder.
int vision_open_xattn(xattn *xa, const char *proj_dir, const llama_model *m);

// Features of n image files -> out [n·P, Cv]. With bad == NULL an undecodable file is an
// error (-1 + err_set naming it, v->failed = its index); otherwise bad[i] is set to 1 for
// it (its rows are zeros; a warning naming it goes to stderr) and the others are still
// computed.
int vision_features(vision_tower *v, const char *const *paths, int n, float *out, uint8_t *bad);

// --- splicing (on the tape)

// As vision_embed with feats [m, Cv] already pooled to the m visual rows (no pooling here).
ag_tensor *vision_embed_pooled(ag_ctx *c, const llama_model *lm, const projector *p, const int32_t *ids,
                               int64_t n, const float *feats, const int32_t *rows, int64_t m);
// The projector's output [rows, Ct] of visual rows feats [rows, Cv] already pooled (copied to the
// arena; no grad into them).
ag_tensor *vision_project_pooled(ag_ctx *c, const projector *p, const float *feats, int64_t rows);

// Input embeddings [n, Ct]: the token embedding of ids[n] (ids < 0 on visual rows), with
// rows[j] (j < m, distinct; R = projector_rows(p) per image) replaced by the projector's
// output for the images' patch features feats [m/R·P, Cv] (copied to the arena; no grad),
// pooled to R rows per image first when the projector pools. Gradients flow into the
// projector (and its linear pool) only. NULL + err_set on bad shapes.
ag_tensor *vision_embed(ag_ctx *c, const llama_model *lm, const projector *p, const int32_t *ids,
                        int64_t n, const float *feats, const int32_t *rows, int64_t m);

// Forward + backward of one micro-batch with images: feats [images·P, Cv] holds the visual
// features of the batch's sequences that have an image, in sequence order. targets [n]
// (NULL: b->targets) lets the caller drop a record's loss. *loss += Σ nll / norm;
// gradients accumulate into the projector (and the LoRA factors when lora != NULL). Resets c.
int vision_micro_step(ag_ctx *c, const llama_model *m, const llama_lora *lora, const projector *p,
                      const data_batch *b, const float *feats, const int32_t *targets, float norm,
                      double *loss);

// --- cross-attention fusion (mode xattn / xattn+lora; model/xattn.h)
//
// The image takes no rows of the sequence: every row of a record with an image attends that
// image's R = projector_rows(p) visual rows (its patch features, pooled when the projector
// pools, then projected) in each cross-attention block.

// The projected visual rows [nimg·R, Ct] of nimg images' patch features feats [nimg·P, Cv]
// (pooled first when the projector pools), on the tape; NULL when nimg is 0 (or on error).
ag_tensor *vision_xattn_rows(ag_ctx *c, const projector *p, const float *feats, int nimg);
// llama_forward (ids [n], pos, kv_begin) with the blocks of xa after their layers; row i
// attends image img[i] (-1: none) of feats [nimg·P, Cv]. Returns h [n, C].
ag_tensor *vision_xattn_forward(ag_ctx *c, const llama_model *m, const llama_lora *lora, const projector *p,
                                const xattn *xa, const int32_t *ids, int64_t n, const int32_t *pos,
                                const int32_t *kv_begin, const float *feats, int nimg, const int32_t *img);
// vision_xattn_forward with the projected visual rows vis [nimg·R, Ct] given (NULL when nimg is 0).
ag_tensor *vision_xattn_forward_vis(ag_ctx *c, const llama_model *m, const llama_lora *lora, const xattn *xa,
                                    ag_tensor *vis, int R, const int32_t *ids, int64_t n, const int32_t *pos,
                                    const int32_t *kv_begin, int nimg, const int32_t *img);
// vision_micro_step for the cross-attention fusion: the batch has no visual rows; feats
// [images·P, Cv] as there. Gradients accumulate into the projector, the blocks (and LoRA).
int vision_xattn_micro_step(ag_ctx *c, const llama_model *m, const llama_lora *lora, const projector *p,
                            const xattn *xa, const data_batch *b, const float *feats, const int32_t *targets,
                            float norm, double *loss);

// --- where features come from (the tower, a feature cache, a test)

// Writes the P visual rows of record r's image into out [P, Cv]. 0, or -1 + err_set.
typedef int (*vision_feature_fn)(void *user, const data_record *r, float *out);
typedef struct vision_source {
    vision_feature_fn fn;
    void *user;
    int P, Cv;
} vision_source;

// A source computing the features of r->image with the tower (errors name the image file).
vision_source vision_tower_source(vision_tower *v);
// A source reading r->image_ref's row of a feature cache (`lorac prepare`).
vision_source vision_cache_source(data_fc *fc);

#endif
