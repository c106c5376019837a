"""Golden fixtures for rope, attention, cross-entropy and AdamW (tests/test_ops_attn.c,
tests/test_adamw.c). Run with /usr/bin/python3 (torch 1.13 CPU); writes
tests/fixtures/ops_attn_{rope,attention,ce,adamw}.safetensors.

Attention inputs are not stored: q, k, v and dout are regenerated in C by gc_fill(x, n, -1, 1,
seed) (tests/gradcheck.h: splitmix64, u = (z >> 40) / 2^24, x = -1 + 2u, exact in fp32), which
splitmix_fill() below reproduces bit for bit. References for attention and cross-entropy are
computed in float64 and stored as float32; RoPE follows HF Llama in fp32 (θ = (float)pos ·
inv_freq, cos/sin in fp32); AdamW and clipping run torch.optim.AdamW /
torch.nn.utils.clip_grad_norm_ on fp32 parameters.
"""
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixtures_io import save_fixture  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
M64 = (1 << 64) - 1


def splitmix_fill(n, seed):
    """gc_fill(x, n, -1, 1, seed) of tests/gradcheck.h."""
    s, out = seed, np.empty(n, dtype=np.float32)
    for i in range(n):
        s = (s + 0x9E3779B97F4A7C15) & M64
        z = s
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
        z ^= z >> 31
        out[i] = -1.0 + 2.0 * ((z >> 40) / 16777216.0)
    return out


# --- RoPE (HF Llama rotate-half, fp32)

def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def gen_rope():
    torch.manual_seed(1)
    N, nh, D, base = 24, 3, 16, 500000.0
    pos = torch.tensor(list(range(10)) + list(range(8)) + [5000, 70000, 131071, 4095, 1, 0], dtype=torch.int32)
    inv_freq = 1.0 / (base ** (torch.arange(0, D, 2, dtype=torch.int64).float() / D))
    x = torch.randn(N, nh * D, dtype=torch.float32, requires_grad=True)
    dout = torch.randn(N, nh * D, dtype=torch.float32)
    freqs = (inv_freq[None, :, None].float() @ pos[None, None, :].float()).transpose(1, 2)  # [1, N, D/2]
    emb = torch.cat((freqs, freqs), dim=-1)[0]
    cos, sin = emb.cos()[:, None, :], emb.sin()[:, None, :]
    xv = x.view(N, nh, D)
    out = (xv * cos + rotate_half(xv) * sin).reshape(N, nh * D)
    (out * dout).sum().backward()
    save_fixture(os.path.join(OUT, "ops_attn_rope.safetensors"),
                 {"x": x, "pos": pos, "inv_freq": inv_freq, "dout": dout, "out": out, "dx": x.grad},
                 meta={"nheads": nh})


# --- attention (explicit softmax(q kᵀ · scale + mask) v with repeat_interleave for GQA)

