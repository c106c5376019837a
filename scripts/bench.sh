#!/usr/bin/env bash
# `make bench`: lorac against the PyTorch eager baseline (scripts/bench_torch.py) on the real model
# shapes with random weights, 2 threads, fp32 and bf16 rows; the two run as long-lived processes
# taking turns step by step (scripts/bench_drive.py). Prints a markdown table of medians, ratios,
# spreads, % of the plain GEMM and peak RSS; writes build/bench/results.jsonl.
#   bash scripts/bench.sh [ROW...]   ROW: lora (= lora-all lora-half), lora-all, lora-half, eval, siglip,
#                                    each optionally :fp32 or :bf16 (default: lora eval siglip, both)
#   ITERS=5 WARMUP=1 TOKENS=512 BATCH=8 PRECISIONS="fp32 bf16" BENCH_MODEL=DIR BENCH_VISION=DIR
# Every process here needs 1-14 GB, so the whole script runs under the machine's heavy-job lock
# (/tmp/lorac-heavy.lock); about 20 minutes for everything on a 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."
LOCK=/tmp/lorac-heavy.lock
if [ -z "${LORAC_BENCH_LOCKED:-}" ]; then
  echo "bench: waiting for $LOCK" >&2
  exec env LORAC_BENCH_LOCKED=1 flock "$LOCK" bash "$0" "$@"
fi
L=build/lorac
ITERS=${ITERS:-5}
WARMUP=${WARMUP:-1}
TOKENS=${TOKENS:-512}
BATCH=${BATCH:-8}
THREADS=${THREADS:-2}
PRECISIONS=${PRECISIONS:-fp32 bf16}
M=${BENCH_MODEL:-build/bench/llama-3.2-1b}
S=${BENCH_VISION:-build/bench/siglip-base}
rows=${*:-lora eval siglip}
for w in $rows; do
  case ${w%:*} in lora|lora-all|lora-half|eval|siglip) ;; *) echo "error: bench.sh: unknown row '$w'" >&2; exit 2 ;; esac
done
out=build/bench
mkdir -p "$out"
res="$out/results.jsonl"
: > "$res"
if ! /usr/bin/python3 -c "import torch" 2>/dev/null; then
  echo "bench: PyTorch missing; installing Debian's python3-torch for the baseline" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-torch >/dev/null
fi
# random weights in the real shapes, made once (BF16 files, as the real checkpoints)
[ -s "$M/model.safetensors" ] || $L make-tiny --preset llama-3.2-1b --out "$M" --force >/dev/null
[ -s "$S/model.safetensors" ] || $L make-tiny --kind siglip --preset siglip-base-patch16-224 --out "$S" --force >/dev/null
export OMP_NUM_THREADS=$THREADS
echo "+ $L bench gemm --tokens $TOKENS --iters $ITERS" >&2
$L bench gemm --tokens "$TOKENS" --iters "$ITERS" --warmup "$WARMUP" | tee -a "$res" >&2
# shellcheck disable=SC2086
exec /usr/bin/python3 scripts/bench_drive.py --lorac "$L" --model "$M" --vision "$S" --out "$res" --rows $rows \
  --precisions $PRECISIONS --iters "$ITERS" --warmup "$WARMUP" --tokens "$TOKENS" --batch "$BATCH" --threads "$THREADS"
