#!/usr/bin/env bash
# test_tokenize.sh — `lorac tokenize` end to end: ids (references from HF tokenizers, made by
# tests/gen_tokenizer.mjs' setup), --bos, --chat, stdin lines, special-token text, and errors.
set -uo pipefail
cd "$(dirname "$0")/.."
LORAC=${LORAC:-build/lorac}
TOKENIZER_DIR=${TOKENIZER_DIR:-.cache/tokenizer}
BUILD=${BUILD:-build}
tmp="$BUILD/tmp/test_tokenize"
rm -rf "$tmp" && mkdir -p "$tmp/model" "$tmp/broken"
ln -s "$(cd "$TOKENIZER_DIR" && pwd)/tokenizer.json" "$tmp/model/tokenizer.json"
cp "$TOKENIZER_DIR/tokenizer_config.json" "$tmp/model/" 2>/dev/null || true
head -c 1000 "$TOKENIZER_DIR/tokenizer.json" > "$tmp/broken/tokenizer.json"
M="$tmp/model"
passed=0; failed=0
ok() { passed=$((passed + 1)); }
bad() { failed=$((failed + 1)); echo "FAIL test_tokenize.sh: $*"; }
expect() {   # expect NAME WANT -- command...
  local name=$1 want=$2; shift 3
  local got; got=$("$@" 2>"$tmp/err"); local rc=$?
  if [ "$rc" -eq 0 ] && [ "$got" = "$want" ]; then ok; else bad "$name: rc $rc, got '$got', want '$want' ($(head -c 300 "$tmp/err"))"; fi
}

expect plain "9906 1917" -- "$LORAC" tokenize --model "$M" "Hello world"
expect bos "128000 9906 1917" -- "$LORAC" tokenize --model "$M" --bos "Hello world"
expect special "128009 87" -- "$LORAC" tokenize --model "$M" "<|eot_id|>x"
expect unicode "3458 38672 588 53050 105180 102158 91416" -- "$LORAC" tokenize --model "$M" "naïve café 日本語 😀"
expect whitespace "220 1280 16243 28208 256" -- "$LORAC" tokenize --model "$M" "$(printf '  indented\tline  ')"
expect chat "128000 128006 882 128007 271 6151 128009 128006 78191 128007 271" -- "$LORAC" tokenize --model "$M" --chat "  hi "
expect chat_bos "128000 128006 882 128007 271 6151 128009 128006 78191 128007 271" -- "$LORAC" tokenize --model "$M" --chat --bos "hi"
expect empty "" -- "$LORAC" tokenize --model "$M" ""

# stdin: one line of ids per line, without the newline; empty lines give empty lines
got=$(printf 'Hello world\n\n<|eot_id|>x\nIT'"'"'S 1234567' | "$LORAC" tokenize --model "$M" --bos); rc=$?
want=$(printf '128000 9906 1917\n128000\n128000 128009 87\n128000 964 13575 220 4513 10961 22')
if [ "$rc" -eq 0 ] && [ "$got" = "$want" ]; then ok; else bad "stdin: rc $rc, got '$got'"; fi
n=$(printf 'a\nb\nc\n' | "$LORAC" tokenize --model "$M" | wc -l)
[ "$n" -eq 3 ] && ok || bad "stdin: $n lines for 3 input lines"

# CRLF line ends are line ends (as Python's text-mode stdin reads them); a lone \r is text
got=$(printf 'a b\r\nx\r' | "$LORAC" tokenize --model "$M"); rc=$?
want=$(printf '64 293\n87 201')
if [ "$rc" -eq 0 ] && [ "$got" = "$want" ]; then ok; else bad "stdin CRLF: rc $rc, got '$got', want '$want'"; fi

# invalid UTF-8 does not crash; it encodes as its U+FFFD repair
got=$(printf 'a\xffb\xe2\x82' | "$LORAC" tokenize --model "$M"); rc=$?
want=$("$LORAC" tokenize --model "$M" "$(printf 'a\xef\xbf\xbdb\xef\xbf\xbd')")
if [ "$rc" -eq 0 ] && [ -n "$got" ] && [ "$got" = "$want" ]; then ok; else bad "invalid UTF-8: rc $rc, '$got' vs '$want'"; fi

# errors: usage -> 2, runtime -> 1, one `error:` line naming the problem
check_err() {   # check_err NAME RC PATTERN -- command...
  local name=$1 want_rc=$2 pat=$3; shift 4
  "$@" >"$tmp/out" 2>"$tmp/err" </dev/null; local rc=$?
  if [ "$rc" -eq "$want_rc" ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -q "^error: .*$pat" "$tmp/err" && [ ! -s "$tmp/out" ]; then ok
  else bad "$name: rc $rc (want $want_rc), stderr '$(cat "$tmp/err")'"; fi
}
check_err no_model 2 "--model" -- "$LORAC" tokenize "hi"
check_err bad_option 2 "--frobnicate" -- "$LORAC" tokenize --model "$M" --frobnicate "hi"
check_err two_texts 2 "TEXT" -- "$LORAC" tokenize --model "$M" "a" "b"
check_err no_tokenizer 1 "no tokenizer found" -- "$LORAC" tokenize --model "$tmp" "hi"
check_err broken_json 1 "broken/tokenizer.json" -- "$LORAC" tokenize --model "$tmp/broken" "hi"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
