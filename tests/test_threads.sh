#!/usr/bin/env bash
# test_threads.sh — lorac runs with a short OpenMP spin (GOMP_SPINCOUNT) unless the user chose
# a wait policy: the setting must be in the environment libgomp sees when it loads, so lorac
# re-executes itself once with it (cli/threads.c). Read from /proc/PID/environ of a lorac
# blocked on stdin (`tokenize` reading lines).
# And the thread count does not change results (issue 17): on the tiny model every product is
# below the size at which it is split over threads (blas.h, ops_attention.c), and the lm-head
# loss runs fixed row blocks on whichever thread is free (ops_loss.c), so a training run gives
# the same adapter and gradients, byte for byte, on 1, 2 and 3 threads.
set -uo pipefail
cd "$(dirname "$0")/.."
LORAC=${LORAC:-build/lorac}
TOKENIZER_DIR=${TOKENIZER_DIR:-.cache/tokenizer}
TEST_NAME=test_threads.sh
source tests/lib.sh
T=$(scratch_dir test_threads)
mkdir -p "$T/model" && ln -s "$(cd "$TOKENIZER_DIR" && pwd)/tokenizer.json" "$T/model/tokenizer.json"

# environ_of [env options]: start lorac tokenize under `env` with those options, print its
# environment (one variable a line) once it waits on stdin (state S) after any re-exec, then
# end it. A lorac that re-executes sets LORAC_WAIT_POLICY_SET; one that does not is read
# once it sleeps on the fifo.
environ_of() {
  rm -f "$T/fifo" && mkfifo "$T/fifo"
  env "$@" "$LORAC" tokenize --model "$T/model" < "$T/fifo" > /dev/null 2>&1 &
  local pid=$! i
  exec 9> "$T/fifo"
  for i in $(seq 100); do
    sleep 0.05
    [ "$(awk '{print $3}' /proc/$pid/stat 2>/dev/null)" = S ] || continue
    grep -q '^State' /proc/$pid/status 2>/dev/null || continue
    [ "$(readlink /proc/$pid/exe)" = "$(readlink -f "$LORAC")" ] && break
  done
  tr '\0' '\n' < /proc/$pid/environ 2>/dev/null
  exec 9>&-
  wait $pid
}

env_default=$(environ_of -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT -u LORAC_SPINCOUNT)
check "default: short spin set before libgomp loads" grep -qx 'GOMP_SPINCOUNT=20000' <<< "$env_default"
env_count=$(environ_of -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT LORAC_SPINCOUNT=777)
check "LORAC_SPINCOUNT chooses the count" grep -qx 'GOMP_SPINCOUNT=777' <<< "$env_count"
env_user=$(environ_of -u GOMP_SPINCOUNT OMP_WAIT_POLICY=passive)
check "the user's OMP_WAIT_POLICY is left alone (no spin count added)" \
  bash -c '! grep -q "^GOMP_SPINCOUNT=" <<< "$1" && grep -qx "OMP_WAIT_POLICY=passive" <<< "$1"' _ "$env_user"
env_user2=$(environ_of -u OMP_WAIT_POLICY GOMP_SPINCOUNT=5)
check "the user's GOMP_SPINCOUNT is left alone" grep -qx 'GOMP_SPINCOUNT=5' <<< "$env_user2"
# the re-executed binary still works: same output as asked
got=$("$LORAC" tokenize --model "$T/model" "Hello world" 2>&1)
check "re-executed lorac answers" test "$got" = "9906 1917"

"$LORAC" make-tiny --out "$T/tiny" --seed 7 >/dev/null 2>&1
head -n 32 data/demo/train.jsonl > "$T/train.jsonl"
for n in 1 2 3; do
  OMP_NUM_THREADS=$n "$LORAC" train configs/tiny-lora.yaml model="$T/tiny" data.train="$T/train.jsonl" data.eval=null \
    train.max_steps=6 train.batch_size=4 lora.r=4 lora.dropout=0.1 output_dir="$T/run$n" \
    train.dump_grads="$T/grads$n.safetensors" >"$T/run$n.out" 2>&1
  check "train on $n thread(s) exits 0" test $? -eq 0
done
for n in 2 3; do
  check "adapter on $n threads = adapter on 1 thread, byte for byte" \
    cmp -s "$T/run1/adapter_model.safetensors" "$T/run$n/adapter_model.safetensors"
  check "gradients on $n threads = gradients on 1 thread, byte for byte" cmp -s "$T/grads1.safetensors" "$T/grads$n.safetensors"
done
test_summary
