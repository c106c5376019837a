#!/usr/bin/env bash
# test_bf16.sh — precision: bf16 end to end on a make-tiny model (BF16 weights): training with
# `precision: bf16` (the log names it; Ctrl-C + resume ends byte-identical to an uninterrupted
# run, as in fp32), eval and generate with --precision (perplexity within 1% of fp32: the
# numerics are proven in tests/test_bf16.c), the emulated path on a CPU without AVX-512
# (ONEDNN_MAX_CPU_ISA=AVX2 makes oneDNN behave as on one: the log says so and the numbers are
# those of the native path up to fp32 accumulation order), and the usage errors.
set -u
cd "$(dirname "$0")/.."
LORAC=${LORAC:-build/lorac}
L=$LORAC
source tests/lib.sh
T=$(scratch_dir bf16)

expect 0 "make-tiny" -- "$L" make-tiny --out "$T/model" --seed 7
head -n 48 data/demo/train.jsonl > "$T/train.jsonl"
head -n 8 data/demo/eval.jsonl > "$T/eval.jsonl"
common=(model="$T/model" data.train="$T/train.jsonl" data.eval="$T/eval.jsonl" train.max_steps=6 precision=bf16
        train.batch_size=2 train.grad_accum=2 lora.r=4 lora.dropout=0.1 train.eval_every=4 data.shuffle=true)

# --- training in bf16, resume byte-identical
expect 0 "bf16 train" -- "$L" train configs/tiny-lora.yaml "${common[@]}" output_dir="$T/a" train.save_every=100
check "log names BF16 weights as stored" err_has "precision: bf16: $T/model: 15 frozen weights held in BF16 (0.02 GB), as stored"
check "adapter written" test -s "$T/a/adapter_model.safetensors"
check "resolved config records precision" grep -qE '"precision":[[:space:]]*"bf16"' "$T/a/checkpoints/step_0000006/trainer_state.json"
"$L" train configs/tiny-lora.yaml "${common[@]}" output_dir="$T/b" train.save_every=100 >"$T/b.out" 2>"$T/b.err" &
pid=$!
for _ in $(seq 1 1000); do
  [ -f "$T/b/metrics.jsonl" ] && [ "$(grep -c '"loss"' "$T/b/metrics.jsonl")" -ge 2 ] && break
  sleep 0.01
done
kill -INT $pid 2>/dev/null
wait $pid; rc=$?
check "SIGINT exits 130 (got $rc)" [ $rc -eq 130 ]
expect 0 "bf16 resume" -- "$L" train configs/tiny-lora.yaml "${common[@]}" output_dir="$T/b" train.save_every=100 resume=true
check "bf16 resume is byte-identical" cmp -s "$T/a/adapter_model.safetensors" "$T/b/adapter_model.safetensors"
check "bf16 resumed optimizer identical" cmp -s "$T/a/checkpoints/step_0000006/optimizer.safetensors" \
    "$T/b/checkpoints/step_0000006/optimizer.safetensors"

# --- eval and generate
ppl() { sed 's/.*"ppl": \([0-9.e+-]*\).*/\1/' "$T/out"; }
expect 0 "eval fp32" -- "$L" eval --model "$T/model" --adapter "$T/a" --data "$T/eval.jsonl" --json
p32=$(ppl)
check "fp32 says nothing about BF16 matmuls" bash -c "! grep -q '^precision: bf16' '$T/err'"
expect 0 "eval bf16" -- "$L" eval --model "$T/model" --adapter "$T/a" --data "$T/eval.jsonl" --json --precision bf16
p16=$(ppl)
check "bf16 ppl $p16 within 1% of fp32 $p32" awk -v a="$p16" -v b="$p32" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 0.01 * b && a != b) }'
# the emulated path (oneDNN limited to AVX2: no BF16 matmul, lorac's widened-operand sgemm)
ONEDNN_MAX_CPU_ISA=AVX2 "$L" eval --model "$T/model" --adapter "$T/a" --data "$T/eval.jsonl" --json --precision bf16 >"$T/out" 2>"$T/err"
check "emulated eval exits 0" [ $? -eq 0 ]
pe=$(ppl)
check "emulation is said in the log" err_has "no AVX512-BF16 or AMX (oneDNN runs avx2): BF16 matmuls are emulated and slower than fp32 here; consider precision: fp32"
check "emulated ppl $pe equals native $p16 up to fp32 rounding" awk -v a="$pe" -v b="$p16" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 1e-5 * b) }'
expect 0 "generate bf16" -- "$L" generate --model "$T/model" --adapter "$T/a" --prompt "Hello" --temperature 0 --max-new-tokens 8 --precision bf16
check "generate bf16 prints text" test -s "$T/out"
check "generate bf16 logs BF16" err_has "frozen weights held in BF16"

# --- usage and config errors
expect 2 "eval --precision fp16" -- "$L" eval --model "$T/model" --data "$T/eval.jsonl" --precision fp16
check "eval names the choices" err_has "expected fp32 or bf16"
expect 2 "generate --precision x" -- "$L" generate --model "$T/model" --prompt hi --precision x
expect 1 "precision: fp16 in the config" -- "$L" train configs/tiny-lora.yaml "${common[@]}" precision=fp16 output_dir="$T/e"
check "config error names the key" err_has "precision: expected one of fp32, bf16, found 'fp16'"

test_summary
