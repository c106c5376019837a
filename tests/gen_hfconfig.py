"""Golden RoPE inverse frequencies for tests/test_hfconfig.c.

Mirrors transformers' modeling_rope_utils: _compute_default_rope_parameters
(1 / base ** (arange(0, dim, 2).float() / dim)) and _compute_llama3_parameters (wavelength
thresholds old_context_len / low_freq_factor and / high_freq_factor, smooth blend in
between), in torch fp32 exactly as written there. Writes tests/fixtures/hfconfig_rope.safetensors
with one tensor inv_freq_<case> per case; the case parameters are in the metadata and
repeated in the C test.
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixtures_io import save_fixture  # noqa: E402
from torch_ref import llama3_inv_freq  # noqa: E402  (the formulas, in torch fp32 as written there)

HERE = os.path.dirname(os.path.abspath(__file__))

# name: (head_dim, rope_theta, llama3 params (factor, low, high, original_max_pos) or None)
CASES = {
    "llama32_1b": (64, 500000.0, (32.0, 1.0, 4.0, 8192)),
    "tiny": (16, 500000.0, (32.0, 1.0, 4.0, 8192)),
    "llama31_8b": (128, 500000.0, (8.0, 1.0, 4.0, 8192)),
    "default": (64, 10000.0, None),
    "odd_factors": (32, 123456.0, (4.0, 2.0, 8.0, 1024)),
}


def inv_freq(dim, base, l3):
    rs = None
    if l3 is not None:
        rs = dict(zip(("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"), l3),
                  rope_type="llama3")
    return llama3_inv_freq({"head_dim": dim, "rope_theta": base, "rope_scaling": rs})


def main():
    tensors, meta = {}, {}
    for name, (dim, base, l3) in CASES.items():
        inv = inv_freq(dim, base, l3)
        tensors["inv_freq_" + name] = inv
        meta[name] = repr((dim, base, l3))
    out = os.path.join(HERE, "fixtures", "hfconfig_rope.safetensors")
    save_fixture(out, tensors, meta)
    print("wrote", out)


if __name__ == "__main__":
    main()
