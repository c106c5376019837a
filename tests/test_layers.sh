#!/usr/bin/env bash
# test_layers.sh — the include direction of the layers (scripts/check_layers.sh): the tree
# passes, and a copy of it with one include pointing up, one include of no layer, or one long
# function without its reason fails naming the file and line.
set -uo pipefail
cd "$(dirname "$0")/.."
TEST_NAME=test_layers.sh
source tests/lib.sh
T=$(scratch_dir test_layers)

bash scripts/check_layers.sh >"$T/out" 2>&1
rc=$?
check_sh "the tree keeps the layer order (autograd < model < data < eval < train < cli)" \
  '[ $rc -eq 0 ] && grep -q "^layers ok: autograd model data eval train cli " "$T/out"'
[ $rc -eq 0 ] || sed 's/^/  /' "$T/out" | head -20

# a copy of the layer folders and the Makefile to break on purpose
copy_tree() {
  rm -rf "$T/tree" && mkdir -p "$T/tree"
  cp Makefile "$T/tree/"
  for d in $(sed -n 's/^MODULES *= *//p' Makefile); do mkdir -p "$T/tree/$d" && cp "$d"/*.[ch] "$T/tree/$d/"; done
}
copy_tree
sed -i '0,/#include "util.h"/s//#include "util.h"\n#include "trainer.h"/' "$T/tree/model/chat.c"
line=$(grep -n '#include "trainer.h"' "$T/tree/model/chat.c" | cut -d: -f1)
bash scripts/check_layers.sh "$T/tree" >"$T/out" 2>&1
rc=$?
check_sh "model/chat.c including train's trainer.h fails, naming file, line and both layers" \
  '[ $rc -eq 1 ] && grep -q "^error: model/chat.c:$line: layer model includes \"trainer.h\" of layer train above it" "$T/out"'

copy_tree
echo '#include "nowhere.h"' >>"$T/tree/data/batch.h"
bash scripts/check_layers.sh "$T/tree" >"$T/out" 2>&1
rc=$?
check_sh "an include of a header in no layer fails" \
  '[ $rc -eq 1 ] && grep -q "^error: data/batch.h:[0-9]*: includes \"nowhere.h\", which is in no layer folder" "$T/out"'

copy_tree
{ echo; echo "int long_one(int x) {"; for i in $(seq 125); do echo "    x += $i;"; done; echo "    return x;"; echo "}"; } >>"$T/tree/eval/ppl.c"
bash scripts/check_layers.sh "$T/tree" >"$T/out" 2>&1
rc=$?
check_sh "a function over 120 lines with no reason fails" \
  '[ $rc -eq 1 ] && grep -q "^error: eval/ppl.c:[0-9]*: long_one() is 128 lines, over 120" "$T/out"'
sed -i 's|^int long_one(int x) {|// long: a test of the reason line\n&|' "$T/tree/eval/ppl.c"
bash scripts/check_layers.sh "$T/tree" >"$T/out" 2>&1
rc=$?
check_sh "the same function with a 'long:' reason above it passes and is listed" \
  '[ $rc -eq 0 ] && grep -q "^note: eval/ppl.c:[0-9]*: long_one() is 128 lines" "$T/out"'
test_summary
