#!/usr/bin/env bash
# End-to-end projector training and multimodal use on tiny models (make-tiny llama + siglip,
# the committed caption demo images): `train` in projector and projector+lora modes (outputs,
# LLaVA key names, checkpoints, exact resume, dump_grads, projector.init, the feature cache,
# bad images), `eval --vision --projector` and `generate --vision --projector --image`.
set -u
cd "$(dirname "$0")/.."
L=${LORAC:-build/lorac}
source tests/lib.sh
T=$(scratch_dir vision_cli)
has() { grep -aq -- "$2" "$1"; }

tiny_vision_models
D=data/demo/captions
common=(model="$T/llama" vision.model="$T/siglip" data.train="$T/train.jsonl" data.eval="$T/eval.jsonl"
        train.max_steps=4 train.batch_size=2 train.grad_accum=2 train.save_every=2 train.eval_every=2
        train.log_every=100 data.shuffle=true optim.lr=1e-2 schedule.warmup_ratio=0)

# 1. mode projector
$L train configs/tiny-projector.yaml "${common[@]}" output_dir="$T/a" train.dump_grads="$T/ga.safetensors" \
    >"$T/a.out" 2>"$T/a.err"
check "projector: train exits 0" [ $? -eq 0 ]
check "projector.safetensors has LLaVA mlp2x_gelu keys" has "$T/a/projector.safetensors" 'model.mm_projector.2.bias'
check "projector.safetensors has format pt" has "$T/a/projector.safetensors" '"format":"pt"'
for k in '"projector_type":.*"mlp2x_gelu"' '"select_layer":.*-2' '"vision_hidden_size":.*32' '"text_hidden_size"' '"num_patches":.*16'; do
  check "projector_config.json $k" grep -q "$k" "$T/a/projector_config.json"
done
check "projector: no adapter written" [ ! -e "$T/a/adapter_model.safetensors" ]
check "checkpoint holds the projector" [ -s "$T/a/checkpoints/step_0000002/projector.safetensors" -a -s "$T/a/checkpoints/step_0000002/optimizer.safetensors" ]
check "metrics: 4 steps" [ "$(grep -c '"loss"' "$T/a/metrics.jsonl")" -eq 4 ]
check "metrics: eval_ppl" has "$T/a/metrics.jsonl" '"eval_ppl"'
check "dump_grads: projector keys" has "$T/ga.safetensors" 'model.mm_projector.0.weight'
first=$(grep -m1 '"loss"' "$T/a/metrics.jsonl" | sed 's/.*"loss": \([0-9.]*\).*/\1/')
last=$(grep '"loss"' "$T/a/metrics.jsonl" | tail -1 | sed 's/.*"loss": \([0-9.]*\).*/\1/')
check "projector: loss falls ($first -> $last)" awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a) }'

