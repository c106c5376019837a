"""Golden data for projector training (tests/test_vision_train.c), from plain PyTorch.

A full LLaVA-style step on tiny models: the committed tiny SigLIP (tests/fixtures/tiny-siglip,
3 layers, 32x32 images, 16 patches of width 32) and the tiny Llama of the LoRA tests
(tests/fixtures/train-tiny, vocab 256, hidden 32). Writes tests/fixtures/vision_train_ref.safetensors:
  - pixels [2, 3, 32, 32] and the vision features of select_layer -2 (hidden_states[2],
    gen_siglip.siglip_forward) [2*16, 32];
  - an mlp2x_gelu projector 32 -> 32 (nn.Linear default init; LLaVA key names, "proj.");
  - a padding-free batch (batch.h layout): a caption record (<|begin_of_text|>, 16 image rows,
    caption, <|end_of_text|>), a text record, and a chat-like record with the image in the
    middle whose supervised tokens follow it; ids -1 on image rows, targets -1 on image rows
    except the last (it predicts the first token after the image when supervised);
  - `p.`: loss and projector gradients (mode projector: the Llama frozen);
  - `gen.`: a greedy continuation (6 tokens) of a caption prompt with image 0 and the first
    step's logits;
  - `pl.`: a LoRA (r=4, alpha=8, non-zero B, all seven projections) trained together with the
    projector: loss, projector gradients and LoRA gradients (PEFT names).
The loss is the sum of token cross-entropies over the batch's targets / supervised tokens.
"""
import json
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gen_siglip as GS  # noqa: E402
import torch_ref as R  # noqa: E402
from fixtures_io import save_fixture  # noqa: E402

OUT = os.path.join(HERE, "fixtures")


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in h.items():
        if k == "__metadata__":
            continue
        assert v["dtype"] == "F32", (k, v["dtype"])
        a, b = v["data_offsets"]
        out[k] = torch.from_numpy(np.frombuffer(data[a:b], dtype=np.float32).copy()).reshape(v["shape"])
    return out


