#!/usr/bin/env bash
# test_hostile.sh — issue 16 "Crashes" and "Silent data loss" on the tiny model, one case per
# defect: damaged checkpoints (missing file, corrupt adapter, missing state field), non-finite
# logits in generate and eval, another run's checkpoints in output_dir (fresh run, changed
# config, changed data), two runs on one output_dir, resume of a finished run (no duplicate
# lines, no re-save, no leftovers after a kill), resume beyond max_steps; plus JSON writers
# with non-finite numbers, and the final adapter pair replaced as one unit under a kill at
# each of its writes (issue 12 "Atomic outputs").
set -uo pipefail
cd "$(dirname "$0")/.."
L=${LORAC:-build/lorac}
source tests/lib.sh
# the model (25 MB, read only) in the scratch folder; the runs on tmpfs when there is room:
# fsync is a no-op there, and the many kills and resumes stay fast
S=$(scratch_dir hostile)
T=$S
if [ -w /dev/shm ] && [ "$(df -k --output=avail /dev/shm 2>/dev/null | tail -1)" -gt 65536 ] 2>/dev/null; then
  T=$(mktemp -d /dev/shm/lorac-hostile.XXXXXX) && trap 'rm -rf "$T"' EXIT || T=$S
fi
PY=/usr/bin/python3

$L make-tiny --out "$S/model" --seed 7 >/dev/null 2>"$S/mk.err" || { bad "make-tiny: $(cat "$S/mk.err")"; test_summary; exit 1; }
head -n 24 data/demo/train.jsonl > "$T/train.jsonl"
head -n 4 data/demo/eval.jsonl > "$T/eval.jsonl"
tc=(configs/tiny-lora.yaml model="$S/model" data.train="$T/train.jsonl" data.eval="$T/eval.jsonl" train.max_steps=6
    train.batch_size=2 train.grad_accum=1 lora.r=2 lora.dropout=0.1 train.eval_every=3 train.save_every=2
    train.keep_last=0 train.threads=1)
