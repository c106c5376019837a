#!/usr/bin/env bash
# Runs every test program (build/tests/test_*) and shell test (tests/test_*.sh), adds up their
# `N passed, N failed, N skipped` lines and ends with the total on a line of its own. Shows the
# FAIL and SKIP lines (a SKIP names a check that could not run here, and why). Exit 1 on any
# failure; under CI=true a skipped check is a failure too (CI must run every check).
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
export BUILD LORAC="$BUILD/lorac" TOKENIZER_DIR=.cache/tokenizer
passed=0; failed=0; skipped=0
run_one() {
  local name=$1; shift
  local out rc t0=$SECONDS
  out=$("$@" 2>&1); rc=$?
  local line
  line=$(printf '%s\n' "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$' | tail -1)
  printf '%s\n' "$out" | grep -E '^(FAIL|SKIP|ok) '
  if [ -z "$line" ]; then
    printf '%s\n' "$out" | tail -20
    echo "FAIL $name: exited $rc without a summary line"
    failed=$((failed + 1)); return
  fi
  local p f s
  read -r p _ f _ s _ <<<"${line//,/}"
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
    printf '%s\n' "$out" | tail -20
    echo "FAIL $name: exited $rc"; f=1
  fi
  passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
  printf '%-28s %4d passed, %d failed, %d skipped  (%ds)\n' "$name" "$p" "$f" "$s" $((SECONDS - t0))
}
for t in "$BUILD"/tests/test_*; do
  [ -x "$t" ] || continue
  run_one "$(basename "$t")" "$t"
done
for t in tests/test_*.sh; do
  [ -f "$t" ] || continue
  run_one "$(basename "$t")" bash "$t"
done
status=0
[ "$failed" -eq 0 ] || status=1
if [ "${CI:-}" = true ] && [ "$skipped" -gt 0 ]; then
  echo "FAIL CI=true: $skipped skipped check(s) (see the SKIP lines above); CI must run every check (bash scripts/deps.sh installs what they need)"
  status=1
fi
echo "$passed passed, $failed failed, $skipped skipped"
exit $status
