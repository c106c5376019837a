"""Golden fixtures for model/siglip.c and model/projector.c, from PyTorch (/usr/bin/python3).

1. tests/fixtures/tiny-siglip/: a tiny random SigLIP folder in the Hugging Face format
   (config.json as SiglipVisionModel, model.safetensors F32). It also holds dummy
   `text_model.*` and `vision_model.head.*` tensors, which lorac must ignore.
2. tests/fixtures/siglip_ref.safetensors: pixels [2, 3, 32, 32] and, from a plain-torch
   transcription of transformers' SiglipVisionTransformer (modeling_siglip.py: Conv2d patch
   embedding, position_embedding(position_ids), pre-LN encoder layers with eager attention
   and softmax in fp32, gelu_pytorch_tanh MLP, post_layernorm), hidden_states[i] for every i
   (`hidden_<i>`) and `last_hidden_state`; `gelu.last_hidden_state` for the same weights with
   hidden_act "gelu" (exact erf).
3. tests/fixtures/projector_ref.safetensors: for `linear` and `mlp2x_gelu` (nn.Linear /
   nn.GELU() as LLaVA's builder): weights, features, a random upstream gradient dout, the
   output and the gradients of (out * dout).sum() w.r.t. every weight and the features.
"""
import json
import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from fixtures_io import save_fixture  # noqa: E402

OUT = os.path.join(HERE, "fixtures")
torch.manual_seed(20261129)

CFG = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
           num_channels=3, image_size=32, patch_size=8, layer_norm_eps=1e-5,
           hidden_act="gelu_pytorch_tanh")


def config_json():
    c = {"architectures": ["SiglipVisionModel"], "attention_dropout": 0.0, "model_type": "siglip_vision_model",
         "torch_dtype": "float32", "transformers_version": "4.46.0"}
    c.update(CFG)
    return c


