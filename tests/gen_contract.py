"""Golden data for tests/test_contract.sh: one `lorac train` run through the CLI against PyTorch.

The model is `lorac make-tiny --dtype f32 --seed 3` (the real Llama 3 tokenizer, vocab 128256),
rebuilt by the test; its weights hash is stored so the test can tell a different model from a
wrong result. The training file mixes text, chat and alpaca records, a blank line and one
record longer than max_seq_len=16. With data.shuffle false, batch 2 x grad_accum 2, the
reference (docs/numerics.md "Batches") says optimizer step n consumes the next 4 kept records in file order (wrapping at the
end of the file), and the loss is the mean over all supervised tokens of the step.

Writes tests/fixtures/contract_init/ (a PEFT adapter with non-zero A and B, r=4, alpha=8: the
run's lora.init) and tests/fixtures/contract_ref.safetensors: the first step's gradients under
the adapter's key names (what train.dump_grads must write), and as metadata the losses of
steps 1 and 2 (step 2 after one AdamW update: lr 1e-3 constant, grad_clip 1.0) and the model
hash. Record ids come from `lorac tokenize` (checked against HF tokenizers by test_tokenizer).
Run: make && /usr/bin/python3 tests/gen_contract.py
"""
import hashlib
import json
import math
import os
import subprocess
import sys
import tempfile

import torch

import torch_ref as R
from fixtures_io import read_safetensors_f32, save_fixture

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
LORAC = os.path.join(ROOT, "build", "lorac")
OUT = os.path.join(HERE, "fixtures")
subprocess.run(["make", "-s", "-C", ROOT, "build/lorac"], check=True)   # `make fixtures` does not build it
TMP = tempfile.mkdtemp()
M = os.path.join(TMP, "m32")
subprocess.run([LORAC, "make-tiny", "--out", M, "--dtype", "f32", "--seed", "3"], check=True, capture_output=True)
cfg = json.load(open(os.path.join(M, "config.json")))
W = {k: torch.from_numpy(v) for k, v in read_safetensors_f32(os.path.join(M, "model.safetensors")).items()}
r, alpha = 4, 8.0
scale = alpha / r
g = torch.Generator().manual_seed(5)
lora = {}
for l in range(cfg["num_hidden_layers"]):
    for t, (o, i) in R.proj_shapes(cfg).items():
        lora[R.lora_key(l, t, "A")] = (torch.rand(r, i, generator=g) * 2 - 1) / math.sqrt(i)
        lora[R.lora_key(l, t, "B")] = torch.randn(o, r, generator=g) * 0.1
init = os.path.join(OUT, "contract_init")
os.makedirs(init, exist_ok=True)
R.save_safetensors(os.path.join(init, "adapter_model.safetensors"), lora)
with open(os.path.join(init, "adapter_config.json"), "w") as f:
    json.dump({"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": r, "lora_alpha": alpha, "lora_dropout": 0.0,
               "target_modules": R.TARGETS, "bias": "none", "use_rslora": False, "fan_in_fan_out": False,
               "base_model_name_or_path": "tiny"}, f, indent=2)

DATA = [
    {"text": "The quick brown fox jumps."},
    {"text": "This record is far too long to fit into the sixteen token limit that we set for training here, so it is dropped."},
    None,   # a blank line
    {"text": "Hello there, general."},
    {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": " Yo. "}]},
    {"instruction": "Say", "input": "", "output": "ok"},
    {"text": "Sixth record."},
    {"text": "Seventh one."},
]
with open(os.path.join(OUT, "contract_train.jsonl"), "w") as f:
    for d in DATA:
        f.write((json.dumps(d) if d else "") + "\n")


def tok(text, *flags):
    return [int(x) for x in subprocess.check_output([LORAC, "tokenize", "--model", M, *flags, "--", text]).split()]


def header(role):
    return "<|start_header_id|>" + role + "<|end_header_id|>\n\n"


recs = []
for d in DATA:
    if d is None:
        continue
    if "text" in d:
        ids = tok(d["text"], "--bos")
        mask = [0] + [1] * (len(ids) - 1)
    else:
        msgs = d.get("messages") or [{"role": "user", "content": d["instruction"]},
                                     {"role": "assistant", "content": d["output"]}]
        prompt = header("user") + msgs[0]["content"].strip() + "<|eot_id|>" + header("assistant")
        answer = msgs[1]["content"].strip() + "<|eot_id|>"
        ids = tok(prompt + answer, "--bos")
        a = tok(prompt, "--bos")
        assert ids[:len(a)] == a
        mask = [0] * len(a) + [1] * (len(ids) - len(a))
    recs.append((ids, mask))
kept = [x for x in recs if len(x[0]) <= 16]
assert len(kept) == len(recs) - 1


def step_loss(lo, group):
    ids, pos, doc, tgt = [], [], [], []
    for d, (x, m) in enumerate(group):
        for p in range(len(x)):
            ids.append(x[p])
            pos.append(p)
            doc.append(d)
            tgt.append(x[p + 1] if p + 1 < len(x) and m[p + 1] else -100)
    ids, pos, doc, tgt = map(torch.tensor, (ids, pos, doc, tgt))
    h = R.forward(cfg, W, ids, pos, doc, lo, scale)
    logits = h @ R.lm_head(cfg, W).t()
    return torch.nn.functional.cross_entropy(logits, tgt, ignore_index=-100, reduction="sum") / int((tgt >= 0).sum())


for v in lora.values():
    v.requires_grad_(True)
loss1 = step_loss(lora, kept[0:4])
loss1.backward()
gn = math.sqrt(sum(float((v.grad.double() ** 2).sum()) for v in lora.values()))
lr, b1, b2, eps = 1e-3, 0.9, 0.999, 1e-8
with torch.no_grad():
    c = min(1.0, 1.0 / (gn + 1e-6))
    lo2 = {}
    for k, v in lora.items():
        gr = v.grad * c
        m, s = (1 - b1) * gr, (1 - b2) * gr * gr
        lo2[k] = v - lr * (m / (1 - b1)) / ((s / (1 - b2)).sqrt() + eps)
    loss2 = step_loss(lo2, kept[4:6] + kept[0:2])   # wraps to the next epoch
save_fixture(os.path.join(OUT, "contract_ref.safetensors"), {k: v.grad for k, v in lora.items()},
             meta={"loss1": "%.7f" % loss1.item(), "loss2": "%.7f" % loss2.item(), "grad_norm": "%.7f" % gn,
                   "model_sha256": hashlib.sha256(open(os.path.join(M, "model.safetensors"), "rb").read()).hexdigest()})
print("loss1 %.6f loss2 %.6f grad_norm %.6f" % (loss1.item(), loss2.item(), gn))
subprocess.run(["rm", "-rf", TMP])
