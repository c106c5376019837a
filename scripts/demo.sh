#!/usr/bin/env bash
# `make demo`: LoRA teaches a small random Llama a rule you can check. The task
# (data/demo/words/, made by make_words.py): "Which word is a colour? dog red pear" -> "red" —
# three words, one of them a colour, in a random order. The held-out prompts are new
# combinations of words seen in training. The run prints held-out perplexity and greedy
# answers to the held-out prompts before and after training (with the share exactly right),
# writes report.html and TensorBoard logs, and this script ends with the before/after numbers
# against the targets (perplexity down >= 10x, >= 80% exact answers).
#
# usage: scripts/demo.sh [key=value ...]   (extra config overrides, e.g. train.max_steps=60;
# DEMO_MODEL / DEMO_OUT choose other folders — tests/test_demo.sh runs a shortened demo so)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/demo_result.sh
L=${LORAC:-build/lorac}
M=${DEMO_MODEL:-build/demo-llama}
OUT=${DEMO_OUT:-build/demo-words}
# the demo model: hidden 256, 2 layers, embeddings and a separate (untied) lm_head with std
# 0.06. Why: at hidden 256 HF's 0.02 caps every logit below ~5 (a loss above ~6.7), and tied
# random embeddings make the model predict its current token, which LoRA would have to undo
# token by token; with these the frozen random model can express a confident answer.
[ -s "$M/model.safetensors" ] || $L make-tiny --out "$M" --hidden-size 256 --embed-std 0.06 --untied
rm -rf "$OUT"
t0=$SECONDS
$L train configs/demo.yaml model="$M" output_dir="$OUT" "$@"
secs=$((SECONDS - t0))
m=$OUT/metrics.jsonl
ppl0=$(metric eval_ppl "$m" first)
ppl1=$(metric eval_ppl "$m" last)
ex0=$(metric sample_exact "$m" first)
ex1=$(metric sample_exact "$m" last)
echo
echo "== demo result (held-out: data/demo/words/eval.jsonl, prompts never seen in training; ${secs} s)"
targets perplexity "exact answers" "$ppl0" "$ppl1" "$ex0" "$ex1"
echo "   report: $OUT/report.html   TensorBoard: tensorboard --logdir $OUT/tb"
echo "   try:    $L generate --model $M --adapter $OUT --chat --temperature 0 --prompt \"Which word is a colour? lamp cat green\""
