// fuzz_image.c — image decoding (data/image.c): JPEG (libjpeg), PNG, GIF, BMP, and the
// pixel-count limit; a decoded image is also resized (PIL bicubic) to 16 x 16 and normalized.
// Input: the image file's bytes. The pixel limit is 4 Mpixels (libFuzzer's 2 GB memory cap).
#include "fuzz_common.h"
#include "image.h"

int FUZZ_ENTRY(const uint8_t *data, size_t size) {
    img_u8 im;
    if (img_decode_rgb("fuzz.img", data, size, 4 << 20, &im) == 0) {
        if (im.w <= 0 || im.h <= 0 || (int64_t)im.w * im.h > (4 << 20)) abort();
        float chw[3 * 16 * 16];
        if (img_preprocess_image(&im, 16, NULL, chw) != 0) abort();
        img_free(&im);
    }
    return 0;
}
