"""PyTorch eager baseline for `make bench` (run side by side with lorac in one run).

Same shapes, same work as lorac's benchmarks, random weights, fp32, torch.set_num_threads(2):
  lora      one LoRA training step (forward, loss, backward into the LoRA factors only) on the
            Llama-3.2-1B shapes, rank 16 on all seven projections, batch 1 x T tokens;
            --supervised all|half (half: the first half is an unsupervised prompt)
  eval      no-grad forward + NLL over windows of T tokens (perplexity)
  siglip    no-grad SigLIP-base-patch16-224 vision forward at batch B
Prints one JSON object: median seconds per iteration, tokens/s (or images/s), peak RSS.
Run it with GLIBC_TUNABLES=glibc.malloc.hugetlb=1 (its best setting on this machine).
"""
import argparse
import json
import math
import resource
import statistics
import time

import torch
import torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("what", choices=["lora", "eval", "siglip"])
p.add_argument("--tokens", type=int, default=512)
p.add_argument("--supervised", choices=["all", "half"], default="all")
p.add_argument("--iters", type=int, default=3)
p.add_argument("--batch", type=int, default=8)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--layers", type=int, default=16)
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)

V, C, I, NL, H, K, D = 128256, 2048, 8192, a.layers, 32, 8, 64


def rope_tables(T, theta=500000.0, factor=32.0, lo=1.0, hi=4.0, orig=8192):
    inv = 1.0 / (theta ** (torch.arange(0, D, 2, dtype=torch.int64).float() / D))
    wavelen = 2 * math.pi / inv
    low_wl, high_wl = orig / lo, orig / hi
    inv_l = torch.where(wavelen > low_wl, inv / factor, inv)
    smooth = (orig / wavelen - lo) / (hi - lo)
    smoothed = (1 - smooth) * inv_l / factor + smooth * inv_l
    is_med = ~(wavelen < high_wl) * ~(wavelen > low_wl)
    inv = torch.where(is_med, smoothed, inv_l)
    f = torch.outer(torch.arange(T).float(), inv)
    emb = torch.cat([f, f], -1)
    return emb.cos(), emb.sin()


def rot(x, cos, sin):
    x1, x2 = x[..., : D // 2], x[..., D // 2:]
    return x * cos + torch.cat([-x2, x1], -1) * sin


def rms(x, w, eps=1e-5):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


class Lin:
    def __init__(self, o, i, lora):
        self.W = torch.randn(o, i) * 0.02
        self.A = (torch.rand(16, i) * 2 - 1) / math.sqrt(i) if lora else None
        self.B = torch.zeros(o, 16) if lora else None
        if lora:
            self.A.requires_grad_(True)
            self.B.requires_grad_(True)

    def __call__(self, x, drop):
        y = x @ self.W.t()
        if self.A is not None:
            y = y + 2.0 * (F.dropout(x, drop, True) @ self.A.t()) @ self.B.t()
        return y


def llama(lora):
    emb = torch.randn(V, C) * 0.02
    layers = []
    for _ in range(NL):
        layers.append({n: Lin(o, i, lora) for n, o, i in [("q", H * D, C), ("k", K * D, C), ("v", K * D, C),
                                                          ("o", C, H * D), ("g", I, C), ("u", I, C), ("d", C, I)]})
        layers[-1]["n1"] = torch.ones(C)
        layers[-1]["n2"] = torch.ones(C)
    return emb, layers, torch.ones(C)


def forward(model, ids, drop):
    emb, layers, norm = model
    T = ids.shape[0]
    cos, sin = rope_tables(T)
    mask = torch.full((T, T), float("-inf")).triu(1)
    x = emb[ids]
    for L in layers:
        h = rms(x, L["n1"])
        q = L["q"](h, drop).view(T, H, D).transpose(0, 1)
        k = L["k"](h, drop).view(T, K, D).transpose(0, 1)
        v = L["v"](h, drop).view(T, K, D).transpose(0, 1)
        q, k = rot(q, cos, sin), rot(k, cos, sin)
        k = k.repeat_interleave(H // K, 0)
        v = v.repeat_interleave(H // K, 0)
        att = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(D) + mask, -1)
        o = (att @ v).transpose(0, 1).reshape(T, H * D)
        x = x + L["o"](o, drop)
        h = rms(x, L["n2"])
        x = x + L["d"](F.silu(L["g"](h, drop)) * L["u"](h, drop), drop)
    return rms(x, norm)


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


times = []
if a.what in ("lora", "eval"):
    model = llama(a.what == "lora")
    T = a.tokens
    ids = torch.randint(0, V, (T,))
    tgt = torch.roll(ids, -1)
    tgt[-1] = -100
    if a.supervised == "half":
        tgt[: T // 2] = -100
    for it in range(a.iters + 1):
        t0 = time.perf_counter()
        if a.what == "lora":
            h = forward(model, ids, 0.05)
            logits = h @ model[0].t()
            loss = F.cross_entropy(logits, tgt, ignore_index=-100)
            loss.backward()
        else:
            with torch.no_grad():
                h = forward(model, ids, 0.0)
                logits = h @ model[0].t()
                loss = F.cross_entropy(logits, tgt, ignore_index=-100)
        dt = time.perf_counter() - t0
        if it > 0:
            times.append(dt)
    med = statistics.median(times)
    print(json.dumps({"impl": "pytorch", "bench": a.what, "supervised": a.supervised, "tokens": T,
                      "sec": med, "tokens_per_s": T / med, "peak_rss_mb": peak_rss_mb(),
                      "loss": float(loss)}))
else:
    Cs, Is, NLs, Hs, P, ps = 768, 3072, 12, 12, 196, 16
    Ds = Cs // Hs
    w = {"patch": torch.randn(Cs, 3 * ps * ps) * 0.02, "pos": torch.randn(P, Cs) * 0.02}
    layers = []
    for _ in range(NLs):
        layers.append({n: (torch.randn(o, i) * 0.02, torch.zeros(o)) for n, o, i in
                       [("q", Cs, Cs), ("k", Cs, Cs), ("v", Cs, Cs), ("o", Cs, Cs), ("f1", Is, Cs), ("f2", Cs, Is)]})
    img = torch.randn(a.batch, 3, 224, 224)
    for it in range(a.iters + 1):
        t0 = time.perf_counter()
        with torch.no_grad():
            x = F.conv2d(img, w["patch"].view(Cs, 3, ps, ps), stride=ps).flatten(2).transpose(1, 2) + w["pos"]
            for L in layers:
                h = F.layer_norm(x, (Cs,), eps=1e-6)
                B = h.shape[0]
                q = F.linear(h, *L["q"]).view(B, P, Hs, Ds).transpose(1, 2)
                k = F.linear(h, *L["k"]).view(B, P, Hs, Ds).transpose(1, 2)
                v = F.linear(h, *L["v"]).view(B, P, Hs, Ds).transpose(1, 2)
                att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(Ds), -1)
                x = x + F.linear((att @ v).transpose(1, 2).reshape(B, P, Cs), *L["o"])
                h = F.layer_norm(x, (Cs,), eps=1e-6)
                x = x + F.linear(F.gelu(F.linear(h, *L["f1"]), approximate="tanh"), *L["f2"])
        dt = time.perf_counter() - t0
        if it > 0:
            times.append(dt)
    med = statistics.median(times)
    print(json.dumps({"impl": "pytorch", "bench": "siglip", "batch": a.batch, "sec": med,
                      "images_per_s": a.batch / med, "peak_rss_mb": peak_rss_mb()}))
