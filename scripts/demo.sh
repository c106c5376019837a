#!/usr/bin/env bash
# `make demo`: the main job on the built-in tiny default — a tiny random Llama (real Llama 3
# tokenizer), LoRA fine-tuning on the committed demo instructions, held-out perplexity
# before and after, and a sample from the result.
set -euo pipefail
cd "$(dirname "$0")/.."
L=build/lorac
M=build/tiny-llama
[ -s "$M/model.safetensors" ] || $L make-tiny --out "$M"
echo "== perplexity before (base model, data/demo/eval.jsonl)"
$L eval --model "$M" --data data/demo/eval.jsonl --max-length 256 --stride 128
echo "== LoRA fine-tuning (configs/tiny-lora.yaml)"
rm -rf build/demo-lora
$L train configs/tiny-lora.yaml
echo "== perplexity after (with the adapter in build/demo-lora)"
$L eval --model "$M" --adapter build/demo-lora --data data/demo/eval.jsonl --max-length 256 --stride 128
echo "== sample (greedy, with the adapter)"
$L generate --model "$M" --adapter build/demo-lora --chat --prompt "Give three tips for staying healthy." \
    --temperature 0 --max-new-tokens 24
echo
echo "demo outputs: build/demo-lora/{adapter_model.safetensors,adapter_config.json,metrics.jsonl,loss.svg}"
