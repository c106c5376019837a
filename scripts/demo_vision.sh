#!/usr/bin/env bash
# `make demo-vision`: a projector and a LoRA adapter (mode projector+lora, LLaVA stage 1 with
# the language model adapted too) teach a small random Llama to caption images it has never
# seen. The data (make-tiny --kind captions --style simple): one large shape, six colours x
# three shapes in five places on white, captioned "a red circle" / "an orange square"; the 40
# held-out images are new renderings. The run prints held-out caption perplexity before and
# after; this script then captions the held-out images greedily before (one warm-up step) and
# after training, with the share that names the right colour and shape and the share exactly
# right, and ends with the numbers against the targets (perplexity down >= 10x, >= 80% exact).
# Then the three fusions side by side (DEMO_FUSIONS=0 skips them) on a tiny SigLIP with 196
# patches (112x112 images, like siglip-base-patch16-224's count) and a wider tiny Llama (256
# hidden, 4 layers, so the rows through the decoder weigh against the 128k-vocabulary
# lm-head): all patches prepended (LLaVA), avg-pooled to 16 tokens (projector.pool), and gated
# cross-attention (mode xattn); a table of held-out caption perplexity before/after and
# training speed for each (DEMO_EPOCHS, default 2), on data/demo/captions.
#
# usage: scripts/demo_vision.sh [key=value ...]   (extra overrides for the caption training,
# e.g. train.max_steps=60; DEMO_MODEL / DEMO_OUT / DEMO_DATA choose other folders, DEMO_EVAL_N
# captions only the first N held-out images — tests/test_demo.sh runs a shortened demo so)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/demo_result.sh
L=${LORAC:-build/lorac}
M=${DEMO_MODEL:-build/demo-vision-llama}
OUT=${DEMO_OUT:-build/demo-vision}
D=${DEMO_DATA:-build/demo-shapes}
V=build/tiny-siglip
# the demo Llama: hidden 256, untied embeddings and lm_head with std 0.2. Why 0.2 (the text demo
# uses 0.06): a caption's colour and shape words must be able to share probability while the
# model is unsure. The logits are h·w with |h| = 16 after the final norm; at std 0.06 six words
# sharing the top can each reach only ~6, below the log-sum-exp (~12) of the other 128k random
# logits, so the model is forced to bet on one word and stalls at ~2x the loss of knowing only
# how often each word occurs; at 0.2 (~21 against ~17) it learns first the frequencies, then
# the image.
[ -s "$M/model.safetensors" ] || $L make-tiny --out "$M" --hidden-size 256 --embed-std 0.2 --untied
[ -s "$V/model.safetensors" ] || $L make-tiny --kind siglip --out "$V"
[ -s "$D/train.jsonl" ] || $L make-tiny --kind captions --style simple --n 1000 --eval 40 --seed 0 --out "$D"
echo "== vision features computed once into an HDF5 cache (lorac prepare)"
args=(configs/demo-vision.yaml model="$M" vision.model="$V" data.train="$D/train.jsonl" data.eval="$D/eval.jsonl")
$L prepare "${args[@]}" --out "$OUT-features.h5"
args+=(vision.features="$OUT-features.h5")
echo "== projector + LoRA training (configs/demo-vision.yaml)"
rm -rf "$OUT" "$OUT-before"
t0=$SECONDS
$L train "${args[@]}" output_dir="$OUT" "$@"
secs=$((SECONDS - t0))
# "before": the same run stopped after its first optimizer step (warm-up learning rate)
$L train "${args[@]}" output_dir="$OUT-before" "$@" train.max_steps=1 train.eval_every=0 >/dev/null 2>&1
echo "== held-out caption perplexity with the trained projector and adapter (lorac eval)"
$L eval --model "$M" --vision "$V" --projector "$OUT" --adapter "$OUT" --data "$D/eval.jsonl"

# greedy captions of the held-out images: "colour+shape right" = the caption names the
# expected colour and shape ("red circle"); "exact" = the whole caption
accuracy() {   # accuracy RUN_DIR LABEL -> prints the share exactly right (0..1) last
  local n=0 words=0 exact=0 line image want got pair
  while IFS= read -r line; do
    image=$(printf '%s\n' "$line" | sed 's/.*"image": *"\([^"]*\)".*/\1/')
    want=$(printf '%s\n' "$line" | sed 's/.*"caption": *"\([^"]*\)".*/\1/')
    got=$($L generate --model "$M" --vision "$V" --projector "$1" --adapter "$1" \
          --image "$D/$image" --prompt "" --temperature 0 --max-new-tokens 8 2>/dev/null)
    pair=$(printf '%s\n' "$want" | awk '{ print $2 " " $3 }')
    n=$((n + 1))
    case " $got " in *" $pair "*) words=$((words + 1)) ;; esac
    [ "$got" = "$want" ] && exact=$((exact + 1))
    [ $n -le 4 ] && printf '   %-18s -> %s\n' "$want" "$got" >&2
  done < <(head -n "${DEMO_EVAL_N:-1000000}" "$D/eval.jsonl")
  awk -v l="$2" -v n=$n -v w=$words -v e=$exact 'BEGIN {
    printf "   %s: colour+shape right %d/%d (%.1f%%), exactly right %d/%d (%.1f%%)\n", l, w, n, 100 * w / n, e, n, 100 * e / n > "/dev/stderr"
    printf "%.4f\n", e / n }'
}
echo "== greedy captions of the $(head -n "${DEMO_EVAL_N:-1000000}" "$D/eval.jsonl" | wc -l) held-out images (expected -> generated)"
ex0=$(accuracy "$OUT-before" "before (after 1 warm-up step)")
ex1=$(accuracy "$OUT" "after")

m=$OUT/metrics.jsonl
ppl0=$(metric eval_ppl "$m" first)
ppl1=$(metric eval_ppl "$m" last)
echo
echo "== demo-vision result (held-out: $D/eval.jsonl, images never seen in training; training ${secs} s)"
targets "caption perplexity" "exact captions" "$ppl0" "$ppl1" "$ex0" "$ex1"
echo "   outputs: $OUT/{projector.safetensors,adapter_model.safetensors,metrics.jsonl,report.html,tb/}"
img=$D/$(head -n 1 "$D/eval.jsonl" | sed 's/.*"image": *"\([^"]*\)".*/\1/')
echo "   try:     $L generate --model $M --vision $V --projector $OUT --adapter $OUT --image $img --prompt \"\" --temperature 0"
[ "${DEMO_FUSIONS:-1}" = 0 ] && exit 0

# --- the three fusions, side by side
echo
echo "== three fusions on a tiny SigLIP with 196 patches per image (features cached once)"
[ -s build/tiny-siglip-196/model.safetensors ] || $L make-tiny --kind siglip --image-size 112 --out build/tiny-siglip-196
[ -s build/tiny-llama-256/model.safetensors ] || $L make-tiny --hidden-size 256 --layers 4 --out build/tiny-llama-256
$L prepare configs/tiny-projector.yaml model=build/tiny-llama-256 vision.model=build/tiny-siglip-196 \
    --out build/demo-captions-features-196.h5
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
