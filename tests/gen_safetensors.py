"""Golden data for tests/test_safetensors.c: fp32 <-> BF16/F16/F64 conversions done by torch.

Writes tests/fixtures/st_torch.safetensors. The file is laid out the way the reference
writer (huggingface/safetensors serialize) lays it out: tensors sorted by descending dtype
alignment, then by name, header padded with spaces, __metadata__ {"format": "pt"}.
Tensors:
  src           F32   the fp32 values (edge cases: ties, overflow, subnormals, inf, NaN)
  bf16, f16     BF16 / F16 bytes of src.to(torch.bfloat16 / torch.float16)
  bf16_as_f32   F32   src.to(bfloat16).float()      f16_as_f32: the same for float16
  f64           F64   [3, 5] doubles                 f64_as_f32: f64.float()
  mat_bf16      BF16  [2, 3, 4] (a multi-dimensional tensor)
  ids           I64   [4] (not readable as float)
Run with /usr/bin/python3 (torch); the test run itself needs no torch.
"""
import json
import os
import struct

import numpy as np
import torch

from fixtures_io import write_safetensors

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures", "st_torch.safetensors")

_DT = {torch.float32: ("F32", 4), torch.float64: ("F64", 8), torch.bfloat16: ("BF16", 2),
       torch.float16: ("F16", 2), torch.int64: ("I64", 8)}
_ALIGN_ORDER = ["BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "F16", "BF16", "I32", "U32",
                "F32", "F64", "I64", "U64"]   # the reference Dtype enum order


def tensor_bytes(t):
    t = t.contiguous()
    if t.dtype in (torch.bfloat16, torch.float16):
        return t.view(torch.int16).numpy().tobytes()
    return t.numpy().tobytes()


def save(path, tensors, meta):
    items = sorted(tensors.items(), key=lambda kv: (-_ALIGN_ORDER.index(_DT[kv[1].dtype][0]), kv[0]))
    write_safetensors(path, [(n, _DT[t.dtype][0], t.shape, tensor_bytes(t)) for n, t in items], meta)


def f32_from_bits(bits):
    return np.array(bits, dtype=np.uint32).view(np.float32)


def main():
    torch.manual_seed(0)
    edge = [0.0, -0.0, 1.0, -1.0, 0.5, 3.0, 65504.0, 65519.0, 65519.996, 65520.0, 65536.0, 1e5, -1e5,
            6.1035156e-05, 6.0e-05, 3.0517578e-05, 5.9604645e-08, 2.9802322e-08, 2.98e-08, 4.4703484e-08,
            8.940697e-08, 1e-8, 1e-10, 3.4e38, 3.3895314e38, 3.39e38, -3.4e38, 1e-40, -1e-41,
            float("inf"), float("-inf"), float("nan"), 0.1, 0.2, 0.3, 1.0 / 3.0, 2.0 / 3.0, 1234.5678]
    ties = f32_from_bits([0x3F808000, 0x3F818000, 0x3F808001, 0x3F817FFF, 0xBF808000, 0xBF818000,
                          0x3F801000, 0x3F803000, 0x3F801001, 0x3F802FFF, 0x7F7F8000, 0x7F7FFFFF,
                          0xFFC00000, 0x7F800001, 0x00400000, 0x00008000])
    rnd = torch.cat([torch.randn(200), torch.randn(100) * 1e-3, torch.randn(100) * 300,
                     torch.randn(60) * 1e-6, torch.rand(40) * 7e4])
    src = torch.cat([torch.tensor(edge, dtype=torch.float32), torch.from_numpy(ties.copy()), rnd.float()])
    f64 = torch.randn(3, 5, dtype=torch.float64) * torch.tensor([1.0, 1e-20, 1e20, 1e-3, 1e3]).double()
    f64[0, 0] = 1.0 + 2.0 ** -24   # tie in fp32 -> even (1.0)
    f64[0, 1] = 1.0 + 3 * 2.0 ** -24   # tie -> up
    tensors = {
        "src": src,
        "bf16": src.to(torch.bfloat16),
        "f16": src.to(torch.float16),
        "bf16_as_f32": src.to(torch.bfloat16).float(),
        "f16_as_f32": src.to(torch.float16).float(),
        "f64": f64,
        "f64_as_f32": f64.float(),
        "mat_bf16": (torch.arange(24, dtype=torch.float32).reshape(2, 3, 4) / 7).to(torch.bfloat16),
        "ids": torch.tensor([1, -2, 3, 1 << 40], dtype=torch.int64),
    }
    save(OUT, tensors, {"format": "pt", "generator": "tests/gen_safetensors.py", "torch": torch.__version__})
    print("wrote", OUT, os.path.getsize(OUT), "bytes;", src.numel(), "conversion values")


if __name__ == "__main__":
    main()
