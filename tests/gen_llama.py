"""Golden fixtures for model/llama: tiny random Hugging Face Llama folders + reference logits.

Writes
  tests/fixtures/tiny-llama-bf16/{config.json, model.safetensors}   BF16, tied embeddings
  tests/fixtures/tiny-llama-f32/{config.json, model.safetensors}    F32, separate lm_head,
                                                                     head_dim != hidden/heads
  tests/fixtures/llama_bf16.safetensors, tests/fixtures/llama_f32.safetensors   golden data

The reference forward is the Hugging Face LlamaForCausalLM forward (transformers
src/transformers/models/llama/modeling_llama.py) written out in plain torch (transformers
is not installed here), run in float32 on the weights exactly as stored (BF16 weights
upcast to fp32, as `from_pretrained(torch_dtype=torch.float32)` does):
RMSNorm in fp32, rotate_half RoPE with the llama3 inv_freq rule
(modeling_rope_utils._compute_llama3_parameters), GQA via repeat_kv, fp32 softmax with a
causal mask, SwiGLU MLP, tied lm_head when tie_word_embeddings.

Golden tensors per model:
  ids_a [La], ids_b [Lb], logits_a [La,V], logits_b [Lb,V]   two separate documents
  loss [1]: next-token cross-entropy over both documents (packed: each doc's last token has
            no target), averaged over the supervised tokens
  emb [Ne,C], logits_emb [Ne,V]                               inputs_embeds path
  inv_freq [D/2]
Run with /usr/bin/python3 (torch 1.13).
"""
import json
import math
import os
import struct

import numpy as np
import torch

from fixtures_io import write_safetensors

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "fixtures")

# --- safetensors writer (save_fixture from fixtures_io.py, extended with BF16 + metadata)


def save_safetensors(path, tensors, meta=None):
    """tensors: name -> (dtype string, shape, raw bytes)."""
    write_safetensors(path, [(n,) + tuple(tensors[n]) for n in sorted(tensors)], dict(meta or {"format": "pt"}))


def raw(t, dtype):
    if dtype == "BF16":
        return ("BF16", tuple(t.shape), t.to(torch.bfloat16).contiguous().view(torch.int16).numpy().tobytes())
    if dtype == "F32":
        return ("F32", tuple(t.shape), t.to(torch.float32).contiguous().numpy().tobytes())
    if dtype == "I32":
        return ("I32", tuple(t.shape), t.to(torch.int32).contiguous().numpy().tobytes())
    raise ValueError(dtype)


# --- the HF Llama forward in plain torch


def llama3_inv_freq(cfg):
    D = cfg["head_dim"]
    base = cfg["rope_theta"]
    inv_freq = 1.0 / (base ** (torch.arange(0, D, 2, dtype=torch.int64).float() / D))
    rs = cfg.get("rope_scaling")
    if not rs or rs.get("rope_type", rs.get("type")) != "llama3":
        return inv_freq
    factor = rs["factor"]
    low_freq_factor = rs["low_freq_factor"]
    high_freq_factor = rs["high_freq_factor"]
    old_context_len = rs["original_max_position_embeddings"]
    low_freq_wavelen = old_context_len / low_freq_factor
    high_freq_wavelen = old_context_len / high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    inv_freq_llama = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    smooth_factor = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    smoothed = (1 - smooth_factor) * inv_freq_llama / factor + smooth_factor * inv_freq_llama
    is_medium = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
    return torch.where(is_medium, smoothed, inv_freq_llama)


def rmsnorm(x, w, eps):
    dt = x.dtype
    h = x.to(torch.float32)
    var = h.pow(2).mean(-1, keepdim=True)
    h = h * torch.rsqrt(var + eps)
    return w * h.to(dt)


def rotate_half(x):
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def repeat_kv(x, n_rep):
    b, k, t, d = x.shape
    if n_rep == 1:
        return x
    return x[:, :, None, :, :].expand(b, k, n_rep, t, d).reshape(b, k * n_rep, t, d)


