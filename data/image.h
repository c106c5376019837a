// image.h — image decoding and SigLIP preprocessing: the only place in lorac that decodes
// images. Pixels equal PIL 9.4's Image.open(path).convert("RGB") (JPEG through libjpeg-turbo
// with PIL's decoder settings; PNG and BMP through stb_image; GIF first frame and 16-bit BMP
// by small decoders of our own with PIL's rules), resize equals PIL's Image.resize(...,
// BICUBIC), and img_preprocess equals the Hugging Face SigLIP image processor (resize,
// rescale, normalize).
//
// Dimension legend: H, W image height and width; S the square model input size.
#ifndef LORAC_IMAGE_H
#define LORAC_IMAGE_H

#include <stddef.h>
#include <stdint.h>

// PIL's default decompression-bomb limit (Image.MAX_IMAGE_PIXELS); max_pixels = 0 means this.
#define IMG_DEFAULT_MAX_PIXELS 89478485LL

typedef struct img_u8 {
    int w, h;
    unsigned char *rgb;   // [H][W][3] RGB8 interleaved, malloc'd
} img_u8;

// Decodes JPEG (baseline/progressive; gray, YCbCr/RGB, CMYK/YCCK), PNG (1..16 bit, gray,
// gray+alpha, RGB, RGBA, palette, interlaced), GIF (first frame) and BMP (1/4/8/16/24/32 bit,
// not RLE) into RGB8 exactly as PIL's open + convert("RGB"); no EXIF rotation, no ICC/gamma.
// Returns 0, or -1 + err_set naming the file (missing/empty/truncated/corrupt file,
// unsupported format such as WebP/TIFF/RLE BMP, or more than max_pixels pixels;
// max_pixels 0 = IMG_DEFAULT_MAX_PIXELS, < 0 = no limit). On error out is {0, 0, NULL}.
int img_load_rgb(const char *path, int64_t max_pixels, img_u8 *out);
// Same from bytes already in memory; name is used in error messages only.
int img_decode_rgb(const char *name, const unsigned char *data, size_t len, int64_t max_pixels,
                   img_u8 *out);
void img_free(img_u8 *im);

// PIL Image.resize((w, h), Image.BICUBIC) on RGB8: cubic kernel a = -0.5, support scaled by
// the shrink factor, 8-bit fixed-point coefficients, horizontal pass then vertical, a pass
// skipped when its dimension is unchanged. dst->rgb is malloc'd. -1 + err_set on bad sizes.
int img_resize_bicubic(const img_u8 *src, int w, int h, img_u8 *dst);

typedef struct img_norm {
    float mean[3], std[3];   // per channel, as float32 (numpy casts them to the image dtype)
    double rescale;          // 1/255 (a Python float, so kept in double)
} img_norm;
img_norm img_norm_siglip(void);   // mean = std = 0.5, rescale 1/255

// Converts RGB8 [H][W][3] to CHW float [3][H][W] as transformers' rescale + normalize:
// x = float32(double(v) * rescale); out = (x - mean[c]) / std[c] in float32.
void img_normalize_chw(float *chw, const img_u8 *im, const img_norm *norm);

// Resize an already decoded image to S x S and normalize into chw [3][S][S] (norm NULL =
// SigLIP defaults). -1 + err_set on a bad size.
int img_preprocess_image(const img_u8 *im, int size, const img_norm *norm, float *chw);

// Full SigLIP preprocessing: load, resize to size x size, rescale, normalize, CHW.
// chw: [3][S][S]. norm NULL = img_norm_siglip(). -1 + err_set naming the file.
int img_preprocess(const char *path, int size, const img_norm *norm, int64_t max_pixels,
                   float *chw);

#endif
