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
head -c 1000 "$TOKENIZER_DIR/tokenizer.json" > "$tmp/broken/tokenizer.json"
M="$tmp/model"
source tests/lib.sh
# scripts/fetch_tokenizer.sh always fetches tokenizer_config.json next to tokenizer.json
check "tokenizer_config.json copied" cp "$TOKENIZER_DIR/tokenizer_config.json" "$tmp/model/"
expect_ids() {   # expect_ids NAME WANT -- command...: exit 0 printing exactly WANT
  local name=$1 want=$2; shift 3
  local got; got=$("$@" 2>"$tmp/err"); local rc=$?
  if [ "$rc" -eq 0 ] && [ "$got" = "$want" ]; then ok; else bad "$name: rc $rc, got '$got', want '$want' ($(head -c 300 "$tmp/err"))"; fi
}

expect_ids plain "9906 1917" -- "$LORAC" tokenize --model "$M" "Hello world"
expect_ids bos "128000 9906 1917" -- "$LORAC" tokenize --model "$M" --bos "Hello world"
expect_ids special "128009 87" -- "$LORAC" tokenize --model "$M" "<|eot_id|>x"
expect_ids unicode "3458 38672 588 53050 105180 102158 91416" -- "$LORAC" tokenize --model "$M" "naïve café 日本語 😀"
expect_ids whitespace "220 1280 16243 28208 256" -- "$LORAC" tokenize --model "$M" "$(printf '  indented\tline  ')"
expect_ids chat "128000 128006 882 128007 271 6151 128009 128006 78191 128007 271" -- "$LORAC" tokenize --model "$M" --chat "  hi "
expect_ids chat_bos "128000 128006 882 128007 271 6151 128009 128006 78191 128007 271" -- "$LORAC" tokenize --model "$M" --chat --bos "hi"
expect_ids empty "" -- "$LORAC" tokenize --model "$M" ""

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

# errors: usage -> 2, runtime -> 1, one `error:` line naming the problem, nothing on stdout
T=$tmp   # expect_error keeps stdout and stderr in $T
expect_error 2 no_model "--model" -- "$LORAC" tokenize "hi"
expect_error 2 bad_option "--frobnicate" -- "$LORAC" tokenize --model "$M" --frobnicate "hi"
expect_error 2 two_texts "TEXT" -- "$LORAC" tokenize --model "$M" "a" "b"
expect_error 1 no_tokenizer "no tokenizer found" -- "$LORAC" tokenize --model "$tmp" "hi"
expect_error 1 broken_json "broken/tokenizer.json" -- "$LORAC" tokenize --model "$tmp/broken" "hi"

test_summary
