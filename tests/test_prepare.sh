#!/usr/bin/env bash
# test_prepare.sh — `lorac prepare CONFIG.yaml [key=value ...] --out FILE.h5` end to end: the
# demo config on a make-tiny model, --out anywhere among the overrides, deterministic bytes, the
# config's data options reaching the file, skip_bad_lines warnings, no output or temporary file
# after any failure (bad line, Ctrl-C), and usage (exit 2) / runtime (exit 1) errors. The file's
# contents against data_load of the same JSONL are checked in tests/test_h5data.c (no h5dump
# needed here: hdf5-tools is not guaranteed on CI).
set -uo pipefail
cd "$(dirname "$0")/.."
LORAC=${LORAC:-build/lorac}
T=${BUILD:-build}/tmp/prepare
rm -rf "$T" && mkdir -p "$T"
pass=0; fail=0
ok()  { pass=$((pass + 1)); [ -n "${TEST_VERBOSE:-}" ] && echo "ok $1"; return 0; }
bad() { fail=$((fail + 1)); echo "FAIL test_prepare.sh: $1"; }
check() { local name=$1; shift; if "$@"; then ok "$name"; else bad "$name"; fi; }

# expect CODE NAME -- command...: exit status CODE and (for 1/2) one `error:` line on stderr;
# stderr is kept in $T/err
expect() {
  local code=$1 name=$2; shift 3
  local rc
  "$@" >"$T/out" 2>"$T/err"; rc=$?
  if [ "$rc" -ne "$code" ]; then bad "$name: exit $rc, want $code ($(head -c 600 "$T/err"))"; return; fi
  if [ "$code" -ne 0 ] && ! grep -q '^error: ' "$T/err"; then bad "$name: no error line ($(cat "$T/err"))"; return; fi
  if [ "$code" -ne 0 ] && [ "$(grep -c '^error: ' "$T/err")" -ne 1 ]; then bad "$name: more than one error line"; return; fi
  ok "$name"
}
err_has() { grep -q -- "$1" "$T/err"; }
is_h5() { [ "$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')" = "894844460d0a1a0a" ]; }
no_leftovers() { ! ls "$1" 2>/dev/null | grep -q '\.tmp\.'; }

CFG=configs/tiny-lora.yaml
M="$T/model"
expect 0 "make-tiny" -- "$LORAC" make-tiny --out "$M"

# --- the demo config
expect 0 "prepare demo" -- "$LORAC" prepare "$CFG" model="$M" --out "$T/a.h5"
check "output is HDF5" is_h5 "$T/a.h5"
check "reports records" err_has "1000 records"
check "reports tokens and counters" err_has "tokens (skipped 0 bad lines, dropped 0 over max_seq_len, truncated 0)"
check "reports throughput" grep -qE '[0-9.]+ examples/s, [0-9.]+ MB/s' "$T/err"
check "nothing on stdout" test ! -s "$T/out"
expect 0 "--out first" -- "$LORAC" prepare --out "$T/b.h5" "$CFG" model="$M"
check "same input, same bytes" cmp -s "$T/a.h5" "$T/b.h5"
expect 0 "--out between overrides" -- "$LORAC" prepare "$CFG" data.max_seq_len=256 --out="$T/c.h5" model="$M"
check "--out= form, same bytes" cmp -s "$T/a.h5" "$T/c.h5"
expect 0 "--no-compress" -- "$LORAC" prepare "$CFG" model="$M" --out "$T/raw.h5" --no-compress
check "uncompressed is larger" test "$(stat -c %s "$T/raw.h5")" -gt "$(stat -c %s "$T/a.h5")"

# the config's data options reach the file (string attributes are stored verbatim)
expect 0 "alpaca_classic" -- "$LORAC" prepare "$CFG" model="$M" data.template=alpaca_classic data.train_on_prompt=true --out "$T/cl.h5"
check "template recorded" grep -qa 'alpaca_classic' "$T/cl.h5"
check "other template, other bytes" bash -c "! cmp -s '$T/a.h5' '$T/cl.h5'"
expect 0 "max_seq_len truncate" -- "$LORAC" prepare "$CFG" model="$M" data.max_seq_len=40 data.truncation=truncate --out "$T/tr.h5"
check "truncated counted" grep -qE 'dropped [0-9]+ over max_seq_len, truncated [1-9][0-9]*\)' "$T/err"
expect 0 "max_seq_len drop" -- "$LORAC" prepare "$CFG" model="$M" data.max_seq_len=40 --out "$T/dr.h5"
check "dropped counted" grep -qE 'dropped [1-9][0-9]* over max_seq_len, truncated 0\)' "$T/err"

