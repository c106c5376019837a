#!/usr/bin/env bash
# End-to-end `lorac train` on the tiny model: outputs, PEFT layout, resume equality after
# Ctrl-C and after kill -9, dump_grads, lora.init, and malformed-input errors.
set -u
cd "$(dirname "$0")/.."
L=${LORAC:-build/lorac}
source tests/lib.sh
T=$(scratch_dir train_cli)

$L make-tiny --out "$T/model" --seed 7 >/dev/null 2>"$T/mk.err" || { bad "make-tiny: $(cat "$T/mk.err")"; test_summary; exit 1; }
head -n 64 data/demo/train.jsonl > "$T/train.jsonl"
head -n 8 data/demo/eval.jsonl > "$T/eval.jsonl"
common=(model="$T/model" data.train="$T/train.jsonl" data.eval="$T/eval.jsonl" train.max_steps=12
        train.batch_size=2 train.grad_accum=2 lora.r=4 lora.dropout=0.1 train.eval_every=6 data.shuffle=true)

# 1. an uninterrupted run
$L train configs/tiny-lora.yaml "${common[@]}" output_dir="$T/a" train.save_every=4 train.keep_last=2 \
    train.dump_grads="$T/grads.safetensors" >"$T/a.out" 2>"$T/a.err"
check "train exits 0" [ $? -eq 0 ]
check "adapter written" [ -s "$T/a/adapter_model.safetensors" -a -s "$T/a/adapter_config.json" ]
check "loss curve written" grep -q "<svg" "$T/a/loss.svg"
check "metrics has 12 steps" [ "$(grep -c '"loss"' "$T/a/metrics.jsonl")" -eq 12 ]
check "metrics has eval" grep -q '"eval_ppl"' "$T/a/metrics.jsonl"
check "keep_last=2 keeps 2 checkpoints" [ "$(ls "$T/a/checkpoints" | wc -l)" -eq 2 ]
check "final checkpoint complete" [ -s "$T/a/checkpoints/step_0000012/optimizer.safetensors" -a -s "$T/a/checkpoints/step_0000012/trainer_state.json" ]
check "PEFT config fields" grep -q '"peft_type": "LORA"' "$T/a/adapter_config.json"
check "PEFT keys" grep -aq 'base_model.model.model.layers.1.mlp.down_proj.lora_B.weight' "$T/a/adapter_model.safetensors"
check "format pt metadata" grep -aq '"format":"pt"' "$T/a/adapter_model.safetensors"
check "dump_grads written" grep -aq 'layers.0.self_attn.q_proj.lora_A.weight' "$T/grads.safetensors"
first=$(grep -m1 '"loss"' "$T/a/metrics.jsonl" | sed 's/.*"loss": \([0-9.]*\).*/\1/')
last=$(grep '"loss"' "$T/a/metrics.jsonl" | tail -1 | sed 's/.*"loss": \([0-9.]*\).*/\1/')
check "loss falls ($first -> $last)" awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a) }'

# 2. Ctrl-C then resume ends byte-identical
$L train configs/tiny-lora.yaml "${common[@]}" output_dir="$T/b" train.save_every=100 >"$T/b.out" 2>"$T/b.err" &
pid=$!
for _ in $(seq 1 500); do
  [ -f "$T/b/metrics.jsonl" ] && [ "$(grep -c '"loss"' "$T/b/metrics.jsonl" 2>/dev/null)" -ge 3 ] && break
  sleep 0.01
