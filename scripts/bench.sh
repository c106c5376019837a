#!/usr/bin/env bash
# `make bench`: lorac against the PyTorch eager baseline (scripts/bench_torch.py), side by side
# in one run, on the real model shapes with random weights, 2 threads. Prints a table of
# medians and ratios and writes build/bench/results.jsonl.
#   ITERS=3 TOKENS=512 bash scripts/bench.sh [lora] [eval] [siglip]
set -euo pipefail
cd "$(dirname "$0")/.."
L=build/lorac
ITERS=${ITERS:-3}
TOKENS=${TOKENS:-512}
THREADS=${THREADS:-2}
what=${*:-lora eval siglip}
out=build/bench
mkdir -p "$out"
res="$out/results.jsonl"
: > "$res"
export OMP_NUM_THREADS=$THREADS
M=build/bench-llama-3.2-1b
[ -s "$M/model.safetensors" ] || $L make-tiny --preset llama-3.2-1b --out "$M" --force >/dev/null
if ! /usr/bin/python3 -c "import torch" 2>/dev/null; then
  echo "bench: PyTorch missing; installing Debian's python3-torch for the baseline" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-torch >/dev/null
fi
torch() { GLIBC_TUNABLES=glibc.malloc.hugetlb=1 /usr/bin/python3 scripts/bench_torch.py "$@" --threads "$THREADS" --iters "$ITERS"; }
run() { echo "+ $*" >&2; "$@" | tee -a "$res"; }

run $L bench sgemm --tokens "$TOKENS" --iters "$ITERS"
for w in $what; do
  case $w in
    lora)
      for sup in all half; do
        run $L bench lora --model "$M" --tokens "$TOKENS" --supervised $sup --iters "$ITERS"
        run torch lora --tokens "$TOKENS" --supervised $sup
      done ;;
    eval)
      run $L bench eval --model "$M" --tokens "$TOKENS" --iters "$ITERS"
      run torch eval --tokens "$TOKENS" ;;
    siglip)
      S=build/bench-siglip-base
      [ -s "$S/model.safetensors" ] || $L make-tiny --kind siglip --preset siglip-base-patch16-224 --out "$S" --force >/dev/null
      if $L bench siglip --vision "$S" --batch 8 --iters "$ITERS" >/dev/null 2>&1; then
        run $L bench siglip --vision "$S" --batch 8 --iters "$ITERS"
        run torch siglip --batch 8
      else
        echo "bench: lorac bench siglip is not available in this build; skipped" >&2
      fi ;;
  esac
done
/usr/bin/python3 - "$res" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
sg = next((r["gflops"] for r in rows if r["bench"] == "sgemm"), None)
print(f"\nplain cblas_sgemm: {sg:.1f} GFLOP/s" if sg else "")
print(f"{'benchmark':<22}{'lorac':>12}{'pytorch':>12}{'ratio':>8}{'lorac GF/s':>12}{'sgemm':>8}{'%sgemm':>8}{'RSS lorac':>11}{'RSS torch':>11}")
def key(r): return (r["bench"], r.get("supervised", ""))
for r in rows:
    if r["impl"] != "lorac" or r["bench"] == "sgemm": continue
    t = next((x for x in rows if x["impl"] == "pytorch" and key(x) == key(r)), None)
    unit = "images_per_s" if r["bench"] == "siglip" else "tokens_per_s"
    name = r["bench"] + (" (" + r["supervised"] + " supervised)" if r["bench"] == "lora" else "")
    a, b = r[unit], (t[unit] if t else float("nan"))
    gf = r.get("gflops", float("nan"))
    s = r.get("sgemm_gflops", sg) or float("nan")   # plain sgemm measured between this run's steps
    print(f"{name:<22}{a:>12.2f}{b:>12.2f}{a / b:>8.2f}{gf:>12.1f}{s:>8.1f}{100 * gf / s:>7.0f}%"
          f"{r['peak_rss_mb']:>10.0f}M{(t['peak_rss_mb'] if t else float('nan')):>10.0f}M")
print(f"({sys.argv[1]}; units: tokens/s, images/s for siglip; medians of the iterations; sgemm: plain\n"
      " cblas_sgemm GFLOP/s on the projection shapes, measured after each step of the same lorac run)")
PY
