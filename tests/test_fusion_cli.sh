#!/usr/bin/env bash
# End-to-end vision fusions beyond all-patches prepending, on tiny models:
# 1. visual-token pooling (projector.pool): training with avg and linear pools (16 patches ->
#    4 visual rows), the recorded pool in projector_config.json, exact resume, dump_grads of
#    the linear pool, projector.init / resume checks, and eval / generate --image with the
#    pooled projector (the image takes 4 prompt rows);
# 2. gated cross-attention (mode xattn / xattn+lora): outputs (xattn.safetensors +
#    xattn_config.json beside the projector), checkpoints, exact resume, dump_grads, a changed
#    xattn.every refused on resume, pooling + LoRA together, and eval / generate --image
#    reading the blocks from the projector folder (no image rows).
set -u
cd "$(dirname "$0")/.."
L=${LORAC:-build/lorac}
source tests/lib.sh
T=$(scratch_dir fusion_cli)
has() { grep -aq -- "$2" "$1"; }
# same_eval NAME EVAL.json OUTDIR: `lorac eval`'s nll equals the trainer's final eval_loss
same_eval() {
  local nll el
  nll=$(sed 's/.*"nll": \([0-9.]*\).*/\1/' "$2")
  el=$(grep '"eval_loss"' "$3/metrics.jsonl" | tail -1 | sed 's/.*"eval_loss": \([0-9.]*\).*/\1/')
  check "$1: eval nll ($nll) equals the trainer's final eval_loss ($el)" \
      awk -v a="$nll" -v b="$el" 'BEGIN { d = a - b; exit !(d < 1e-4 && d > -1e-4) }'
}
tiny_vision_models
common=(model="$T/llama" vision.model="$T/siglip" data.train="$T/train.jsonl" data.eval="$T/eval.jsonl"
        train.max_steps=2 train.batch_size=2 train.grad_accum=1 train.save_every=1 train.eval_every=0
        train.log_every=100 data.shuffle=true optim.lr=1e-2 schedule.warmup_ratio=0)

# --- 1. pooling
# avg: 16 patches -> 4 rows, nothing extra to train
$L train configs/tiny-projector.yaml "${common[@]}" 'projector.pool={type: avg, tokens: 4}' output_dir="$T/avg" \
    >"$T/avg.out" 2>"$T/avg.err"
check "avg: train exits 0" [ $? -eq 0 ]
check "avg: 4 visual rows per image" has "$T/avg.err" '4 visual rows per image (pool avg)'
check "avg: config records the pool" grep -q '"pool_type":.*"avg"' "$T/avg/projector_config.json"
check "avg: config records the tokens" grep -q '"pool_tokens":.*4' "$T/avg/projector_config.json"
check "avg: config keeps the patches" grep -q '"num_patches":.*16' "$T/avg/projector_config.json"
check "avg: no pool tensor" bash -c "! grep -aq mm_pool '$T/avg/projector.safetensors'"

# linear (YAML form of the nested key), with dump_grads and resume
cat > "$T/lin.yaml" <<YAML
projector:
  pool: {type: linear, tokens: 4}
YAML
sed -n '/^mode/,$p' configs/tiny-projector.yaml | grep -v '^projector:\|^  type: mlp\|^  init: null' > "$T/base.yaml"
cat "$T/base.yaml" "$T/lin.yaml" > "$T/linear.yaml"
$L train "$T/linear.yaml" "${common[@]}" output_dir="$T/lin" train.dump_grads="$T/glin.safetensors" \
    >"$T/lin.out" 2>"$T/lin.err"
