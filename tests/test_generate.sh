#!/usr/bin/env bash
# test_generate.sh — `lorac generate` end to end on a `make-tiny` model (real Llama 3
# tokenizer, random weights): greedy and seeded sampling are deterministic, stdout holds only
# the generated text, statistics go to stderr, bad options are usage errors (exit 2).
set -uo pipefail
cd "$(dirname "$0")/.."
LORAC=${LORAC:-build/lorac}
source tests/lib.sh
T=$(scratch_dir test_generate)

M=$T/tiny
if ! "$LORAC" make-tiny --out "$M" >/dev/null 2>"$T/mk.err"; then
  bad "make-tiny: $(cat "$T/mk.err")"; test_summary; exit 1
fi

# greedy twice: identical, exit 0, something generated, statistics on stderr only
gen() { "$LORAC" generate --model "$M" "$@"; }
gen --prompt Hello --temperature 0 --max-new-tokens 20 >"$T/g1.out" 2>"$T/g1.err"; rc1=$?
gen --prompt Hello --temperature 0 --max-new-tokens 20 >"$T/g2.out" 2>"$T/g2.err"; rc2=$?
check_sh "greedy exits 0" '[ $rc1 -eq 0 ] && [ $rc2 -eq 0 ]'
check_sh "greedy is deterministic" 'cmp -s "$T/g1.out" "$T/g2.out"'
check_sh "greedy generates text" '[ -s "$T/g1.out" ]'
check_sh "stats on stderr" 'grep -q "generated tokens: " "$T/g1.err" && grep -q "tokens/s" "$T/g1.err"'
check_sh "no stats on stdout" '! grep -q "tokens/s" "$T/g1.out"'
# the stop-free run generates exactly 20 tokens (or stops early at an EOS id)
check_sh "token count" 'grep -Eq "generated tokens: (20|1?[0-9] \(stop token\))" "$T/g1.err"'

# --chat: BOS, <|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|> + the assistant header = 11 tokens
gen --prompt Hello --chat --temperature 0 --max-new-tokens 8 >"$T/c1.out" 2>"$T/c1.err"; rc=$?
check_sh "chat exits 0" '[ $rc -eq 0 ] && grep -q "prompt tokens: 11," "$T/c1.err"'
gen --prompt Hello --temperature 0 --max-new-tokens 8 >/dev/null 2>"$T/p.err"
check_sh "plain prompt is BOS + Hello" 'grep -q "prompt tokens: 2," "$T/p.err"'

# seeded sampling: same seed same text, other seed (almost surely) other text
sample() { gen --prompt "Once upon a time" --temperature 1.0 --top-k 0 --top-p 1 --seed "$1" --max-new-tokens 24 2>/dev/null; }
sample 1 >"$T/s1a.out"; sample 1 >"$T/s1b.out"; sample 2 >"$T/s2.out"
check_sh "seeded sampling is deterministic" '[ -s "$T/s1a.out" ] && cmp -s "$T/s1a.out" "$T/s1b.out"'
check_sh "another seed samples differently" '! cmp -s "$T/s1a.out" "$T/s2.out"'
gen --prompt Hi --temperature 0.7 --top-k 40 --top-p 0.9 --seed 5 --max-new-tokens 8 >"$T/k1.out" 2>/dev/null; r1=$?
gen --prompt Hi --temperature=0.7 --top-k=40 --top-p=0.9 --seed=5 --max-new-tokens=8 >"$T/k2.out" 2>/dev/null; r2=$?
check_sh "top-k + top-p sampling, --opt=value form" '[ $r1 -eq 0 ] && [ $r2 -eq 0 ] && cmp -s "$T/k1.out" "$T/k2.out"'
gen --prompt Hi --temperature 0 --max-new-tokens 0 >"$T/z.out" 2>"$T/z.err"; rc=$?
check_sh "--max-new-tokens 0 generates nothing" '[ $rc -eq 0 ] && [ ! -s "$T/z.out" ]'

# usage errors: exit 2 with one `error:` line; nothing on stdout
usage() {
  local name=$1; shift
  "$LORAC" generate "$@" >"$T/u.out" 2>"$T/u.err"; local rc=$?
  if [ $rc -eq 2 ] && grep -q "^error: " "$T/u.err" && [ ! -s "$T/u.out" ]; then ok "$name"
  else bad "$name: exit $rc, stderr: $(head -c 300 "$T/u.err")"; fi
}
usage "no model" --prompt Hi
usage "no prompt" --model "$M"
usage "negative temperature" --model "$M" --prompt Hi --temperature -1
usage "temperature not a number" --model "$M" --prompt Hi --temperature warm
usage "temperature nan" --model "$M" --prompt Hi --temperature nan
usage "top-p zero" --model "$M" --prompt Hi --top-p 0
usage "top-p above one" --model "$M" --prompt Hi --top-p 1.5
usage "top-k negative" --model "$M" --prompt Hi --top-k -3
usage "top-k fractional" --model "$M" --prompt Hi --top-k 2.5
usage "max-new-tokens negative" --model "$M" --prompt Hi --max-new-tokens -1
usage "max-new-tokens trailing junk" --model "$M" --prompt Hi --max-new-tokens 10x
usage "seed negative" --model "$M" --prompt Hi --seed -4
usage "unknown option" --model "$M" --prompt Hi --bogus 1
usage "missing value" --model "$M" --prompt
usage "vision without image" --model "$M" --prompt Hi --vision "$M"

# runtime errors: exit 1 with one `error:` line naming the problem
"$LORAC" generate --model "$T/nope" --prompt Hi >/dev/null 2>"$T/e.err"; rc=$?
check_sh "missing model folder: exit 1 naming it" '[ $rc -eq 1 ] && grep -q "^error: .*nope" "$T/e.err"'
"$LORAC" generate --model "$M" --adapter "$T/ad" --prompt Hi >/dev/null 2>"$T/a.err"; rc=$?
check_sh "missing adapter folder: exit 1 naming it" '[ $rc -eq 1 ] && grep -q "^error: .*/ad/adapter_config.json" "$T/a.err"'

test_summary
