"""Golden data for precision: bf16 (tests/test_bf16.c): the plain-torch reference
(tests/torch_ref.py) under torch.autocast("cpu", dtype=torch.bfloat16), as a user running
PyTorch with bf16 autocast gets it, on the tiny model and batches of tests/gen_train.py.

Reads tests/fixtures/train-tiny/ (F32 weights) and tests/fixtures/train_ref.safetensors (run
tests/gen_train.py first) and writes tests/fixtures/bf16_ref.safetensors holding:
  - logits32 [N, V]: fp32 logits of batch b1 with the "init." LoRA (the exact reference);
  - logits16 [N, V]: the same under autocast (bf16 matmul outputs, widened to fp32);
  - loss16 and grad16.<PEFT key>: the loss and every LoRA gradient of that step under
    autocast (backward outside the autocast region, as usual);
  - traj16.loss [30], traj16.grad_norm [30]: gen_train.py's 30-step trajectory (same
    micro-batches, init, AdamW, clipping and schedule) with every forward under autocast.
The fp32 gradients and trajectory are train_ref.safetensors' grad.* and traj.*.
"""
import json
import os
import struct

import numpy as np
import torch

import torch_ref as R
from fixtures_io import read_safetensors_f32, save_fixture

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "fixtures")
torch.manual_seed(0)

cfg = json.load(open(os.path.join(FIX, "train-tiny", "config.json")))
W = {k: torch.from_numpy(v) for k, v in read_safetensors_f32(os.path.join(FIX, "train-tiny", "model.safetensors")).items()}


def read_fixture(path):
    """name -> numpy array (F32 / I32) of a fixtures_io file."""
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    out = {}
    for k, v in json.loads(raw[8:8 + n]).items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        dt = {"F32": np.float32, "I32": np.int32}[v["dtype"]]
        out[k] = np.frombuffer(raw[8 + n + a:8 + n + b], dtype=dt).reshape(v["shape"]).copy()
    return out


ref = read_fixture(os.path.join(FIX, "train_ref.safetensors"))
r, alpha = 4, 8.0
scale = alpha / r


def batch(prefix):
    return tuple(torch.from_numpy(ref[f"{prefix}.{k}"]).long() for k in ("ids", "pos", "begin", "targets"))


def lora_from(prefix):
    return {k[len(prefix) + 1:]: torch.from_numpy(v).clone().requires_grad_(True)
            for k, v in ref.items() if k.startswith(prefix + ".")}


def logits_of(lora, b, autocast):
    ids, pos, begin, _ = b
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        h = R.forward(cfg, W, ids, pos, begin, lora, scale)
        return h @ R.lm_head(cfg, W).t()


def loss_sum(lora, b, autocast):
    logits = logits_of(lora, b, autocast)
    return torch.nn.functional.cross_entropy(logits.float(), b[3], ignore_index=-1, reduction="sum")


fx = {}
# --- one step: logits (fp32 and autocast), autocast loss and LoRA gradients
b1 = batch("b1")
lora = lora_from("init")
with torch.no_grad():
    fx["logits32"] = logits_of(lora, b1, False).float()
    fx["logits16"] = logits_of(lora, b1, True).float()
nsup = int((b1[3] >= 0).sum())
loss = loss_sum(lora, b1, True) / nsup
loss.backward()
fx["loss16"] = loss.detach().float().reshape(1)
for k, v in lora.items():
    fx["grad16." + k] = v.grad

# --- the 30-step trajectory of gen_train.py, forwards under autocast
micro = [batch(f"mb{j}") for j in range(4)]
lora2 = lora_from("traj_init")
losses, norms = R.train_trajectory(list(lora2.values()), lambda b: loss_sum(lora2, b, True), micro)
fx["traj16.loss"] = torch.tensor(losses)
fx["traj16.grad_norm"] = torch.tensor(norms)
save_fixture(os.path.join(FIX, "bf16_ref.safetensors"), fx, meta={"r": r, "alpha": alpha})
l32, l16 = fx["logits32"], fx["logits16"]
print("bf16_ref: logits rel err (autocast vs fp32) %.3e, loss %.6f, trajectory %.4f -> %.4f"
      % (float((l16 - l32).norm() / l32.norm()), float(loss), losses[0], losses[-1]))
