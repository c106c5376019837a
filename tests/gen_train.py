"""Golden data for LoRA training (tests/test_train.c), from the plain-torch reference.

Writes tests/fixtures/train-tiny/ (a tiny F32 HF Llama folder, vocab 256) and
tests/fixtures/train_ref.safetensors holding:
  - step 1: a padding-free batch of 3 documents (ids, positions, doc starts, targets), a LoRA
    with non-zero A and B on all seven projections (r=4, alpha=8), the loss and every LoRA
    gradient (PEFT key names, prefixed "grad.");
  - a 30-step trajectory: fresh LoRA (A kaiming-uniform from the stored init, B zero), AdamW
    (lr 1e-2, betas 0.9/0.999, eps 1e-8, wd 0.01), grad clip 1.0, cosine schedule with 3
    warmup steps and min_lr_ratio 0.1, grad_accum 2 (loss averaged over the supervised tokens
    of both micro-batches), batches cycling through 4 stored micro-batches; per-step loss and
    grad norm (before clipping), and the final LoRA weights.
"""
import math
import os

import torch

import torch_ref as R
from fixtures_io import save_fixture

torch.manual_seed(0)
gen = torch.Generator().manual_seed(1234)
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures")
cfg = R.tiny_config()
W = R.random_weights(cfg, gen)
folder = os.path.join(OUT, "train-tiny")
os.makedirs(folder, exist_ok=True)
import json
with open(os.path.join(folder, "config.json"), "w") as f:
    json.dump(cfg, f, indent=2)
R.save_safetensors(os.path.join(folder, "model.safetensors"), W)

r, alpha = 4, 8.0
scale = alpha / r
shapes = R.proj_shapes(cfg)
V = cfg["vocab_size"]


def make_batch(lens, g):
    ids, pos, begin, tgt = [], [], [], []
    for L in lens:
        d = torch.randint(0, V, (L,), generator=g)
        start = len(ids)
        for i in range(L):
            ids.append(int(d[i]))
            pos.append(i)
            begin.append(start)
            # supervise roughly the second half of each document (a prompt then an answer)
            tgt.append(int(d[i + 1]) if i + 1 < L and i + 1 >= L // 2 else -1)
    return (torch.tensor(ids), torch.tensor(pos), torch.tensor(begin), torch.tensor(tgt))


def doc_index(begin):
    return begin  # begin index identifies the document


def loss_sum(lora, batch):
    ids, pos, begin, tgt = batch
    h = R.forward(cfg, W, ids, pos, doc_index(begin), lora, scale)
    logits = h @ R.lm_head(cfg, W).t()
    return F_ce(logits, tgt)


def F_ce(logits, tgt):
    return torch.nn.functional.cross_entropy(logits, tgt, ignore_index=-1, reduction="sum")


fx = {}
# --- step 1: gradients
b1 = make_batch([7, 12, 5], gen)
lora = {}
for l in range(cfg["num_hidden_layers"]):
    for t, (o, i) in shapes.items():
        lora[R.lora_key(l, t, "A")] = (torch.rand(r, i, generator=gen) * 2 - 1) / math.sqrt(i)
        lora[R.lora_key(l, t, "B")] = torch.randn(o, r, generator=gen) * 0.1
for v in lora.values():
    v.requires_grad_(True)
nsup = int((b1[3] >= 0).sum())
loss = loss_sum(lora, b1) / nsup
loss.backward()
fx.update({"b1.ids": b1[0].int(), "b1.pos": b1[1].int(), "b1.begin": b1[2].int(), "b1.targets": b1[3].int(),
           "b1.loss": loss.detach().reshape(1)})
for k, v in lora.items():
    fx["init." + k] = v.detach()
    fx["grad." + k] = v.grad

# --- 30-step trajectory
micro = [make_batch(l, gen) for l in ([9, 6], [11], [4, 8, 3], [10, 5])]
for j, b in enumerate(micro):
    fx[f"mb{j}.ids"], fx[f"mb{j}.pos"] = b[0].int(), b[1].int()
    fx[f"mb{j}.begin"], fx[f"mb{j}.targets"] = b[2].int(), b[3].int()
lora2 = {}
for l in range(cfg["num_hidden_layers"]):
    for t, (o, i) in shapes.items():
        lora2[R.lora_key(l, t, "A")] = ((torch.rand(r, i, generator=gen) * 2 - 1) / math.sqrt(i)).requires_grad_(True)
        lora2[R.lora_key(l, t, "B")] = torch.zeros(o, r).requires_grad_(True)
for k, v in lora2.items():
    fx["traj_init." + k] = v.detach().clone()
params = list(lora2.values())
losses, norms = R.train_trajectory(params, lambda b: loss_sum(lora2, b), micro)
fx["traj.loss"] = torch.tensor(losses)
fx["traj.grad_norm"] = torch.tensor(norms)
for k, v in lora2.items():
    fx["final." + k] = v.detach()
save_fixture(os.path.join(OUT, "train_ref.safetensors"), fx,
             meta={"r": r, "alpha": alpha, "nsup_b1": nsup})
print("train_ref: loss", float(loss), "trajectory", losses[0], "->", losses[-1])
