#!/usr/bin/env bash
# test_hostile_chaos.sh — issue 12 hardening 3: a tiny-model training run killed with SIGKILL
# at >= 10 random moments (at random fault points inside checkpoint writes through the
# test-only LORAC_TEST_KILL hook, at random points of any atomic write, and from outside after
# a random delay), resumed each time, ends byte-identical to an uninterrupted run, with each
# step and each evaluation exactly once in metrics.jsonl and no temporary file left. After
# every kill, every checkpoint folder is complete. CHAOS_SEED=N replays a sequence.
set -uo pipefail
cd "$(dirname "$0")/.."
L=${LORAC:-build/lorac}
source tests/lib.sh
# the model (25 MB, read only) in the scratch folder; the runs on tmpfs when there is room:
# fsync is a no-op there, and the many kills and resumes stay fast
S=$(scratch_dir hostile_chaos)
T=$S
if [ -w /dev/shm ] && [ "$(df -k --output=avail /dev/shm 2>/dev/null | tail -1)" -gt 65536 ] 2>/dev/null; then
  T=$(mktemp -d /dev/shm/lorac-chaos.XXXXXX) && trap 'rm -rf "$T"' EXIT || T=$S
fi

$L make-tiny --out "$S/model" --seed 7 >/dev/null 2>"$S/mk.err" || { bad "make-tiny: $(cat "$S/mk.err")"; test_summary; exit 1; }
head -n 32 data/demo/train.jsonl > "$T/train.jsonl"
head -n 4 data/demo/eval.jsonl > "$T/eval.jsonl"
tc=(configs/tiny-lora.yaml model="$S/model" data.train="$T/train.jsonl" data.eval="$T/eval.jsonl" train.max_steps=12
    train.batch_size=2 train.grad_accum=2 lora.r=2 lora.dropout=0.1 data.shuffle=true train.eval_every=4
    train.save_every=2 train.keep_last=2 train.threads=1 resume=true)

$L train "${tc[@]}" output_dir="$T/ref" >/dev/null 2>"$T/ref.err"
check "uninterrupted run exits 0" [ $? -eq 0 ]

seed=${CHAOS_SEED:-$(( $(date +%s) % 100000 ))}
RANDOM=$seed
echo "chaos seed $seed (CHAOS_SEED=$seed bash $0 replays it)"
C=$T/chaos
landed=0; in_ckpt=0; partial=0; other=0; finished=0; early_bad=0; log=""
for attempt in $(seq 1 30); do
  [ $landed -ge 12 ] && [ $in_ckpt -ge 4 ] && break
  mode=$(( attempt <= 4 ? 0 : RANDOM % 3 ))
  case $mode in
    0) n=$(( 1 + RANDOM % 60 )); what="kill at fault point $n inside checkpoint writes"
       LORAC_TEST_KILL=$n:/checkpoints/ $L train "${tc[@]}" output_dir="$C" >/dev/null 2>"$T/run.err"; rc=$? ;;
    1) n=$(( 1 + RANDOM % 150 )); what="kill at fault point $n"
       LORAC_TEST_KILL=$n $L train "${tc[@]}" output_dir="$C" >/dev/null 2>"$T/run.err"; rc=$? ;;
    2) d=$(( RANDOM % 800 )); what="kill -9 after ${d} ms"
       $L train "${tc[@]}" output_dir="$C" >/dev/null 2>"$T/run.err" &
       pid=$!; sleep "$(printf '0.%03d' $d)"; kill -9 $pid 2>/dev/null; wait $pid; rc=$? ;;
  esac
  if [ $rc -eq 137 ]; then
    landed=$((landed + 1)); [ $mode -eq 0 ] && in_ckpt=$((in_ckpt + 1))
    log="$log${log:+; }$what"
  elif [ $rc -eq 0 ]; then finished=$((finished + 1))
    # the run reached its last step before enough kills landed (a fast machine, late random
    # moments): it must match the uninterrupted run; then a new run starts in a fresh folder
    if [ $landed -lt 12 ] || [ $in_ckpt -lt 4 ]; then
      cmp -s "$T/ref/adapter_model.safetensors" "$C/adapter_model.safetensors" || early_bad=$((early_bad + 1))
      rm -rf "$C"
    fi
  else other=$((other + 1)); echo "attempt $attempt ($what): exit $rc: $(tail -2 "$T/run.err")"; fi
  for d in "$C"/checkpoints/step_*; do
    [ -d "$d" ] || continue
    case $d in *.tmp*) continue ;; esac
    for f in adapter_model.safetensors adapter_config.json optimizer.safetensors trainer_state.json; do
      [ -s "$d/$f" ] || { partial=$((partial + 1)); echo "after '$what': $d lacks $f"; }
    done
  done
done
echo "kills landed: $landed ($in_ckpt inside checkpoint writes): $log"
check_sh "at least 10 kills landed, 4 inside checkpoint writes ($landed, $in_ckpt)" '[ $landed -ge 10 ] && [ $in_ckpt -ge 4 ]'
check "runs that finished between kills ended byte-identical too ($early_bad differ)" [ $early_bad -eq 0 ]
check "every run ended by a kill or finished (no other exit)" [ $other -eq 0 ]
check "no checkpoint folder was ever partial" [ $partial -eq 0 ]

$L train "${tc[@]}" output_dir="$C" >/dev/null 2>"$T/last.err"
check "the last resume exits 0" [ $? -eq 0 ]
check "adapter byte-identical to the uninterrupted run" cmp -s "$T/ref/adapter_model.safetensors" "$C/adapter_model.safetensors"
check "adapter_config.json identical" cmp -s "$T/ref/adapter_config.json" "$C/adapter_config.json"
check "final optimizer state identical" cmp -s "$T/ref/checkpoints/step_0000012/optimizer.safetensors" "$C/checkpoints/step_0000012/optimizer.safetensors"
check "same checkpoints kept" [ "$(ls "$T/ref/checkpoints")" = "$(ls "$C/checkpoints")" ]
st=$(grep '"loss"' "$C/metrics.jsonl" | sed 's/{"step": \([0-9]*\),.*/\1/' | tr '\n' ' ')
ev=$(grep '"eval_loss"' "$C/metrics.jsonl" | sed 's/{"step": \([0-9]*\),.*/\1/' | tr '\n' ' ')
check "metrics.jsonl: each step once ($st)" [ "$st" = "1 2 3 4 5 6 7 8 9 10 11 12 " ]
check "metrics.jsonl: each eval once ($ev)" [ "$ev" = "0 4 8 12 " ]
strip() { sed 's/"tokens_per_s".*//' "$1"; }   # timings differ run to run
check "metrics.jsonl values equal the uninterrupted run's" cmp -s <(strip "$T/ref/metrics.jsonl") <(strip "$C/metrics.jsonl")
left=$(find "$C" -name '*.tmp*' -o -name '.lorac-publish' -o -name '.stage*' -o -name '*.damaged')
check "no temporary file left ($left)" [ -z "$left" ]

test_summary
