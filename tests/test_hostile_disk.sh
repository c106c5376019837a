#!/usr/bin/env bash
# test_hostile_disk.sh — issue 12 hardening 4 / issue 16 item 4: a full file system (a small
# tmpfs mounted here, filled up to a few pages) during a checkpoint, the final save,
# `prepare` and `merge`: one `error:` line naming the path, exit 1, nothing half-written, the
# previous checkpoint intact and resumable. Also a read-only output folder and an output_dir
# that is a file. (Two runs on one output_dir: tests/test_hostile.sh.) Needs root to mount.
set -uo pipefail
cd "$(dirname "$0")/.."
L=${LORAC:-build/lorac}
source tests/lib.sh
T=$(scratch_dir hostile_disk)
M=$T/full
mkdir -p "$M"
if ! mount -t tmpfs -o size=4m tmpfs "$M" 2>"$T/mount.err"; then
  if [ "${CI:-}" = true ]; then bad "full-disk cases: cannot mount a tmpfs: $(cat "$T/mount.err")"
  else skip "full-disk cases" "cannot mount a tmpfs ($(cat "$T/mount.err"); needs root)"; fi
  M=""
fi
cleanup() { [ -n "$M" ] && umount "$M" 2>/dev/null; }
trap cleanup EXIT

$L make-tiny --out "$T/model" --seed 7 >/dev/null 2>"$T/mk.err" || { bad "make-tiny: $(cat "$T/mk.err")"; test_summary; exit 1; }
head -n 24 data/demo/train.jsonl > "$T/train.jsonl"
head -n 4 data/demo/eval.jsonl > "$T/eval.jsonl"
tc=(configs/tiny-lora.yaml model="$T/model" data.train="$T/train.jsonl" data.eval="$T/eval.jsonl" train.max_steps=4
    train.batch_size=2 train.grad_accum=1 lora.r=2 train.eval_every=2 train.save_every=2 train.keep_last=0 train.threads=1)
train() { local out=$1; shift; $L train "${tc[@]}" output_dir="$out" "$@"; }
$L train "${tc[@]}" output_dir="$T/ref" >/dev/null 2>"$T/ref.err"
check "reference run exits 0" [ $? -eq 0 ]
ck() { echo "$1/checkpoints/step_000000$2"; }
same_dir() { diff -r "$1" "$2" >/dev/null; }
# fill KB: leaves about KB kilobytes free on the tmpfs
fill() { rm -f "$M/filler"; local a; a=$(df -k --output=avail "$M" | tail -1); dd if=/dev/zero of="$M/filler" bs=1K count=$((a - $1)) 2>/dev/null; }
leftovers() { find "$1" -name '*.tmp*' -o -name '.stage*' -o -name '.lorac-publish' | grep -q .; }

if [ -n "$M" ]; then
  # a checkpoint on a full disk: step 2 was saved, step 4 cannot be
  rm -rf "${M:?}"/* && cp -r "$T/ref" "$M/c" && rm -rf "$(ck "$M/c" 4)" "$M/c"/adapter_*
  fill 16
  expect 1 "checkpoint on a full disk: one error, exit 1" -- train "$M/c" resume=true
  check "checkpoint on a full disk: names the checkpoint path" err_has "checkpoints/step_0000004.*No space left"
  check "checkpoint on a full disk: step 2 intact" same_dir "$(ck "$T/ref" 2)" "$(ck "$M/c" 2)"
  check "checkpoint on a full disk: no partial step 4, no temporaries" bash -c "[ ! -e '$(ck "$M/c" 4)' ] && ! find '$M/c' -name '*.tmp*' | grep -q ."
  rm -f "$M/filler"
  train "$M/c" resume=true >/dev/null 2>"$T/err"
  check "after freeing space the run resumes from step 2 (exit 0)" bash -c "grep -q 'continuing from .*step_0000002' '$T/err'"
  check "and ends byte-identical" cmp -s "$T/ref/adapter_model.safetensors" "$M/c/adapter_model.safetensors"

  # the final save on a full disk: the finished run's checkpoint is kept, no half-published pair
  rm -rf "${M:?}"/* && cp -r "$T/ref" "$M/f" && rm -f "$M/f"/adapter_*
  fill 16
  expect 1 "final save on a full disk: one error, exit 1" -- train "$M/f" resume=true
  check "final save on a full disk: names the path" err_has "$M/f.*No space left"
  check "final save on a full disk: checkpoint 4 intact" same_dir "$(ck "$T/ref" 4)" "$(ck "$M/f" 4)"
  check "final save on a full disk: no adapter file, no temporaries" bash -c "! ls '$M/f' | grep -q adapter_ && ! find '$M/f' -name '*.tmp*' -o -name '.stage*' | grep -q ."
  rm -f "$M/filler"
  train "$M/f" resume=true >/dev/null 2>&1
  check "after freeing space the final save completes, byte-identical" cmp -s "$T/ref/adapter_model.safetensors" "$M/f/adapter_model.safetensors"

  # prepare on a full disk (crashed inside libhdf5 after a two-line error)
  rm -rf "${M:?}"/*
  fill 16
  expect 1 "prepare on a full disk: one error, exit 1 (no crash)" -- $L prepare "${tc[@]}" data.train=data/demo/train.jsonl --out "$M/train.h5"
  check "prepare on a full disk: names the output" err_has "$M/train.h5.*No space left"
  check "prepare on a full disk: nothing left" [ -z "$(ls "$M" | grep -v filler)" ]

  # merge on a full disk
  expect 1 "merge on a full disk: one error, exit 1" -- $L merge --model "$T/model" --adapter "$T/ref" --out "$M/merged"
  check "merge on a full disk: names the path" err_has "$M/merged.*No space left"
  check "merge on a full disk: nothing left" [ -z "$(ls "$M" | grep -v filler)" ]
  rm -f "$M/filler"

  # a read-only output folder: one error naming it; its run stays resumable
  cp -r "$T/ref" "$M/ro"
  if mount -o remount,ro "$M" 2>/dev/null; then
    expect 1 "read-only output_dir (resume): one error, exit 1" -- train "$M/ro" resume=true
    check "read-only output_dir: names the path" err_has "$M/ro.*Read-only file system"
    expect 1 "read-only file system (new output_dir): one error, exit 1" -- train "$M/new"
    check "read-only file system: names the path" err_has "$M/new.*Read-only file system"
    mount -o remount,rw "$M"
    train "$M/ro" resume=true >/dev/null 2>&1
    check "writable again: resume exits 0, byte-identical" cmp -s "$T/ref/adapter_model.safetensors" "$M/ro/adapter_model.safetensors"
  else
    bad "cannot remount the tmpfs read-only"
  fi
fi

# an output_dir that is a file
: > "$T/afile"
expect 1 "output_dir is a file: one error, exit 1" -- train "$T/afile"
check "output_dir is a file: names it" err_has "$T/afile.*not a folder"

test_summary
