#!/usr/bin/env bash
# End-to-end `lorac eval`, `lorac merge` and `lorac generate --adapter` on the tiny model:
# merged folder == base + adapter, JSON output, windows, and bad inputs.
set -u
cd "$(dirname "$0")/.."
L=${LORAC:-build/lorac}
source tests/lib.sh
T=$(scratch_dir eval_cli)
field() { jfield "$@"; }

$L make-tiny --out "$T/m32" --dtype f32 --seed 3 >/dev/null 2>&1
$L make-tiny --out "$T/m16" --seed 3 >/dev/null 2>&1
head -n 40 data/demo/train.jsonl > "$T/train.jsonl"
head -n 12 data/demo/eval.jsonl > "$T/eval.jsonl"
# an adapter with non-zero B (a few steps of training)
$L train configs/tiny-lora.yaml model="$T/m32" data.train="$T/train.jsonl" data.eval= output_dir="$T/ad" \
    train.max_steps=4 lora.r=4 optim.lr=0.05 >/dev/null 2>"$T/train.err"
check "adapter trained" [ -s "$T/ad/adapter_model.safetensors" ]

j0=$($L eval --model "$T/m32" --data "$T/eval.jsonl" --json 2>/dev/null)
check "eval --json prints the documented object" grep -qE '^\{"ppl": [0-9.]+, "nll": [0-9.]+, "tokens": [0-9]+, "documents": 12\}$' <<<"$j0"
ja=$($L eval --model "$T/m32" --adapter "$T/ad" --data "$T/eval.jsonl" --json 2>/dev/null)
check "adapter changes the perplexity" [ "$(field "$ja" ppl)" != "$(field "$j0" ppl)" ]
$L merge --model "$T/m32" --adapter "$T/ad" --out "$T/merged32" 2>"$T/merge.err"
check "merge exits 0" [ $? -eq 0 ]
check "merge copies config and tokenizer" [ -s "$T/merged32/config.json" -a -s "$T/merged32/tokenizer.json" ]
check "merged weights keep the input dtype (F32)" grep -aq '"dtype":"F32"' "$T/merged32/model.safetensors"
jm=$($L eval --model "$T/merged32" --data "$T/eval.jsonl" --json 2>/dev/null)
# merged W + s·B·A is rounded once to fp32 where eval with the adapter adds s·B(Ax) to Wx: the
# NLLs differ by fp32 rounding only (measured < 5e-7 nats; thread counts can move it ~1e-6).
# ppl to 1e-5 relative is nll to 1e-5 nats; this adapter moves the NLL by ~0.1 nats, so a
# wrong scale or a missed projection is 10^3-10^4 times the tolerance
check "eval(merged) == eval(base + adapter) (ppl 1e-5 rel): $(field "$jm" ppl) vs $(field "$ja" ppl)" close "$(field "$jm" ppl)" "$(field "$ja" ppl)" 1e-5
$L merge --model "$T/m16" --adapter "$T/ad" --out "$T/merged16" 2>/dev/null
check "BF16 merge keeps BF16" grep -aq '"dtype":"BF16"' "$T/merged16/model.safetensors"
expect_error 1 "merge refuses an existing output folder, naming it" "merged32" -- $L merge --model "$T/m32" --adapter "$T/ad" --out "$T/merged32"

# windows: a long .txt document (no trailing newline, so it equals the tokenize argument) through
# many windows. A .txt file is one `text` document: <|begin_of_text|> + text, L tokens. With
# S < M the windows score every token but the first exactly once (L - 1); with S = M each
# window's first token has no context and is not scored (L - windows). The exact count is
# asserted: scoring overlaps twice or dropping window starts gives another number.
printf '%s' "$(for i in $(seq 1 30); do cat data/demo/eval.jsonl; done | head -c 20000)" > "$T/long.txt"
ntok=$($L tokenize --model "$T/m32" --bos -- "$(cat "$T/long.txt")" | wc -w)
check "long document tokenized ($ntok tokens)" [ "$ntok" -gt 1000 ]
check "window rule: S < M scores L - 1, S = M scores L - windows" \
  [ "$(window_tokens "$ntok" 64 32)" -eq $((ntok - 1)) -a "$(window_tokens "$ntok" 64 64)" -eq $((ntok - (ntok + 63) / 64)) ]
for ms in "64 32" "50 17" "64 64"; do
  set -- $ms
  jw=$($L eval --model "$T/m32" --data "$T/long.txt" --max-length "$1" --stride "$2" --json 2>/dev/null)
  want=$(window_tokens "$ntok" "$1" "$2")
  check "sliding window M=$1 S=$2 over $ntok tokens scores $want (got $(field "$jw" tokens))" [ "$(field "$jw" tokens)" = "$want" ]
  check "M=$1 S=$2: one .txt document" grep -q '"documents": 1}' <<<"$jw"
done

# generate with an adapter
g1=$($L generate --model "$T/m32" --adapter "$T/ad" --prompt "Hello" --temperature 0 --max-new-tokens 6 2>/dev/null)
g2=$($L generate --model "$T/merged32" --prompt "Hello" --temperature 0 --max-new-tokens 6 2>/dev/null)
check "generate --adapter equals generate on the merged model" [ "$g1" = "$g2" ]

# bad inputs
expect_error 1 "missing data file: exit 1, names it" "missing.jsonl" -- $L eval --model "$T/m32" --data "$T/missing.jsonl"
printf '%s\n' '{"text": "fine"}' '{"text": 5}' > "$T/bad.jsonl"
expect_error 1 "malformed line: file:line and field" "bad.jsonl:2.*text" -- $L eval --model "$T/m32" --data "$T/bad.jsonl"
cp -r "$T/ad" "$T/ad_r8" && sed -i 's/"r": 4/"r": 8/' "$T/ad_r8/adapter_config.json"
expect_error 1 "adapter with other shapes: exit 1, names tensor and shapes" "lora_A.weight.*\[8, 64\]" -- \
  $L eval --model "$T/m32" --adapter "$T/ad_r8" --data "$T/eval.jsonl"
cp -r "$T/ad" "$T/ad_t" && sed -i 's/"q_proj",//' "$T/ad_t/adapter_config.json"
expect_error 1 "merge refuses tensors for untargeted modules" "q_proj.lora_A" -- $L merge --model "$T/m32" --adapter "$T/ad_t" --out "$T/never"
check_sh "failed merge leaves no output" '[ ! -e "$T/never" ] && [ -z "$(ls "$T" | grep never)" ]'
expect_error 2 "bad --stride is a usage error (2)" "stride" -- $L eval --model "$T/m32" --data "$T/eval.jsonl" --stride 0
expect_error 2 "missing --model is a usage error (2)" "model" -- $L eval --data "$T/eval.jsonl"

test_summary