check "linear: train exits 0" [ $? -eq 0 ]
check "linear: pool tensors saved" has "$T/lin/projector.safetensors" 'model.mm_pool.weight'
check "linear: dump_grads has the pool" has "$T/glin.safetensors" 'model.mm_pool.bias'
check "linear: config records the pool" grep -q '"pool_type":.*"linear"' "$T/lin/projector_config.json"
rm -rf "$T/lin2" && cp -r "$T/lin" "$T/lin2" && rm -rf "$T/lin2/checkpoints/step_0000002" "$T/lin2"/*.safetensors
$L train "$T/linear.yaml" "${common[@]}" output_dir="$T/lin2" resume=true >"$T/lin2.out" 2>"$T/lin2.err"
check "linear: resume exits 0" [ $? -eq 0 ]
check "linear: resume ends identical" cmp -s "$T/lin/projector.safetensors" "$T/lin2/projector.safetensors"
expect 1 "resume refuses a different pool" -- $L train "$T/linear.yaml" "${common[@]}" output_dir="$T/lin2" \
    resume=true train.max_steps=3 'projector.pool={type: linear, tokens: 5}'
check "resume mismatch names the pool" err_has 'projector.pool.tokens differs'
expect 1 "projector.init with another pool" -- $L train configs/tiny-projector.yaml "${common[@]}" output_dir="$T/x" \
    projector.init="$T/avg" 'projector.pool={type: linear, tokens: 4}'
check "init mismatch names the pool" err_has 'pools avg to 4 tokens'
expect 1 "more tokens than patches" -- $L train configs/tiny-projector.yaml "${common[@]}" output_dir="$T/x" \
    'projector.pool={type: avg, tokens: 17}'
expect 1 "pool without tokens" -- $L train configs/tiny-projector.yaml "${common[@]}" output_dir="$T/x" \
    projector.pool.type=avg
check "pool without tokens: message" err_has 'projector.pool.tokens'

# eval and generate honour the pool; the trainer's final eval is the same computation
$L eval --model "$T/llama" --data "$T/eval.jsonl" --vision "$T/siglip" --projector "$T/lin" --json --max-length 64 \
    --stride 64 >"$T/ev.json" 2>"$T/ev.err"
check "eval --projector (linear pool): exit 0" [ $? -eq 0 ]
same_eval "linear pool" "$T/ev.json" "$T/lin"
for p in avg lin; do
  $L generate --model "$T/llama" --vision "$T/siglip" --projector "$T/$p" --image "$T/images/eval_00000.png" \
      --prompt "" --temperature 0 --max-new-tokens 4 >"$T/gen.$p" 2>"$T/gen.$p.err"
  check "generate --image ($p pool): exit 0" [ $? -eq 0 ]
  # <|begin_of_text|> + 4 visual rows
  check "generate --image ($p pool): the image takes 4 rows" has "$T/gen.$p.err" 'prompt tokens: 5,'
done
# the <image> placeholder expands to the 4 pooled rows: <|begin_of_text|> "a" <image> "b"
$L generate --model "$T/llama" --vision "$T/siglip" --projector "$T/avg" --image "$T/images/eval_00000.png" \
    --prompt "a<image>b" --temperature 0 --max-new-tokens 1 >"$T/gen.ph" 2>"$T/gen.ph.err"
check "<image> in the prompt: 1 + 1 + 4 + 1 rows" has "$T/gen.ph.err" 'prompt tokens: 7,'

# --- 2. cross-attention
$L train configs/tiny-projector.yaml "${common[@]}" mode=xattn xattn.every=1 output_dir="$T/xa" train.dump_grads="$T/gxa.safetensors" \
    >"$T/xa.out" 2>"$T/xa.err"
check "xattn: train exits 0" [ $? -eq 0 ]
check "xattn: 2 blocks for 2 layers at every 1" has "$T/xa.err" 'xattn: 2 gated cross-attention blocks'
check "xattn: blocks saved" has "$T/xa/xattn.safetensors" 'model.xattn_layers.1.cross_attn_mlp_gate'
check "xattn: config saved" grep -q '"every":.*1' "$T/xa/xattn_config.json"
check "xattn: projector saved" [ -s "$T/xa/projector.safetensors" ]
check "xattn: checkpoint holds the blocks" [ -s "$T/xa/checkpoints/step_0000001/xattn.safetensors" ]
check "xattn: dump_grads has the gates" has "$T/gxa.safetensors" 'model.xattn_layers.0.cross_attn_attn_gate'
check "xattn: dump_grads has the projector" has "$T/gxa.safetensors" 'model.mm_projector.0.weight'
rm -rf "$T/xa2" && cp -r "$T/xa" "$T/xa2" && rm -rf "$T/xa2/checkpoints/step_0000002" "$T/xa2"/*.safetensors
$L train configs/tiny-projector.yaml "${common[@]}" mode=xattn xattn.every=1 output_dir="$T/xa2" resume=true >"$T/xa2.out" 2>"$T/xa2.err"
check "xattn: resume exits 0" [ $? -eq 0 ]
for f in xattn.safetensors projector.safetensors checkpoints/step_0000002/optimizer.safetensors; do
  check "xattn: $f identical after resume" cmp -s "$T/xa/$f" "$T/xa2/$f"
done
expect 1 "resume refuses another xattn.every" -- $L train configs/tiny-projector.yaml "${common[@]}" mode=xattn xattn.every=1 \
    output_dir="$T/xa2" resume=true train.max_steps=3 xattn.every=2
check "every mismatch is named" err_has 'xattn.every differs'

# eval / generate with the blocks; the trainer's final eval is the same computation
$L eval --model "$T/llama" --data "$T/eval.jsonl" --vision "$T/siglip" --projector "$T/xa" --json --max-length 64 \
    --stride 64 >"$T/ev.json" 2>"$T/ev.err"
check "eval --projector (xattn): exit 0" [ $? -eq 0 ]
same_eval "xattn" "$T/ev.json" "$T/xa"
$L generate --model "$T/llama" --vision "$T/siglip" --projector "$T/xa" --image "$T/images/eval_00000.png" \
    --prompt "" --temperature 0 --max-new-tokens 4 >"$T/gen" 2>"$T/gen.err"
check "generate --image (xattn): exit 0" [ $? -eq 0 ]
check "generate --image (xattn): the image takes no prompt rows" has "$T/gen.err" 'prompt tokens: 1,'

# xattn+lora with an avg pool: 4 visual rows per image as keys/values
$L train configs/tiny-projector.yaml "${common[@]}" mode=xattn+lora xattn.every=1 lora.r=4 'projector.pool={type: avg, tokens: 4}' \
    output_dir="$T/xb" >"$T/xb.out" 2>"$T/xb.err"
check "xattn+lora: train exits 0" [ $? -eq 0 ]
check "xattn+lora: 4 visual rows as keys/values" has "$T/xb.err" '4 visual rows per image as keys/values'
check "xattn+lora: adapter, projector and blocks written" \
    [ -s "$T/xb/adapter_model.safetensors" -a -s "$T/xb/projector.safetensors" -a -s "$T/xb/xattn.safetensors" ]
$L eval --model "$T/llama" --adapter "$T/xb" --data "$T/eval.jsonl" --vision "$T/siglip" --projector "$T/xb" --json \
    --max-length 64 --stride 64 >"$T/evb.json" 2>"$T/evb.err"
check "eval xattn+lora: exit 0" [ $? -eq 0 ]
same_eval "xattn+lora" "$T/evb.json" "$T/xb"
echo '{"every": 1, "num_blocks": 2, "hidden_size": 64}' > "$T/xa/xattn_config.json"
expect 1 "a bad xattn_config.json is one error" -- $L generate --model "$T/llama" --vision "$T/siglip" \
    --projector "$T/xa" --image "$T/images/eval_00000.png" --prompt "" --max-new-tokens 1
check "bad xattn_config.json names the file" err_has 'xattn_config.json'
test_summary
