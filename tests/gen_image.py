"""Golden fixtures for data/image.c: small photo-like images in every supported format, and
PIL 9.4's decoded RGB pixels, bicubic resizes and the Hugging Face SigLIP processor's
normalized CHW tensors for them.

    /usr/bin/python3 tests/gen_image.py

Writes tests/fixtures/images/* and tests/fixtures/image_ref.safetensors. transformers is not
imported: its SigLIP path is reimplemented with numpy exactly as image_processing_siglip.py
does it (convert("RGB") -> np.array uint8 -> PIL resize BICUBIC -> np.array ->
rescale: astype(float64) * (1/255) -> astype(float32) -> normalize: (x - mean32) / std32).
"""
import io
import os
import struct
import sys
import zlib

import numpy as np
import PIL
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixtures_io import save_fixture  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures", "images")
BICUBIC = Image.Resampling.BICUBIC


def synth(w, h, seed):
    """Photo-like RGB8: smooth gradients, saturated flat areas, hard edges, stripes, noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 128 + 100 * np.sin(x / w * 3.1 + 0.5) * np.cos(y / h * 2.3)
    g = 60 + 150 * (x + y) / (w + h)
    b = 200 - 160 * np.hypot(x - w * 0.6, y - h * 0.4) / max(w, h)
    img = np.stack([r, g, b], -1)
    img[(x > w * 0.2) & (x < w * 0.45) & (y > h * 0.3) & (y < h * 0.7)] = [250, 240, 30]
    img[(x - w * 0.7) ** 2 + (y - h * 0.65) ** 2 < (min(w, h) * 0.2) ** 2] = [20, 30, 200]
    stripes = (y < h * 0.15) & ((x // 3) % 2 == 0)
    img[stripes] = img[stripes] * 0.2
    img += rng.normal(0, 7, img.shape)
    img[(x > w * 0.8) & (y > h * 0.8)] = 255          # clipped highlights: overshoot -> clip
    img[(x < w * 0.12) & (y > h * 0.85)] = 0           # crushed shadows
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def png_raw(path, arr, color_type, depth):
    """Minimal PNG writer (PIL cannot write 16-bit RGB/RGBA/LA)."""
    h, w = arr.shape[:2]
    dt = ">u2" if depth == 16 else "u1"
    raw = b"".join(b"\x00" + np.ascontiguousarray(arr[i]).astype(dt).tobytes() for i in range(h))

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(data)


def gif_offset_frame(src, dst, dx, dy, grow_w, grow_h):
    """Rewrites a one-frame GIF so the frame sits at (dx, dy) inside a larger logical screen."""
    d = bytearray(open(src, "rb").read())
    w, h = struct.unpack("<HH", d[6:10])
    d[6:10] = struct.pack("<HH", w + grow_w, h + grow_h)
    pos = 13 + (3 << ((d[10] & 7) + 1) if d[10] & 0x80 else 0)
    while d[pos] != 0x2C:
        assert d[pos] == 0x21
        pos += 2
        while d[pos]:
            pos += d[pos] + 1
        pos += 1
    d[pos + 1:pos + 5] = struct.pack("<HH", dx, dy)
    open(dst, "wb").write(bytes(d))


def main():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        os.remove(os.path.join(OUT, f))
    P = lambda n: os.path.join(OUT, n)  # noqa: E731

    big = synth(256, 240, 1)      # shrinks to 224 in both directions
    small = synth(67, 45, 2)      # odd sizes: partial JPEG MCUs, enlarges to 224
    tall = synth(45, 67, 3)
    im_big, im_small, im_tall = (Image.fromarray(a) for a in (big, small, tall))

    # JPEG
    im_big.save(P("big.jpg"), quality=90, subsampling=2)                   # baseline 4:2:0
    im_small.save(P("small.jpg"), quality=90, subsampling=2)
    im_small.save(P("progressive.jpg"), quality=85, progressive=True)
    im_tall.save(P("tall_422.jpg"), quality=92, subsampling=1)
    im_small.save(P("q75_444.jpg"), quality=75, subsampling=0)
    im_small.convert("L").save(P("gray.jpg"), quality=90)
    im_small.convert("CMYK").save(P("cmyk.jpg"), quality=90)                # Adobe inverted CMYK
    # PNG
    im_small.save(P("rgb.png"))
    rgba = np.dstack([small, np.linspace(0, 255, 67 * 45).reshape(45, 67).astype(np.uint8)])
    Image.fromarray(rgba, "RGBA").save(P("rgba.png"))
    im_small.quantize(256).save(P("palette.png"), transparency=3)          # P + tRNS
    im_small.quantize(16).save(P("palette4.png"))                          # 4-bit palette
    im_small.convert("L").save(P("gray.png"), transparency=128)            # L + tRNS
    Image.fromarray(rgba, "RGBA").convert("LA").save(P("gray_alpha.png"))
    im_small.convert("1").save(P("bilevel.png"))
    rng = np.random.default_rng(5)
    noise = rng.integers(-128, 128, small.shape)
    rgb16 = np.clip(small.astype(np.int64) * 257 + noise, 0, 65535)
    png_raw(P("rgb16.png"), rgb16, 2, 16)
    png_raw(P("rgba16.png"), np.dstack([rgb16, rgb16[..., :1]]), 6, 16)
    g = small[..., 1].astype(np.int64)
    gray16 = np.where(np.arange(67)[None, :] < 33, g * 257 + noise[..., 0] % 200, g + noise[..., 1] % 100)
    png_raw(P("gray16.png"), np.clip(gray16, 0, 65535), 0, 16)              # I;16 -> clip at 255
    png_raw(P("gray_alpha16.png"), np.dstack([np.clip(g * 257 + noise[..., 2], 0, 65535), gray16]), 4, 16)
    # BMP
    im_small.save(P("rgb.bmp"))
    im_small.quantize(256).save(P("palette8.bmp"))
    Image.fromarray(rgba, "RGBA").save(P("rgba32.bmp"))
    im_small.convert("1").save(P("bilevel.bmp"))
    # 16-bit 5-6-5 bit-field BMP (PIL cannot write one)
    px = (small[..., 0].astype(np.uint16) >> 3 << 11) | (small[..., 1].astype(np.uint16) >> 2 << 5) | (small[..., 2] >> 3)
    rows = b"".join(np.ascontiguousarray(px[i]).astype("<u2").tobytes() + b"\0" * ((-67 * 2) % 4) for i in range(44, -1, -1))
    hdr = struct.pack("<IiiHHIIiiII", 40, 67, 45, 1, 16, 3, len(rows), 2835, 2835, 0, 0) + struct.pack("<III", 0xF800, 0x7E0, 0x1F)
    open(P("rgb565.bmp"), "wb").write(b"BM" + struct.pack("<IHHI", 14 + len(hdr) + len(rows), 0, 0, 14 + len(hdr)) + hdr + rows)
    # GIF
    im_small.quantize(256).save(P("photo.gif"))                             # interlaced by default
    im_tall.quantize(16).save(P("tmp16.gif"), interlace=False, transparency=5)
    gif_offset_frame(P("tmp16.gif"), P("offset16.gif"), 3, 2, 7, 5)       # fill = transparency index
    os.remove(P("tmp16.gif"))
    im_small.convert("L").save(P("gray.gif"))                               # identity palette -> L

    # bad inputs
    b = open(P("big.jpg"), "rb").read()
    open(P("truncated.jpg"), "wb").write(b[: len(b) * 55 // 100])
    b = open(P("rgb.png"), "rb").read()
    open(P("truncated.png"), "wb").write(b[: len(b) * 60 // 100])
    b = open(P("photo.gif"), "rb").read()
    open(P("truncated.gif"), "wb").write(b[: len(b) * 60 // 100])
    open(P("empty.png"), "wb").close()
    open(P("garbage.jpg"), "wb").write(bytes(np.random.default_rng(7).integers(0, 256, 64, dtype=np.uint8)))
    open(P("corrupt.jpg"), "wb").write(b"\xff\xd8\xff" + bytes(np.random.default_rng(8).integers(0, 256, 200, dtype=np.uint8)))
    png_raw(P("huge.png"), np.zeros((1, 1), np.uint8), 0, 8)
    d = bytearray(open(P("huge.png"), "rb").read())                      # claim 10000 x 10000
    d[16:24] = struct.pack(">II", 10000, 10000)
    d[29:33] = struct.pack(">I", zlib.crc32(bytes(d[12:29])) & 0xFFFFFFFF)
    open(P("huge.png"), "wb").write(bytes(d))
    im_small.save(P("unsupported.webp"), quality=50)

    # references from PIL
    T = {}
    decoded = {}
    good = ["big.jpg", "small.jpg", "progressive.jpg", "tall_422.jpg", "q75_444.jpg", "gray.jpg", "cmyk.jpg",
            "rgb.png", "rgba.png", "palette.png", "palette4.png", "gray.png", "gray_alpha.png",
            "bilevel.png", "rgb16.png", "rgba16.png", "gray16.png", "gray_alpha16.png",
            "rgb.bmp", "palette8.bmp", "rgba32.bmp", "bilevel.bmp", "rgb565.bmp", "photo.gif", "offset16.gif",
            "gray.gif"]
    for n in good:
        with Image.open(P(n)) as im:
            mode = im.mode
            rgb = np.array(im.convert("RGB"))
        decoded[n] = rgb
        T["dec/" + n] = rgb
        print(f"{n:18s} mode {mode:5s} {rgb.shape[1]}x{rgb.shape[0]}")
    for n in ["truncated.jpg", "truncated.png", "truncated.gif", "empty.png", "garbage.jpg",
              "corrupt.jpg", "huge.png", "unsupported.webp"]:
        try:
            with Image.open(P(n)) as im:
                im.convert("RGB")
            print(f"{n:18s} PIL loads it" + (" (lorac rejects by design)" if n == "unsupported.webp" else " (!)"))
        except Exception as e:  # noqa: BLE001
            print(f"{n:18s} PIL error: {type(e).__name__}: {str(e)[:70]}")

    # bicubic resizes of decoded pixels: (source, w, h)
    cases = [("big.jpg", 224, 224), ("big.jpg", 32, 32), ("big.jpg", 256, 24), ("big.jpg", 24, 240),
             ("small.jpg", 128, 128), ("tall_422.jpg", 96, 96), ("small.jpg", 20, 90),
             ("rgb.png", 150, 17)]
    for i, (n, w, h) in enumerate(cases):
        T[f"rs{i}/src"] = np.array([good.index(n)], np.int32)
        T[f"rs{i}/out"] = np.array(Image.fromarray(decoded[n]).resize((w, h), resample=BICUBIC))

    # HF SigLIP processor (numpy reimplementation), at a small size to keep fixtures small
    def siglip(path, size, mean, std, rescale=1 / 255):
        with Image.open(path) as im:
            im = im if im.mode == "RGB" else im.convert("RGB")      # convert_to_rgb
            arr = np.array(im)                                        # to_numpy_array
        arr = np.array(Image.fromarray(arr).resize((size, size), resample=BICUBIC))
        x = (arr.astype(np.float64) * rescale).astype(np.float32)    # rescale
        x = (x - np.array(mean, np.float32)) / np.array(std, np.float32)  # normalize
        return np.ascontiguousarray(x.transpose(2, 0, 1))            # ChannelDimension.FIRST

    imagenet = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    norms = [("big.jpg", 48, [0.5] * 3, [0.5] * 3), ("rgba.png", 48, [0.5] * 3, [0.5] * 3),
             ("photo.gif", 48, [0.5] * 3, [0.5] * 3), ("gray16.png", 40, *imagenet)]
    for i, (n, size, mean, std) in enumerate(norms):
        T[f"norm{i}/src"] = np.array([good.index(n)], np.int32)
        T[f"norm{i}/size"] = np.array([size], np.int32)
        T[f"norm{i}/mean"] = np.array(mean, np.float32)
        T[f"norm{i}/std"] = np.array(std, np.float32)
        T[f"norm{i}/chw"] = siglip(P(n), size, mean, std)

    meta = {"files": ",".join(good), "n_resize": len(cases), "n_norm": len(norms), "pil": PIL.__version__}
    path = os.path.join(HERE, "fixtures", "image_ref.safetensors")
    save_fixture(path, T, meta=meta)
    tot = os.path.getsize(path) + sum(os.path.getsize(P(f)) for f in os.listdir(OUT))
    print(f"wrote {path} and {len(os.listdir(OUT))} images, {tot} bytes in all")


if __name__ == "__main__":
    main()