def attention_ref(q, k, v, H, K, beg, end, scale):
    Nq, Nk = q.shape[0], k.shape[0]
    D = q.shape[1] // H
    qh = q.view(Nq, H, D).transpose(0, 1)                                     # [H, Nq, D]
    kh = k.view(Nk, K, D).transpose(0, 1).repeat_interleave(H // K, dim=0)    # [H, Nk, D]
    vh = v.view(Nk, K, D).transpose(0, 1).repeat_interleave(H // K, dim=0)
    j = torch.arange(Nk)[None, :]
    allowed = (j >= beg[:, None].long()) & (j < end[:, None].long())          # [Nq, Nk]
    nonempty = allowed.any(dim=1)                                             # [Nq]
    s = (qh @ kh.transpose(1, 2)) * scale
    s = s.masked_fill(~allowed[None] & nonempty[None, :, None], float("-inf"))
    p = torch.softmax(s, dim=-1) * nonempty[None, :, None]   # a row with no keys: zero output
    return (p @ vh).transpose(0, 1).reshape(Nq, H * D)


def gen_attention():
    # (Nq, Nk, H, K, D, scale, ranges) with ranges: "causal", or (beg list or None, end list or None)
    cases = []
    for T, K in [(1, 4), (2, 2), (3, 1), (17, 4), (17, 2), (17, 1), (64, 4), (64, 2), (64, 1),
                 (128, 1), (128, 2), (300, 2), (300, 1)]:
        cases.append((T, T, 4, K, 8, 0.9, "causal"))
    docs = [0, 30, 31, 77, 100]   # packed documents: causal within each
    beg = [d0 for d0, d1 in zip(docs, docs[1:]) for _ in range(d0, d1)]
    cases.append((100, 100, 4, 2, 8, 1 / math.sqrt(8), (beg, list(range(1, 101)))))
    img = 49   # SigLIP-like: two images, each patch attends its image's block (non-causal)
    cases.append((2 * img, 2 * img, 4, 4, 8, 1.1, ([i // img * img for i in range(2 * img)],
                                                   [i // img * img + img for i in range(2 * img)])))
    cases.append((5, 70, 8, 2, 16, 1 / math.sqrt(16), "causal"))   # KV-cache decoding: 5 new rows
    cases.append((40, 40, 2, 1, 8, 0.9, ([max(0, i - 10) for i in range(40)], None)))   # window + causal end
    cases.append((6, 20, 4, 1, 4, 0.9, ([0, 3, 5, 5, 0, 19], [20, 9, 5, 6, 1, 20])))  # incl. an empty range
    tensors, meta = {}, {"ncases": len(cases)}
    for ci, (Nq, Nk, H, K, D, scale, rng) in enumerate(cases):
        seed = 1000 * (ci + 1)
        q = torch.from_numpy(splitmix_fill(Nq * H * D, seed + 1)).view(Nq, H * D)
        k = torch.from_numpy(splitmix_fill(Nk * K * D, seed + 2)).view(Nk, K * D)
        v = torch.from_numpy(splitmix_fill(Nk * K * D, seed + 3)).view(Nk, K * D)
        dout = torch.from_numpy(splitmix_fill(Nq * H * D, seed + 4)).view(Nq, H * D)
        b = torch.zeros(Nq, dtype=torch.int32)
        e = torch.tensor([Nk - Nq + i + 1 for i in range(Nq)], dtype=torch.int32)
        flags = 0
        if rng != "causal":
            if rng[0] is not None:
                b = torch.tensor(rng[0], dtype=torch.int32)
                tensors[f"c{ci}.beg"] = b
                flags |= 1
            if rng[1] is not None:
                e = torch.tensor(rng[1], dtype=torch.int32)
                tensors[f"c{ci}.end"] = e
                flags |= 2
        q64, k64, v64 = (t.double().requires_grad_(True) for t in (q, k, v))
        out = attention_ref(q64, k64, v64, H, K, b, e, scale)
        (out * dout.double()).sum().backward()
        for name, t in [("out", out), ("dq", q64.grad), ("dk", k64.grad), ("dv", v64.grad)]:
            assert torch.isfinite(t).all()
            tensors[f"c{ci}.{name}"] = t.detach().float()
        for key, val in [("Nq", Nq), ("Nk", Nk), ("H", H), ("K", K), ("D", D), ("scale", scale),
                         ("seed", seed), ("ranges", flags)]:
            meta[f"c{ci}.{key}"] = val
    save_fixture(os.path.join(OUT, "ops_attn_attention.safetensors"), tensors, meta=meta)


# --- fused lm-head cross-entropy vs F.cross_entropy(ignore_index=-1, reduction='sum') / norm

def gen_ce():
    torch.manual_seed(2)
    tensors, meta = {}, {}
    for ci, (N, C, V, hscale, norm, dloss) in enumerate([(16, 24, 300, 1.0, 21.0, 1.7),
                                                          (9, 8, 1000, 30.0, 5.0, 1.0)]):
        h = (torch.randn(N, C) * hscale).float()
        W = (torch.randn(V, C) * 0.5).float()
        t = torch.randint(0, V, (N,), dtype=torch.int64)
        t[1] = -1
        t[4] = -1
        t[0] = V - 1
        t[2] = 0
        h64 = h.double().requires_grad_(True)
        logits = h64 @ W.double().T
        loss = F.cross_entropy(logits, t, ignore_index=-1, reduction="sum") / norm
        (loss * dloss).backward()
        nll = F.cross_entropy(logits.detach(), t, ignore_index=-1, reduction="none")
        tensors.update({f"c{ci}.h": h, f"c{ci}.W": W, f"c{ci}.targets": t.int(),
                        f"c{ci}.loss": loss.detach().float().reshape(1), f"c{ci}.dh": h64.grad.float(),
                        f"c{ci}.nll": nll.float()})
        meta.update({f"c{ci}.norm": norm, f"c{ci}.dloss": dloss})
    meta["ncases"] = 2
    save_fixture(os.path.join(OUT, "ops_attn_ce.safetensors"), tensors, meta=meta)


# --- AdamW: 20 steps of torch.optim.AdamW on a fixed gradient sequence

def gen_adamw():
    torch.manual_seed(3)
    shapes = [(7, 13), (50,), (4, 4)]
    n = sum(int(np.prod(s)) for s in shapes)
    steps = 20
    p0 = torch.randn(n).float()
    scales = torch.tensor([0.05, 0.3, 1.0, 3.0, 0.1] * 4)
    grads = (torch.randn(steps, n) * scales[:, None] / math.sqrt(n) * 8).float()
    lrs = torch.tensor([1e-3 * min(1.0, (t + 1) / 5) * (0.5 + 0.5 * math.cos(math.pi * t / steps))
                        for t in range(steps)], dtype=torch.float32)
    tensors = {"p0": p0, "grads": grads, "lrs": lrs}
    meta = {}
    for ci, (wd, b1, b2, eps, clip) in enumerate([(0.01, 0.9, 0.999, 1e-8, 0.0), (0.1, 0.9, 0.95, 1e-6, 1.0)]):
        params, off = [], 0
        for s in shapes:
            k = int(np.prod(s))
            params.append(p0[off:off + k].clone().view(s).requires_grad_(True))
            off += k
        opt = torch.optim.AdamW(params, lr=1e-3, betas=(b1, b2), eps=eps, weight_decay=wd)
        traj, norms = [], []
        for t in range(steps):
            off = 0
            for p in params:
                k = p.numel()
                p.grad = grads[t, off:off + k].clone().view(p.shape)
                off += k
            if clip > 0:
                norms.append(float(torch.nn.utils.clip_grad_norm_(params, clip)))
            opt.param_groups[0]["lr"] = float(lrs[t])
            opt.step()
            traj.append(torch.cat([p.detach().reshape(-1) for p in params]))
        tensors[f"c{ci}.traj"] = torch.stack(traj)
        if clip > 0:
            tensors[f"c{ci}.norms"] = torch.tensor(norms, dtype=torch.float32)
        meta.update({f"c{ci}.wd": wd, f"c{ci}.beta1": b1, f"c{ci}.beta2": b2, f"c{ci}.eps": eps,
                     f"c{ci}.clip": clip})
    meta.update({"ncases": 2, "steps": steps, "n": n})
    save_fixture(os.path.join(OUT, "ops_attn_adamw.safetensors"), tensors, meta=meta)


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    torch.set_num_threads(1)
    gen_rope()
    gen_attention()
    gen_ce()
    gen_adamw()
    for f in sorted(os.listdir(OUT)):
        if f.startswith("ops_attn_"):
            print(f, os.path.getsize(os.path.join(OUT, f)), "bytes")