# 2. resume from the step-2 checkpoint ends identical
resume_check() {   # $1 reference run, $2 copy, then the train args
  local ref=$1 cp=$2; shift 2
  rm -rf "$cp" && cp -r "$ref" "$cp" && rm -rf "$cp/checkpoints/step_0000004" "$cp"/*.safetensors
  $L train configs/tiny-projector.yaml "$@" output_dir="$cp" resume=true >"$cp.out" 2>"$cp.err"
  check "$(basename "$cp"): resume exits 0" [ $? -eq 0 ]
  check "$(basename "$cp"): resumed from step 2" has "$cp.err" 'step 2 of 4'
  for f in projector.safetensors checkpoints/step_0000004/optimizer.safetensors; do
    check "$(basename "$cp"): $f identical after resume" cmp -s "$ref/$f" "$cp/$f"
  done
}
resume_check "$T/a" "$T/a2" "${common[@]}"

# 3. mode projector+lora
$L train configs/tiny-projector.yaml "${common[@]}" mode=projector+lora lora.r=4 output_dir="$T/b" \
    train.dump_grads="$T/gb.safetensors" >"$T/b.out" 2>"$T/b.err"
check "projector+lora: train exits 0" [ $? -eq 0 ]
check "projector+lora: projector and adapter written" [ -s "$T/b/projector.safetensors" -a -s "$T/b/adapter_model.safetensors" -a -s "$T/b/adapter_config.json" ]
check "projector+lora: checkpoint holds both" [ -s "$T/b/checkpoints/step_0000002/projector.safetensors" -a -s "$T/b/checkpoints/step_0000002/adapter_model.safetensors" ]
check "projector+lora: dump_grads has both" bash -c "grep -aq 'mm_projector.0.bias' '$T/gb.safetensors' && grep -aq 'lora_A.weight' '$T/gb.safetensors'"
resume_check "$T/b" "$T/b2" "${common[@]}" mode=projector+lora lora.r=4
cmp -s "$T/a/projector.safetensors" "$T/b/projector.safetensors"
check "projector+lora trains a different projector than projector alone" [ $? -ne 0 ]

# 4. projector.init
$L train configs/tiny-projector.yaml "${common[@]}" output_dir="$T/c" projector.init="$T/a" train.max_steps=1 >"$T/c.out" 2>"$T/c.err"
check "projector.init: exits 0" [ $? -eq 0 ]
check "projector.init: says so" has "$T/c.err" "starting from $T/a"
$L train configs/tiny-projector.yaml "${common[@]}" output_dir="$T/c2" projector.init="$T/a" projector.type=linear >"$T/c2.out" 2>"$T/c2.err"
check "projector.init of another type: exit 1" [ $? -eq 1 ]
check "projector.init of another type: names both" has "$T/c2.err" 'mlp2x_gelu, the config says projector.type linear'

# 5. the feature cache gives the same training
$L prepare configs/tiny-projector.yaml "${common[@]}" --out "$T/feat.h5" >"$T/prep.out" 2>"$T/prep.err"
check "prepare features exits 0" [ $? -eq 0 ]
$L train configs/tiny-projector.yaml "${common[@]}" output_dir="$T/d" vision.features="$T/feat.h5" >"$T/d.out" 2>"$T/d.err"
check "vision.features: train exits 0" [ $? -eq 0 ]
check "vision.features: tower not loaded" has "$T/d.err" 'the vision tower is not loaded'
# the same features up to rounding (the tower runs in batches of 8 for the cache, of 2 here)
losses() { grep '"loss"' "$1" | sed 's/.*"loss": \([0-9.]*\).*/\1/'; }
check "vision.features: the same losses as on-the-fly features (1e-6 rel)" awk 'NR == FNR { a[FNR] = $1; next }
  { d = (a[FNR] - $1) / a[FNR]; if (d > 1e-6 || d < -1e-6) bad = 1; n++ } END { exit bad || n != 4 }' \
  <(losses "$T/a/metrics.jsonl") <(losses "$T/d/metrics.jsonl")
$L train configs/tiny-projector.yaml "${common[@]}" output_dir="$T/d2" vision.features="$T/feat.h5" vision.select_layer=-1 >"$T/d2.out" 2>"$T/d2.err"
check "vision.features of another select_layer: exit 1" [ $? -eq 1 ]
check "vision.features of another select_layer: named" has "$T/d2.err" 'select_layer'

# 6. bad images
cp "$T/train.jsonl" "$T/badimg.jsonl"
cp tests/fixtures/images/corrupt.jpg "$T/corrupt.jpg"
sed -i '3s/.*/{"image": "corrupt.jpg", "caption": "a broken picture"}/' "$T/badimg.jsonl"
$L train configs/tiny-projector.yaml "${common[@]}" data.train="$T/badimg.jsonl" output_dir="$T/e" >"$T/e.out" 2>"$T/e.err"
check "bad image: exit 1" [ $? -eq 1 ]
check "bad image: names the JSONL line and the file" bash -c "grep -q 'badimg.jsonl:3: .*corrupt.jpg' '$T/e.err'"
check "bad image: one error line" [ "$(grep -c '^error:' "$T/e.err")" -eq 1 ]
$L train configs/tiny-projector.yaml "${common[@]}" data.train="$T/badimg.jsonl" data.skip_bad_lines=true output_dir="$T/e2" train.max_steps=1 data.shuffle=false >"$T/e2.out" 2>"$T/e2.err"
check "bad image with skip_bad_lines: exit 0" [ $? -eq 0 ]
check "bad image with skip_bad_lines: warned and counted" bash -c "grep -q 'badimg.jsonl:3: record skipped' '$T/e2.err' && grep -q 'records skipped for undecodable images' '$T/e2.err'"

# 7. eval --vision --projector
$L eval --model "$T/llama" --data "$T/eval.jsonl" --vision "$T/siglip" --projector "$T/a" --json >"$T/ev.json" 2>"$T/ev.err"
check "eval --vision: exit 0" [ $? -eq 0 ]
check "eval --vision: json" grep -Eq '^\{"ppl": [0-9.]+, "nll": [0-9.]+, "tokens": [1-9][0-9]*, "documents": 4\}$' "$T/ev.json"
$L eval --model "$T/llama" --data "$T/eval.jsonl" --vision "$T/siglip" --projector "$T/a" --json --max-length 8 --stride 3 >"$T/ev2.json" 2>"$T/ev2.err"
tok() { sed 's/.*"tokens": \([0-9]*\).*/\1/' "$1"; }
check "eval --vision: short windows score the same tokens" [ "$(tok "$T/ev.json")" = "$(tok "$T/ev2.json")" ]
# the trainer's final eval (windows of max_seq_len, stride max_seq_len) is the same computation
nll=$(sed 's/.*"nll": \([0-9.]*\).*/\1/' "$T/ev.json")
$L eval --model "$T/llama" --data "$T/eval.jsonl" --vision "$T/siglip" --projector "$T/a" --json --max-length 64 --stride 64 >"$T/ev3.json" 2>"$T/ev3.err"
nll3=$(sed 's/.*"nll": \([0-9.]*\).*/\1/' "$T/ev3.json")
el=$(grep '"eval_loss"' "$T/a/metrics.jsonl" | tail -1 | sed 's/.*"eval_loss": \([0-9.]*\).*/\1/')
check "eval --vision nll ($nll3) equals the trainer's final eval_loss ($el)" awk -v a="$nll3" -v b="$el" 'BEGIN { d = a - b; exit !(d < 1e-4 && d > -1e-4) }'
$L eval --model "$T/llama" --data "$T/eval.jsonl" --vision "$T/siglip" >/dev/null 2>&1
check "eval --vision without --projector: exit 2" [ $? -eq 2 ]
$L eval --model "$T/llama" --data "$T/eval.jsonl" >/dev/null 2>"$T/ev4.err"
check "eval of captions without --vision: exit 1" [ $? -eq 1 ]
check "eval of captions without --vision: one error line" grep -q '^error: .*eval.jsonl:1' "$T/ev4.err"

# 8. generate with an image
img=$D/images/$(sed -n 's/.*"image": *"images\/\([^"]*\)".*/\1/p' "$T/eval.jsonl" | head -1)
gen=(--model "$T/llama" --vision "$T/siglip" --projector "$T/a" --image "$img" --temperature 0 --max-new-tokens 6)
$L generate "${gen[@]}" --prompt "a" >"$T/g1.out" 2>"$T/g1.err"
check "generate --image: exit 0" [ $? -eq 0 ]
check "generate --image: 6 tokens" has "$T/g1.err" 'generated tokens: 6'
check "generate --image: prompt counts the 16 image rows" has "$T/g1.err" 'prompt tokens: 18'
$L generate "${gen[@]}" --prompt "a" >"$T/g2.out" 2>/dev/null
check "generate --image: greedy is deterministic" cmp -s "$T/g1.out" "$T/g2.out"
$L generate "${gen[@]}" --prompt "Describe the picture." --chat >"$T/g3.out" 2>"$T/g3.err"
check "generate --image --chat: exit 0" [ $? -eq 0 ]
$L generate "${gen[@]}" --prompt "Look: <image> what is it?" --chat >"$T/g4.out" 2>"$T/g4.err"
check "generate --image --chat with <image>: exit 0" [ $? -eq 0 ]
$L generate "${gen[@]}" --adapter "$T/b" --projector "$T/b" --prompt "a" >/dev/null 2>"$T/g5.err"
check "generate --image with projector+lora outputs: exit 0" [ $? -eq 0 ]
$L generate --model "$T/llama" --image "$img" --prompt "a" >/dev/null 2>&1
check "generate --image without --vision: exit 2" [ $? -eq 2 ]
$L generate "${gen[@]}" --image tests/fixtures/images/corrupt.jpg --prompt "a" >/dev/null 2>"$T/g6.err"
check "generate with a corrupt image: exit 1" [ $? -eq 1 ]
check "generate with a corrupt image: error names it" grep -q '^error: .*corrupt.jpg' "$T/g6.err"

test_summary
