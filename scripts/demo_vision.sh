#!/usr/bin/env bash
# `make demo-vision`: LLaVA stage 1 on the tiny models — a tiny random SigLIP and Llama, the
# synthetic shapes-and-colours captions in data/demo/captions/, projector training (the
# trainer prints held-out caption loss/perplexity before, during and after), the vision
# feature cache, caption perplexity with `lorac eval`, a caption sampled for an image, and the
# caption accuracy on the held-out images before and after training (greedy captions: the
# share with the right colour and shape words, and the share exactly right).
set -euo pipefail
cd "$(dirname "$0")/.."
L=build/lorac
[ -s build/tiny-llama/model.safetensors ] || $L make-tiny --out build/tiny-llama
[ -s build/tiny-siglip/model.safetensors ] || $L make-tiny --kind siglip --out build/tiny-siglip
echo "== vision features computed once into an HDF5 cache (lorac prepare)"
$L prepare configs/tiny-projector.yaml --out build/demo-captions-features.h5
echo "== projector training (configs/tiny-projector.yaml, from the cache)"
rm -rf build/demo-projector
# save_every=1 keeps the first step's checkpoint: the "before" projector for the accuracy below
$L train configs/tiny-projector.yaml vision.features=build/demo-captions-features.h5 train.save_every=1 train.keep_last=0
echo "== held-out caption perplexity with the trained projector"
$L eval --model build/tiny-llama --vision build/tiny-siglip --projector build/demo-projector \
    --data data/demo/captions/eval.jsonl
img=data/demo/captions/$(head -n 1 data/demo/captions/eval.jsonl | sed 's/.*"image": *"\([^"]*\)".*/\1/')
echo "== caption for $img (greedy)"
$L generate --model build/tiny-llama --vision build/tiny-siglip --projector build/demo-projector \
    --image "$img" --prompt "" --temperature 0 --max-new-tokens 12
echo

# accuracy: caption "a SIZE COLOUR SHAPE POSITION of a BG background"; right words = the
# greedy caption has the expected "COLOUR SHAPE" pair; exact = the whole caption
accuracy() {   # accuracy PROJECTOR_DIR LABEL
  local n=0 words=0 exact=0 line image want got pair
  while IFS= read -r line; do
    image=$(printf '%s\n' "$line" | sed 's/.*"image": *"\([^"]*\)".*/\1/')
    want=$(printf '%s\n' "$line" | sed 's/.*"caption": *"\([^"]*\)".*/\1/')
    got=$($L generate --model build/tiny-llama --vision build/tiny-siglip --projector "$1" \
          --image "data/demo/captions/$image" --prompt "" --temperature 0 --max-new-tokens 16 2>/dev/null)
    pair=$(printf '%s\n' "$want" | awk '{ print $3 " " $4 }')
    n=$((n + 1))
    case " $got " in *" $pair "*) words=$((words + 1)) ;; esac
    [ "$got" = "$want" ] && exact=$((exact + 1))
    [ $n -le 3 ] && printf '   %-58s -> %s\n' "$want" "$got"
  done < data/demo/captions/eval.jsonl
  awk -v l="$2" -v n=$n -v w=$words -v e=$exact 'BEGIN {
    printf "   %s: colour+shape right %d/%d (%.1f%%), exactly right %d/%d (%.1f%%)\n", l, w, n, 100 * w / n, e, n, 100 * e / n }'
}
echo "== caption accuracy on the 40 held-out images (greedy)"
accuracy build/demo-projector/checkpoints/step_0000001 "before (after 1 warm-up step)"
accuracy build/demo-projector "after"
echo
echo "demo outputs: build/demo-projector/{projector.safetensors,projector_config.json,metrics.jsonl,loss.svg,report.html,tb/}"