def main():
    torch.manual_seed(7)
    gen = torch.Generator().manual_seed(4321)
    SW = read_safetensors(os.path.join(OUT, "tiny-siglip", "model.safetensors"))
    LW = read_safetensors(os.path.join(OUT, "train-tiny", "model.safetensors"))
    with open(os.path.join(OUT, "train-tiny", "config.json")) as f:
        cfg = json.load(f)
    C, V = cfg["hidden_size"], cfg["vocab_size"]
    Cv, P = GS.CFG["hidden_size"], (GS.CFG["image_size"] // GS.CFG["patch_size"]) ** 2

    pixels = torch.rand(2, 3, 32, 32, generator=gen) * 2 - 1
    with torch.no_grad():
        hidden, _ = GS.siglip_forward(SW, pixels)
    feats = hidden[len(hidden) - 2].reshape(-1, Cv)   # select_layer -2: hidden_states[L-1]

    proj = nn.Sequential(nn.Linear(Cv, C), nn.GELU(), nn.Linear(C, C))
    pnames = {"model.mm_projector.0.weight": proj[0].weight, "model.mm_projector.0.bias": proj[0].bias,
              "model.mm_projector.2.weight": proj[2].weight, "model.mm_projector.2.bias": proj[2].bias}

    # the batch: (tokens before the image, has image, tokens after, supervised from index k of `after`)
    def tok(n):
        return [int(t) for t in torch.randint(4, V, (n,), generator=gen)]

    seqs = [([1], True, tok(6) + [2], 0),            # caption: BOS, image, caption, EOS (all supervised)
            ([1] + tok(7), False, [], None),           # text: every token but the first
            ([1] + tok(4), True, tok(5) + [3], 2)]     # chat-like: image mid-prompt, answer supervised
    ids, pos, begin, tgt, img_row = [], [], [], [], []
    for before, has, after, k in seqs:
        start = len(ids)
        rows = [(t, False) for t in before]
        if has:
            img_row.append(start + len(before))
            rows += [(-1, False)] * P
        else:
            img_row.append(-1)
        if has:
            rows += [(t, i >= k) for i, t in enumerate(after)]
        else:
            rows = [(t, i > 0) for i, t in enumerate(before)]
        for i, (t, _) in enumerate(rows):
            ids.append(t)
            pos.append(i)
            begin.append(start)
            nxt = rows[i + 1] if i + 1 < len(rows) else None
            tgt.append(nxt[0] if nxt is not None and nxt[0] >= 0 and nxt[1] else -1)
    ids_t, tgt_t = torch.tensor(ids), torch.tensor(tgt)
    nsup = int((tgt_t >= 0).sum())
    img_rows = [r + j for r in img_row if r >= 0 for j in range(P)]

    def loss_fn(lora, scale):
        x = LW["model.embed_tokens.weight"][ids_t.clamp(min=0)]
        x = x.clone()
        x[torch.tensor(img_rows)] = proj(feats)
        # torch_ref.forward embeds ids; give it the embeddings as a table indexed by row
        W = dict(LW)
        W["model.embed_tokens.weight"] = x
        h = R.forward(cfg, W, torch.arange(len(ids)), torch.tensor(pos), torch.tensor(begin), lora, scale)
        logits = h @ R.lm_head(cfg, LW).t()
        return torch.nn.functional.cross_entropy(logits, tgt_t, ignore_index=-1, reduction="sum") / nsup

    fx = {"pixels": pixels, "features": feats, "ids": ids_t.int(), "pos": torch.tensor(pos).int(),
          "begin": torch.tensor(begin).int(), "targets": tgt_t.int(), "image_row": torch.tensor(img_row).int()}
    for n, p in pnames.items():
        fx["proj." + n] = p.detach().clone()

    # mode projector
    loss = loss_fn(None, 1.0)
    loss.backward()
    fx["p.loss"] = loss.detach().reshape(1)
    for n, p in pnames.items():
        fx["p.grad." + n] = p.grad.clone()
        p.grad = None

    # mode projector+lora
    r, alpha = 4, 8.0
    lora = {}
    for l in range(cfg["num_hidden_layers"]):
        for t, (o, i) in R.proj_shapes(cfg).items():
            lora[R.lora_key(l, t, "A")] = ((torch.rand(r, i, generator=gen) * 2 - 1) / math.sqrt(i)).requires_grad_(True)
            lora[R.lora_key(l, t, "B")] = (torch.randn(o, r, generator=gen) * 0.1).requires_grad_(True)
    loss = loss_fn(lora, alpha / r)
    loss.backward()
    fx["pl.loss"] = loss.detach().reshape(1)
    for n, p in pnames.items():
        fx["pl.grad." + n] = p.grad.clone()
    for k, v in lora.items():
        fx["lora." + k] = v.detach()
        fx["pl.grad." + k] = v.grad
    # greedy generation from a caption prompt (BOS, image 0, two caption tokens), projector only
    with torch.no_grad():
        first = seqs[0][2][:2]
        gids = [1] + [-1] * P + first
        out, margins = [], []
        for _ in range(6):
            g = torch.tensor(gids)
            x = LW["model.embed_tokens.weight"][g.clamp(min=0)].clone()
            x[1:1 + P] = proj(feats[:P])
            W = dict(LW)
            W["model.embed_tokens.weight"] = x
            n = len(gids)
            h = R.forward(cfg, W, torch.arange(n), torch.arange(n), torch.zeros(n, dtype=torch.long))
            logits = h[-1] @ R.lm_head(cfg, LW).t()
            if not out:
                fx["gen.logits0"] = logits.clone()
            top = torch.topk(logits, 2).values
            margins.append(float(top[0] - top[1]))
            t = int(torch.argmax(logits))
            out.append(t)
            gids.append(t)
    fx["gen.prompt"] = torch.tensor([1] + [-1] * P + first).int()
    fx["gen.out"] = torch.tensor(out).int()
    print("greedy", out, "smallest top-2 margin %.4f" % min(margins))
    save_fixture(os.path.join(OUT, "vision_train_ref.safetensors"), fx,
                 meta={"rows": len(ids), "nsup": nsup, "num_patches": P, "r": r, "alpha": alpha})
    print("vision_train_ref: rows", len(ids), "supervised", nsup, "loss", float(fx["p.loss"]), float(fx["pl.loss"]))


if __name__ == "__main__":
    main()
