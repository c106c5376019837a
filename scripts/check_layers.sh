#!/usr/bin/env bash
# check_layers.sh [ROOT] — the include direction of lorac's layers (README.md "Map of the code").
#
# The layers are the folders of the Makefile's MODULES, bottom to top:
#   autograd (utilities, MPI, tape, ops, optimizer) < model < data < eval < train < cli.
# A file may include headers of its own layer and of layers below it, never above: each
# `#include "NAME.h"` of a .c/.h file in a layer folder is looked up by name in the layer
# folders (the build's -I order) and must resolve to one, at or below the file's own.
# A quoted include that resolves to no layer header (nor a header beside the file) is an
# error too, so a new folder cannot slip past the check.
#
# Also: a function of a layer .c file longer than MAX_FN_LINES (120) lines must say why it
# stays whole: a comment line containing `long:` in the comment block right above it. One
# without is an error; those with one are listed (`note:`).
#
# Prints one `error: FILE:LINE: ...` line a violation and exits 1 on any; 0 and a summary
# line otherwise.
set -uo pipefail
ROOT=${1:-$(cd "$(dirname "$0")/.." && pwd)}
MAX_FN_LINES=${MAX_FN_LINES:-120}
cd "$ROOT" || { echo "error: cannot enter $ROOT"; exit 1; }
read -r -a LAYERS <<<"$(sed -n 's/^MODULES *= *//p' Makefile)"
if [ "${#LAYERS[@]}" -eq 0 ]; then echo "error: Makefile: no MODULES line (the layers)"; exit 1; fi

# header name -> layer index (the first folder of the -I order holding it)
declare -A where
for i in "${!LAYERS[@]}"; do
  for h in "${LAYERS[$i]}"/*.h; do
    [ -f "$h" ] || continue
    n=$(basename "$h")
    [ -n "${where[$n]:-}" ] || where[$n]=$i
  done
done

bad=0 files=0 incs=0
for i in "${!LAYERS[@]}"; do
  for f in "${LAYERS[$i]}"/*.[ch]; do
    [ -f "$f" ] || continue
    files=$((files + 1))
    while IFS=: read -r line name; do
      incs=$((incs + 1))
      j=${where[$name]:-}
      if [ -z "$j" ]; then
        [ -f "$(dirname "$f")/$name" ] && continue
        echo "error: $f:$line: includes \"$name\", which is in no layer folder (${LAYERS[*]})"
        bad=$((bad + 1))
      elif [ "$j" -gt "$i" ]; then
        echo "error: $f:$line: layer ${LAYERS[$i]} includes \"$name\" of layer ${LAYERS[$j]} above it (the order: ${LAYERS[*]})"
        bad=$((bad + 1))
      fi
    done < <(grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$f" | sed 's/^\([0-9]*\):[^"]*"\([^"]*\)".*/\1:\2/')
  done
done

# Functions over MAX_FN_LINES lines: a definition starts at a line in column 0 with a `(`
# (its signature, maybe continued on the next lines up to the `{`), and ends at the first line
# that begins with `}`. The reason is a `long:` in the comment block right above the signature.
long=0 reasoned=0
for i in "${!LAYERS[@]}"; do
  for f in "${LAYERS[$i]}"/*.c; do
    [ -f "$f" ] || continue
    out=$(awk -v max="$MAX_FN_LINES" -v file="$f" '
      /^\/\// { if (cend != NR - 1) chas = 0; cend = NR; if ($0 ~ /long:/) chas = 1; next }
      !infn && /^[A-Za-z_]/ && /\(/ && !/;[ \t]*$/ && !/=/ {
        hdr = NR; name = $0; sub(/\(.*/, "", name); n = split(name, w, /[ *]+/); name = w[n]
        reason = (cend == NR - 1 && chas)
      }
      !infn && hdr && /\{[ \t]*$/ { infn = 1; next }
      infn && /^\}/ {
        len = NR - hdr + 1
        if (len > max) printf "%s\t%d\t%s\t%d\t%d\n", file, hdr, name, len, reason
        infn = 0; hdr = 0
      }' "$f")
    [ -n "$out" ] || continue
    while IFS=$'\t' read -r file start name len reason; do
      long=$((long + 1))
      if [ "$reason" = 1 ]; then
        reasoned=$((reasoned + 1))
        echo "note: $file:$start: $name() is $len lines (its reason is written above it)"
      else
        echo "error: $file:$start: $name() is $len lines, over $MAX_FN_LINES with no reason written at its top (a comment line with 'long: why')"
        bad=$((bad + 1))
      fi
    done <<<"$out"
  done
done

if [ "$bad" -gt 0 ]; then exit 1; fi
echo "layers ok: ${LAYERS[*]} ($files files, $incs quoted includes, each at or below its file's layer); $long functions over $MAX_FN_LINES lines, all with a reason"
