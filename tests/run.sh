#!/usr/bin/env bash
# Runs every test program (build/tests/test_*) and shell test (tests/test_*.sh), adds up
# their `N passed, N failed` lines and ends with the total. Exit 1 on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
export BUILD LORAC="$BUILD/lorac" TOKENIZER_DIR=.cache/tokenizer
passed=0; failed=0
run_one() {
  local name=$1; shift
  local out rc t0=$SECONDS
  out=$("$@" 2>&1); rc=$?
  local line
  line=$(printf '%s\n' "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed$' | tail -1)
  printf '%s\n' "$out" | grep -E '^(FAIL|ok) ' || true
  if [ -z "$line" ]; then
    printf '%s\n' "$out" | tail -20
    echo "FAIL $name: exited $rc without a summary line"
    failed=$((failed + 1)); return
  fi
  local p f
  p=${line%% passed*}; f=${line#*, }; f=${f%% failed*}
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
    printf '%s\n' "$out" | tail -20
    echo "FAIL $name: exited $rc"; f=1
  fi
  passed=$((passed + p)); failed=$((failed + f))
  printf '%-28s %4d passed, %d failed  (%ds)\n' "$name" "$p" "$f" $((SECONDS - t0))
}
for t in "$BUILD"/tests/test_*; do
  [ -x "$t" ] || continue
  run_one "$(basename "$t")" "$t"
done
for t in tests/test_*.sh; do
  [ -f "$t" ] || continue
  run_one "$(basename "$t")" bash "$t"
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
