# tests/lib.sh — helpers shared by the shell tests (tests/test_*.sh). Source it after `cd` to
# the repository root, then make the test's scratch folder $T (expect writes there):
#   source tests/lib.sh
#   T=$(scratch_dir NAME)   # a fresh, empty $BUILD/tmp/NAME
#   check "adapter written" [ -s "$T/a/adapter_model.safetensors" ]
#   expect 1 "bad config" -- "$LORAC" train bad.yaml
#   test_summary          # last line `N passed, N failed`; exit status 1 on any failure
# FAIL lines name the script (tests/run.sh shows them); TEST_VERBOSE=1 also prints ok lines.
# No shell options are set here: each script keeps its own `set -u` / `set -uo pipefail`.

pass=0
fail=0
TEST_NAME=$(basename "$0")

# scratch_dir NAME: removes and re-creates ${BUILD:-build}/tmp/NAME and prints its path
scratch_dir() { local d=${BUILD:-build}/tmp/$1; rm -rf "$d" && mkdir -p "$d"; echo "$d"; }   # prints it even on failure

ok() { pass=$((pass + 1)); [ -n "${TEST_VERBOSE:-}" ] && echo "ok ${1:-}"; return 0; }
bad() { fail=$((fail + 1)); echo "FAIL $TEST_NAME: $*"; }
# check NAME command...: passes when the command exits 0
check() { local name=$1; shift; if "$@"; then ok "$name"; else bad "$name"; fi; }

# expect CODE NAME -- command...: exit status CODE and (for non-zero CODE) exactly one
# `error:` line on stderr; stdout is kept in $T/out and stderr in $T/err
expect() {
  local code=$1 name=$2; shift 3
  local rc
  "$@" >"$T/out" 2>"$T/err"; rc=$?
  if [ "$rc" -ne "$code" ]; then bad "$name: exit $rc, want $code ($(head -c 600 "$T/err"))"; return; fi
  if [ "$code" -ne 0 ] && ! grep -q '^error: ' "$T/err"; then bad "$name: no error line ($(cat "$T/err"))"; return; fi
  if [ "$code" -ne 0 ] && [ "$(grep -c '^error: ' "$T/err")" -ne 1 ]; then bad "$name: more than one error line"; return; fi
  ok "$name"
}
# err_has TEXT: the last expect's stderr contains TEXT
err_has() { grep -q -- "$1" "$T/err"; }

# file kinds by their first 8 bytes
is_h5() { [ "$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')" = "894844460d0a1a0a" ]; }
is_png() { [ "$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a" ]; }
# no_leftovers DIR: no temporary file (*.tmp.*) of an atomic write is left in DIR
no_leftovers() { ! ls "$1" 2>/dev/null | grep -q '\.tmp\.'; }

test_summary() {
  echo "$pass passed, $fail failed"
  [ "$fail" -eq 0 ]
}

# tiny_vision_models: a tiny Llama ($T/llama) and SigLIP ($T/siglip), the caption demo images
# ($T/images) and 8 train / 4 eval caption records ($T/train.jsonl, $T/eval.jsonl); on failure
# prints the reason and the summary line and exits
tiny_vision_models() {
  "${LORAC:-build/lorac}" make-tiny --out "$T/llama" --seed 7 >/dev/null 2>"$T/mk.err" &&
    "${LORAC:-build/lorac}" make-tiny --kind siglip --out "$T/siglip" --seed 3 >/dev/null 2>>"$T/mk.err" ||
    { cat "$T/mk.err"; echo "0 passed, 1 failed"; exit 1; }
  ln -s "$(pwd)/data/demo/captions/images" "$T/images"
  head -n 8 data/demo/captions/train.jsonl > "$T/train.jsonl"
  head -n 4 data/demo/captions/eval.jsonl > "$T/eval.jsonl"
}
