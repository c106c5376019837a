// image.c — decoding (JPEG via libjpeg-turbo, PNG/BMP via stb_image, GIF and 16-bit BMP by
// small decoders of our own), PIL-exact bicubic resize and SigLIP normalization. See image.h.
//
// Exactness notes (PIL 9.4 is the reference):
//   - JPEG: PIL's JpegDecode leaves libjpeg's defaults (JDCT_ISLOW, fancy upsampling, no
//     scaling) and only sets out_color_space (RGB or GRAYSCALE), so we do the same.
//     CMYK/YCCK JPEGs are read as PIL does (inverted Adobe CMYK, then PIL's CMYK->RGB).
//     A file that ends before the last scanline is an error in PIL (no LOAD_TRUNCATED_IMAGES),
//     and so is one cut just before EOI (libjpeg suspends on the last MCU), as here.
//   - 16-bit PNG: PIL reads RGB/RGBA/LA 16-bit through rawmodes "RGB;16B", "RGBA;16B",
//     "LA;16B" (the most significant byte); 16-bit gray opens as mode "I" and convert("RGB")
//     clips it to 0..255. stb's own 16->8 conversion is not used.
//   - PNG: chunks before IDAT must have good CRCs (PIL checks them), IEND may be missing.
//   - BMP: 16-bit pixels scale a 5/6-bit channel v to v * 255 / 31 (or 63) as PIL's unpackers.
//   - GIF: PIL's first frame is a P (or L) image of the logical screen size (enlarged to
//     contain the frame), filled with the GCE transparency index (else 0) outside the frame,
//     colors from the local palette, else the global one, entries beyond it a gray ramp.
//   - resize: Pillow's Resample.c algorithm (double coefficients, normalized, rounded to
//     22-bit fixed point, rounded accumulate, clip); floating point must not be contracted
//     into FMAs, hence the pragma below.
#pragma GCC optimize("fp-contract=off")
#define _GNU_SOURCE
#include "image.h"

#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>
#include <stb_image.h>

#include "util.h"

// --- helpers

static int check_pixels(const char *name, int64_t w, int64_t h, int64_t max_pixels) {
    if (w <= 0 || h <= 0)
        return err_set("%s: image has zero size (%lld x %lld)", name, (long long)w, (long long)h);
    int64_t limit = max_pixels == 0 ? IMG_DEFAULT_MAX_PIXELS : max_pixels;
    if (limit > 0 && w * h > limit)
        return err_set("%s: image is %lld x %lld = %lld pixels, over the limit of %lld pixels "
                       "(decompression bomb check; raise the pixel limit if the image is real)",
                       name, (long long)w, (long long)h, (long long)(w * h), (long long)limit);
    return 0;
}

void img_free(img_u8 *im) {
    if (!im) return;
    free(im->rgb);
    im->rgb = NULL;
    im->w = im->h = 0;
}

// --- JPEG (libjpeg-turbo, PIL's settings)

typedef struct jpg_err {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    int eof;                       // libjpeg ran out of data (JWRN_JPEG_EOF)
    char msg[JMSG_LENGTH_MAX];
} jpg_err;

static void jpg_error_exit(j_common_ptr c) {
    jpg_err *e = (jpg_err *)c->err;
    (*c->err->format_message)(c, e->msg);
    longjmp(e->jb, 1);
}

static void jpg_emit(j_common_ptr c, int level) {
    jpg_err *e = (jpg_err *)c->err;
    if (level < 0 && c->err->msg_code == JWRN_JPEG_EOF) e->eof = 1;
    // other warnings (corrupt-data notices) are ignored, as PIL does
}

