#!/usr/bin/env bash
# Hostile or odd input at the command line (issue 16 "quiet wrong answers and poor limits"): each
# check failed before its fix. Library-level cases are in test_limits.c.
set -u
cd "$(dirname "$0")/.."
L=${LORAC:-build/lorac}
source tests/lib.sh
T=$(scratch_dir limits_cli)

$L make-tiny --out "$T/model" --seed 3 >/dev/null 2>"$T/mk.err" || { cat "$T/mk.err"; echo "0 passed, 1 failed"; exit 1; }
head -n 6 data/demo/train.jsonl > "$T/train.jsonl"
head -n 4 data/demo/eval.jsonl > "$T/eval.jsonl"
common=(model="$T/model" data.train="$T/train.jsonl" train.max_steps=1 train.batch_size=2 lora.r=2 data.eval=null
        train.save_every=0 train.eval_every=0)

# batch sizes larger than the data: an error naming the file and both keys (micro-batches used to
# wrap around and repeat records)
expect 1 "batch_size > records" -- $L train configs/tiny-lora.yaml "${common[@]}" output_dir="$T/b1" train.batch_size=8 train.grad_accum=1
check "batch_size message names the data and the keys" err_has "train.jsonl: train.batch_size (8)"
expect 1 "batch_size x grad_accum > records" -- $L train configs/tiny-lora.yaml "${common[@]}" output_dir="$T/b2" train.grad_accum=4
check "grad_accum message" err_has "only 6 usable records"
check "nothing written for a refused run" [ ! -e "$T/b1/adapter_model.safetensors" ]

# a training run for the merge checks below
expect 0 "tiny run" -- $L train configs/tiny-lora.yaml "${common[@]}" output_dir="$T/run"

# merge --out DIR/ (trailing slash) writes DIR; --out "" is a usage error
expect 0 "merge --out DIR/" -- $L merge --model "$T/model" --adapter "$T/run" --out "$T/merged/"
check "merged model written" [ -s "$T/merged/model.safetensors" -a -s "$T/merged/config.json" ]
check "no temporary folder left" [ -z "$(ls "$T" | grep tmp)" ]
mkdir -p "$T/cwd"
expect 2 "merge --out ''" -- bash -c "cd '$T/cwd' && '$PWD/$L' merge --model '$PWD/$T/model' --adapter '$PWD/$T/run' --out ''"
check "merge --out '' names --out" err_has "\-\-out"
check "merge --out '' writes nothing in the current folder" [ -z "$(ls -A "$T/cwd")" ]

# messages
expect 1 "missing model folder" -- $L eval --model "$T/no-such-model" --data "$T/eval.jsonl"
check "missing model folder named as such" err_has "no-such-model: model folder not found"
expect 2 "generate: unknown flag" -- $L generate --model "$T/model" --prompt hi --bogus
check "unknown flag is 'unknown option'" err_has "unknown option '--bogus'"
expect 2 "generate: unknown flag last" -- $L generate --bogus
check "unknown flag last is 'unknown option' (not 'needs a value')" err_has "unknown option '--bogus'"
expect 2 "make-tiny captions: unknown flag" -- $L make-tiny --kind captions --out "$T/cap" --bogus
check "make-tiny unknown flag" err_has "unknown option '--bogus'"
expect 0 "eval --max-length 16 alone" -- $L eval --model "$T/model" --data "$T/eval.jsonl" --max-length 16 --json
check "eval --max-length 16 prints a result" grep -q '"ppl"' "$T/out"
expect 2 "eval --stride over --max-length" -- $L eval --model "$T/model" --data "$T/eval.jsonl" --max-length 16 --stride 32

# a tokenizer whose ids do not fit the model: the data file, line and model folder are named
# (it was "embedding: ids[..] out of range" without a file)
mkdir -p "$T/model2/original"
for f in config.json model.safetensors generation_config.json; do ln -sf "$PWD/$T/model/$f" "$T/model2/$f"; done
/usr/bin/python3 - "$T/model2/original/tokenizer.model" <<'EOF'
import base64, sys
with open(sys.argv[1], "w") as f:
    for b in range(256):   # the 256 bytes at ranks 200000.. (the model has 128256 ids)
        f.write("%s %d\n" % (base64.b64encode(bytes([b])).decode(), 200000 + b))
EOF
expect 1 "tokenizer ids outside the model's vocabulary (train)" -- $L train configs/tiny-lora.yaml "${common[@]}" model="$T/model2" output_dir="$T/v"
check "vocab message names data file, line and model" err_has "train.jsonl:1: token id 200256 is outside"
check "vocab message names config.json" err_has "model2/config.json"
expect 1 "tokenizer ids outside the model's vocabulary (eval)" -- $L eval --model "$T/model2" --data "$T/eval.jsonl"
check "eval vocab message" err_has "eval.jsonl:1: token id"

test_summary
