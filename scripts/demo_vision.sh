#!/usr/bin/env bash
# `make demo-vision`: LLaVA stage 1 on the tiny models — a tiny random SigLIP and Llama, the
# synthetic shapes-and-colours captions in data/demo/captions/, projector training (the
# trainer prints held-out caption loss/perplexity before, during and after), the vision
# feature cache, caption perplexity with `lorac eval`, and a caption sampled for an image.
set -euo pipefail
cd "$(dirname "$0")/.."
L=build/lorac
[ -s build/tiny-llama/model.safetensors ] || $L make-tiny --out build/tiny-llama
[ -s build/tiny-siglip/model.safetensors ] || $L make-tiny --kind siglip --out build/tiny-siglip
echo "== vision features computed once into an HDF5 cache (lorac prepare)"
$L prepare configs/tiny-projector.yaml --out build/demo-captions-features.h5
echo "== projector training (configs/tiny-projector.yaml, from the cache)"
rm -rf build/demo-projector
$L train configs/tiny-projector.yaml vision.features=build/demo-captions-features.h5
echo "== held-out caption perplexity with the trained projector"
$L eval --model build/tiny-llama --vision build/tiny-siglip --projector build/demo-projector \
    --data data/demo/captions/eval.jsonl
img=data/demo/captions/$(head -n 1 data/demo/captions/eval.jsonl | sed 's/.*"image": *"\([^"]*\)".*/\1/')
echo "== caption for $img (greedy)"
$L generate --model build/tiny-llama --vision build/tiny-siglip --projector build/demo-projector \
    --image "$img" --prompt "" --temperature 0 --max-new-tokens 12
echo
echo "demo outputs: build/demo-projector/{projector.safetensors,projector_config.json,metrics.jsonl,loss.svg}"