train() { local out=$1; shift; $L train "${tc[@]}" output_dir="$out" "$@"; }
# steps DIR: the step numbers of the loss lines of DIR/metrics.jsonl, space-separated
steps() { grep '"loss"' "$1/metrics.jsonl" | sed 's/{"step": \([0-9]*\),.*/\1/' | tr '\n' ' '; }
evals() { grep '"eval_loss"' "$1/metrics.jsonl" | sed 's/{"step": \([0-9]*\),.*/\1/' | tr '\n' ' '; }
# valid_json FILE: every line is strict JSON (no NaN/Infinity constants)
valid_json() { $PY -c 'import json,sys
def bad(c): raise ValueError(c)
[json.loads(l, parse_constant=bad) for l in open(sys.argv[1]) if l.strip()]' "$1" 2>/dev/null; }
# state_edit DIR PYTHON: edits DIR/trainer_state.json with a Python statement on `s`
state_edit() { $PY -c 'import json,sys
p=sys.argv[1]+"/trainer_state.json"; s=json.load(open(p)); exec(sys.argv[2]); json.dump(s,open(p,"w"))' "$1" "$2"; }
same_adapter() { cmp -s "$1/adapter_model.safetensors" "$2/adapter_model.safetensors" && cmp -s "$1/adapter_config.json" "$2/adapter_config.json"; }
ck() { echo "$1/checkpoints/step_000000$2"; }

# the reference: 6 uninterrupted steps, checkpoints at 2, 4, 6
train "$T/a" >"$T/a.out" 2>"$T/a.err"
check "reference run exits 0" [ $? -eq 0 ]
check "reference metrics: steps 1-6 once, evals at 0 3 6" [ "$(steps "$T/a")|$(evals "$T/a")" = "1 2 3 4 5 6 |0 3 6 " ]
fresh() { rm -rf "$2" && cp -r "$1" "$2"; }

# --- 1. a damaged newest checkpoint: named, set aside, resume from the previous one
for dmg in missing corrupt; do
  fresh "$T/a" "$T/d_$dmg"
  rm -f "$T/d_$dmg"/adapter_*
  if [ $dmg = missing ]; then rm "$(ck "$T/d_$dmg" 6)/adapter_model.safetensors"
  else head -c 200 "$(ck "$T/a" 6)/adapter_model.safetensors" > "$(ck "$T/d_$dmg" 6)/adapter_model.safetensors"; fi
  train "$T/d_$dmg" resume=true >"$T/out" 2>"$T/err"; rc=$?
  check "1 $dmg adapter: resume falls back and exits 0 (got $rc)" [ $rc -eq 0 ]
  check "1 $dmg adapter: the damaged file is named" grep -q "^warning: .*step_0000006/adapter_model.safetensors" "$T/err"
  check "1 $dmg adapter: resumed from step 4" grep -q "continuing from .*step_0000004" "$T/err"
  check "1 $dmg adapter: set aside" [ -d "$(ck "$T/d_$dmg" 6).damaged" ]
  check "1 $dmg adapter: ends byte-identical" same_adapter "$T/a" "$T/d_$dmg"
  check "1 $dmg adapter: metrics steps once each" [ "$(steps "$T/d_$dmg")|$(evals "$T/d_$dmg")" = "1 2 3 4 5 6 |0 3 6 " ]
done
# every checkpoint damaged: one error line, exit 1 (was a segfault on every resume)
fresh "$T/a" "$T/d_all"
for s in 2 4 6; do rm "$(ck "$T/d_all" $s)/adapter_config.json"; done
expect 1 "1 all checkpoints damaged: one error, exit 1" -- train "$T/d_all" resume=true
check "1 all checkpoints damaged: the error names a file" err_has "step_0000006/adapter_config.json"
check "1 all checkpoints damaged: nothing set aside" [ -d "$(ck "$T/d_all" 6)" ]

# --- 2. trainer_state.json missing a field
fresh "$T/a" "$T/s1"
state_edit "$(ck "$T/s1" 6)" 'del s["data"]["cursor"]'
train "$T/s1" resume=true >"$T/out" 2>"$T/err"; rc=$?
check "2 missing data.cursor in the newest: falls back, exit 0 (got $rc)" [ $rc -eq 0 ]
check "2 missing data.cursor: named" grep -q "^warning: .*step_0000006/trainer_state.json: field data.cursor" "$T/err"
check "2 missing data.cursor: ends byte-identical" same_adapter "$T/a" "$T/s1"
for f in 'del s["data"]["epoch"]' 's["step"]="6"' 's["rng"]="xyz"'; do
  fresh "$T/a" "$T/s2"
  for s in 2 4 6; do state_edit "$(ck "$T/s2" $s)" "$f"; done
  expect 1 "2 state '$f' everywhere: one error, exit 1" -- train "$T/s2" resume=true
  check "2 state '$f': names trainer_state.json" err_has "trainer_state.json: field"
done

# --- 3. non-finite logits: generate and eval say so (generate printed garbage, exit 0)
fresh "$T/a" "$T/nan"
hl=$(od -An -t u4 -N 4 "$T/nan/adapter_model.safetensors" | tr -d ' ')
printf '\x00\x00\xc0\x7f' | dd of="$T/nan/adapter_model.safetensors" bs=1 seek=$((8 + hl)) conv=notrunc 2>/dev/null
for T_ in 0 0.8; do
  expect 1 "3 generate, NaN adapter, temperature $T_: one error, exit 1" -- \
    $L generate --model "$S/model" --adapter "$T/nan" --prompt "Hello" --temperature $T_ --max-new-tokens 4
  check "3 generate, temperature $T_: says not finite" err_has "not finite"
done
expect 1 "3 eval --json, NaN adapter: one error, exit 1" -- $L eval --model "$S/model" --adapter "$T/nan" --data "$T/eval.jsonl" --json
check "3 eval --json: nothing on stdout" [ ! -s "$T/out" ]
$L eval --model "$S/model" --adapter "$T/a" --data "$T/eval.jsonl" --json >"$T/ev.json" 2>/dev/null
check "eval --json output is strict JSON" valid_json "$T/ev.json"
# a NaN adapter as lora.init: the step-0 eval is null in metrics.jsonl (was bare nan), then the run stops
train "$T/ni" lora.init="$T/nan" >"$T/out" 2>"$T/err"; rc=$?
check "NaN lora.init stops with exit 1 (got $rc)" [ $rc -eq 1 ]
null_eval() { grep -q '"eval_loss": null' "$1" && valid_json "$1"; }
check "metrics.jsonl with a NaN eval is strict JSON (null)" null_eval "$T/ni/metrics.jsonl"

# --- 5. another run's checkpoints
fresh "$T/a" "$T/o"
expect 1 "5 fresh run into another run's output_dir: refused" -- train "$T/o" train.max_steps=4
check "5 fresh run: says resume=true or a new output_dir" err_has "resume=true"
check "5 fresh run: the old run is untouched" bash -c "cmp -s '$T/a/metrics.jsonl' '$T/o/metrics.jsonl' && [ \"\$(ls '$T/o/checkpoints')\" = \"\$(ls '$T/a/checkpoints')\" ]"
expect 1 "5 resume with another config: refused" -- train "$T/o" resume=true optim.lr=1e-3
check "5 resume with another config: names the key" err_has "optim.lr differs"
head -n 20 "$T/train.jsonl" > "$T/train20.jsonl"
expect 1 "5 resume with other data: refused" -- train "$T/o" resume=true data.train="$T/train20.jsonl"
check "5 resume with other data: says so" err_has "other data"
check "5 refused resumes left the run untouched" bash -c "cmp -s '$T/a/metrics.jsonl' '$T/o/metrics.jsonl' && cmp -s '$T/a/adapter_model.safetensors' '$T/o/adapter_model.safetensors'"
# allowed: the same data from another path, a larger max_steps, other intervals
cp "$T/train.jsonl" "$T/train_copy.jsonl"
train "$T/o" resume=true data.train="$T/train_copy.jsonl" train.max_steps=8 train.save_every=4 train.log_every=2 >"$T/out" 2>"$T/err"
check "5 resume: same data elsewhere, longer, other intervals: exit 0" [ $? -eq 0 ]
check "5 resume: continued from step 6" grep -q "continuing from .*step_0000006 (step 6 of 8)" "$T/err"

# --- 6. two runs on one output_dir: the second refuses (a lock file)
$L train "${tc[@]}" output_dir="$T/l" train.max_steps=100000 train.save_every=0 data.eval= >"$T/l1.out" 2>"$T/l1.err" &
pid=$!
for _ in $(seq 1 1000); do grep -q '"loss"' "$T/l/metrics.jsonl" 2>/dev/null && break; sleep 0.02; done
expect 1 "6 a second run on the same output_dir: refused" -- timeout 60 $L train "${tc[@]}" output_dir="$T/l" train.max_steps=100000 resume=true
check "6 second run: names the lock" err_has "another \`lorac train\` is using it"
check "6 the first run is still running" kill -0 $pid
kill -INT $pid 2>/dev/null; wait $pid; rc=$?
check "6 the first run ends normally after Ctrl-C (got $rc)" [ $rc -eq 130 ]
check "6 its metrics are its own: consecutive steps" bash -c "[ \"\$(grep -c '\"loss\"' '$T/l/metrics.jsonl')\" = \"\$(grep '\"loss\"' '$T/l/metrics.jsonl' | tail -1 | sed 's/{\"step\": \([0-9]*\),.*/\1/')\" ]"

# --- 7. resume of a finished run: no new lines, no re-save; a kill leaves nothing behind
fresh "$T/a" "$T/f"
ino=$(stat -c %i "$(ck "$T/f" 6)")
for i in 1 2; do
  train "$T/f" resume=true >"$T/out" 2>"$T/err"
  check "7 finished-run resume $i: exit 0" [ $? -eq 0 ]
done
check "7 finished-run resume: metrics.jsonl unchanged (no duplicate final eval)" cmp -s "$T/a/metrics.jsonl" "$T/f/metrics.jsonl"
check "7 finished-run resume: the checkpoint is not re-saved" [ "$(stat -c %i "$(ck "$T/f" 6)")" = "$ino" ]
check "7 finished-run resume: final adapter identical" same_adapter "$T/a" "$T/f"
LORAC_TEST_KILL=2:metrics.jsonl.tmp train "$T/f" resume=true >/dev/null 2>&1; rc=$?
check "7 killed while rewriting metrics.jsonl (got $rc)" [ $rc -eq 137 ]
check "7 the kill left metrics.jsonl.tmp.PID" bash -c "ls '$T/f' | grep -q 'metrics.jsonl.tmp'"
train "$T/f" resume=true >/dev/null 2>&1
check "7 the next resume removes it" no_leftovers "$T/f"
check "7 and metrics.jsonl is still the run's" cmp -s "$T/a/metrics.jsonl" "$T/f/metrics.jsonl"
# the same with samples (train.sample_prompts): the final samples line is logged once
train "$T/fs" train.max_steps=2 train.sample_prompts=[Hi] train.sample_max_tokens=2 >/dev/null 2>&1
cp "$T/fs/metrics.jsonl" "$T/fs.metrics"
train "$T/fs" train.max_steps=2 train.sample_prompts=[Hi] train.sample_max_tokens=2 resume=true >/dev/null 2>&1
check "7 finished-run resume with samples: exit 0, metrics.jsonl unchanged" cmp -s "$T/fs.metrics" "$T/fs/metrics.jsonl"
check "7 (samples logged at all)" grep -q '"samples"' "$T/fs/metrics.jsonl"
# killed after the final checkpoint and the final eval line, before the final adapter:
# the resume logs no second final eval
fresh "$T/a" "$T/f2"
rm -rf "$(ck "$T/f2" 6)" "$T/f2"/adapter_*
LORAC_TEST_KILL=1:.stage train "$T/f2" resume=true >/dev/null 2>&1
train "$T/f2" resume=true >/dev/null 2>&1
check "7 killed before the final save: final eval logged once" [ "$(steps "$T/f2")|$(evals "$T/f2")" = "1 2 3 4 5 6 |0 3 6 " ]
check "7 killed before the final save: adapter identical after resume" same_adapter "$T/a" "$T/f2"

# --- 8. resume with max_steps below the checkpoint's step
fresh "$T/a" "$T/m"
expect 1 "8 resume with max_steps=3 < step 6: refused" -- train "$T/m" resume=true train.max_steps=3
check "8 says which step and which limit" err_has "at step 6, beyond this run's 3 steps"

# --- issue 12: the final adapter pair is replaced as one unit. The previous set: step 2's
# weights with a distinguishable config; the new set: the reference's. A kill at each write
# of the final save, then any reader (eval): the pair is the old one or the new one.
fresh "$T/a" "$T/p"
cp "$(ck "$T/p" 2)/adapter_model.safetensors" "$T/p/"
sed 's/"inference_mode": true/"inference_mode":  true/' "$T/a/adapter_config.json" > "$T/p/adapter_config.json"
cp -r "$T/p" "$T/p_old"
LORAC_TEST_TRACE=1 train "$T/p" resume=true 2>&1 >/dev/null | grep '^fault: ' > "$T/trace"
first=$(grep -n '\.stage\.tmp' "$T/trace" | head -1 | cut -d: -f1)
last=$(grep -n 'journal removed' "$T/trace" | tail -1 | cut -d: -f1)
check "fault points of the final save found ($first..$last)" [ -n "$first" -a -n "$last" ]
[ -n "$first" ] && [ -n "$last" ] || { head -3 "$T/trace"; first=1; last=0; }
mixed=0; olds=0; news=0; journals=0
for k in $(seq "${first:-1}" "${last:-0}"); do
  fresh "$T/p_old" "$T/pk"
  LORAC_TEST_KILL=$k train "$T/pk" resume=true >/dev/null 2>&1
  # a committed journal: any reader (here generate) finishes the renames first
  [ -e "$T/pk/.lorac-publish" ] && journals=$((journals + 1)) &&
    $L generate --model "$S/model" --adapter "$T/pk" --prompt "" --max-new-tokens 1 >/dev/null 2>&1
  if same_adapter "$T/pk" "$T/p_old"; then olds=$((olds + 1)); elif same_adapter "$T/pk" "$T/a"; then news=$((news + 1));
  else mixed=$((mixed + 1)); echo "mixed set after a kill at: $(sed -n "${k}p" "$T/trace")"; fi
done
check "final pair after a kill at each of its $((last - first + 1)) writes: never mixed ($olds old, $news new, $journals finished by a reader)" \
  [ $mixed -eq 0 ] && [ $olds -gt 0 ] && [ $news -gt 0 ] && [ $journals -gt 0 ]
check "no temporaries after the reader" no_leftovers "$T/pk"

# merge: its folder appears in one rename; a killed merge's temporary folder is removed by the next
LORAC_TEST_KILL=1:merged.tmp $L merge --model "$S/model" --adapter "$T/a" --out "$T/merged" >/dev/null 2>&1; rc=$?
check "merge killed while writing (got $rc): no output folder, a temporary one" bash -c "[ $rc -eq 137 ] && [ ! -e '$T/merged' ] && ls '$T' | grep -q 'merged.tmp'"
LORAC_TEST_KILL=1:"merged folder in place" $L merge --model "$S/model" --adapter "$T/a" --out "$T/merged2" >/dev/null 2>&1
check "merge killed right after its rename: the folder is complete" bash -c "[ -s '$T/merged2/model.safetensors' ] && [ -s '$T/merged2/config.json' ]"
$L merge --model "$S/model" --adapter "$T/a" --out "$T/merged" >/dev/null 2>"$T/err"
check "the next merge succeeds and removes the killed one's temporary folder" bash -c "[ -s '$T/merged/model.safetensors' ] && ! ls '$T' | grep -q 'merged.tmp'"

test_summary
