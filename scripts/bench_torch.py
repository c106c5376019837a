"""PyTorch eager baseline for `make bench` (scripts/bench.sh runs it beside lorac, taking turns).

The baseline a user would really run, tuned as they would tune it: Debian's python3-torch 1.13,
torch.set_num_threads(THREADS), the same OpenMP OpenBLAS build as lorac (scripts/bench.sh puts
/usr/lib/x86_64-linux-gnu/openblas-openmp first on LD_LIBRARY_PATH for this process; the
summary names the libopenblas this process actually mapped), GLIBC_TUNABLES=glibc.malloc.hugetlb=1,
torch.inference_mode() for the no-grad rows. Same shapes and work as lorac's benchmarks, random
weights:
  lora      one LoRA training step on the Llama-3.2-1B shapes, rank 16 on all seven projections,
            batch 1 x T tokens: forward, logits only for the supervised rows, cross-entropy,
            backward into the LoRA factors, gradient clipping and AdamW (as lorac's step);
            --supervised all|half (half: the first half is an unsupervised prompt)
  eval      inference-mode forward + NLL over one window of T tokens
  siglip    inference-mode SigLIP-base-patch16-224 vision forward at batch B
--precision fp32: every weight fp32. --precision bf16: the usual PEFT recipe — the frozen model
loaded in BF16 (`torch_dtype=torch.bfloat16`: weights, embeddings and norms in BF16, so the
residual stream is BF16 as in Hugging Face's Llama), LoRA factors and their AdamW state fp32,
the step under torch.autocast("cpu", dtype=torch.bfloat16); logits upcast to fp32 before the
loss as Hugging Face's LlamaForCausalLM does. --weights fp32 keeps fp32 frozen weights under
autocast instead (the HF Trainer's `bf16=True` on an fp32-loaded model), for comparison.
--interleave: prints {"ready": true} once built, then before each iteration (warm-up included)
waits for one line on stdin and prints {"iter": ...} after it. The last line is the summary.
"""
import argparse
import contextlib
import json
import math
import resource
import statistics
import sys
import time

import torch
import torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("what", choices=["lora", "eval", "siglip"])
p.add_argument("--tokens", type=int, default=512)
p.add_argument("--supervised", choices=["all", "half"], default="all")
p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
p.add_argument("--weights", choices=["fp32", "bf16"], default=None,
               help="dtype of the frozen weights (default: the precision's)")
p.add_argument("--iters", type=int, default=3)
p.add_argument("--warmup", type=int, default=1)
p.add_argument("--batch", type=int, default=8)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--layers", type=int, default=16)
p.add_argument("--interleave", action="store_true")
a = p.parse_args()
if a.tokens < 2 or a.iters < 1 or a.warmup < 0 or a.batch < 1 or a.threads < 1:
    p.error("--tokens >= 2, --iters >= 1, --warmup >= 0, --batch >= 1, --threads >= 1")
torch.set_num_threads(a.threads)
torch.manual_seed(0)
WD = torch.bfloat16 if (a.weights or a.precision) == "bf16" else torch.float32   # frozen weights


def autocast():
    return torch.autocast("cpu", dtype=torch.bfloat16) if a.precision == "bf16" else contextlib.nullcontext()


def frozen(*shape, scale=0.02):
    return (torch.randn(*shape) * scale).to(WD)


def mapped(lib):
    with open("/proc/self/maps") as f:
        for line in f:
            if "/" in line and lib in line:
                return line[line.index("/"):].strip()
    return "none"


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


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


def rms(x, w, eps=1e-5):   # Hugging Face's LlamaRMSNorm: statistics in fp32, back to the input dtype
    xf = x.float()
    return w * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


class Lin:
    def __init__(self, o, i, lora):
        self.W = frozen(o, i)
        self.A = ((torch.rand(16, i) * 2 - 1) / math.sqrt(i)).requires_grad_(True) if lora else None
        self.B = torch.full((o, 16), 1e-3).requires_grad_(True) if lora else None   # as lorac: B non-zero

    def __call__(self, x, drop):
        y = F.linear(x, self.W)
        if self.A is not None:   # PEFT's LoRA: dropout on the input, scale alpha/r = 2
            y = y + 2.0 * F.linear(F.linear(F.dropout(x, drop, True), self.A), self.B)
        return y


def llama(lora):
    emb = frozen(V, C)
    layers = []
    for _ in range(NL):
        layers.append({n: Lin(o, i, lora) for n, o, i in [("q", H * D, C), ("k", K * D, C), ("v", K * D, C),
                                                          ("o", C, H * D), ("g", I, C), ("u", I, C), ("d", C, I)]})
        layers[-1]["n1"] = torch.ones(C, dtype=WD)
        layers[-1]["n2"] = torch.ones(C, dtype=WD)
    return emb, layers, torch.ones(C, dtype=WD)


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
        s = torch.matmul(q, k.transpose(1, 2)) / math.sqrt(D) + mask
        att = torch.softmax(s, -1, dtype=torch.float32).to(q.dtype)   # HF: softmax in fp32
        o = torch.matmul(att, v).transpose(0, 1).reshape(T, H * D)
        x = x + L["o"](o, drop)
        h = rms(x, L["n2"])
        x = x + L["d"](F.silu(L["g"](h, drop)) * L["u"](h, drop), drop)
    return rms(x, norm)


