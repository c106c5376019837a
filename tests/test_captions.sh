#!/usr/bin/env bash
# test_captions.sh — the synthetic caption demo data (`lorac make-tiny --kind captions`) and
# `lorac prepare` in projector mode: the generator is deterministic (and the committed
# data/demo/captions is exactly its output), images are PNGs that lorac decodes, the JSONL
# is valid with held-out eval images, and prepare writes a feature cache of the right shape
# (unique images only, deterministic bytes), refusing bad input without leaving files.
# The round trip of feature values is checked in tests/test_featcache.c.
set -uo pipefail
cd "$(dirname "$0")/.."
LORAC=${LORAC:-build/lorac}
source tests/lib.sh
T=$(scratch_dir captions)

# --- the generator
expect 0 "generate" -- "$LORAC" make-tiny --kind captions --out "$T/a" --n 30 --eval 10 --size 48 --seed 5
expect 0 "generate again" -- "$LORAC" make-tiny --kind captions --out "$T/b" --n 30 --eval 10 --size 48 --seed 5
check "same seed, same bytes" diff -r "$T/a" "$T/b"
expect 0 "other seed" -- "$LORAC" make-tiny --kind captions --out "$T/c" --n 30 --eval 10 --size 48 --seed 6
check "other seed, other images" bash -c "! diff -rq '$T/a/images' '$T/c/images' >/dev/null"
check "30 train lines" test "$(wc -l < "$T/a/train.jsonl")" -eq 30
check "10 eval lines" test "$(wc -l < "$T/a/eval.jsonl")" -eq 10
check "40 images" test "$(ls "$T/a/images" | wc -l)" -eq 40
check "images are PNG" is_png "$T/a/images/train_00000.png"
check "eval PNG" is_png "$T/a/images/eval_00009.png"
check "no temp folders" no_leftovers "$T"
# JSONL: every line an object with image (an existing file) and caption (the scene's words)
check "JSONL valid" awk -v dir="$T/a" '
  !/^\{"image": "images\/(train|eval)_[0-9][0-9][0-9][0-9][0-9]\.png", "caption": "a (small|large) (red|green|blue|yellow|purple|orange) (circle|square|triangle) (on the left|on the right|at the top|at the bottom|in the center) of a (white|black) background"\}$/ { bad = 1 }
  END { exit bad }' "$T/a/train.jsonl" "$T/a/eval.jsonl"
if need_py "JSONL parses (python json)" json; then
  check "JSONL parses (python json)" "$PY" -c '
import json, os, sys
for f in sys.argv[1:]:
    for line in open(f):
        r = json.loads(line)
        assert set(r) == {"image", "caption"}, r
        assert os.path.exists(os.path.join(os.path.dirname(f), r["image"])), r