# --- bad lines
printf '{"text": "one"}\n{"text": 5}\n{"text": "three"}\nnot json\n' > "$T/bad.jsonl"
expect 1 "bad line" -- "$LORAC" prepare "$CFG" model="$M" data.train="$T/bad.jsonl" --out "$T/bad.h5"
check "bad line names file:line" err_has "bad.jsonl:2"
check "no output after a bad line" test ! -e "$T/bad.h5"
expect 0 "skip_bad_lines" -- "$LORAC" prepare "$CFG" model="$M" data.train="$T/bad.jsonl" data.skip_bad_lines=true --out "$T/skip.h5"
check "skip warnings" test "$(grep -c '^warning: skipped .*bad.jsonl:[24]' "$T/err")" -eq 2
check "skip counted" err_has "2 records, .* (skipped 2 bad lines"

# --- Ctrl-C: nothing written, no temporary file left
python_free_gen() { local n=$1 i; for ((i = 0; i < n; i++)); do
  printf '{"instruction": "Write item %d of a long list about tokenizers and HDF5 files.", "input": "", "output": "Item %d: streaming writers keep memory flat while the file grows."}\n' "$i" "$i"; done; }
python_free_gen 40000 > "$T/big.jsonl"
"$LORAC" prepare "$CFG" model="$M" data.train="$T/big.jsonl" --out "$T/int.h5" 2>"$T/interr" &
pid=$!
for _ in $(seq 200); do ls "$T"/int.h5.tmp.* >/dev/null 2>&1 && break; sleep 0.1; done
kill -INT "$pid" 2>/dev/null
wait "$pid"; rc=$?
check "Ctrl-C: exit 1 (got $rc)" test "$rc" -eq 1
check "Ctrl-C: error line" grep -q '^error: .*interrupted' "$T/interr"
check "Ctrl-C: no output" test ! -e "$T/int.h5"
check "no temporary files left" no_leftovers "$T"
rm -f "$T/big.jsonl"

# --- usage errors (exit 2)
expect 2 "no arguments" -- "$LORAC" prepare
expect 2 "missing --out" -- "$LORAC" prepare "$CFG" model="$M"
expect 2 "--out without a value" -- "$LORAC" prepare "$CFG" model="$M" --out
expect 2 "unknown option" -- "$LORAC" prepare "$CFG" --bogus --out "$T/x.h5"
expect 2 "two configs" -- "$LORAC" prepare "$CFG" other.yaml --out "$T/x.h5"
expect 0 "--help" -- "$LORAC" prepare --help
check "help on stdout" grep -q 'usage: lorac prepare' "$T/out"

# --- runtime errors (exit 1)
expect 1 "missing config" -- "$LORAC" prepare "$T/nope.yaml" --out "$T/x.h5"
check "names the config" err_has "nope.yaml"
expect 1 "unknown key" -- "$LORAC" prepare "$CFG" model="$M" data.bogus=1 --out "$T/x.h5"
check "names the key" err_has "data.bogus"
expect 1 "missing data file" -- "$LORAC" prepare "$CFG" model="$M" data.train="$T/none.jsonl" --out "$T/x.h5"
check "names the data file" err_has "none.jsonl"
expect 1 "missing model" -- "$LORAC" prepare "$CFG" model="$T/nomodel" --out "$T/x.h5"
expect 1 "already prepared" -- "$LORAC" prepare "$CFG" model="$M" data.train="$T/a.h5" --out "$T/x.h5"
check "says HDF5" err_has "already prepared"
expect 1 "projector mode, missing vision model" -- "$LORAC" prepare configs/tiny-projector.yaml model="$M" vision.model="$T/novision" --out "$T/x.h5"
check "names the vision folder" err_has "novision"   # projector mode itself: tests/test_captions.sh
expect 1 "output folder missing" -- "$LORAC" prepare "$CFG" model="$M" --out "$T/no/such/dir/x.h5"
check "names the output" err_has "no/such/dir/x.h5"
cp data/demo/train.jsonl "$T/same.jsonl"
expect 1 "--out is data.train" -- "$LORAC" prepare "$CFG" model="$M" data.train="$T/same.jsonl" --out "$T/same.jsonl"
check "data.train untouched" cmp -s data/demo/train.jsonl "$T/same.jsonl"
check "no output on errors" test ! -e "$T/x.h5"
check "still no temporary files" no_leftovers "$T"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
