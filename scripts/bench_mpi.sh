#!/usr/bin/env bash
# `make bench-mpi`: data-parallel LoRA training on the Llama-3.2-1B shapes (random weights),
# r=16 on all seven projections, global batch 2 x 512 tokens (batch_size 1, grad_accum 2,
# every token supervised), three ways on this machine:
#   1 rank  x 2 threads   plain `lorac train` (no MPI)
#   2 ranks x 1 thread    mpirun, shared memory between the ranks
#   2 ranks x 1 thread    mpirun --mca btl tcp,self (TCP over loopback, standing in for a network)
# Prints per configuration the median (min-max) step time and tokens/s over the steps after
# the first, the gradient allreduce (ms per step, MB per step: the `dist:` line of rank 0)
# and the scaling efficiency against 1 x 2. Each rank holds the whole frozen model (~5 GB):
# the script runs under `flock /tmp/lorac-heavy.lock` (one heavy job at a time on the machine).
#   STEPS=5 MODEL=/tmp/mpi-1b bash scripts/bench_mpi.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${BENCH_MPI_LOCKED:-}" ]; then
  exec env BENCH_MPI_LOCKED=1 flock /tmp/lorac-heavy.lock bash "$0" "$@"
fi
L=${LORAC:-build/lorac}
STEPS=${STEPS:-5}
M=${MODEL:-/tmp/mpi-1b}
out=build/bench-mpi
mkdir -p "$out"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
unset OMP_NUM_THREADS
[ -s "$M/model.safetensors" ] || $L make-tiny --preset llama-3.2-1b --tokenizer .cache/tokenizer --out "$M" --force >/dev/null
# 8 plain-text records of 600+ words, truncated to 512 tokens: every step 2 x 512 tokens
/usr/bin/python3 - "$out/train.jsonl" <<'PY'
import json, random, sys
random.seed(1)
words = "the of and to in is was for on that with as by at from his her it an were are which this be or first new".split()
with open(sys.argv[1], "w") as f:
    for _ in range(8):
        f.write(json.dumps({"text": " ".join(random.choice(words) + str(random.randrange(100)) for _ in range(700))}) + "\n")
PY
common=(model="$M" data.train="$out/train.jsonl" data.eval=null data.format=text data.max_seq_len=512
        data.truncation=truncate data.shuffle=false lora.r=16 lora.alpha=32 lora.dropout=0.05 train.batch_size=1
        train.grad_accum=2 train.max_steps="$STEPS" train.save_every=100000 train.eval_every=0 train.log_every=1
        output_dir="$out/run")
run() {   # NAME COMMAND...
  local name=$1; shift
  rm -rf "$out/run"
  echo "+ $name: $*" >&2
  "$@" train configs/llama-3.2-1b-lora.yaml "${common[@]}" >"$out/$name.out" 2>"$out/$name.err" ||
    { tail -5 "$out/$name.err" >&2; exit 1; }
  cp "$out/run/metrics.jsonl" "$out/$name.metrics.jsonl"
}
run one_x2 env OMP_NUM_THREADS=2 $L
run two_x1_shm mpirun -np 2 $L
run two_x1_tcp mpirun -np 2 --mca btl tcp,self $L
/usr/bin/python3 - "$out" <<'PY'
import json, re, statistics, sys
out = sys.argv[1]
rows = {}
for name, label in [("one_x2", "1 rank x 2 threads"), ("two_x1_shm", "2 ranks x 1 thread, shared memory"),
                    ("two_x1_tcp", "2 ranks x 1 thread, TCP (btl tcp,self)")]:
    steps = [json.loads(l) for l in open(f"{out}/{name}.metrics.jsonl") if '"loss"' in l][1:]   # after the first
    st = [s["step_s"] for s in steps]
    tps = [s["tokens"] / s["step_s"] for s in steps]
    m = re.search(r"allreduces of ([0-9.]+) MB: median ([0-9.]+) ms \(min ([0-9.]+), max ([0-9.]+)\)", open(f"{out}/{name}.err").read())
    rows[name] = (label, st, tps, m)
base = statistics.median(rows["one_x2"][2])
print(f"\n| configuration | step s, median (min-max) | tokens/s, median (min-max) | efficiency vs 1x2 | allreduce ms/step, median (min-max) | allreduce MB/step | allreduce % of step |")
print("|---|---|---|---|---|---|---|")
for name, (label, st, tps, m) in rows.items():
    ar = f"{float(m.group(2)):.1f} ({float(m.group(3)):.1f}-{float(m.group(4)):.1f})" if m else "-"
    mb = f"{float(m.group(1)):.1f}" if m else "-"
    pct = f"{100 * float(m.group(2)) / 1e3 / statistics.median(st):.2f}%" if m else "-"
    print(f"| {label} | {statistics.median(st):.2f} ({min(st):.2f}-{max(st):.2f}) | {statistics.median(tps):.1f} "
          f"({min(tps):.1f}-{max(tps):.1f}) | {statistics.median(tps) / base:.2f} | {ar} | {mb} | {pct} |")
print(f"\n({len(rows['one_x2'][1])} steps each after the first; 2 x 512 tokens per step; {out}/*.metrics.jsonl, *.err)")
PY
