#!/usr/bin/env bash
# `make demo-vision`: LLaVA stage 1 on the tiny models — a tiny random SigLIP and Llama, the
# synthetic shapes-and-colours captions in data/demo/captions/, projector training (the
# trainer prints held-out caption loss/perplexity before, during and after), the vision
# feature cache, caption perplexity with `lorac eval`, a caption sampled for an image, and the
# caption accuracy on the held-out images before and after training (greedy captions: the
# share with the right colour and shape words, and the share exactly right).
# Then the three fusions side by side on a tiny SigLIP with 196 patches (112x112 images, like
# siglip-base-patch16-224's count) and a wider tiny Llama (256 hidden, 4 layers, so the rows
# through the decoder weigh against the 128k-vocabulary lm-head): all patches prepended
# (LLaVA), avg-pooled to 16 tokens (projector.pool), and gated cross-attention (mode xattn);
# a table of held-out caption perplexity before/after and training speed for each
# (DEMO_EPOCHS, default 2).
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

# --- the three fusions, side by side
echo
echo "== three fusions on a tiny SigLIP with 196 patches per image (features cached once)"
[ -s build/tiny-siglip-196/model.safetensors ] || $L make-tiny --kind siglip --image-size 112 --out build/tiny-siglip-196
[ -s build/tiny-llama-256/model.safetensors ] || $L make-tiny --hidden-size 256 --layers 4 --out build/tiny-llama-256
$L prepare configs/tiny-projector.yaml vision.model=build/tiny-siglip-196 --out build/demo-captions-features-196.h5
fusion_args=(configs/tiny-projector.yaml model=build/tiny-llama-256 vision.model=build/tiny-siglip-196 train.log_every=25
             vision.features=build/demo-captions-features-196.h5 data.max_seq_len=256 train.epochs=${DEMO_EPOCHS:-2})
run_fusion() {   # run_fusion NAME VISUAL_ROWS_PER_IMAGE [overrides...]
  local name=$1 rows=$2; shift 2
  rm -rf "build/demo-fusion-$name"
  echo "-- $name"
  $L train "${fusion_args[@]}" output_dir="build/demo-fusion-$name" "$@" 2>&1 | grep -E '^(step|done|xattn|projector)' | tail -4
  # before/after held-out perplexity; training speed from the median step (text tokens: rows
  # minus the images' visual rows; every record has one image; the median resists the noise
  # of a shared machine)
  awk -v name="$name" -v rows="$rows" -v bs=8 '
    /"eval_ppl"/ { match($0, /"eval_ppl": [0-9.e+]+/); v = substr($0, RSTART + 12, RLENGTH - 12); if (!seen++) first = v; last = v }
    /"tokens_per_s"/ {
      match($0, /"tokens": [0-9]+/); t = substr($0, RSTART + 10, RLENGTH - 10); T += t
      match($0, /"step_s": [0-9.]+/); s[++n] = substr($0, RSTART + 10, RLENGTH - 10) + 0 }
    END {
      for (i = 1; i <= n; i++) o[i] = s[i]
      for (i = 2; i <= n; i++) { x = o[i]; for (j = i - 1; j >= 1 && o[j] > x; j--) o[j + 1] = o[j]; o[j + 1] = x }
      med = n % 2 ? o[(n + 1) / 2] : (o[n / 2] + o[n / 2 + 1]) / 2
      R = T / n   # mean rows per step
      printf "| %s | %d | %.0f | %.1f | %.1f | %.3f | %.0f | %.0f |\n", name, rows, R, first, last, med,
             (R - rows * bs) / med, R / med }
  ' "build/demo-fusion-$name/metrics.jsonl" >> build/demo-fusion-table.md
}
printf '| fusion | visual rows per image | rows per step | held-out caption ppl before | after | median s/step | text tokens/s | rows/s |\n|---|---|---|---|---|---|---|---|\n' \
    > build/demo-fusion-table.md
run_fusion all-patches 196 mode=projector
run_fusion avg-pooled-16 16 mode=projector 'projector.pool={type: avg, tokens: 16}'
run_fusion cross-attention 0 mode=xattn xattn.every=2
echo
cat build/demo-fusion-table.md
echo "(all three from the same cached features, $(nproc) cores; rows/s counts visual rows too)"
img=data/demo/captions/$(head -n 1 data/demo/captions/eval.jsonl | sed 's/.*"image": *"\([^"]*\)".*/\1/')
for f in avg-pooled-16 cross-attention; do
  echo "== caption for $img with $f (greedy)"
  $L generate --model build/tiny-llama-256 --vision build/tiny-siglip-196 --projector "build/demo-fusion-$f" \
      --image "$img" --prompt "" --temperature 0 --max-new-tokens 12
  echo
done
