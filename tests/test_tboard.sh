#!/usr/bin/env bash
# TensorBoard event files (train.tensorboard): output_dir/tb/events.out.tfevents.lorac decoded
# with python3-protobuf from TensorBoard's message definitions (tests/tb_event.proto, compiled
# by protoc here) and compared with metrics.jsonl; the framing CRCs recomputed independently;
# a resumed run's file truncated consistently (equal to an uninterrupted run's but for the
# timing scalars); tensorboard=false writes nothing; a corrupt file on resume is one error line.
set -u
cd "$(dirname "$0")/.."
L=${LORAC:-build/lorac}
source tests/lib.sh
T=$(scratch_dir tboard)
if ! command -v protoc >/dev/null || ! $PY -c 'import google.protobuf' 2>/dev/null; then
  skip "TensorBoard event files" "protoc or python3-protobuf missing (scripts/deps.sh installs them)"
  test_summary; exit 0
fi
protoc --python_out="$T" -I tests tests/tb_event.proto || { bad "protoc failed"; test_summary; exit 1; }
$L make-tiny --out "$T/model" --seed 3 >/dev/null 2>"$T/mk.err" || { bad "make-tiny: $(cat "$T/mk.err")"; test_summary; exit 1; }
head -n 24 data/demo/words/train.jsonl > "$T/train.jsonl"
head -n 6 data/demo/words/eval.jsonl > "$T/eval.jsonl"
common=(model="$T/model" data.train="$T/train.jsonl" data.eval="$T/eval.jsonl" train.max_steps=6 train.batch_size=2
        lora.r=2 lora.targets=[q_proj,v_proj] train.eval_every=2 train.save_every=3 train.keep_last=0 train.threads=1)
ev=tb/events.out.tfevents.lorac

# 1. an uninterrupted run: the file decodes and equals metrics.jsonl
expect 0 "train" -- $L train configs/tiny-lora.yaml "${common[@]}" output_dir="$T/a"
check "event file written" [ -s "$T/a/$ev" ]
check "decodes and matches metrics.jsonl" $PY tests/tb_decode.py "$T" "$T/a/$ev" "$T/a/metrics.jsonl" --dump >"$T/a.dump"
check "every tag present" [ "$(cut -d' ' -f2 "$T/a.dump" | sort -u | tr '\n' ' ')" = \
  "eval/loss eval/ppl train/grad_norm train/loss train/lr train/tokens_per_s " ]
check "eval at step 0 kept" grep -q '^0 eval/loss ' "$T/a.dump"

# 2. resume from step 3 (the step-6 checkpoint removed, as after a crash): records after step 3
#    are dropped and written again; everything but the timing equals the uninterrupted run
cp -r "$T/a" "$T/b"
rm -rf "$T/b/checkpoints/step_0000006"
expect 0 "resume" -- $L train configs/tiny-lora.yaml "${common[@]}" output_dir="$T/b" resume=true
check "resumed file matches its metrics.jsonl" $PY tests/tb_decode.py "$T" "$T/b/$ev" "$T/b/metrics.jsonl" --dump >"$T/b.dump"
check "resumed = uninterrupted (but tokens/s)" cmp <(grep -v tokens_per_s "$T/a.dump") <(grep -v tokens_per_s "$T/b.dump")
check "no temp files left" no_leftovers "$T/b/tb"

# 3. the decoder is not blind: a flipped byte fails the CRC check
cp "$T/a/$ev" "$T/flip"
printf '\x7f' | dd of="$T/flip" bs=1 seek=40 conv=notrunc 2>/dev/null
check "flipped byte detected" bash -c "! $PY tests/tb_decode.py '$T' '$T/flip' '$T/a/metrics.jsonl' 2>/dev/null"

# 4. tensorboard=false writes no tb/; a corrupt file on resume is an error naming it
expect 0 "tensorboard=false" -- $L train configs/tiny-lora.yaml "${common[@]}" output_dir="$T/c" train.max_steps=2 \
  train.tensorboard=false
check "no tb folder" [ ! -e "$T/c/tb" ]
cp "$T/flip" "$T/b/$ev"
rm -rf "$T/b/checkpoints/step_0000006"
expect 1 "corrupt event file on resume" -- $L train configs/tiny-lora.yaml "${common[@]}" output_dir="$T/b" resume=true
check "error names the file" err_has "events.out.tfevents.lorac: bad"
test_summary
