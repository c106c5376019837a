# demo_result.sh — sourced by scripts/demo.sh and scripts/demo_vision.sh: the before/after
# numbers of a run's metrics.jsonl and the lines that hold them against the demos' targets.
# metric KEY FILE first|last: KEY's value on its first or last line of FILE
metric() {
  local sel=(-m1)
  [ "$3" = last ] && sel=()
  grep "${sel[@]}" "\"$1\"" "$2" | tail -n 1 | sed -n "s/.*\"$1\": *\([-0-9.eE+]*\).*/\1/p"
}
# targets PPL_LABEL EXACT_LABEL PPL0 PPL1 EXACT0 EXACT1: perplexity down >= 10x, >= 80% exact
targets() {
  awk -v pl="$1" -v el="$2" -v a="$3" -v b="$4" -v x="$5" -v y="$6" 'BEGIN {
    printf "   %-18s %10.1f -> %-8.3g  (%.0fx lower; target >= 10x: %s)\n", pl, a, b, a / b, ((a / b >= 10) ? "met" : "NOT met")
    printf "   %-18s %9.1f%% -> %.1f%%     (target >= 80%%: %s)\n", el, 100 * x, 100 * y, ((y >= 0.8) ? "met" : "NOT met") }'
}