' "$T/a/train.jsonl" "$T/a/eval.jsonl"
fi
# held out: no eval image has the bytes of a training image
check "eval images differ from train" bash -c "
  cd '$T/a/images' && [ -z \"\$(comm -12 <(md5sum train_* | cut -d' ' -f1 | sort -u) <(md5sum eval_* | cut -d' ' -f1 | sort -u))\" ]"
expect 0 "committed demo regenerates" -- "$LORAC" make-tiny --kind captions --out "$T/demo" --n 200 --eval 40 --size 64 --seed 0
check "data/demo/captions is the generator's output" diff -r "$T/demo" data/demo/captions
check "committed demo < 1 MB" test "$(du -sb data/demo/captions | cut -f1)" -lt 1000000
expect 1 "existing folder refused" -- "$LORAC" make-tiny --kind captions --out "$T/a" --n 3
check "names the folder" err_has "$T/a"
expect 0 "--force replaces" -- "$LORAC" make-tiny --kind captions --out "$T/a" --n 3 --eval 1 --force
check "replaced" test "$(wc -l < "$T/a/train.jsonl")" -eq 3
expect 2 "bad --size" -- "$LORAC" make-tiny --kind captions --out "$T/z" --size 4
expect 2 "unknown option" -- "$LORAC" make-tiny --kind captions --out "$T/z" --preset llama-3.2-1b

# --- prepare in projector mode
M="$T/llama"; V="$T/siglip"
expect 0 "make-tiny llama" -- "$LORAC" make-tiny --out "$M"
expect 0 "make-tiny siglip" -- "$LORAC" make-tiny --kind siglip --out "$V"
D="$T/b"
# every training image twice (two records), so the cache must hold the unique images only
cat "$D/train.jsonl" "$D/train.jsonl" > "$D/twice.jsonl"
P=(configs/tiny-projector.yaml model="$M" vision.model="$V" data.train="$D/twice.jsonl" data.eval="$D/eval.jsonl")
expect 0 "prepare projector" -- "$LORAC" prepare "${P[@]}" --out "$T/f.h5"
check "cache is HDF5" is_h5 "$T/f.h5"
check "reports unique images" err_has "40 unique images (70 references: 60 train, 10 eval)"
check "reports the shape" err_has "features \[40, 16, 32\] of layer -2"
check "reports images/s" grep -qE '[0-9.]+ images/s' "$T/err"
check "nothing on stdout" test ! -s "$T/out"
expect 0 "prepare again" -- "$LORAC" prepare "${P[@]}" --out "$T/f2.h5"
check "deterministic bytes" cmp -s "$T/f.h5" "$T/f2.h5"
expect 0 "prepare --batch 3" -- "$LORAC" prepare "${P[@]}" --out "$T/f4.h5" --batch 3
expect 0 "select_layer -1" -- "$LORAC" prepare "${P[@]}" vision.select_layer=-1 --out "$T/f3.h5"
check "other layer, other features" bash -c "! cmp -s '$T/f.h5' '$T/f3.h5'"
expect 1 "an fp32 cache refused by a bf16 run" -- "$LORAC" train "${P[@]}" vision.features="$T/f.h5" precision=bf16 \
  train.max_steps=1 output_dir="$T/run16"
check "names the file and both precisions" err_has "$T/f.h5: attribute 'precision': expected 'bf16' (this run's precision), found 'fp32'"
if need_py "h5py reads the cache, batch size changes nothing but rounding" h5py numpy; then
  check "h5py reads the cache" "$PY" -c '
import sys, h5py, numpy as np
f = h5py.File(sys.argv[1], "r")
assert f["features"].shape == (40, 16, 32) and f["features"].dtype == np.float32, f["features"]
imgs = [s.decode() if isinstance(s, bytes) else s for s in f["images"][:]]
assert imgs[0] == "images/train_00000.png" and imgs[30] == "images/eval_00000.png" and len(set(imgs)) == 40, imgs
a = dict(f.attrs)
assert a["select_layer"] == -2 and a["image_size"] == 32 and a["patch_size"] == 8 and a["resize"] == "bicubic", a
assert len(a["vision_model_hash"]) == 16 and a["kind"] == "vision_features" and a["precision"] == "fp32", a
assert np.isfinite(f["features"][:]).all() and np.abs(f["features"][:]).max() > 0
' "$T/f.h5"
  check "batch size changes nothing but rounding" "$PY" -c '
import sys, h5py, numpy as np
a, b = (h5py.File(p, "r")["features"][:] for p in sys.argv[1:])
assert np.abs(a - b).max() <= 1e-5 * np.abs(a).max(), np.abs(a - b).max()
' "$T/f.h5" "$T/f4.h5"
fi

# failures: nothing written
printf '{"image": "images/none.png", "caption": "a ghost"}\n' > "$D/missing.jsonl"
expect 1 "missing image" -- "$LORAC" prepare configs/tiny-projector.yaml model="$M" vision.model="$V" data.train="$D/missing.jsonl" data.eval= --out "$T/x.h5"
check "names the image" err_has "none.png"
expect 1 "bad select_layer" -- "$LORAC" prepare "${P[@]}" vision.select_layer=9 --out "$T/x.h5"
check "names select_layer" err_has "select_layer"
printf '{"text": "no images here"}\n' > "$D/text.jsonl"
expect 1 "no images" -- "$LORAC" prepare configs/tiny-projector.yaml model="$M" vision.model="$V" data.train="$D/text.jsonl" data.eval= data.format=auto --out "$T/x.h5"
check "says no image" err_has "no record has an image"
expect 1 "--out is the data" -- "$LORAC" prepare "${P[@]}" --out "$D/eval.jsonl"
check "data untouched" test "$(wc -l < "$D/eval.jsonl")" -eq 10
expect 2 "bad --batch" -- "$LORAC" prepare "${P[@]}" --batch 0 --out "$T/x.h5"
check "no output on errors" test ! -e "$T/x.h5"
check "no temp files" no_leftovers "$T"

test_summary
