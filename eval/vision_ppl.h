// vision_ppl.h — perplexity over records with images (docs/numerics.md "Perplexity"): the
// sliding-window perplexity of ppl.h with each record's image spliced in by the projector
// (data/vision.h), or attended through the cross-attention blocks.
#ifndef LORAC_VISION_PPL_H
#define LORAC_VISION_PPL_H

#include "ppl.h"
#include "vision.h"

// As eval_perplexity, over the rows of each record with its P visual rows included
// (windows of M rows, stride S, counting image rows; only supervised tokens are scored,
// each predicted from the context inside its window). Records with an image need src and p
// (src NULL: such a record is an error naming its line). A thin wrapper of
// eval_perplexity_img (eval/ppl.h) whose image hook is src + vision_embed.
int vision_perplexity(ag_ctx *c, const llama_model *m, const llama_lora *lora, const vision_source *src,
                      const projector *p, const data_set *ds, int64_t M, int64_t S,
                      int64_t batch_rows, eval_result *res, eval_progress_fn progress, void *user);
// The same with the cross-attention blocks xa (NULL: as vision_perplexity): a record's image
// takes no rows; the windows count and score its tokens only.
int vision_perplexity_xattn(ag_ctx *c, const llama_model *m, const llama_lora *lora, const vision_source *src,
                            const projector *p, const xattn *xa, const data_set *ds, int64_t M, int64_t S,
                            int64_t batch_rows, eval_result *res, eval_progress_fn progress, void *user);

#endif
