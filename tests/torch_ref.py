"""Plain-PyTorch reference of the Hugging Face Llama forward (modeling_llama.py conventions),
with PEFT-style LoRA on the seven projections. Used by the fixture generators; never by the
test run. Conventions: RMSNorm in fp32, rotate-half RoPE with the llama3 inv_freq rule,
grouped-query attention (repeat_kv), causal softmax in fp32, SwiGLU, tied lm_head.
Padding-free batches: several documents concatenated, positions restart per document and
attention never crosses a document boundary (what lorac does).
"""
import json
import math
import struct

import numpy as np
import torch
import torch.nn.functional as F

from fixtures_io import write_safetensors

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def llama3_inv_freq(cfg):
    D = cfg["head_dim"]
    inv = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, D, 2, dtype=torch.int64).float() / D))
    rs = cfg.get("rope_scaling")
    if not rs or rs.get("rope_type", rs.get("type")) != "llama3":
        return inv
    factor, lo, hi, orig = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"], rs["original_max_position_embeddings"]
    low_wl, high_wl = orig / lo, orig / hi
    wavelen = 2 * math.pi / inv
    inv_l = torch.where(wavelen > low_wl, inv / factor, inv)
    smooth = (orig / wavelen - lo) / (hi - lo)
    smoothed = (1 - smooth) * inv_l / factor + smooth * inv_l
    is_med = ~(wavelen < high_wl) * ~(wavelen > low_wl)
    return torch.where(is_med, smoothed, inv_l)


def rmsnorm(x, w, eps):
    dt = x.dtype
    x = x.to(torch.float32)
    var = x.pow(2).mean(-1, keepdim=True)
    return w * (x * torch.rsqrt(var + eps)).to(dt)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), -1)


def proj_shapes(cfg):
    C, I, H, K, D = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    return {"q_proj": (H * D, C), "k_proj": (K * D, C), "v_proj": (K * D, C), "o_proj": (C, H * D),
            "gate_proj": (I, C), "up_proj": (I, C), "down_proj": (C, I)}


def weight_key(l, t):
    return f"model.layers.{l}.{'self_attn' if t in TARGETS[:4] else 'mlp'}.{t}.weight"


def lora_key(l, t, ab):
    return f"base_model.model.model.layers.{l}.{'self_attn' if t in TARGETS[:4] else 'mlp'}.{t}.lora_{ab}.weight"


def forward(cfg, W, ids, pos, doc, lora=None, scale=1.0):
    """ids/pos/doc: [N] LongTensors (doc = document index per row). Returns final normed h [N, C]."""
    N = ids.shape[0]
    H, K, D = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    eps = cfg["rms_norm_eps"]
    inv = llama3_inv_freq(cfg)
    freqs = pos.float()[:, None] * inv[None, :]
    emb = torch.cat((freqs, freqs), -1)
    cos, sin = emb.cos(), emb.sin()
    allowed = (doc[:, None] == doc[None, :]) & (torch.arange(N)[:, None] >= torch.arange(N)[None, :])
    mask = torch.zeros(N, N).masked_fill(~allowed, float("-inf"))
    x = W["model.embed_tokens.weight"][ids]

    def lin(h, l, t):
        y = h @ W[weight_key(l, t)].t()
        if lora is not None and lora_key(l, t, "A") in lora:
            y = y + scale * ((h @ lora[lora_key(l, t, "A")].t()) @ lora[lora_key(l, t, "B")].t())
        return y

    for l in range(cfg["num_hidden_layers"]):
        h = rmsnorm(x, W[f"model.layers.{l}.input_layernorm.weight"], eps)
        q = lin(h, l, "q_proj").view(N, H, D).transpose(0, 1)
        k = lin(h, l, "k_proj").view(N, K, D).transpose(0, 1)
        v = lin(h, l, "v_proj").view(N, K, D).transpose(0, 1)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(H // K, 0)
        v = v.repeat_interleave(H // K, 0)
        att = torch.softmax((q @ k.transpose(1, 2)) / math.sqrt(D) + mask, -1, dtype=torch.float32)
        o = (att @ v).transpose(0, 1).reshape(N, H * D)
        x = x + lin(o, l, "o_proj")
        h = rmsnorm(x, W[f"model.layers.{l}.post_attention_layernorm.weight"], eps)
        x = x + lin(F.silu(lin(h, l, "gate_proj")) * lin(h, l, "up_proj"), l, "down_proj")
    return rmsnorm(x, W["model.norm.weight"], eps)


def lm_head(cfg, W):
    return W.get("lm_head.weight", W["model.embed_tokens.weight"])


def tiny_config(vocab=256, hidden=32, inter=64, layers=2, heads=4, kv=2, head_dim=8):
    return {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": vocab,
            "hidden_size": hidden, "intermediate_size": inter, "num_hidden_layers": layers,
            "num_attention_heads": heads, "num_key_value_heads": kv, "head_dim": head_dim,
            "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "max_position_embeddings": 131072,
            "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                             "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
            "tie_word_embeddings": True, "bos_token_id": 1, "eos_token_id": [2, 3],
            "torch_dtype": "float32", "hidden_act": "silu", "attention_bias": False, "mlp_bias": False}


def random_weights(cfg, gen):
    W = {"model.embed_tokens.weight": torch.randn(cfg["vocab_size"], cfg["hidden_size"], generator=gen) * 0.5}
    for l in range(cfg["num_hidden_layers"]):
        for t, (o, i) in proj_shapes(cfg).items():
            W[weight_key(l, t)] = torch.randn(o, i, generator=gen) / math.sqrt(i)
        for n in ("input_layernorm", "post_attention_layernorm"):
            W[f"model.layers.{l}.{n}.weight"] = 1 + 0.1 * torch.randn(cfg["hidden_size"], generator=gen)
    W["model.norm.weight"] = 1 + 0.1 * torch.randn(cfg["hidden_size"], generator=gen)
    return W


def save_safetensors(path, tensors, dtype="F32", meta=None):
    """Writes torch tensors as safetensors (F32 or BF16), sorted by name, format=pt."""
    entries = []
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous()
        if dtype == "BF16":
            b = t.to(torch.bfloat16).view(torch.int16).numpy().tobytes()
        else:
            b = t.to(torch.float32).numpy().tobytes()
        entries.append((name, dtype, t.shape, b))
    write_safetensors(path, entries, dict({"format": "pt"}, **(meta or {})))


def train_trajectory(params, loss_fn, micro, N=30, warm=3, lr=1e-2, m=0.1):
    """tests/gen_train.py's optimizer run: N AdamW steps (betas 0.9/0.999, eps 1e-8, wd 0.01),
    cosine schedule with `warm` warmup steps and min_lr_ratio m, grad clip 1.0, grad_accum 2
    over the micro-batches cycled in order; loss_fn(b) is a micro-batch's summed NLL, averaged
    over the supervised tokens of both. Returns (losses, grad norms before clipping)."""
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    losses, norms = [], []
    for n in range(N):
        lr_n = lr * (n + 1) / warm if n < warm else lr * (m + (1 - m) * (1 + math.cos(math.pi * (n - warm) / (N - warm))) / 2)
        for g in opt.param_groups:
            g["lr"] = lr_n
        opt.zero_grad()
        mbs = [micro[(2 * n) % len(micro)], micro[(2 * n + 1) % len(micro)]]
        tot = sum(int((b[3] >= 0).sum()) for b in mbs)
        total = 0.0
        for b in mbs:
            l = loss_fn(b) / tot
            l.backward()
            total += float(l)
        norm = torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(total)
        norms.append(float(norm))
    return losses, norms
