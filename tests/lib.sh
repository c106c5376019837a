# tests/lib.sh — helpers shared by the shell tests (tests/test_*.sh). Source it after `cd` to
# the repository root, then make the test's scratch folder $T (expect writes there):
#   source tests/lib.sh
#   T=$(scratch_dir NAME)   # a fresh, empty $BUILD/tmp/NAME
#   check "adapter written" [ -s "$T/a/adapter_model.safetensors" ]
#   expect 1 "bad config" -- "$LORAC" train bad.yaml
#   if need_py "h5py reads the cache" h5py numpy; then check ... ; fi
#   test_summary          # last line `N passed, N failed, N skipped`; exit status 1 on any failure
# FAIL and SKIP lines name the script (tests/run.sh shows them); TEST_VERBOSE=1 also prints ok
# lines. A check that cannot run here is never silent: it prints `SKIP script name: reason` and
# counts as skipped (tests/run.sh fails the run on any skip under CI=true).
# No shell options are set here: each script keeps its own `set -u` / `set -uo pipefail`.

pass=0
fail=0
skipped=0
TEST_NAME=$(basename "$0")
# Debian's python3 (numpy, h5py, PIL come from Debian packages; scripts/deps.sh installs them).
# A python3 found first on PATH may be another interpreter without them.
PY=/usr/bin/python3

# scratch_dir NAME: removes and re-creates ${BUILD:-build}/tmp/NAME and prints its path
scratch_dir() { local d=${BUILD:-build}/tmp/$1; rm -rf "$d" && mkdir -p "$d"; echo "$d"; }   # prints it even on failure

ok() { pass=$((pass + 1)); [ -n "${TEST_VERBOSE:-}" ] && echo "ok ${1:-}"; return 0; }
bad() { fail=$((fail + 1)); echo "FAIL $TEST_NAME: $*"; }
# skip NAME REASON: a check (or a section of checks) that cannot run here
skip() { skipped=$((skipped + 1)); echo "SKIP $TEST_NAME $1: $2"; }
# check NAME command...: passes when the command exits 0
check() { local name=$1; shift; if "$@"; then ok "$name"; else bad "$name"; fi; }
# check_sh NAME 'shell expression': passes when the expression (evaluated here) is true; for
# compound conditions (`[ $rc -eq 1 ] && grep -q ...`), which `check` would split at the &&
check_sh() { if eval "$2"; then ok "$1"; else bad "$1"; fi; }

# need_py NAME MODULE...: true when $PY imports every MODULE; else prints one SKIP for NAME
# (a check or a whole section) and is false. Sections guarded by it must be leaves: nothing
# after them may use what they make.
need_py() {
  local name=$1; shift
  local mods; mods=$(IFS=,; echo "$*")
  if [ -x "$PY" ] && "$PY" -c "import ${mods:-sys}" 2>/dev/null; then return 0; fi
  skip "$name" "$PY cannot import ${mods:-itself} (bash scripts/deps.sh installs it)"
  return 1
}

# expect CODE NAME -- command...: exit status CODE and (for non-zero CODE) exactly one
# `error:` line on stderr; stdout is kept in $T/out and stderr in $T/err
expect() {
  local code=$1 name=$2; shift 3
  local rc
  "$@" >"$T/out" 2>"$T/err" </dev/null; rc=$?
  if [ "$rc" -ne "$code" ]; then bad "$name: exit $rc, want $code ($(head -c 600 "$T/err"))"; return 1; fi
  if [ "$code" -ne 0 ] && ! grep -q '^error: ' "$T/err"; then bad "$name: no error line ($(cat "$T/err"))"; return 1; fi
  if [ "$code" -ne 0 ] && [ "$(grep -c '^error: ' "$T/err")" -ne 1 ]; then bad "$name: more than one error line"; return 1; fi
  ok "$name"
}
# expect_error CODE NAME PATTERN -- command...: the strict failure form: exit CODE, stderr is
# exactly one line `error: ...PATTERN...`, nothing on stdout
expect_error() {
  local code=$1 name=$2 pat=$3; shift 4
  local rc
  "$@" >"$T/out" 2>"$T/err" </dev/null; rc=$?
  if [ "$rc" -eq "$code" ] && [ "$(wc -l < "$T/err")" -eq 1 ] && grep -q -- "^error: .*$pat" "$T/err" && [ ! -s "$T/out" ]; then
    ok "$name"; return 0
  fi
  bad "$name: exit $rc (want $code), stderr '$(head -c 300 "$T/err" | tr '\n' '|')', stdout $(wc -c < "$T/out") bytes"
  return 1
}
# err_has TEXT: the last expect's stderr contains TEXT
err_has() { grep -q -- "$1" "$T/err"; }

# numbers: approx A B TOL is |A - B| <= TOL; close A B REL is |A - B| <= REL * |B|
approx() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a != "" && b != "" && d <= t) }'; }
close() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a != "" && b != "" && d <= t * (b < 0 ? -b : b)) }'; }
# jfield JSON KEY: a number field of a one-line JSON object such as eval --json's (no python)
jfield() { sed -n 's/.*"'"$2"'": \([0-9.eE+-]*\).*/\1/p' <<<"$1"; }

# window_tokens L M S: how many tokens `lorac eval` scores in a document of L tokens with
# windows of at most M tokens every S (docs/numerics.md): window k covers [kS, min(kS+M, L)),
# the last window is the first that reaches L, and it scores [max(prev_end, kS+1), end)
window_tokens() {
  awk -v L="$1" -v M="$2" -v S="$3" 'BEGIN { n = 0; prev = 0; for (s = 0;; s += S) { e = s + M < L ? s + M : L;
    f = prev > s + 1 ? prev : s + 1; if (e > f) n += e - f; prev = e; if (e >= L) break } print n }'
}

# file kinds by their first 8 bytes
is_h5() { [ "$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')" = "894844460d0a1a0a" ]; }
is_png() { [ "$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a" ]; }
# no_leftovers DIR: no temporary file (*.tmp.*) of an atomic write is left in DIR
no_leftovers() { ! ls "$1" 2>/dev/null | grep -q '\.tmp\.'; }

test_summary() {
  echo "$pass passed, $fail failed, $skipped skipped"
  [ "$fail" -eq 0 ]
}

# tiny_vision_models: a tiny Llama ($T/llama) and SigLIP ($T/siglip), the caption demo images
# ($T/images) and 8 train / 4 eval caption records ($T/train.jsonl, $T/eval.jsonl); on failure
# a FAIL line with the reason, the summary line, exit 1
tiny_vision_models() {
  "${LORAC:-build/lorac}" make-tiny --out "$T/llama" --seed 7 >/dev/null 2>"$T/mk.err" &&
    "${LORAC:-build/lorac}" make-tiny --kind siglip --out "$T/siglip" --seed 3 >/dev/null 2>>"$T/mk.err" ||
    { bad "make-tiny: $(cat "$T/mk.err")"; test_summary; exit 1; }
  ln -s "$(pwd)/data/demo/captions/images" "$T/images"
  head -n 8 data/demo/captions/train.jsonl > "$T/train.jsonl"
  head -n 4 data/demo/captions/eval.jsonl > "$T/eval.jsonl"
}
