#!/usr/bin/env bash
# The `make demo` and `make demo-vision` learning, shortened.
# Text: scripts/demo.sh on its own demo model (make-tiny with the
# demo's size options) and task (data/demo/words/), cut to a few dozen optimizer steps on one
# thread. Asserts that the training loss falls by a set factor (the mean of the last 10 steps
# at most 1/3 of the first step's), that held-out perplexity falls, and that the script ends
# with its before/after result block. (The exact-answer share is logged but not asserted here:
# `make demo` runs the whole schedule and prints it against the 80% target.)
set -u
cd "$(dirname "$0")/.."
export LORAC=${LORAC:-build/lorac}
source tests/lib.sh
T=$(scratch_dir demo)
STEPS=60
DEMO_MODEL="$T/model" DEMO_OUT="$T/run" bash scripts/demo.sh train.max_steps=$STEPS train.threads=1 \
  train.eval_every=0 train.sample_every=0 train.sample_max_tokens=2 >"$T/run.log" 2>&1
check "demo script exits 0" [ $? -eq 0 ]
m=$T/run/metrics.jsonl
loss() { grep '"loss"' "$m" | sed 's/.*"loss": \([0-9.]*\).*/\1/'; }
first=$(loss | head -n 1)
last=$(loss | tail -n 10 | awk '{ s += $1 } END { if (NR) printf "%.6f", s / NR }')
check "ran $STEPS steps" [ "$(loss | wc -l)" -eq $STEPS ]
# factor 3: the first steps sit near the random model's loss (~13); the demo's format tokens
# and answer distribution alone bring it below 4.3 within these steps
check "loss falls 3x ($first -> $last)" awk -v a="$first" -v b="$last" 'BEGIN { exit !(a > 0 && b > 0 && b * 3 <= a) }'
ppl=$(grep '"eval_ppl"' "$m" | sed 's/.*"eval_ppl": \([0-9.]*\).*/\1/' | tr '\n' ' ')
check "eval perplexity falls ($ppl)" awk -v p="$ppl" 'BEGIN { n = split(p, v, " "); exit !(n == 2 && v[2] < v[1]) }'
check "samples before and after" [ "$(grep -c '"sample_exact"' "$m")" -eq 2 ]
check "result block printed" grep -q "== demo result" "$T/run.log"
check "report and tb written" [ -s "$T/run/report.html" -a -s "$T/run/tb/events.out.tfevents.lorac" ]
check "demo model: hidden 256, untied" grep -q '"tie_word_embeddings": false' "$T/model/config.json"
check "demo model: lm_head written" grep -q '"lm_head.weight"' <(head -c 4096 "$T/model/model.safetensors")
expect 2 "make-tiny --embed-std 0" -- $LORAC make-tiny --out "$T/x" --embed-std 0
expect 2 "make-tiny --hidden-size 100" -- $LORAC make-tiny --out "$T/x" --hidden-size 100
expect 2 "make-tiny --untied with siglip" -- $LORAC make-tiny --out "$T/x" --kind siglip --untied
[ "$fail" -eq 0 ] || tail -n 30 "$T/run.log"

# Vision: scripts/demo_vision.sh (mode projector+lora on its own 256-wide demo Llama, the
# --style simple captions "a red circle") cut to 60 optimizer steps, captioning only 4 held-out
# images and without the fusion table. Asserts the training loss falls 10x (the first step's
# against the mean of the last 10), held-out caption perplexity falls 10x, and the result
# block; the caption accuracy lines are printed but not asserted (a few images after 60 steps).
vfail=$fail
DEMO_MODEL="$T/vmodel" DEMO_OUT="$T/vrun" DEMO_DATA="$T/shapes" DEMO_EVAL_N=4 DEMO_FUSIONS=0 \
  bash scripts/demo_vision.sh train.max_steps=$STEPS train.eval_every=0 >"$T/vrun.log" 2>&1
check "demo-vision script exits 0" [ $? -eq 0 ]
m=$T/vrun/metrics.jsonl
first=$(loss | head -n 1)
last=$(loss | tail -n 10 | awk '{ s += $1 } END { if (NR) printf "%.6f", s / NR }')
check "vision: ran $STEPS steps" [ "$(loss | wc -l)" -eq $STEPS ]
# factor 10: the first step sits near the random model's loss (~15); 60 steps learn the caption
# template and the colours (~0.5)
check "vision: loss falls 10x ($first -> $last)" awk -v a="$first" -v b="$last" 'BEGIN { exit !(a > 0 && b > 0 && b * 10 <= a) }'
ppl=$(grep '"eval_ppl"' "$m" | sed 's/.*"eval_ppl": \([0-9.]*\).*/\1/' | tr '\n' ' ')
check "vision: eval perplexity falls 10x ($ppl)" awk -v p="$ppl" 'BEGIN { n = split(p, v, " "); exit !(n == 2 && v[2] * 10 <= v[1]) }'
check "vision: adapter and projector written" [ -s "$T/vrun/adapter_model.safetensors" -a -s "$T/vrun/projector.safetensors" ]
check "vision: captions before and after" [ "$(grep -c 'exactly right [0-9]*/4 ' "$T/vrun.log")" -eq 2 ]
check "vision: result block printed" grep -q "== demo-vision result" "$T/vrun.log"
check "vision: demo model: embed std 0.2, untied" grep -q '"tie_word_embeddings": false' "$T/vmodel/config.json"
# the --style simple data: "a COLOUR SHAPE" ("an" before orange), held-out images new pixels
check "simple captions" awk '
  !/^\{"image": "images\/(train|eval)_[0-9]+\.png", "caption": "(a (red|green|blue|yellow|purple)|an orange) (circle|square|triangle)"\}$/ { bad = 1 }
  END { exit bad || NR != 1040 }' "$T/shapes/train.jsonl" "$T/shapes/eval.jsonl"
check "simple: eval images differ from train" bash -c "
  cd '$T/shapes/images' && [ -z \"\$(comm -12 <(md5sum train_* | cut -d' ' -f1 | sort -u) <(md5sum eval_* | cut -d' ' -f1 | sort -u))\" ]"
expect 2 "make-tiny --style bogus" -- $LORAC make-tiny --kind captions --out "$T/x" --style bogus
[ "$fail" -eq "$vfail" ] || tail -n 30 "$T/vrun.log"
test_summary