// PIL reads every 4-component JPEG with rawmode "CMYK;I" (Adobe's inverted CMYK, libjpeg
// converting YCCK to CMYK) and convert("RGB") then computes, per channel,
// (255 - K) - (C * (255 - K)) / 255 with the rounded divide x/255 ~ ((x+128)>>8 + x+128)>>8.
static void cmyk_inverted_to_rgb(unsigned char *dst, const unsigned char *src, int w) {
    for (int x = 0; x < w; x++) {
        const unsigned char *p = src + 4 * x;
        int nk = p[3];   // 255 - K, K being the inverted sample
        for (int c = 0; c < 3; c++) {
            int t = (255 - p[c]) * nk + 128;
            int v = nk - (((t >> 8) + t) >> 8);
            dst[3 * x + c] = (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
    }
}

static int decode_jpeg(const char *name, const unsigned char *data, size_t len, int64_t max_pixels,
                       img_u8 *out) {
    struct jpeg_decompress_struct cinfo;
    jpg_err jerr;
    unsigned char *volatile rgb = NULL;
    unsigned char *volatile row = NULL;
    memset(&jerr, 0, sizeof jerr);
    cinfo.err = jpeg_std_error(&jerr.pub);
    jerr.pub.error_exit = jpg_error_exit;
    jerr.pub.emit_message = jpg_emit;
    if (setjmp(jerr.jb)) {
        jpeg_destroy_decompress(&cinfo);
        free(rgb);
        free(row);
        return err_set("%s: corrupt JPEG: %s", name, jerr.msg);
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, (unsigned long)len);
    jpeg_read_header(&cinfo, TRUE);
    if (jerr.eof) {
        jpeg_destroy_decompress(&cinfo);
        return err_set("%s: truncated JPEG: the file ends inside the header (%zu bytes)", name, len);
    }
    int nc = cinfo.num_components;
    if (nc != 1 && nc != 3 && nc != 4) {
        jpeg_destroy_decompress(&cinfo);
        return err_set("%s: unsupported JPEG: expected 1, 3 or 4 color components, found %d", name, nc);
    }
    if (check_pixels(name, cinfo.image_width, cinfo.image_height, max_pixels)) {
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    cinfo.out_color_space = nc == 1 ? JCS_GRAYSCALE : nc == 3 ? JCS_RGB : JCS_CMYK;
    jpeg_start_decompress(&cinfo);
    int w = (int)cinfo.output_width, h = (int)cinfo.output_height, oc = cinfo.output_components;
    AG_ASSERT(oc == nc, "libjpeg output components %d != %d", oc, nc);
    rgb = xmalloc((size_t)w * h * 3);
    row = xmalloc((size_t)w * oc);
    while ((int)cinfo.output_scanline < h && !jerr.eof) {
        int y = (int)cinfo.output_scanline;
        JSAMPROW rp = row;
        if (jpeg_read_scanlines(&cinfo, &rp, 1) != 1) break;
        unsigned char *dst = rgb + (size_t)y * w * 3;
        if (oc == 3) memcpy(dst, row, (size_t)w * 3);
        else if (oc == 1)
            for (int x = 0; x < w; x++) dst[3 * x] = dst[3 * x + 1] = dst[3 * x + 2] = row[x];
        else
            cmyk_inverted_to_rgb(dst, row, w);
    }
    if (jerr.eof || (int)cinfo.output_scanline < h) {
        int got = (int)cinfo.output_scanline;
        jpeg_destroy_decompress(&cinfo);
        free(rgb);
        free(row);
        return err_set("%s: truncated JPEG: the image data ends before row %d of %d "
                       "(%zu bytes; incomplete download?)", name, got, h, len);
    }
    jpeg_finish_decompress(&cinfo);   // a missing EOI only warns here, accepted as in PIL
    jpeg_destroy_decompress(&cinfo);
    free(row);
    out->w = w;
    out->h = h;
    out->rgb = rgb;
    return 0;
}

// --- PNG and BMP (stb_image)

static const char *stb_reason(void) {
    const char *r = stbi_failure_reason();
    return r && *r ? r : "decoder failed";
}

static int decode_stb(const char *name, const char *fmt, const unsigned char *data, size_t len,
                      int64_t max_pixels, img_u8 *out) {
    if (len > 0x7fffffff) return err_set("%s: %s file too large (%zu bytes)", name, fmt, len);
    int w, h, n;
    if (!stbi_info_from_memory(data, (int)len, &w, &h, &n))
        return err_set("%s: corrupt %s (stb_image: %s)", name, fmt, stb_reason());
    if (check_pixels(name, w, h, max_pixels)) return -1;
    size_t np = (size_t)w * h;
    if (stbi_is_16_bit_from_memory(data, (int)len)) {
        // 16-bit PNG: take the 4-channel expansion and apply PIL's per-mode 16->8 rule.
        stbi_us *p = stbi_load_16_from_memory(data, (int)len, &w, &h, &n, 4);
        if (!p) return err_set("%s: corrupt %s (stb_image: %s)", name, fmt, stb_reason());
        unsigned char *rgb = xmalloc(np * 3);
        for (size_t i = 0; i < np; i++)
            for (int c = 0; c < 3; c++) {
                unsigned v = p[4 * i + c];
                // gray 16 = PIL mode "I": convert("RGB") clips; others keep the high byte
                rgb[3 * i + c] = (unsigned char)(n == 1 ? (v > 255 ? 255 : v) : v >> 8);
            }
        stbi_image_free(p);
        out->w = w;
        out->h = h;
        out->rgb = rgb;
        return 0;
    }
    // 8-bit (and 1/2/4-bit) PNG, BMP: stb expands gray/palette to RGB and drops alpha, which
    // is PIL's convert("RGB") for L, LA, P, RGBA (no compositing).
    unsigned char *p = stbi_load_from_memory(data, (int)len, &w, &h, &n, 3);
    if (!p) return err_set("%s: corrupt %s (stb_image: %s)", name, fmt, stb_reason());
    unsigned char *rgb = xmalloc(np * 3);
    memcpy(rgb, p, np * 3);
    stbi_image_free(p);
    out->w = w;
    out->h = h;
    out->rgb = rgb;
    return 0;
}

// PNG chunk walk with PIL's strictness: chunks before the first IDAT must be complete with
// a correct CRC (PIL verifies them); IDAT and later CRCs are not checked (PIL does not). A
// file that stops after complete image data without IEND loads in PIL, while stb_image
// rejects it, so a copy with IEND appended is handed to stb (*fixed, malloc'd) then.
static uint32_t png_crc(const unsigned char *p, size_t n) {
    uint32_t t[256];
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        t[i] = c;
    }
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) c = t[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int check_png(const char *name, const unsigned char *d, size_t len, int64_t max_pixels,
                     unsigned char **fixed, size_t *fixed_len) {
    *fixed = NULL;
    size_t pos = 8, last_end = 8;
    int seen_idat = 0;
    for (;;) {
        if (pos + 8 > len) break;
        uint32_t n = be32(d + pos);
        char type[5] = {0};
        memcpy(type, d + pos + 4, 4);
        for (int i = 0; i < 4; i++)
            if ((unsigned char)type[i] < 0x20 || (unsigned char)type[i] > 0x7e) type[i] = '?';
        int idat = !memcmp(type, "IDAT", 4);
        if (idat) seen_idat = 1;
        if (n > 0x7fffffffu || pos + 12 + (size_t)n > len) {
            if (!seen_idat || idat)
                return err_set("%s: truncated PNG: the file ends inside chunk '%s' (%zu bytes, "
                               "the chunk needs %zu)", name, type, len, pos + 12 + (size_t)n);
            break;
        }
        if (!seen_idat && png_crc(d + pos + 4, (size_t)n + 4) != be32(d + pos + 8 + n))
            return err_set("%s: corrupt PNG: bad CRC in chunk '%s' at byte %zu", name, type, pos);
        // the size in a sound IHDR (PIL checks the CRC first): a zero or huge size gets the message
        // every format gives, before stb_image's own
        if (!memcmp(type, "IHDR", 4) && n >= 8 && check_pixels(name, be32(d + pos + 8), be32(d + pos + 12), max_pixels))
            return -1;
        pos += 12 + (size_t)n;
        last_end = pos;
        if (!memcmp(type, "IEND", 4)) return 0;
    }
    if (!seen_idat) return err_set("%s: truncated PNG: no image data (IDAT) in %zu bytes", name, len);
    static const unsigned char iend[12] = {0, 0, 0, 0, 'I', 'E', 'N', 'D', 0xAE, 0x42, 0x60, 0x82};
    *fixed = xmalloc(last_end + 12);
    memcpy(*fixed, d, last_end);
    memcpy(*fixed + last_end, iend, 12);
    *fixed_len = last_end + 12;
    return 0;
}

// BMP features stb_image decodes differently from PIL (or not at all): 16-bit pixels (PIL
// scales a 5/6-bit channel v to v * 255 / 31 or / 63, stb replicates bits) are decoded here;
// RLE is refused. Returns 1 when the file is left to stb_image.
static uint32_t le32(const unsigned char *p) {
    return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int decode_bmp16(const char *name, const unsigned char *d, size_t len, int64_t max_pixels,
                        img_u8 *out) {
    if (len < 54) return len < 30 ? err_set("%s: truncated BMP: %zu bytes", name, len) : 1;
    uint32_t hsz = le32(d + 14), comp = le32(d + 30), off = le32(d + 10);
    int bpp = d[28] | d[29] << 8;
    if (hsz >= 40 && (comp == 1 || comp == 2))
        return err_set("%s: unsupported: RLE-compressed BMP; convert it to PNG", name);
    if (hsz != 12 && hsz < 40) return 1;   // stb_image names the odd header
    if (hsz == 12 || bpp != 16) {
        // stb_image decodes a BMP whose pixel rows are cut short without an error (zeros); PIL
        // refuses it ("image file is truncated"): check the uncompressed pixel data is all there
        int64_t bw = hsz == 12 ? (int16_t)(d[18] | d[19] << 8) : (int32_t)le32(d + 18);
        int64_t bh = hsz == 12 ? (int16_t)(d[20] | d[21] << 8) : (int32_t)le32(d + 22);
        int bits = hsz == 12 ? d[24] | d[25] << 8 : bpp;
        if (bh < 0) bh = -bh;
        if (check_pixels(name, bw, bh, max_pixels)) return -1;
        if (hsz == 12 || comp == 0 || comp == 3) {
            uint64_t stride = ((uint64_t)bw * (uint64_t)bits + 31) / 32 * 4;
            uint64_t need = (uint64_t)off + stride * (uint64_t)bh;
            if (need > len)
                return err_set("%s: truncated BMP: %zu bytes, the pixel data needs %llu", name, len,
                               (unsigned long long)need);
        }
        return 1;
    }
    int32_t w = (int32_t)le32(d + 18), hh = (int32_t)le32(d + 22);
    int topdown = hh < 0;
    int64_t h = topdown ? -(int64_t)hh : hh;
    int rshift = 10, gbits = 5;   // BI_RGB: 5-5-5 ("BGR;15")
    if (comp == 3) {
        if (len < 66) return err_set("%s: truncated BMP: bit-field masks cut", name);
        uint32_t rm = le32(d + 54), gm = le32(d + 58), bm = le32(d + 62);
        if (rm == 0xF800 && gm == 0x7E0 && bm == 0x1F) rshift = 11, gbits = 6;   // "BGR;16"
        else if (!(rm == 0x7C00 && gm == 0x3E0 && bm == 0x1F))
            return err_set("%s: unsupported 16-bit BMP bit fields r=%#x g=%#x b=%#x, expected "
                           "5-6-5 or 5-5-5", name, rm, gm, bm);
    } else if (comp != 0) {
        return err_set("%s: unsupported BMP compression %u", name, comp);
    }
    if (check_pixels(name, w, h, max_pixels)) return -1;
    size_t stride = ((size_t)w * 2 + 3) & ~(size_t)3;
    if (off > len || (len - off) / stride < (size_t)h)
        return err_set("%s: truncated BMP: %zu bytes, the pixel data needs %zu", name, len,
                       (size_t)off + stride * (size_t)h);
    unsigned char *rgb = xmalloc((size_t)w * h * 3);
    int gmax = (1 << gbits) - 1;
    for (int64_t y = 0; y < h; y++) {
        const unsigned char *row = d + off + stride * (size_t)(topdown ? y : h - 1 - y);
        unsigned char *o = rgb + (size_t)y * w * 3;
        for (int x = 0; x < w; x++) {
            unsigned v = row[2 * x] | row[2 * x + 1] << 8;
            o[3 * x] = (unsigned char)(((v >> rshift) & 31) * 255 / 31);
            o[3 * x + 1] = (unsigned char)(((v >> 5) & gmax) * 255 / gmax);
            o[3 * x + 2] = (unsigned char)((v & 31) * 255 / 31);
        }
    }
    out->w = w;
    out->h = (int)h;
    out->rgb = rgb;
    return 0;
}

// --- GIF (first frame, PIL semantics)

typedef struct gif_bits {
    const unsigned char *d;
    size_t len, pos;    // pos: next byte of the current sub-block
    int left;           // bytes left in the current sub-block
    unsigned acc;
    int nacc;
    int ended;          // reached the 0-length terminator (or the end of the file)
    int truncated;
} gif_bits;

static int gif_byte(gif_bits *b) {
    while (b->left == 0) {
        if (b->ended) return -1;
        if (b->pos >= b->len) { b->ended = b->truncated = 1; return -1; }
        b->left = b->d[b->pos++];
        if (b->left == 0) { b->ended = 1; return -1; }
    }
    if (b->pos >= b->len) { b->ended = b->truncated = 1; return -1; }
    b->left--;
    return b->d[b->pos++];
}

static int gif_code(gif_bits *b, int size) {
    while (b->nacc < size) {
        int c = gif_byte(b);
        if (c < 0) return -1;
        b->acc |= (unsigned)c << b->nacc;
        b->nacc += 8;
    }
    int code = (int)(b->acc & ((1u << size) - 1));
    b->acc >>= size;
    b->nacc -= size;
    return code;
}

// long: the GIF block grammar (header, colour tables, extensions, the first image descriptor, the
// LZW stream) is walked once in file order, with a bounds check and a message at every step.
static int decode_gif(const char *name, const unsigned char *d, size_t len, int64_t max_pixels,
                      img_u8 *out) {
    if (len < 13) return err_set("%s: truncated GIF: %zu bytes, the header needs 13", name, len);
    int W = d[6] | d[7] << 8, H = d[8] | d[9] << 8, flags = d[10];
    size_t pos = 13;
    unsigned char pal[256][3];
    for (int i = 0; i < 256; i++) pal[i][0] = pal[i][1] = pal[i][2] = (unsigned char)i;
    const unsigned char *gpal = NULL, *lpal = NULL;
    int gn = 0, ln = 0;
    if (flags & 0x80) {
        gn = 1 << ((flags & 7) + 1);
        if (pos + 3 * (size_t)gn > len) return err_set("%s: truncated GIF: global palette cut", name);
        gpal = d + pos;
        pos += 3 * (size_t)gn;
    }
    int trans = -1, interlace = 0, x0 = 0, y0 = 0, fw = 0, fh = 0, bits = 0, found = 0;
    while (!found) {
        if (pos >= len || d[pos] == ';')
            return err_set("%s: GIF has no image frame (truncated file?)", name);
        int c = d[pos++];
        if (c == '!') {
            if (pos + 1 > len) return err_set("%s: truncated GIF extension", name);
            int label = d[pos++];
            int first = 1;
            for (;;) {
                if (pos >= len) return err_set("%s: truncated GIF extension", name);
                int bl = d[pos++];
                if (bl == 0) break;
                if (pos + bl > len) return err_set("%s: truncated GIF extension", name);
                if (first && label == 0xF9 && bl >= 4 && (d[pos] & 1)) trans = d[pos + 3];
                first = 0;
                pos += bl;
            }
        } else if (c == ',') {
            if (pos + 9 > len) return err_set("%s: truncated GIF image descriptor", name);
            x0 = d[pos] | d[pos + 1] << 8;
            y0 = d[pos + 2] | d[pos + 3] << 8;
            fw = d[pos + 4] | d[pos + 5] << 8;
            fh = d[pos + 6] | d[pos + 7] << 8;
            int lf = d[pos + 8];
            pos += 9;
            interlace = (lf & 0x40) != 0;
            if (x0 + fw > W) W = x0 + fw;   // PIL enlarges the image to hold the frame
            if (y0 + fh > H) H = y0 + fh;
            if (lf & 0x80) {
                ln = 1 << ((lf & 7) + 1);
                if (pos + 3 * (size_t)ln > len) return err_set("%s: truncated GIF: local palette cut", name);
                lpal = d + pos;
                pos += 3 * (size_t)ln;
            }
            if (pos >= len) return err_set("%s: truncated GIF: no image data", name);
            bits = d[pos++];
            found = 1;
        }
        // other bytes are skipped, as PIL does
    }
    if (check_pixels(name, W, H, max_pixels)) return -1;
    if (bits < 1 || bits > 8) return err_set("%s: corrupt GIF: LZW code size %d, expected 1..8", name, bits);
    // PIL keeps a palette only when it is not the identity gray ramp; the ramp equals no palette
    const unsigned char *p = lpal ? lpal : gpal;
    int pn = lpal ? ln : gn;
    for (int i = 0; p && i < pn; i++) memcpy(pal[i], p + 3 * i, 3);

    size_t np = (size_t)W * H;
    unsigned char *idx = xmalloc(np);
    memset(idx, trans >= 0 ? trans : 0, np);
    // LZW
    static const int ilace_start[4] = {0, 4, 2, 1}, ilace_step[4] = {8, 8, 4, 2};
    uint16_t *prefix = xmalloc(4096 * sizeof *prefix);
    unsigned char *suffix = xmalloc(4096), *stack = xmalloc(4097);
    gif_bits gb = {.d = d, .len = len, .pos = pos};
    int clear = 1 << bits, eoi = clear + 1, size = bits + 1, next = clear + 2, prev = -1;
    unsigned char firstc = 0;
    long total = (long)fw * fh, done = 0;
    int fx = 0, fy = 0, pass = 0, rc = 0;
    for (int i = 0; i < clear; i++) { prefix[i] = 0xffff; suffix[i] = (unsigned char)i; }
    while (done < total) {
        int code = gif_code(&gb, size);
        if (code < 0) {
            if (gb.truncated) rc = err_set("%s: truncated GIF: image data ends after %ld of %ld pixels", name, done, total);
            break;   // terminator before the end: the rest keeps the fill, as in PIL
        }
        if (code == clear) { size = bits + 1; next = clear + 2; prev = -1; continue; }
        if (code == eoi) break;
        int sp = 0, cur = code;
        if (prev < 0) {
            if (code >= clear) { rc = err_set("%s: corrupt GIF: bad first LZW code %d", name, code); break; }
        } else if (code == next) {
            stack[sp++] = firstc;
            cur = prev;
        } else if (code > next) {
            rc = err_set("%s: corrupt GIF: LZW code %d beyond table size %d", name, code, next);
            break;
        }
        while (cur >= clear) { stack[sp++] = suffix[cur]; cur = prefix[cur]; }
        stack[sp++] = suffix[cur];
        firstc = suffix[cur];
        if (prev >= 0 && next < 4096) {
            prefix[next] = (uint16_t)prev;
            suffix[next] = firstc;
            next++;
            if (next == (1 << size) && size < 12) size++;
        }
        prev = code;
        while (sp > 0 && done < total) {
            idx[(size_t)(y0 + fy) * W + x0 + fx] = stack[--sp];
            done++;
            if (++fx == fw) {
                fx = 0;
                if (!interlace) fy++;
                else {
                    fy += ilace_step[pass];
                    while (fy >= fh && pass < 3) { pass++; fy = ilace_start[pass]; }
                }
                if (fy >= fh) done = total;
            }
        }
    }
    free(prefix);
    free(suffix);
    free(stack);
    if (rc) { free(idx); return -1; }
    unsigned char *rgb = xmalloc(np * 3);
    for (size_t i = 0; i < np; i++) memcpy(rgb + 3 * i, pal[idx[i]], 3);
    free(idx);
    out->w = W;
    out->h = H;
    out->rgb = rgb;
    return 0;
}

// --- dispatch

static const char *sniff_other(const unsigned char *d, size_t len) {
    if (len >= 12 && !memcmp(d, "RIFF", 4) && !memcmp(d + 8, "WEBP", 4)) return "WebP";
    if (len >= 4 && (!memcmp(d, "II*\0", 4) || !memcmp(d, "MM\0*", 4))) return "TIFF";
    if (len >= 12 && !memcmp(d + 4, "ftyp", 4)) return "HEIF/AVIF";
    if (len >= 2 && d[0] == 'P' && d[1] >= '1' && d[1] <= '7') return "PNM";
    if (len >= 4 && !memcmp(d, "\0\0\1\0", 4)) return "ICO";
    return NULL;
}

int img_decode_rgb(const char *name, const unsigned char *d, size_t len, int64_t max_pixels,
                   img_u8 *out) {
    out->w = out->h = 0;
    out->rgb = NULL;
    if (len == 0) return err_set("%s: empty file (0 bytes), expected an image", name);
    if (len >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF)
        return decode_jpeg(name, d, len, max_pixels, out);
    if (len >= 8 && !memcmp(d, "\x89PNG\r\n\x1a\n", 8)) {
        unsigned char *fixed;
        size_t flen;
        if (check_png(name, d, len, max_pixels, &fixed, &flen)) return -1;
        int rc = decode_stb(name, "PNG", fixed ? fixed : d, fixed ? flen : len, max_pixels, out);
        free(fixed);
        return rc;
    }
    if (len >= 6 && (!memcmp(d, "GIF87a", 6) || !memcmp(d, "GIF89a", 6)))
        return decode_gif(name, d, len, max_pixels, out);
    if (len >= 2 && d[0] == 'B' && d[1] == 'M') {
        int rc = decode_bmp16(name, d, len, max_pixels, out);
        return rc <= 0 ? rc : decode_stb(name, "BMP", d, len, max_pixels, out);
    }
    const char *other = sniff_other(d, len);
    if (other)
        return err_set("%s: unsupported image format %s, expected JPEG, PNG, GIF or BMP "
                       "(convert the image first)", name, other);
    unsigned char b[4] = {0};
    memcpy(b, d, len < 4 ? len : 4);
    return err_set("%s: not an image: expected a JPEG, PNG, GIF or BMP signature, found bytes "
                   "%02x %02x %02x %02x (%zu bytes)", name, b[0], b[1], b[2], b[3], len);
}

int img_load_rgb(const char *path, int64_t max_pixels, img_u8 *out) {
    out->w = out->h = 0;
    out->rgb = NULL;
    size_t len;
    char *buf = file_read_all(path, &len);
    if (!buf) return -1;   // file_read_all named the file and the reason
    int rc = img_decode_rgb(path, (const unsigned char *)buf, len, max_pixels, out);
    free(buf);
    return rc;
}

// --- PIL bicubic resize

static double cubic_kernel(double x) {
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

#define RS_BITS 22   // fixed-point fraction bits for 8-bit images (32 - 8 - 2)

typedef struct rs_coeffs {
    int ksize;
    int *lo, *n;     // [out] first input index and tap count
    int32_t *k;      // [out][ksize] fixed-point taps
} rs_coeffs;

static void rs_coeffs_init(rs_coeffs *c, int in_size, int out_size) {
    double scale = (double)((float)in_size - 0.0f) / out_size;
    double fscale = scale < 1.0 ? 1.0 : scale;
    double support = 2.0 * fscale;
    int ksize = (int)ceil(support) * 2 + 1;
    c->ksize = ksize;
    c->lo = xmalloc(sizeof(int) * out_size);
    c->n = xmalloc(sizeof(int) * out_size);
    c->k = xcalloc((size_t)out_size * ksize, sizeof(int32_t));
    double *w = xmalloc(sizeof(double) * ksize);
    for (int o = 0; o < out_size; o++) {
        double center = 0.0 + (o + 0.5) * scale;
        double inv = 1.0 / fscale, sum = 0.0;
        int lo = (int)(center - support + 0.5);
        if (lo < 0) lo = 0;
        int hi = (int)(center + support + 0.5);
        if (hi > in_size) hi = in_size;
        int n = hi - lo;
        for (int i = 0; i < n; i++) {
            w[i] = cubic_kernel((i + lo - center + 0.5) * inv);
            sum += w[i];
        }
        for (int i = 0; i < n; i++) {
            double v = sum != 0.0 ? w[i] / sum : w[i];
            c->k[(size_t)o * ksize + i] =
                v < 0 ? (int32_t)(-0.5 + v * (1 << RS_BITS)) : (int32_t)(0.5 + v * (1 << RS_BITS));
        }
        c->lo[o] = lo;
        c->n[o] = n;
    }
    free(w);
}

static void rs_coeffs_free(rs_coeffs *c) {
    free(c->lo);
    free(c->n);
    free(c->k);
}

static inline unsigned char rs_clip(int32_t acc) {
    int32_t v = acc >> RS_BITS;
    return (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v);
}

// dst [rows][ow][3] from src rows [row0, row0 + rows) of width iw
static void rs_horizontal(unsigned char *dst, int ow, const unsigned char *src, int iw, int row0,
                          int rows, const rs_coeffs *c) {
#pragma omp parallel for schedule(static) if ((long)rows * ow * c->ksize > 200000)
    for (int y = 0; y < rows; y++) {
        const unsigned char *s = src + (size_t)(y + row0) * iw * 3;
        unsigned char *o = dst + (size_t)y * ow * 3;
        for (int x = 0; x < ow; x++) {
            const int32_t *k = c->k + (size_t)x * c->ksize;
            const unsigned char *p = s + (size_t)c->lo[x] * 3;
            int32_t a0 = 1 << (RS_BITS - 1), a1 = a0, a2 = a0;
            for (int i = 0; i < c->n[x]; i++) {
                a0 += p[3 * i] * k[i];
                a1 += p[3 * i + 1] * k[i];
                a2 += p[3 * i + 2] * k[i];
            }
            o[3 * x] = rs_clip(a0);
            o[3 * x + 1] = rs_clip(a1);
            o[3 * x + 2] = rs_clip(a2);
        }
    }
}

// dst [oh][w][3] from src [..][w][3]; c->lo are row indices into src
static void rs_vertical(unsigned char *dst, int oh, const unsigned char *src, int w,
                        const rs_coeffs *c) {
    size_t stride = (size_t)w * 3;
#pragma omp parallel for schedule(static) if ((long)oh * w * c->ksize > 200000)
    for (int y = 0; y < oh; y++) {
        const int32_t *k = c->k + (size_t)y * c->ksize;
        const unsigned char *s = src + (size_t)c->lo[y] * stride;
        unsigned char *o = dst + (size_t)y * stride;
        for (size_t j = 0; j < stride; j++) {
            int32_t a = 1 << (RS_BITS - 1);
            for (int i = 0; i < c->n[y]; i++) a += s[(size_t)i * stride + j] * k[i];
            o[j] = rs_clip(a);
        }
    }
}

int img_resize_bicubic(const img_u8 *src, int w, int h, img_u8 *dst) {
    dst->w = dst->h = 0;
    dst->rgb = NULL;
    if (w <= 0 || h <= 0 || src->w <= 0 || src->h <= 0 || !src->rgb)
        return err_set("img_resize_bicubic: bad sizes %dx%d -> %dx%d", src->w, src->h, w, h);
    int need_h = w != src->w, need_v = h != src->h;
    rs_coeffs cv;
    rs_coeffs_init(&cv, src->h, h);
    int first = cv.lo[0], last = cv.lo[h - 1] + cv.n[h - 1];
    const unsigned char *cur = src->rgb;
    unsigned char *tmp = NULL;
    if (need_h) {
        rs_coeffs ch;
        rs_coeffs_init(&ch, src->w, w);
        for (int i = 0; i < h; i++) cv.lo[i] -= first;   // rows of the horizontal result
        tmp = xmalloc((size_t)w * (last - first) * 3);
        rs_horizontal(tmp, w, src->rgb, src->w, first, last - first, &ch);
        rs_coeffs_free(&ch);
        cur = tmp;
    }
    dst->w = w;
    dst->h = h;
    if (need_v) {
        dst->rgb = xmalloc((size_t)w * h * 3);
        rs_vertical(dst->rgb, h, cur, w, &cv);
        free(tmp);
    } else if (tmp) {
        dst->rgb = tmp;   // horizontal only: rows [first, last) are all h rows
        AG_ASSERT(first == 0 && last == h, "vertical bounds %d..%d for unchanged height %d", first, last, h);
    } else {
        dst->rgb = xmalloc((size_t)w * h * 3);
        memcpy(dst->rgb, src->rgb, (size_t)w * h * 3);
    }
    rs_coeffs_free(&cv);
    return 0;
}

// --- SigLIP normalization

img_norm img_norm_siglip(void) {
    img_norm n = {{0.5f, 0.5f, 0.5f}, {0.5f, 0.5f, 0.5f}, 1.0 / 255.0};
    return n;
}

void img_normalize_chw(float *chw, const img_u8 *im, const img_norm *norm) {
    size_t np = (size_t)im->w * im->h;
    for (int c = 0; c < 3; c++) {
        float lut[256];
        for (int v = 0; v < 256; v++) {
            float x = (float)((double)v * norm->rescale);
            lut[v] = (x - norm->mean[c]) / norm->std[c];
        }
        float *o = chw + (size_t)c * np;
        for (size_t i = 0; i < np; i++) o[i] = lut[im->rgb[3 * i + c]];
    }
}

int img_preprocess_image(const img_u8 *im, int size, const img_norm *norm, float *chw) {
    if (size <= 0) return err_set("bad model image size %d, expected > 0", size);
    img_norm def = img_norm_siglip();
    img_u8 rs;
    if (img_resize_bicubic(im, size, size, &rs)) return -1;
    img_normalize_chw(chw, &rs, norm ? norm : &def);
    img_free(&rs);
    return 0;
}

int img_preprocess(const char *path, int size, const img_norm *norm, int64_t max_pixels,
                   float *chw) {
    if (size <= 0) return err_set("%s: bad model image size %d, expected > 0", path, size);
    img_u8 im;
    if (img_load_rgb(path, max_pixels, &im)) return -1;
    int rc = img_preprocess_image(&im, size, norm, chw);
    img_free(&im);
    return rc ? err_prefix("%s", path) : 0;
}
