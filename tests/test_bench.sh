#!/usr/bin/env bash
# test_bench.sh — `lorac bench` on `make-tiny` models, seconds only: the JSON it prints (keys,
# units, the summary's median/min/max agree with the per-iteration times, the --interleave
# turn protocol) and strict option parsing (every bad number, unknown or misplaced option is a
# usage error: exit 2 with one `error:` line). Never timing: speed lives in `make bench`.
set -uo pipefail
cd "$(dirname "$0")/.."
LORAC=${LORAC:-build/lorac}
source tests/lib.sh
T=$(scratch_dir test_bench)
PY=/usr/bin/python3

M=$T/tiny
V=$T/vit
if ! "$LORAC" make-tiny --out "$M" >/dev/null 2>"$T/mk.err" ||
   ! "$LORAC" make-tiny --kind siglip --out "$V" >/dev/null 2>>"$T/mk.err"; then
  bad "make-tiny: $(cat "$T/mk.err")"; test_summary; exit 1
fi

# summary_ok FILE KEY=VALUE...: the last line of FILE is a summary object whose per-iteration
# times give its median/min/max and rates, with the given fields (numbers compared exactly)
summary_ok() {
  "$PY" - "$@" <<'PY'
import json, math, statistics, sys
lines = open(sys.argv[1]).read().splitlines()
s = json.loads(lines[-1])
want = dict(kv.split("=", 1) for kv in sys.argv[2:])
bad = []
for k, v in want.items():
    got = s.get(k)
    if str(got) != v:
        bad.append(f"{k}={got!r}, want {v}")
if s["bench"] != "gemm":
    t = s["sec_all"]
    if len(t) != s["iters"]: bad.append("sec_all has %d entries for %d iters" % (len(t), s["iters"]))
    # times print with 6 significant digits: the summary agrees with its iterations within rounding
    for k, v in (("sec", statistics.median(t)), ("sec_min", min(t)), ("sec_max", max(t))):
        if not math.isclose(s[k], v, rel_tol=1e-5): bad.append(f"{k}={s[k]} but the iterations give {v}")
    n = s["batch"] if s["bench"] == "siglip" else s["tokens"]
    for k, d in (("per_s", "sec"), ("per_s_min", "sec_max"), ("per_s_max", "sec_min")):
        if not math.isclose(s[k], n / s[d], rel_tol=2e-5): bad.append(f"{k}={s[k]} is not {n}/{d}")
    if s["unit"] != ("images/s" if s["bench"] == "siglip" else "tokens/s"): bad.append("unit " + s["unit"])
    for k in ("gflops", "sgemm_gflops", "bf16_gemm_gflops", "peak_rss_mb"):
        if not s[k] > 0 and not (k.endswith("gemm_gflops") and want.get(k) == "0"): bad.append(f"{k}={s[k]} not > 0")
    if "openblas-openmp" not in s["blas"]: bad.append("blas " + s["blas"])
    if "libdnnl" not in s["dnnl"]: bad.append("dnnl " + s["dnnl"])
for m in bad: print(m)
sys.exit(1 if bad else 0)
PY
}
# loss_near_uniform FILE: a random tiny model's mean NLL is within 0.5 nats of ln(vocab size)
# (its logits are nearly uniform), so the bench computed a real loss over the supervised tokens
loss_near_uniform() {
  "$PY" -c 'import json, math, sys
s = json.loads(open(sys.argv[1]).read().splitlines()[-1])
v = json.load(open(sys.argv[2] + "/config.json"))["vocab_size"]
sys.exit(0 if abs(s["loss"] - math.log(v)) < 0.5 else "loss %g, ln V %g" % (s["loss"], math.log(v)))' "$1" "$M"
}

# --- output of every benchmark
expect 0 "eval runs" -- "$LORAC" bench eval --model "$M" --tokens 16 --iters 3 --warmup 0
cp "$T/out" "$T/eval.json"
check "eval prints one line" [ "$(wc -l <"$T/eval.json")" -eq 1 ]
check "eval summary" summary_ok "$T/eval.json" impl=lorac bench=eval precision=fp32 iters=3 tokens=16 n_supervised=15
check "eval loss is the mean NLL" loss_near_uniform "$T/eval.json"