done
kill -INT $pid 2>/dev/null
wait $pid; rc=$?
check "SIGINT exits 130 (got $rc)" [ $rc -eq 130 ]
check "SIGINT saved a checkpoint" [ -n "$(ls "$T/b/checkpoints" 2>/dev/null)" ]
$L train configs/tiny-lora.yaml "${common[@]}" output_dir="$T/b" train.save_every=100 resume=true >"$T/b2.out" 2>"$T/b2.err"
check "resume exits 0" [ $? -eq 0 ]
check "resume after Ctrl-C is byte-identical" cmp -s "$T/a/adapter_model.safetensors" "$T/b/adapter_model.safetensors"
check "resumed optimizer state identical" cmp -s "$T/a/checkpoints/step_0000012/optimizer.safetensors" "$T/b/checkpoints/step_0000012/optimizer.safetensors"

# 3. kill -9 mid-run, resume from the last complete checkpoint. Proven mid-run: the process
# was still running when the signal was sent (kill -0, and it died of SIGKILL: status 137),
# it had not written its final adapter, and its newest complete checkpoint was older than the
# last step; the resumed run says it continues from exactly that checkpoint.
$L train configs/tiny-lora.yaml "${common[@]}" output_dir="$T/c" train.save_every=2 >"$T/c.out" 2>"$T/c.err" &
pid=$!
for _ in $(seq 1 3000); do
  [ -n "$(ls "$T/c/checkpoints" 2>/dev/null | grep -v tmp)" ] && [ "$(grep -c '"loss"' "$T/c/metrics.jsonl" 2>/dev/null)" -ge 5 ] && break
  sleep 0.01
done
alive=0; kill -0 $pid 2>/dev/null && alive=1
kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null; rc=$?
newest=$(ls "$T/c/checkpoints" 2>/dev/null | grep -E '^step_[0-9]{7}$' | sort | tail -1)
check "kill -9 landed on a running process (alive $alive, status $rc)" [ $alive -eq 1 -a $rc -eq 137 ]
check "killed before the end: no final adapter" [ ! -e "$T/c/adapter_model.safetensors" ]
check "a checkpoint older than the last step existed at the kill ($newest)" \
  [ -n "$newest" -a "$newest" != step_0000012 -a -s "$T/c/checkpoints/$newest/trainer_state.json" ]
$L train configs/tiny-lora.yaml "${common[@]}" output_dir="$T/c" train.save_every=2 resume=true >"$T/c2.out" 2>"$T/c2.err"
check "resume after kill -9 exits 0" [ $? -eq 0 ]
check "the resumed run names that checkpoint" grep -q "^resume: continuing from $T/c/checkpoints/$newest " "$T/c2.err"
check "resume after kill -9 is byte-identical" cmp -s "$T/a/adapter_model.safetensors" "$T/c/adapter_model.safetensors"

# 4. lora.init continues from an adapter
$L train configs/tiny-lora.yaml "${common[@]}" output_dir="$T/d" lora.init="$T/a" train.max_steps=2 >"$T/d.out" 2>"$T/d.err"
check "lora.init run exits 0" [ $? -eq 0 ]
check "lora.init is announced" grep -q "starting from" "$T/d.err"

# 5. malformed input: one error line naming file:line and field, exit 1
printf '%s\n' '{"instruction": "a", "output": "b"}' '{"instruction": "a", "output": ' > "$T/bad.jsonl"
$L train configs/tiny-lora.yaml "${common[@]}" output_dir="$T/e" data.train="$T/bad.jsonl" >"$T/e.out" 2>"$T/e.err"
rc=$?
check "bad JSON exits 1" [ $rc -eq 1 ]
check "bad JSON names file:line" grep -q "^error: .*bad.jsonl:2" "$T/e.err"
printf '%s\n' '{"instruction": "a", "output": "b"}' '{"instruction": 3, "output": "b"}' '{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": ""}]}' > "$T/bad2.jsonl"
expect_error 1 "wrong field type names the field" "bad2.jsonl:2.*instruction" -- \
  $L train configs/tiny-lora.yaml "${common[@]}" output_dir="$T/f" data.train="$T/bad2.jsonl"