def make_weights():
    C, I, p = CFG["hidden_size"], CFG["intermediate_size"], CFG["patch_size"]
    P = (CFG["image_size"] // p) ** 2
    W = {}

    def lin(name, o, i, std=None):
        std = std if std is not None else 1.0 / math.sqrt(i)
        W[name + ".weight"] = torch.randn(o, i) * std
        W[name + ".bias"] = torch.randn(o) * 0.1

    def ln(name):
        W[name + ".weight"] = 1 + 0.2 * torch.randn(C)
        W[name + ".bias"] = 0.1 * torch.randn(C)

    pre = "vision_model."
    W[pre + "embeddings.patch_embedding.weight"] = torch.randn(C, 3, p, p) / math.sqrt(3 * p * p)
    W[pre + "embeddings.patch_embedding.bias"] = 0.1 * torch.randn(C)
    W[pre + "embeddings.position_embedding.weight"] = 0.5 * torch.randn(P, C)
    for l in range(CFG["num_hidden_layers"]):
        L = pre + "encoder.layers.%d." % l
        ln(L + "layer_norm1")
        ln(L + "layer_norm2")
        for k in ("q_proj", "k_proj"):   # sharper attention than 1/sqrt(C), so softmax is exercised
            lin(L + "self_attn." + k, C, C, std=2.0 / math.sqrt(C))
        lin(L + "self_attn.v_proj", C, C)
        lin(L + "self_attn.out_proj", C, C)
        lin(L + "mlp.fc1", I, C)
        lin(L + "mlp.fc2", C, I)
    ln(pre + "post_layernorm")
    return W


def dummies():
    """Keys a full SiglipModel / a vision model with the pooling head also holds (ignored)."""
    C = CFG["hidden_size"]
    return {
        "text_model.embeddings.token_embedding.weight": torch.randn(100, C),
        "text_model.final_layer_norm.weight": torch.ones(C),
        "vision_model.head.probe": torch.randn(1, 1, C),
        "vision_model.head.attention.in_proj_weight": torch.randn(3 * C, C),
        "vision_model.head.layernorm.weight": torch.ones(C),
        "logit_scale": torch.zeros(1),
    }


def siglip_forward(W, pixels, act="gelu_pytorch_tanh"):
    """transformers SiglipVisionTransformer.forward (eval, eager attention), all hidden states.
    act: gelu_pytorch_tanh (SigLIP's) or gelu (exact erf, ACT2FN["gelu"])."""
    C, H, p, eps = CFG["hidden_size"], CFG["num_attention_heads"], CFG["patch_size"], CFG["layer_norm_eps"]
    D = C // H
    scale = D ** -0.5
    B = pixels.shape[0]
    pre = "vision_model."
    x = F.conv2d(pixels, W[pre + "embeddings.patch_embedding.weight"], W[pre + "embeddings.patch_embedding.bias"],
                 stride=p)
    x = x.flatten(2).transpose(1, 2)
    P = x.shape[1]
    position_ids = torch.arange(P).expand((1, -1))
    x = x + F.embedding(position_ids, W[pre + "embeddings.position_embedding.weight"])
    hidden = [x]
    for l in range(CFG["num_hidden_layers"]):
        L = pre + "encoder.layers.%d." % l

        def lin(h, n):
            return F.linear(h, W[L + n + ".weight"], W[L + n + ".bias"])

        r = x
        h = F.layer_norm(x, (C,), W[L + "layer_norm1.weight"], W[L + "layer_norm1.bias"], eps)
        q = lin(h, "self_attn.q_proj").view(B, P, H, D).transpose(1, 2)
        k = lin(h, "self_attn.k_proj").view(B, P, H, D).transpose(1, 2)
        v = lin(h, "self_attn.v_proj").view(B, P, H, D).transpose(1, 2)
        a = torch.matmul(q, k.transpose(2, 3)) * scale
        a = F.softmax(a, dim=-1, dtype=torch.float32).to(q.dtype)
        o = torch.matmul(a, v).transpose(1, 2).contiguous().reshape(B, P, C)
        x = r + lin(o, "self_attn.out_proj")
        r = x
        h = F.layer_norm(x, (C,), W[L + "layer_norm2.weight"], W[L + "layer_norm2.bias"], eps)
        h = lin(F.gelu(lin(h, "mlp.fc1"), approximate="tanh" if act != "gelu" else "none"), "mlp.fc2")
        x = r + h
        hidden.append(x)
    last = F.layer_norm(x, (C,), W[pre + "post_layernorm.weight"], W[pre + "post_layernorm.bias"], eps)
    return hidden, last


def gen_siglip():
    W = make_weights()
    folder = os.path.join(OUT, "tiny-siglip")
    os.makedirs(folder, exist_ok=True)
    all_w = dict(W)
    all_w.update(dummies())
    save_fixture(os.path.join(folder, "model.safetensors"), dict(sorted(all_w.items())), meta={"format": "pt"})
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config_json(), f, indent=2, sort_keys=True)
        f.write("\n")
    S = CFG["image_size"]
    pixels = torch.rand(2, 3, S, S) * 2 - 1
    with torch.no_grad():
        hidden, last = siglip_forward(W, pixels)
    t = {"pixels": pixels}
    for i, h in enumerate(hidden):
        t["hidden_%d" % i] = h.reshape(-1, CFG["hidden_size"])
    t["last_hidden_state"] = last.reshape(-1, CFG["hidden_size"])
    with torch.no_grad():   # the same weights with hidden_act "gelu" (exact)
        _, last = siglip_forward(W, pixels, act="gelu")
    t["gelu.last_hidden_state"] = last.reshape(-1, CFG["hidden_size"])
    path = os.path.join(OUT, "siglip_ref.safetensors")
    save_fixture(path, t, meta={"num_layers": CFG["num_hidden_layers"]})
    print("wrote", folder, "and", path)


def gen_projector():
    Cv, Ct, N = 32, 48, 10
    t = {}
    for kind in ("linear", "mlp2x_gelu"):
        if kind == "linear":
            mod = nn.Linear(Cv, Ct)
            names = {"model.mm_projector.weight": mod.weight, "model.mm_projector.bias": mod.bias}
        else:   # LLaVA's builder: nn.Sequential(Linear, GELU(), Linear) -> indices 0 and 2
            mod = nn.Sequential(nn.Linear(Cv, Ct), nn.GELU(), nn.Linear(Ct, Ct))
            names = {"model.mm_projector.0.weight": mod[0].weight, "model.mm_projector.0.bias": mod[0].bias,
                     "model.mm_projector.2.weight": mod[2].weight, "model.mm_projector.2.bias": mod[2].bias}
        feats = torch.randn(N, Cv).requires_grad_(True)
        out = mod(feats)
        dout = torch.randn(out.shape)
        (out * dout).sum().backward()
        t[kind + ".features"] = feats.detach()
        t[kind + ".dfeatures"] = feats.grad
        t[kind + ".dout"] = dout
        t[kind + ".out"] = out.detach()
        for n, p in names.items():
            t[kind + "." + n] = p.detach()
            t[kind + ".d." + n] = p.grad
    path = os.path.join(OUT, "projector_ref.safetensors")
    save_fixture(path, t, meta={"vision_hidden": Cv, "text_hidden": Ct, "rows": N})
    print("wrote", path)


if __name__ == "__main__":
    gen_siglip()
    gen_projector()