expect 0 "lora half runs" -- "$LORAC" bench lora --model "$M" --tokens 16 --iters 2 --rank 4 --supervised half
cp "$T/out" "$T/lora.json"
check "lora half summary" summary_ok "$T/lora.json" bench=lora supervised=half tokens=16 n_supervised=7 iters=2
check "lora loss is the mean NLL" loss_near_uniform "$T/lora.json"
expect 0 "lora all runs" -- "$LORAC" bench lora --model "$M" --tokens 8 --iters 1 --warmup 0
check "lora all summary" summary_ok "$T/out" bench=lora supervised=all tokens=8 n_supervised=7 iters=1
# the memory rows' flags (scripts/bench_mem.sh): checkpointing changes no loss; no ceilings
cp "$T/out" "$T/lora8.json"
expect 0 "lora --checkpointing --no-ceilings runs" -- "$LORAC" bench lora --model "$M" --tokens 8 --iters 1 --warmup 0 \
  --checkpointing --no-ceilings
check "lora --checkpointing summary" summary_ok "$T/out" bench=lora checkpointing=True ceiling_mb=0 sgemm_gflops=0 \
  bf16_gemm_gflops=0
check_sh "lora --checkpointing: the same loss" \
  "[ \"\$(grep -o '\"loss\": [^,]*' "$T/out")\" = \"\$(grep -o '\"loss\": [^,]*' "$T/lora8.json")\" ]"
expect 2 "--checkpointing is for bench lora" -- "$LORAC" bench eval --model "$M" --checkpointing

expect 0 "siglip runs" -- "$LORAC" bench siglip --vision "$V" --batch 2 --iters 2 --warmup 0
check "siglip summary" summary_ok "$T/out" bench=siglip batch=2 iters=2 unit=images/s

# bf16 mode (frozen weights and their matmuls in BF16): same output, same loss to bf16 accuracy
expect 0 "lora bf16 runs" -- "$LORAC" bench lora --model "$M" --tokens 16 --iters 2 --warmup 0 --precision bf16
check "lora bf16 summary" summary_ok "$T/out" bench=lora precision=bf16 tokens=16 n_supervised=15
check "lora bf16 loss is the mean NLL" loss_near_uniform "$T/out"
expect 0 "siglip bf16 runs" -- "$LORAC" bench siglip --vision "$V" --batch 2 --iters 1 --warmup 0 --precision bf16
check "siglip bf16 summary" summary_ok "$T/out" bench=siglip precision=bf16 batch=2

expect 0 "gemm runs" -- "$LORAC" bench gemm --tokens 4 --iters 2 --warmup 0
check "gemm summary" summary_ok "$T/out" bench=gemm tokens=4 iters=2
check "gemm ceilings" "$PY" -c 'import json, sys
s = json.load(open(sys.argv[1]))
sys.exit(0 if s["gemm_shape"] == [4, 2048, 8192] and s["sgemm_gflops"] > 0 and s["bf16_gemm_gflops"] > 0 else 1)' "$T/out"

# --interleave: ready, then one line per turn (warm-up marked), then the summary
printf 'go\ngo\ngo\n' | "$LORAC" bench eval --model "$M" --tokens 8 --iters 2 --warmup 1 --interleave >"$T/il.out" 2>"$T/il.err"
check "interleave exits 0" [ $? -eq 0 ]
check "interleave protocol" "$PY" -c 'import json, sys
l = [json.loads(x) for x in open(sys.argv[1])]
ok = (len(l) == 5 and l[0] == {"ready": True} and [x["iter"] for x in l[1:4]] == [0, 1, 2]
      and [x["warmup"] for x in l[1:4]] == [True, False, False] and l[4]["iters"] == 2
      and l[4]["sec_all"] == [l[2]["sec"], l[3]["sec"]])