def forward(cfg, W, inv_freq, ids=None, embeds=None):
    """One sequence (batch 1), positions 0..T-1. Returns logits [T, V]."""
    H, K, D = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    eps = cfg["rms_norm_eps"]
    x = W["model.embed_tokens.weight"][ids][None] if embeds is None else embeds[None]
    T = x.shape[1]
    pos = torch.arange(T)[None]
    freqs = (inv_freq[None, :, None].float() @ pos[:, None, :].float()).transpose(1, 2)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos()[:, None], emb.sin()[:, None]    # [1,1,T,D]
    mask = torch.full((T, T), float("-inf")).triu(1)
    for l in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % l
        res = x
        h = rmsnorm(x, W[p + "input_layernorm.weight"], eps)
        q = (h @ W[p + "self_attn.q_proj.weight"].T).view(1, T, H, D).transpose(1, 2)
        k = (h @ W[p + "self_attn.k_proj.weight"].T).view(1, T, K, D).transpose(1, 2)
        v = (h @ W[p + "self_attn.v_proj.weight"].T).view(1, T, K, D).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = repeat_kv(k, H // K)
        v = repeat_kv(v, H // K)
        att = q @ k.transpose(2, 3) * (D ** -0.5) + mask
        att = torch.softmax(att, dim=-1, dtype=torch.float32).to(q.dtype)
        o = (att @ v).transpose(1, 2).reshape(1, T, H * D)
        x = res + o @ W[p + "self_attn.o_proj.weight"].T
        res = x
        h = rmsnorm(x, W[p + "post_attention_layernorm.weight"], eps)
        g = h @ W[p + "mlp.gate_proj.weight"].T
        u = h @ W[p + "mlp.up_proj.weight"].T
        x = res + (torch.nn.functional.silu(g) * u) @ W[p + "mlp.down_proj.weight"].T
    x = rmsnorm(x, W["model.norm.weight"], eps)
    lm = W["model.embed_tokens.weight"] if cfg["tie_word_embeddings"] else W["lm_head.weight"]
    return (x @ lm.T)[0]


# --- fixture models


def make(name, dtype, cfg, seed):
    g = torch.Generator().manual_seed(seed)
    C, I, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    H, K, D = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]

    def rnd(*shape, std=0.1):
        return torch.randn(*shape, generator=g) * std

    def norm_w(n):
        return 1.0 + 0.1 * torch.randn(n, generator=g)

    W = {"model.embed_tokens.weight": rnd(V, C, std=0.2), "model.norm.weight": norm_w(C)}
    if not cfg["tie_word_embeddings"]:
        W["lm_head.weight"] = rnd(V, C, std=0.1)
    for l in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % l
        W[p + "input_layernorm.weight"] = norm_w(C)
        W[p + "post_attention_layernorm.weight"] = norm_w(C)
        W[p + "self_attn.q_proj.weight"] = rnd(H * D, C, std=C ** -0.5)
        W[p + "self_attn.k_proj.weight"] = rnd(K * D, C, std=C ** -0.5)
        W[p + "self_attn.v_proj.weight"] = rnd(K * D, C, std=C ** -0.5)
        W[p + "self_attn.o_proj.weight"] = rnd(C, H * D, std=(H * D) ** -0.5)
        W[p + "mlp.gate_proj.weight"] = rnd(I, C, std=C ** -0.5)
        W[p + "mlp.up_proj.weight"] = rnd(I, C, std=C ** -0.5)
        W[p + "mlp.down_proj.weight"] = rnd(C, I, std=I ** -0.5)
    # the weights as the file stores them (BF16 rounding), then upcast: the reference sees
    # exactly what the C loader sees
    if dtype == "BF16":
        W = {k: v.to(torch.bfloat16).to(torch.float32) for k, v in W.items()}

    folder = os.path.join(FIX, name)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    save_safetensors(os.path.join(folder, "model.safetensors"), {k: raw(v, dtype) for k, v in W.items()})

    inv_freq = llama3_inv_freq(cfg)
    ids_a = torch.randint(0, V, (13,), generator=g)
    ids_b = torch.randint(0, V, (9,), generator=g)
    with torch.no_grad():
        la = forward(cfg, W, inv_freq, ids=ids_a)
        lb = forward(cfg, W, inv_freq, ids=ids_b)
        emb = torch.randn(6, C, generator=g)
        le = forward(cfg, W, inv_freq, embeds=emb)
    # packed loss: each document predicts its own next tokens; the last token of a
    # document has no target (HF's shift within each sequence)
    nll = torch.cat([
        torch.nn.functional.cross_entropy(la[:-1], ids_a[1:], reduction="none"),
        torch.nn.functional.cross_entropy(lb[:-1], ids_b[1:], reduction="none"),
    ])
    loss = nll.mean()
    out = {
        "ids_a": raw(ids_a, "I32"), "ids_b": raw(ids_b, "I32"),
        "logits_a": raw(la, "F32"), "logits_b": raw(lb, "F32"),
        "emb": raw(emb, "F32"), "logits_emb": raw(le, "F32"),
        "loss": raw(loss.reshape(1), "F32"), "inv_freq": raw(inv_freq, "F32"),
    }
    save_safetensors(os.path.join(FIX, "llama_%s.safetensors" % name.split("-")[-1]), out,
                     meta={"model": name, "dtype": dtype})
    print("%s: %d params, logit scale %.3f, loss %.5f" % (
        name, sum(v.numel() for v in W.values()), max(la.abs().max(), lb.abs().max()), loss.item()))


def base_cfg(**kw):
    cfg = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "attention_bias": False, "mlp_bias": False, "hidden_act": "silu",
        "bos_token_id": 1, "eos_token_id": [2, 3], "initializer_range": 0.02,
        "max_position_embeddings": 256, "pretraining_tp": 1, "use_cache": True,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        # small original context so the llama3 rule touches high, medium and low frequencies
        "rope_scaling": {"rope_type": "llama3", "factor": 4.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 32},
    }
    cfg.update(kw)
    return cfg


def main():
    torch.set_num_threads(1)
    make("tiny-llama-bf16", "BF16", base_cfg(
        vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, tie_word_embeddings=True,
        torch_dtype="bfloat16"), seed=1)
    make("tiny-llama-f32", "F32", base_cfg(
        vocab_size=256, hidden_size=32, intermediate_size=80, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=1, head_dim=12, tie_word_embeddings=False,
        rms_norm_eps=1e-6, rope_theta=500000.0, torch_dtype="float32"), seed=2)


if __name__ == "__main__":
    main()
