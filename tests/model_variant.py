"""model_variant.py SRC DST [options]: rewrites a tiny F32 Llama folder (from `lorac make-tiny
--dtype f32`) into one of the forms a Hugging Face snapshot may take, for tests/test_contract.sh.

  --dtype F32|F16|BF16   storage dtype of every tensor (default F32)
  --round F16|BF16       round every value through that dtype first (an F32 folder holding
                         exactly the values an F16/BF16 folder holds: its reference twin)
  --shards N             N shards + model.safetensors.index.json
  --untie                tie_word_embeddings false and an explicit lm_head.weight (= embeddings)
  --zero-head            with --untie: lm_head.weight all zeros
  --lists                bos_token_id as a list, eos_token_id as a single id
  --tiktoken             original/tokenizer.model only (no tokenizer.json)

Reads and writes through tests/fixtures_io.py (the tests' one safetensors reader).
"""
import base64
import json
import os
import shutil
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixtures_io import bf16_bits, read_safetensors, write_safetensors  # noqa: E402

src, dst, args = sys.argv[1], sys.argv[2], sys.argv[3:]


def opt(k, d=None):
    return args[args.index(k) + 1] if k in args else d


T, _ = read_safetensors(os.path.join(src, "model.safetensors"))
assert all(a.dtype == np.float32 for a in T.values()), "model_variant.py needs an F32 source folder"
cfg = json.load(open(os.path.join(src, "config.json")))
dt = opt("--dtype", "F32")
if "--untie" in args:
    cfg["tie_word_embeddings"] = False
    T["lm_head.weight"] = T["model.embed_tokens.weight"] * (0 if "--zero-head" in args else 1)
if "--lists" in args:
    cfg["bos_token_id"] = [cfg["bos_token_id"]]
    cfg["eos_token_id"] = 128009
rnd = opt("--round")
if rnd == "F16":
    T = {k: a.astype(np.float16).astype(np.float32) for k, a in T.items()}
elif rnd == "BF16":
    T = {k: (bf16_bits(a).astype(np.uint32) << 16).view(np.float32) for k, a in T.items()}


def enc(a):
    if dt == "F16":
        return a.astype(np.float16).tobytes()
    if dt == "BF16":
        return bf16_bits(a).tobytes()
    return a.astype(np.float32).tobytes()


def write(path, keys):
    write_safetensors(path, [(k, dt, T[k].shape, enc(T[k])) for k in keys], {"format": "pt"})


os.makedirs(dst)
for f in os.listdir(src):
    if f not in ("model.safetensors", "config.json"):
        shutil.copy(os.path.join(src, f), dst)
json.dump(cfg, open(os.path.join(dst, "config.json"), "w"), indent=2)
keys, ns = sorted(T), int(opt("--shards", "1"))
if ns == 1:
    write(os.path.join(dst, "model.safetensors"), keys)
else:
    wm, per = {}, (len(keys) + ns - 1) // ns
    for i in range(ns):
        name = "model-%05d-of-%05d.safetensors" % (i + 1, ns)
        write(os.path.join(dst, name), keys[i * per:(i + 1) * per])
        wm.update({k: name for k in keys[i * per:(i + 1) * per]})
    json.dump({"metadata": {}, "weight_map": wm}, open(os.path.join(dst, "model.safetensors.index.json"), "w"))
if "--tiktoken" in args:   # original/tokenizer.model only: base64(token bytes) rank per line
    tj = json.load(open(os.path.join(dst, "tokenizer.json")))
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs, m = bs[:], 0
    for x in range(256):
        if x not in bs:
            bs.append(x)
            cs.append(256 + m)
            m += 1
    u2b = {chr(c): x for x, c in zip(bs, cs)}
    os.makedirs(os.path.join(dst, "original"))
    with open(os.path.join(dst, "original", "tokenizer.model"), "w") as f:
        for tok, rank in sorted(tj["model"]["vocab"].items(), key=lambda kv: kv[1]):
            f.write(base64.b64encode(bytes(u2b[c] for c in tok)).decode() + " " + str(rank) + "\n")
    for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if os.path.exists(os.path.join(dst, f)):
            os.remove(os.path.join(dst, f))
