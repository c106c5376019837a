"""Golden perplexity (tests/test_eval.c) with the sliding window of docs/numerics.md, from the plain-torch
reference on the tiny model of tests/fixtures/train-tiny (written by gen_train.py).

For each document of L tokens, windows [kS, min(kS+M, L)) up to the first reaching L; a window
scores tokens p in [max(prev_end, kS+1), end) whose mask bit is set, predicted inside the
window. Each window is an independent forward (positions from 0). ppl = exp(total / count).
Writes tests/fixtures/eval_ref.safetensors: documents (concatenated ids, masks, offsets), an
adapter, and nll/tokens for (M, S) in a few settings, without and with the adapter.
"""
import json
import math
import os

import torch

import torch_ref as R
from fixtures_io import read_safetensors_f32, save_fixture

HERE = os.path.dirname(os.path.abspath(__file__))
folder = os.path.join(HERE, "fixtures", "train-tiny")
cfg = json.load(open(os.path.join(folder, "config.json")))
import numpy as np
W = {k: torch.from_numpy(v) for k, v in read_safetensors_f32(os.path.join(folder, "model.safetensors")).items()}

g = torch.Generator().manual_seed(99)
V = cfg["vocab_size"]
lens = [1, 2, 5, 17, 40, 33, 64]
docs, masks = [], []
for i, L in enumerate(lens):
    docs.append(torch.randint(0, V, (L,), generator=g))
    m = torch.ones(L, dtype=torch.uint8)
    m[0] = 0
    if i % 2 == 1:      # a chat-like document: only the second half supervised
        m[: L // 2] = 0
    masks.append(m)
r, alpha = 4, 8.0
lora = {}
for l in range(cfg["num_hidden_layers"]):
    for t, (o, i_) in R.proj_shapes(cfg).items():
        if t in ("q_proj", "v_proj", "down_proj"):
            lora[R.lora_key(l, t, "A")] = (torch.rand(r, i_, generator=g) * 2 - 1) / math.sqrt(i_)
            lora[R.lora_key(l, t, "B")] = torch.randn(o, r, generator=g) * 0.2


def ppl(M, S, use_lora):
    total, count = 0.0, 0
    head = R.lm_head(cfg, W)
    for ids, m in zip(docs, masks):
        L = len(ids)
        if L < 2:
            continue
        prev_end = 0
        for start in range(0, L, S):
            end = min(start + M, L)
            x = ids[start:end]
            n = end - start
            h = R.forward(cfg, W, x, torch.arange(n), torch.zeros(n, dtype=torch.long), lora if use_lora else None, alpha / r)
            logp = torch.log_softmax((h @ head.t()).double(), -1)
            for p in range(max(prev_end, start + 1), end):
                if m[p]:
                    total -= float(logp[p - 1 - start, ids[p]])
                    count += 1
            prev_end = end
            if end >= L:
                break
    return total, count


fx = {"ids": torch.cat(docs).int(), "mask": torch.cat(masks),
      "offsets": torch.tensor([0] + list(np.cumsum(lens)), dtype=torch.int64)}
for k, v in lora.items():
    fx["lora." + k] = v
settings = [(16, 8), (16, 16), (7, 3), (1024, 512)]
res = []
for M, S in settings:
    for use in (0, 1):
        t, c = ppl(M, S, use)
        res.append([M, S, use, t, c])
fx["results"] = torch.tensor(res, dtype=torch.float64)
save_fixture(os.path.join(HERE, "fixtures", "eval_ref.safetensors"), fx, meta={"r": r, "alpha": alpha})
print("eval_ref:", [(a, b, u, round(math.exp(t / c), 4), c) for a, b, u, t, c in res])
