#!/usr/bin/env bash
# report.html (train/report.h) and samples (train.sample_prompts): a short run writes a
# self-contained page (inline SVG charts, no scripts, no network references) next to loss.svg;
# headless Chromium renders it to a screenshot that is not blank and logs no console message;
# both browser checks are shown to fail on a blank page and on a page with a script error.
# Samples: the greedy completions at step 0 and at the end, with the exact-match share.
set -u
cd "$(dirname "$0")/.."
L=${LORAC:-build/lorac}
source tests/lib.sh
T=$(scratch_dir report)
$L make-tiny --out "$T/model" --seed 5 >/dev/null 2>"$T/mk.err" || { bad "make-tiny: $(cat "$T/mk.err")"; test_summary; exit 1; }
head -n 16 data/demo/words/train.jsonl > "$T/train.jsonl"
head -n 4 data/demo/words/eval.jsonl > "$T/eval.jsonl"
expect 0 "train with samples" -- $L train configs/tiny-lora.yaml model="$T/model" data.train="$T/train.jsonl" \
  data.eval="$T/eval.jsonl" train.max_steps=4 train.batch_size=2 lora.r=2 train.eval_every=2 train.save_every=0 \
  train.threads=1 output_dir="$T/a" train.sample_prompts="$T/eval.jsonl" train.sample_every=2 train.sample_max_tokens=3
R=$T/a/report.html
check "report.html written" [ -s "$R" ]
check "loss.svg stays" [ -s "$T/a/loss.svg" ]
check "charts inline (>= 5 svg)" [ "$(grep -c '<svg' "$R")" -ge 5 ]
check "self-contained (no src/href, no script)" bash -c "! grep -Eiq '<script|src=|href=|url\\(' '$R'"
for k in "tokens trained on" "training data" "records not used" "peak memory" "timings" "Config" "learning rate" \
         "gradient norm" "throughput" "eval perplexity" "Samples"; do
  check "report shows: $k" grep -q "$k" "$R"
done
check "samples at steps 0, 2 and 4 in metrics.jsonl" \
  [ "$(grep '"samples"' "$T/a/metrics.jsonl" | sed 's/^{"step":\([0-9]*\),.*/\1/' | tr '\n' ' ')" = "0 2 4 " ]
check "samples carry expected answers and a share" grep -q '"expected":.*"exact":.*"sample_exact":' "$T/a/metrics.jsonl"
err_has "samples at step 4 (greedy, 4 prompts)" && ok "samples printed" || bad "samples printed"
err_has "== summary: 4 optimizer steps" && ok "end-of-run summary" || bad "end-of-run summary"
err_has "lorac generate --model $T/model --adapter $T/a" && ok "summary: next commands" || bad "summary: next commands"

# a list of prompts in the config (no expected answers) and a bad sample file
expect 0 "sample prompts as a list" -- $L train configs/tiny-lora.yaml model="$T/model" data.train="$T/train.jsonl" \
  data.eval= train.max_steps=1 train.batch_size=2 lora.r=2 train.threads=1 output_dir="$T/b" \
  'train.sample_prompts=["Which word is a fruit? dog, pear", "Hello"]' train.sample_max_tokens=2
check "list samples logged" grep -q '"prompt":"Hello"' "$T/b/metrics.jsonl"
echo '{"text": "no prompt"}' > "$T/bad.jsonl"
expect 1 "bad sample file" -- $L train configs/tiny-lora.yaml model="$T/model" data.train="$T/train.jsonl" \
  train.max_steps=1 output_dir="$T/c" train.sample_prompts="$T/bad.jsonl"
check "error names file:line" err_has "bad.jsonl:1: expected a chat record"

# headless Chromium: screenshot not blank, no console messages
if ! command -v chromium >/dev/null; then
  skip "chromium renders report.html" "chromium missing (scripts/deps.sh installs it)"
else
  shot() {   # shot HTML PNG LOG
    local d; d=$(mktemp -d)
    timeout 120 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
      --disable-background-networking --disable-component-update --disable-sync --user-data-dir="$d" \
      --enable-logging=stderr --v=0 --screenshot="$2" --window-size=1200,2000 "file://$(realpath "$1")" >"$3" 2>&1
    local rc=$?; rm -rf "$d"; return $rc
  }
  check "chromium renders report.html" shot "$R" "$T/shot.png" "$T/chrome.log"
  check "screenshot is a PNG" is_png "$T/shot.png"
  check "screenshot not blank" $PY tests/shot_check.py "$T/shot.png"
  check "no console messages" bash -c "! grep -q 'CONSOLE' '$T/chrome.log'"
  # the checks can fail: a blank page, a page with a script error
  echo '<!DOCTYPE html><html><body></body></html>' > "$T/blank.html"
  echo '<!DOCTYPE html><html><body><p>x</p><script>missing();</script></body></html>' > "$T/err.html"
  shot "$T/blank.html" "$T/blank.png" "$T/blank.log"
  check "blank page detected" bash -c "! $PY tests/shot_check.py '$T/blank.png' >/dev/null"
  shot "$T/err.html" "$T/err.png" "$T/err.log"
  check "console error detected" grep -q 'CONSOLE.*missing is not defined' "$T/err.log"
fi
test_summary
