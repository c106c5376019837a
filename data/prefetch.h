// prefetch.h — background image loading: one worker thread decodes and preprocesses the next
// batch of images (img_preprocess: decode, bicubic resize, rescale, normalize, CHW) while the
// caller computes on the current one. Double-buffered; the pixels equal img_preprocess's
// exactly (the same function, only on another thread), so results are deterministic.
//
//   data_prefetch *pf = data_prefetch_new(S, &norm, max_pixels, max_batch);
//   data_prefetch_submit(pf, paths0, n0);                // starts loading batch 0
//   for (...) {
//       const float *pix;                                 // [n, 3, S, S]
//       int n = data_prefetch_wait(pf, &pix);             // batch k (-1 + err_set on a bad image)
//       if (more) data_prefetch_submit(pf, paths1, n1);   // batch k+1 loads in the background
//       ... compute on pix (valid until the next data_prefetch_wait) ...
//   }
//   data_prefetch_free(pf);                               // joins the worker (clean shutdown)
//
// Legend: S = image size (the model's square input), n <= max_batch images per batch.
#ifndef LORAC_PREFETCH_H
#define LORAC_PREFETCH_H

#include <stdint.h>

#include "image.h"

typedef struct data_prefetch data_prefetch;

// Starts the worker. norm NULL = SigLIP defaults; max_pixels as img_load_rgb. NULL + err_set
// when the thread cannot be started or the sizes are bad.
data_prefetch *data_prefetch_new(int size, const img_norm *norm, int64_t max_pixels, int max_batch);
// Queues a batch of n (1..max_batch) image paths (copied). At most one batch may be pending
// (submitted and not yet waited for): submitting a second one is an error.
// 0, or -1 + err_set.
int data_prefetch_submit(data_prefetch *p, const char *const *paths, int n);
// Waits for the pending batch; *pixels = [n, 3, S, S], valid until the next call of
// data_prefetch_wait. Returns n, or -1 + err_set (the first bad image's message, naming the
// file; or nothing pending).
int data_prefetch_wait(data_prefetch *p, const float **pixels);
// Stops and joins the worker (after it finishes the image in progress); frees everything.
// NULL is fine.
void data_prefetch_free(data_prefetch *p);

#endif
