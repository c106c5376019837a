#!/usr/bin/env bash
# `make bench-mem` (issue 10): memory and speed of one LoRA training step (`lorac bench lora`,
# r=16 on all seven projections, batch 1 x T tokens, every token supervised) on random models of
# real shapes, with and without activation checkpointing (train.activation_checkpointing) and,
# when lorac has `--weights`, with frozen weights kept 16-bit (auto) or widened to fp32 (f32).
# Each row is one process run under flock /tmp/lorac-heavy.lock (they need 3-19 GB) with
# --no-ceilings, so its peak RSS (getrusage ru_maxrss) is the step's alone; tokens/s is the
# median (min-max) over ITERS measured steps after WARMUP unmeasured ones.
#   rows (ROWS, space separated; default all):
#     1b-512    Llama-3.2-1B, 1x512, fp32: weights 16-bit / f32; checkpointing off / on
#     3b-512    Llama-3.2-3B, 1x512, fp32: checkpointing off / on
#     1b-4096   Llama-3.2-1B, 1x4096, PREC_4096 (default bf16: the same memory as fp32 mode with
#               16-bit weights, ~3x faster): checkpointing off / on, and the slowdown
#     8b-512    Llama-3.1-8B shapes, 1x512, bf16, checkpointing on
#   Budgets (issue 10) are printed beside each row.
# Models: /tmp/bench-1b, /tmp/bench-3b, /tmp/bench-8b (MODEL_1B / MODEL_3B / MODEL_8B), made with
# `lorac make-tiny --preset ...` under the heavy lock when missing.
#   ROWS="1b-512 8b-512" ITERS=5 WARMUP=1 LORAC=build/lorac OUT=build/bench-mem bash scripts/bench_mem.sh
set -euo pipefail
cd "$(dirname "$0")/.."
L=${LORAC:-build/lorac}
ROWS=${ROWS:-1b-512 3b-512 1b-4096 8b-512}
ITERS=${ITERS:-5}
WARMUP=${WARMUP:-1}
PREC_4096=${PREC_4096:-bf16}
M1B=${MODEL_1B:-/tmp/bench-1b}
M3B=${MODEL_3B:-/tmp/bench-3b}
M8B=${MODEL_8B:-/tmp/bench-8b}
TOK=${TOKENIZER_DIR:-.cache/tokenizer}
out=${OUT:-build/bench-mem}
LOCK=${HEAVY_LOCK:-/tmp/lorac-heavy.lock}   # (tests of this script on tiny models: another file)
mkdir -p "$out"
: >"$out/results.jsonl"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

has_weights=0
$L bench --help 2>&1 | grep -q -- '--weights' && has_weights=1

model() {   # DIR PRESET: makes the model when missing (under the heavy lock)
  local dir=$1 preset=$2
  [ -s "$dir/config.json" ] && return 0
  echo "making $dir (make-tiny --preset $preset)" >&2
  flock "$LOCK" $L make-tiny --preset "$preset" --tokenizer "$TOK" --out "$dir" >&2
}

row() {   # NAME MODEL TOKENS PRECISION WEIGHTS(auto|f32|-) CKPT(0|1)
  local name=$1 dir=$2 T=$3 prec=$4 w=$5 ck=$6 args=()
  [ "$w" != - ] && args+=(--weights "$w")
  [ "$ck" = 1 ] && args+=(--checkpointing)
  echo "== $name: $dir 1x$T $prec weights=$w checkpointing=$ck" >&2
  if ! flock "$LOCK" $L bench lora --model "$dir" --tokens "$T" --precision "$prec" --iters "$ITERS" \
      --warmup "$WARMUP" --no-ceilings "${args[@]}" >"$out/$name.json" 2>"$out/$name.err"; then
    tail -3 "$out/$name.err" >&2
    echo "{\"row\": \"$name\", \"failed\": true}" >>"$out/results.jsonl"
    return 0
  fi
  /usr/bin/python3 - "$name" "$w" "$out/$name.json" >>"$out/results.jsonl" <<'PY'
import json, sys
name, w, path = sys.argv[1:]
s = json.loads(open(path).read().splitlines()[-1])
print(json.dumps({"row": name, "weights": w, "precision": s["precision"], "tokens": s["tokens"],
                  "checkpointing": s["checkpointing"], "tok_s": s["per_s"], "tok_s_min": s["per_s_min"],
                  "tok_s_max": s["per_s_max"], "peak_rss_mb": s["peak_rss_mb"], "arena_high_mb": s["arena_high_mb"],
                  "iters": s["iters"], "loss": s["loss"]}))
PY
}

