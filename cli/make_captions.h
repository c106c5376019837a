// make_captions.h — the synthetic image-caption demo data set (`lorac make-tiny --kind
// captions`): PNG images of one simple shape (circle, square, triangle) in one of six colours,
// small or large, on the left/right/top/bottom/center of a white or black background, with a
// caption saying exactly that ("a large red circle on the left of a white background");
// or, style simple, one large shape (in one of the five places) on white, captioned "a red circle" ("an orange
// square"): the set `make demo-vision` learns from.
// Deterministic for a seed; the eval images are all different from the training images.
#ifndef LORAC_MAKE_CAPTIONS_H
#define LORAC_MAKE_CAPTIONS_H

#include <stdint.h>

// Writes OUT/images/{train,eval}_NNNNN.png (size x size RGB), OUT/train.jsonl and
// OUT/eval.jsonl ({"image": "images/train_00000.png", "caption": "..."} per line), assembled
// in "OUT.tmp.<pid>" and renamed into place (an existing non-empty OUT only with force).
// style: CAPTIONS_FULL or CAPTIONS_SIMPLE. 0, or -1 + err_set.
enum { CAPTIONS_FULL, CAPTIONS_SIMPLE };
int make_captions(const char *out, int n_train, int n_eval, int size, int style, uint64_t seed, int force);

// `lorac make-tiny --kind captions --out DIR [--n N] [--eval N] [--size S] [--style full|simple]
// [--seed S] [--force]`
// (called by cmd_make_tiny). Exit status as cli.h.
int cmd_make_captions(int argc, char **argv);

#endif
