"""Golden RoPE inverse frequencies for tests/test_hfconfig.c.

Mirrors transformers' modeling_rope_utils: _compute_default_rope_parameters
(1 / base ** (arange(0, dim, 2).float() / dim)) and _compute_llama3_parameters (wavelength
thresholds old_context_len / low_freq_factor and / high_freq_factor, smooth blend in
between), in torch fp32 exactly as written there. Writes tests/fixtures/hfconfig_rope.safetensors
with one tensor inv_freq_<case> per case; the case parameters are in the metadata and
repeated in the C test.
"""
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixtures_io import save_fixture  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))

# name: (head_dim, rope_theta, llama3 params (factor, low, high, original_max_pos) or None)
CASES = {
    "llama32_1b": (64, 500000.0, (32.0, 1.0, 4.0, 8192)),
    "tiny": (16, 500000.0, (32.0, 1.0, 4.0, 8192)),
    "llama31_8b": (128, 500000.0, (8.0, 1.0, 4.0, 8192)),
    "default": (64, 10000.0, None),
    "odd_factors": (32, 123456.0, (4.0, 2.0, 8.0, 1024)),
}


def default_inv_freq(base, dim):
    return 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))


def llama3_inv_freq(base, dim, factor, low_freq_factor, high_freq_factor, old_context_len):
    inv_freq = default_inv_freq(base, dim)
    low_freq_wavelen = old_context_len / low_freq_factor
    high_freq_wavelen = old_context_len / high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    inv_freq_llama = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    smooth_factor = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    smoothed_inv_freq = (1 - smooth_factor) * inv_freq_llama / factor + smooth_factor * inv_freq_llama
    is_medium_freq = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
    return torch.where(is_medium_freq, smoothed_inv_freq, inv_freq_llama)


def main():
    tensors, meta = {}, {}
    for name, (dim, base, l3) in CASES.items():
        inv = default_inv_freq(base, dim) if l3 is None else llama3_inv_freq(base, dim, *l3)
        tensors["inv_freq_" + name] = inv
        meta[name] = repr((dim, base, l3))
    out = os.path.join(HERE, "fixtures", "hfconfig_rope.safetensors")
    save_fixture(out, tensors, meta)
    print("wrote", out)


if __name__ == "__main__":
    main()
