#!/usr/bin/env bash
# scripts/fuzz.sh NAME... — runs each libFuzzer harness build-fuzz/fuzz_NAME for FUZZ_TIME seconds
# (default 60), one after the other (one process: the machine is shared), on a scratch copy of its
# committed seeds (tests/fuzz/corpus/NAME; new inputs libFuzzer finds stay in build-fuzz/corpus/NAME
# and are not committed) plus the regression inputs. A crash, leak, sanitizer report, out-of-memory
# (> 2 GB) or timeout (> 10 s per input) leaves its input in build-fuzz/artifacts/NAME/ and makes
# the script exit 1; fix the bug, then commit the input to tests/fuzz/regressions/NAME/ so
# `make test` replays it forever. Prints one line per harness: executions, exec/s, coverage.
# FUZZ_ARGS adds libFuzzer flags (e.g. FUZZ_ARGS=-seed=1).
set -uo pipefail
cd "$(dirname "$0")/.."
FUZZ_BUILD=${FUZZ_BUILD:-build-fuzz}
FUZZ_TIME=${FUZZ_TIME:-60}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# one thread: OpenMP/OpenBLAS pools would only slow a fuzzer down on a shared machine
export OMP_NUM_THREADS=1
[ $# -gt 0 ] || set -- $(ls tests/fuzz/fuzz_*.c | sed 's|.*/fuzz_||; s|\.c$||')
failed=0
summary=()
for name in "$@"; do
  bin=$FUZZ_BUILD/fuzz_$name
  [ -x "$bin" ] || { echo "fuzz: $bin is not built (make fuzz-build)" >&2; exit 2; }
  work=$FUZZ_BUILD/corpus/$name art=$FUZZ_BUILD/artifacts/$name/ log=$FUZZ_BUILD/logs/$name.log
  mkdir -p "$work" "$art" "$(dirname "$log")"
  cp -n tests/fuzz/corpus/"$name"/* "$work"/ 2>/dev/null || true
  dirs=("$work")
  [ -d tests/fuzz/regressions/$name ] && dirs+=(tests/fuzz/regressions/$name)
  dict=()
  [ -f tests/fuzz/$name.dict ] && dict=(-dict=tests/fuzz/$name.dict)
  # libhdf5 (not ours, not instrumented) mallocs what a corrupt object header claims (4 GB, 3 PB)
  # while opening a file, and fails (or leaks a few bytes, tests/fuzz/hdf5.supp) when that malloc
  # returns NULL. For the HDF5 harnesses huge mallocs return NULL instead of stopping the run; lorac's
  # own allocations go through xmalloc, which aborts on NULL, so its huge sizes are still found
  # (and its extents are checked before allocating: h5u_check_extent).
  extra=() env=()
  case $name in
    h5data|featcache)
      extra=(-malloc_limit_mb=65536)
      env=(ASAN_OPTIONS="$ASAN_OPTIONS:allocator_may_return_null=1" LSAN_OPTIONS=suppressions=tests/fuzz/hdf5.supp) ;;
  esac
  echo "== fuzz_$name: ${FUZZ_TIME}s" >&2
  env "${env[@]}" "$bin" -max_total_time="$FUZZ_TIME" -timeout=10 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
      -artifact_prefix="$art" "${dict[@]}" "${extra[@]}" ${FUZZ_ARGS:-} "${dirs[@]}" >"$log" 2>&1
  rc=$?
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  speed=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
  line=$(printf 'fuzz_%-12s %10s execs %7s exec/s  %s' "$name" "${execs:-?}" "${speed:-?}" "${cov:-}")
  if [ "$rc" -ne 0 ]; then
    line="$line  FOUND: $(grep -m1 -E 'ERROR: |SUMMARY: |runtime error|fuzz_[a-z]+: ' "$log" | head -c 200) (see $log, $art)"
    failed=1
  fi
  summary+=("$line")
  echo "$line" >&2
done
echo "== summary"
printf '%s\n' "${summary[@]}"
exit $failed