w16=-; wf32=-
[ $has_weights = 1 ] && w16=auto && wf32=f32
for r in $ROWS; do
  case $r in
  1b-512)
    model "$M1B" llama-3.2-1b
    [ $has_weights = 1 ] && row 1b-512-f32 "$M1B" 512 fp32 f32 0
    row 1b-512 "$M1B" 512 fp32 "$w16" 0
    row 1b-512-ckpt "$M1B" 512 fp32 "$w16" 1 ;;
  3b-512)
    model "$M3B" llama-3.2-3b
    row 3b-512 "$M3B" 512 fp32 "$w16" 0
    row 3b-512-ckpt "$M3B" 512 fp32 "$w16" 1 ;;
  1b-4096)
    model "$M1B" llama-3.2-1b
    row 1b-4096 "$M1B" 4096 "$PREC_4096" "$w16" 0
    row 1b-4096-ckpt "$M1B" 4096 "$PREC_4096" "$w16" 1 ;;
  8b-512)
    model "$M8B" llama-3.1-8b
    row 8b-512-ckpt "$M8B" 512 bf16 "$w16" 1 ;;
  *) echo "bench_mem.sh: unknown row '$r' (1b-512 3b-512 1b-4096 8b-512)" >&2; exit 2 ;;
  esac
done

# the table: budgets from issue 10 (GB = 10^9 bytes; ru_maxrss is in KiB, printed as MB = 2^20)
/usr/bin/python3 - "$out/results.jsonl" "$has_weights" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
byname = {r["row"]: r for r in rows}
budget = {"1b-512": 4.4, "1b-512-ckpt": 3.2, "3b-512": 10.5, "3b-512-ckpt": 7.5, "1b-4096-ckpt": 4.5, "8b-512-ckpt": 19.0}
label = {"1b-512-f32": "Llama-3.2-1B LoRA step 1x512, fp32, weights f32 (widened at load)",
         "1b-512": "Llama-3.2-1B LoRA step 1x512, fp32, weights %s",
         "1b-512-ckpt": "″ + activation checkpointing",
         "3b-512": "Llama-3.2-3B LoRA step 1x512, fp32, weights %s",
         "3b-512-ckpt": "″ + activation checkpointing",
         "1b-4096": "Llama-3.2-1B LoRA step 1x4096, %s",
         "1b-4096-ckpt": "″ + activation checkpointing",
         "8b-512-ckpt": "Llama-3.1-8B shapes LoRA step 1x512, bf16, activation checkpointing"}
w = "16-bit (auto)" if sys.argv[2] == "1" else "as loaded (fp32 widening)"
print("| row | tokens/s median (min-max) | peak RSS (GB = 10^9 bytes) | arena peak (GiB) | budget |")
print("|---|---|---|---|---|")
for r in rows:
    n = r["row"]
    lab = label[n]
    if "%s" in lab: lab = lab % (r.get("precision", "?") if n.startswith("1b-4096") else w)
    if r.get("failed"):
        print(f"| {lab} | failed (see {n}.err) | | | |")
        continue
    gb = r["peak_rss_mb"] * 1048576 / 1e9
    b = budget.get(n)
    verdict = "" if b is None else f"≤ {b} GB {'✓' if gb <= b else '✗'}"
    print(f"| {lab} | {r['tok_s']:.2f} ({r['tok_s_min']:.2f}-{r['tok_s_max']:.2f}) | {gb:.3f} GB ({r['peak_rss_mb']:.0f} MiB) | "
          f"{r['arena_high_mb'] / 1024:.2f} GiB | {verdict} |")
for a, b in (("1b-4096", "1b-4096-ckpt"), ("1b-512", "1b-512-ckpt"), ("3b-512", "3b-512-ckpt")):
    if a in byname and b in byname and not byname[a].get("failed") and not byname[b].get("failed"):
        print(f"\n{b}: {byname[b]['tok_s'] / byname[a]['tok_s']:.2f}x the tokens/s of checkpointing off "
              f"(median), peak RSS {byname[b]['peak_rss_mb'] / byname[a]['peak_rss_mb']:.2f}x", end="")
print()
PY