sys.exit(0 if ok else 1)' "$T/il.out"
# the driver going away mid-run is a runtime error, not a hang or a half summary
expect 1 "interleave: stdin closed" -- bash -c "printf 'go\n' | '$LORAC' bench eval --model '$M' --tokens 8 --iters 2 --warmup 1 --interleave"
check "stdin closed names the iteration" err_has "stdin closed before iteration 1"
check "no summary after stdin closed" [ "$(grep -c '"impl"' "$T/out")" -eq 0 ]

# --- usage
expect 0 "--help" -- "$LORAC" bench --help
check "--help lists the benchmarks" grep -q "gemm|lora|eval|siglip|threads" "$T/out"

# --- threads: one product on one thread vs all threads, by size (autograd/blas.h's rule)
expect 0 "bench threads" -- "$LORAC" bench threads --iters 1
check "threads: one line per shape" [ "$(grep -c '"bench": "threads"' "$T/out")" -eq 12 ]
check "threads: times and the rule" /usr/bin/python3 -c '
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert all(r["one_thread_us"] > 0 and r["all_threads_us"] > 0 for r in rows)
assert [r["split_by_rule"] for r in rows] == sorted(r["split_by_rule"] for r in rows)   # small ones first
assert not rows[0]["split_by_rule"] and rows[-1]["split_by_rule"]' "$T/out"
expect 1 "missing model folder" -- "$LORAC" bench eval --model "$T/nope"

# usage_err NAME TEXT args...: exit 2, one error line that contains TEXT
usage_err() {
  local name=$1 text=$2; shift 2
  expect 2 "$name" -- "$LORAC" bench "$@"
  check "$name: message" err_has "$text"
}
usage_err "no benchmark" "expected gemm, lora, eval, siglip or threads"
usage_err "unknown benchmark" "unknown benchmark 'sgemm'" sgemm
usage_err "trailing garbage" "found '512x'" eval --model "$M" --tokens 512x
usage_err "exponent" "found '1e3'" eval --model "$M" --tokens 1e3
usage_err "leading space" "found ' 5'" eval --model "$M" --tokens " 5"
usage_err "plus sign" "found '+5'" eval --model "$M" --tokens +5
usage_err "empty number" "found ''" eval --model "$M" --tokens ""
usage_err "fraction" "found '2.5'" lora --model "$M" --rank 2.5
usage_err "tokens too small" "expected an integer in 2..65536, found '1'" eval --model "$M" --tokens 1
usage_err "tokens too large" "found '65537'" eval --model "$M" --tokens 65537
usage_err "tokens overflow" "found '99999999999999999999'" eval --model "$M" --tokens 99999999999999999999
usage_err "negative" "found '-5'" eval --model "$M" --tokens -5
usage_err "iters 0" "--iters: expected an integer in 1..10000, found '0'" gemm --iters 0
usage_err "warmup too large" "--warmup: expected an integer in 0..100, found '101'" gemm --warmup 101
usage_err "batch 0" "--batch: expected an integer in 1..1024, found '0'" siglip --vision "$V" --batch 0
usage_err "rank 0" "--rank: expected an integer in 1..1024, found '0'" lora --model "$M" --rank 0
usage_err "bad supervised" "expected one of all half, found 'some'" lora --model "$M" --supervised some
usage_err "bad precision" "expected one of fp32 bf16, found 'fp16'" eval --model "$M" --precision fp16
usage_err "unknown flag" "unknown option '--bogus'" eval --model "$M" --bogus 3
usage_err "missing value" "--iters needs a value" eval --model "$M" --iters
usage_err "given twice" "--tokens given twice" eval --model "$M" --tokens 8 --tokens 16
usage_err "option for another benchmark" "--rank does not apply to bench eval" eval --model "$M" --rank 4
usage_err "tokens for siglip" "--tokens does not apply to bench siglip" siglip --vision "$V" --tokens 8
usage_err "model for gemm" "--model does not apply to bench gemm" gemm --model "$M"
usage_err "missing --model" "--model DIR is required" lora
usage_err "missing --vision" "--vision DIR is required" siglip
usage_err "empty folder" "--model: empty folder name" eval --model ""

test_summary