$L train configs/tiny-lora.yaml "${common[@]}" output_dir="$T/g" data.train="$T/bad2.jsonl" data.skip_bad_lines=true train.max_steps=1 \
    train.batch_size=1 train.grad_accum=1 >"$T/g.out" 2>"$T/g.err"
check "skip_bad_lines runs and counts" grep -q "2 malformed skipped" "$T/g.err"
expect_error 1 "unknown override key exits 1 with error naming it" "optim.lrr" -- \
  $L train configs/tiny-lora.yaml "${common[@]}" output_dir="$T/h" optim.lrr=1
expect 2 "missing config is a usage error (2)" -- $L train
expect_error 1 "missing model names the path" "nonexistent" -- $L train configs/tiny-lora.yaml "${common[@]}" output_dir="$T/j" model="$T/nonexistent"

# 6. prepared HDF5 data: same training as the JSONL; a file from another template is refused
$L prepare configs/tiny-lora.yaml "${common[@]}" --out "$T/train.h5" >/dev/null 2>"$T/p.err"
check "prepare exits 0" [ $? -eq 0 ]
$L train configs/tiny-lora.yaml "${common[@]}" output_dir="$T/k" data.train="$T/train.h5" >/dev/null 2>"$T/k.err"
check "training on the prepared file equals training on the JSONL" cmp -s "$T/a/adapter_model.safetensors" "$T/k/adapter_model.safetensors"
$L prepare configs/tiny-lora.yaml "${common[@]}" data.template=alpaca_classic --out "$T/classic.h5" >/dev/null 2>&1
expect_error 1 "prepared file from another template is refused" "classic.h5.*template" -- \
  $L train configs/tiny-lora.yaml "${common[@]}" output_dir="$T/l" data.train="$T/classic.h5"

# 7. a diverging run stops with a clear message, keeps the last good checkpoint, writes no adapter
$L train configs/tiny-lora.yaml "${common[@]}" output_dir="$T/n" optim.lr=1e30 optim.grad_clip=0 train.save_every=1 \
    train.max_steps=6 >/dev/null 2>"$T/n.err"
rc=$?
check "non-finite loss/gradient exits 1 (got $rc)" [ $rc -eq 1 ]
check "non-finite message" grep -q "^error: .*not finite" "$T/n.err"
# step 1 completed and was checkpointed, so the step that diverged is step 2 (steps count from 1)
check "the error names the step that diverged (step 2)" grep -q "^error: step 2: the loss is not finite" "$T/n.err"
check "no final adapter after divergence" [ ! -e "$T/n/adapter_model.safetensors" ]
# the last good checkpoint: the error names it, it is the only one (the failed step saved
# nothing), it is complete, and it is resumable: resuming continues from it and meets the same
# non-finite step again (same error), leaving it in place
good=$(sed -n 's/.*last good checkpoint: \(.*\))$/\1/p' "$T/n.err")
check "the error names the last good checkpoint ($good)" [ "$good" = "$T/n/checkpoints/step_0000001" ]
check "the last good checkpoint is kept, and is the only one" [ "$(ls "$T/n/checkpoints" | tr '\n' ' ')" = "step_0000001 " ]
check "the last good checkpoint is complete" [ -s "$good/adapter_model.safetensors" -a -s "$good/optimizer.safetensors" -a -s "$good/trainer_state.json" ]
$L train configs/tiny-lora.yaml "${common[@]}" output_dir="$T/n" optim.lr=1e30 optim.grad_clip=0 train.save_every=1 \
    train.max_steps=6 resume=true >/dev/null 2>"$T/n2.err"
rc=$?
check "resuming from the last good checkpoint: named, same failure (exit $rc)" \
  [ $rc -eq 1 -a "$(grep -c "^resume: continuing from $good " "$T/n2.err")" -eq 1 -a "$(grep '^error:' "$T/n2.err")" = "$(grep '^error:' "$T/n.err")" ]
check "the last good checkpoint is still there" [ -s "$good/trainer_state.json" ]

test_summary