def siglip():
    Cs, Is, NLs, Hs, P, ps = 768, 3072, 12, 12, 196, 16
    w = {"patch": frozen(Cs, 3, ps, ps), "patch_b": frozen(Cs), "pos": frozen(P, Cs)}
    layers = []
    for _ in range(NLs):
        L = {n: (frozen(o, i), frozen(o)) for n, o, i in
             [("q", Cs, Cs), ("k", Cs, Cs), ("v", Cs, Cs), ("o", Cs, Cs), ("f1", Is, Cs), ("f2", Cs, Is)]}
        L["ln1"] = L["ln2"] = (torch.ones(Cs, dtype=WD), torch.zeros(Cs, dtype=WD))
        layers.append(L)
    Ds = Cs // Hs

    def run(img):
        x = F.conv2d(img.to(WD), w["patch"], w["patch_b"], stride=ps).flatten(2).transpose(1, 2) + w["pos"]
        for L in layers:
            h = F.layer_norm(x, (Cs,), *L["ln1"], eps=1e-6)
            B = h.shape[0]
            q = F.linear(h, *L["q"]).view(B, P, Hs, Ds).transpose(1, 2)
            k = F.linear(h, *L["k"]).view(B, P, Hs, Ds).transpose(1, 2)
            v = F.linear(h, *L["v"]).view(B, P, Hs, Ds).transpose(1, 2)
            att = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(Ds), -1, dtype=torch.float32).to(q.dtype)
            x = x + F.linear(torch.matmul(att, v).transpose(1, 2).reshape(B, P, Cs), *L["o"])
            h = F.layer_norm(x, (Cs,), *L["ln2"], eps=1e-6)
            x = x + F.linear(F.gelu(F.linear(h, *L["f1"]), approximate="tanh"), *L["f2"])
        return x
    return run


state = {"loss": float("nan")}
if a.what in ("lora", "eval"):
    model = llama(a.what == "lora")
    T, items, unit = a.tokens, a.tokens, "tokens/s"
    ids = torch.randint(0, V, (T,))
    tgt = torch.roll(ids, -1)
    tgt[-1] = -100
    if a.supervised == "half":
        tgt[: T // 2] = -100
    sup = (tgt != -100).nonzero().squeeze(1)   # logits only for the supervised rows
    tgt_s = tgt[sup]
    if a.what == "lora":
        params = [t for L in model[1] for lin in L.values() if isinstance(lin, Lin) for t in (lin.A, lin.B)]
        opt = torch.optim.AdamW(params, lr=1e-5, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, foreach=True)

        def step():
            opt.zero_grad(set_to_none=True)
            with autocast():
                h = forward(model, ids, 0.05)
                logits = F.linear(h[sup], model[0]).float()
                loss = F.cross_entropy(logits, tgt_s)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            state["loss"] = float(loss)
    else:
        def step():
            with torch.inference_mode(), autocast():
                h = forward(model, ids, 0.0)
                logits = F.linear(h[sup], model[0]).float()
                state["loss"] = float(F.cross_entropy(logits, tgt_s))
else:
    run = siglip()
    img = torch.randn(a.batch, 3, 224, 224)
    items, unit = a.batch, "images/s"

    def step():
        with torch.inference_mode(), autocast():
            run(img)


def say(obj):
    print(json.dumps(obj), flush=True)


if a.interleave:
    say({"ready": True})
times = []
for it in range(a.warmup + a.iters):
    if a.interleave and not sys.stdin.readline():
        sys.exit(f"error: bench_torch --interleave: stdin closed before iteration {it}")
    t0 = time.perf_counter()
    step()
    dt = time.perf_counter() - t0
    if it >= a.warmup:
        times.append(dt)
    if a.interleave:
        say({"iter": it, "warmup": it < a.warmup, "sec": round(dt, 4)})
med = statistics.median(times)
out = {"impl": "pytorch", "bench": a.what, "precision": a.precision, "weights": str(WD).replace("torch.", ""),
       "iters": a.iters, "sec_all": [round(t, 4) for t in times], "sec": med, "sec_min": min(times),
       "sec_max": max(times), "unit": unit, "per_s": items / med, "per_s_min": items / max(times),
       "per_s_max": items / min(times), "peak_rss_mb": peak_rss_mb(), "threads": torch.get_num_threads(),
       "torch": torch.__version__, "blas": mapped("libopenblas"), "blas3": mapped("libblas.so"),
       "dnnl": mapped("libdnnl"), "loss": state["loss"]}
if a.what != "siglip":
    out.update(supervised=a.supervised, tokens=a.tokens, n_supervised=int(sup.numel()))
else:
    out.update(batch=a.batch)
say(out)
