#!/usr/bin/env bash
# End-to-end visual-token pooling (projector.pool) on tiny models: training with avg and
# linear pools (16 patches -> 4 visual rows), the recorded pool in projector_config.json,
# exact resume, dump_grads of the linear pool, projector.init checks, and eval / generate
# --image with the pooled projector (the image takes 4 prompt rows).
set -u
cd "$(dirname "$0")/.."
L=${LORAC:-build/lorac}
source tests/lib.sh
T=$(scratch_dir pool_cli)
has() { grep -aq -- "$2" "$1"; }

$L make-tiny --out "$T/llama" --seed 7 >/dev/null 2>"$T/mk.err" &&
  $L make-tiny --kind siglip --out "$T/siglip" --seed 3 >/dev/null 2>>"$T/mk.err" ||
  { cat "$T/mk.err"; echo "0 passed, 1 failed"; exit 1; }
D=data/demo/captions
ln -s "$(pwd)/$D/images" "$T/images"
head -n 8 "$D/train.jsonl" > "$T/train.jsonl"
head -n 4 "$D/eval.jsonl" > "$T/eval.jsonl"
common=(model="$T/llama" vision.model="$T/siglip" data.train="$T/train.jsonl" data.eval="$T/eval.jsonl"
        train.max_steps=2 train.batch_size=2 train.grad_accum=2 train.save_every=1 train.eval_every=0
        train.log_every=100 data.shuffle=true optim.lr=1e-2 schedule.warmup_ratio=0)

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
check "resume mismatch names the pool" err_has 'pool linear to 4 tokens'
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
nll=$(sed 's/.*"nll": \([0-9.]*\).*/\1/' "$T/ev.json")
el=$(grep '"eval_loss"' "$T/lin/metrics.jsonl" | tail -1 | sed 's/.*"eval_loss": \([0-9.]*\).*/\1/')
check "eval nll ($nll) equals the trainer's final eval_loss ($el)" \
    awk -v a="$nll" -v b="$el" 'BEGIN { d = a - b; exit !(d < 1e-4 && d > -1e-4) }'
for p in avg lin; do
  $L generate --model "$T/llama" --vision "$T/siglip" --projector "$T/$p" --image "$T/images/eval_00000.png" \
      --prompt "" --temperature 0 --max-new-tokens 4 >"$T/gen.$p" 2>"$T/gen.$p.err"
  check "generate --image ($p pool): exit 0" [ $? -eq 0 ]
  # <|begin_of_text|> + 4 visual rows
  check "generate --image ($p pool): the image takes 4 rows" has "$T/gen.$p.err" 'prompt tokens: 5,'
done
test_summary
