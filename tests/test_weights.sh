#!/usr/bin/env bash
# test_weights.sh — `weights: auto | f32` (config) and `--weights` (eval, generate, merge, bench)
# end to end on a tiny BF16 model: a short training run (dropout on, fp32 and bf16 precision)
# writes byte-identical adapters with either storage; eval and generate print the same; the
# memory log lines (weights mapped or copied, trainable state, arena, peak RSS); the
# out-of-memory refusals (a heap copy or a batch that MemAvailable cannot hold; a full arena)
# are one `error:` line naming the knobs. Kernel- and model-level byte checks: test_wide16.c.
set -uo pipefail
cd "$(dirname "$0")/.."
LORAC=${LORAC:-build/lorac}
source tests/lib.sh
T=$(scratch_dir weights)

expect 0 "tiny BF16 model (untied lm-head)" -- "$LORAC" make-tiny --out "$T/m" --untied --seed 3
expect 0 "tiny F32 model" -- "$LORAC" make-tiny --out "$T/m32" --dtype f32 --seed 3
train() {   # train NAME [key=value ...]
  local name=$1; shift
  expect 0 "train $name" -- "$LORAC" train configs/tiny-lora.yaml model="$T/m" output_dir="$T/$name" data.eval=null \
    train.max_steps=3 train.save_every=0 lora.dropout=0.1 "$@"
  cp "$T/err" "$T/$name.log"
}
losses() { grep -o '"loss": [^,]*' "$1/metrics.jsonl"; }

# --- training: the two storages give the same bytes
train auto weights=auto
train f32 weights=f32
check "adapter bytes: weights auto == f32" cmp -s "$T/auto/adapter_model.safetensors" "$T/f32/adapter_model.safetensors"
check "loss trajectory: weights auto == f32" diff <(losses "$T/auto") <(losses "$T/f32")
check_sh "the run trained (3 loss lines)" '[ "$(losses "$T/auto" | wc -l)" -eq 3 ]'
train bauto precision=bf16 weights=auto
train bf32 precision=bf16 weights=f32
check "bf16 precision: adapter bytes auto == f32" cmp -s "$T/bauto/adapter_model.safetensors" "$T/bf32/adapter_model.safetensors"
check "bf16 differs from fp32 (the check is not empty)" bash -c "! cmp -s '$T/bauto/adapter_model.safetensors' '$T/auto/adapter_model.safetensors'"

# --- the memory log
check "log: BF16 weights mapped (auto)" grep -q '^memory: weights .* BF16, .* fp32; .* mapped from the file, .* copied to the heap; .*weights: auto' "$T/auto.log"
check "log: fp32 copies (f32)" grep -q '^memory: weights .*0.00 GB BF16.*copied to the heap.*weights: f32' "$T/f32.log"
check "log: trainable state and arena" grep -q '^memory: trainable state .* MB .*activation arena .* GB reserved' "$T/auto.log"
check "log: peak RSS at the end" grep -q '^memory: peak RSS [0-9.]* GB' "$T/auto.log"
expect 0 "eval F32 model, auto" -- "$LORAC" eval --model "$T/m32" --data data/demo/eval.jsonl --json
check "log: an F32 file in fp32 precision is served from the mapping" grep -q '^memory: weights .*mapped from the file (no copy)' "$T/err"

# --- eval, generate, merge
for w in auto f32; do
  expect 0 "eval --weights $w" -- "$LORAC" eval --model "$T/m" --adapter "$T/auto" --data data/demo/eval.jsonl --json --weights $w
  cp "$T/out" "$T/eval_$w.json"
  expect 0 "generate --weights $w" -- "$LORAC" generate --model "$T/m" --adapter "$T/auto" --prompt "Hello" \
    --temperature 0 --max-new-tokens 12 --weights $w
  cp "$T/out" "$T/gen_$w.txt"
done
check "eval: same perplexity with either storage" cmp -s "$T/eval_auto.json" "$T/eval_f32.json"
check "generate: same text with either storage" cmp -s "$T/gen_auto.txt" "$T/gen_f32.txt"
expect 0 "merge --weights f32" -- "$LORAC" merge --model "$T/m" --adapter "$T/auto" --out "$T/merged" --weights f32
check "merged model written" test -s "$T/merged/model.safetensors"
expect 2 "eval --weights bf16 is a usage error" -- "$LORAC" eval --model "$T/m" --data data/demo/eval.jsonl --weights bf16
expect 2 "generate --weights x" -- "$LORAC" generate --model "$T/m" --prompt hi --weights x
expect 2 "merge --weights x" -- "$LORAC" merge --model "$T/m" --adapter "$T/auto" --out "$T/merged2" --weights x
expect 1 "config weights: bf16 is an error (as every bad config value)" -- "$LORAC" train configs/tiny-lora.yaml model="$T/m" output_dir="$T/bad" weights=bf16
check "bench knows --weights" bash -c "'$LORAC' bench --help | grep -q -- '--weights auto|f32'"

# --- out of memory: refused before allocating, naming what did not fit and the knobs
expect 1 "train: batch does not fit MemAvailable" -- env LORAC_MEM_AVAILABLE_MB=1 "$LORAC" train configs/tiny-lora.yaml \
  model="$T/m" output_dir="$T/oom" train.max_steps=1
check_sh "the refusal names the activations and the knobs" \
  'grep -q "^error: out of memory: .*saves for backward.*max_seq_len.*batch_size.*activation_checkpointing.*precision: bf16" "$T/err"'
check "no adapter written by the refused run" test ! -e "$T/oom/adapter_model.safetensors"
expect 1 "eval: fp32 heap copies do not fit" -- env LORAC_MEM_AVAILABLE_MB=10 "$LORAC" eval --model "$T/m" \
  --data data/demo/eval.jsonl --weights f32
check "the refusal names the weights and weights: auto" grep -q "^error: .*out of memory: the weights need .*weights: auto" "$T/err"
expect 0 "eval: the same model fits with weights auto" -- env LORAC_MEM_AVAILABLE_MB=10 "$LORAC" eval --model "$T/m" \
  --data data/demo/eval.jsonl --json
expect 1 "train: a full arena is an error" -- "$LORAC" train configs/tiny-lora.yaml model="$T/m" output_dir="$T/arena" \
  train.max_steps=1 train.arena_mb=1
check "the arena error names the knobs" grep -q "^error: .*arena exhausted.*max_seq_len.*activation_checkpointing.*arena_mb" "$T/err"

test_summary
