"""Drives `make bench` (called by scripts/bench.sh, which holds the heavy-job lock): for each row
starts lorac (`lorac bench ... --interleave`) and the PyTorch baseline (scripts/bench_torch.py
--interleave) as two long-lived processes and makes them take turns step by step (the order
flips every iteration, so a drift in the machine's load hits both alike), then prints the
markdown table and appends every summary to build/bench/results.jsonl.

  bench_drive.py --lorac BIN --model DIR --vision DIR --out FILE [--rows lora eval siglip]
      (a row: lora, lora-all, lora-half, eval or siglip, optionally :fp32 or :bf16 for one precision)
                 [--precisions fp32 bf16] [--iters N] [--warmup N] [--tokens T] [--batch B] [--threads N]
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time

p = argparse.ArgumentParser()
p.add_argument("--lorac", required=True)
p.add_argument("--model", required=True)
p.add_argument("--vision", required=True)
p.add_argument("--out", required=True)
p.add_argument("--rows", nargs="+", default=["lora", "eval", "siglip"])
p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
p.add_argument("--iters", type=int, default=5)
p.add_argument("--warmup", type=int, default=1)
p.add_argument("--tokens", type=int, default=512)
p.add_argument("--batch", type=int, default=8)
p.add_argument("--threads", type=int, default=2)
a = p.parse_args()

OPENBLAS_OMP = "/usr/lib/x86_64-linux-gnu/openblas-openmp"
here = os.path.dirname(os.path.abspath(__file__))
log_dir = os.path.dirname(os.path.abspath(a.out))


class Proc:
    """One benchmark process speaking the --interleave protocol on its stdin/stdout."""

    def __init__(self, name, argv, env):
        self.name, self.argv = name, argv
        self.log = os.path.join(log_dir, name + ".log")
        print("+ " + " ".join(argv), file=sys.stderr, flush=True)
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(self.log, "w"),
                                  env=env, text=True, bufsize=1)
        self.error = None
        self.line()   # {"ready": true}: built and loaded

    def line(self):
        if self.error:
            return None
        s = self.p.stdout.readline()
        if not s:
            self.p.wait()
            err = open(self.log).read().strip().splitlines()
            self.error = f"exit {self.p.returncode}: " + (err[-1] if err else "no output")
            print(f"bench: {self.name} stopped ({self.error}); see {self.log}", file=sys.stderr, flush=True)
            return None
        return json.loads(s)

    def turn(self):
        if self.error:
            return None
        self.p.stdin.write("go\n")
        self.p.stdin.flush()
        return self.line()

    def summary(self):
        s = self.line()
        self.p.stdin.close()
        self.p.wait()
        return None if self.error else s


# the baseline's peak RSS (MB) measured on the 2-core machine at 512 tokens / batch 8; the
# driver starts it beside a live lorac process only when this much (+ 2.5 GB) is available
TORCH_PEAK_MB = {("lora", "fp32"): 13000, ("lora", "bf16"): 8000, ("eval", "fp32"): 6500, ("eval", "bf16"): 4000,
                 ("siglip", "fp32"): 1000, ("siglip", "bf16"): 1000}


def mem_available_mb():
    for line in open("/proc/meminfo"):
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) // 1024
    return 0


def turns(x, y):
    """warm-up + measured iterations, x and y taking turns (the order flips every iteration)"""
    for it in range(a.warmup + a.iters):
        for q in [q for q in ((x, y) if it % 2 == 0 else (y, x)) if q]:
            r = q.turn()
            if r:
                print(f"  {q.name:<28} iter {it}{' (warm-up)' if r['warmup'] else ''}: {r['sec']:.3f} s",
                      file=sys.stderr, flush=True)


def run_row(what, prec, sups):
    common = ["--iters", str(a.iters), "--warmup", str(a.warmup), "--interleave"]
    if what == "siglip":
        lo_args, to_args = ["--vision", a.vision, "--batch", str(a.batch)], ["--batch", str(a.batch)]
    else:
        lo_args, to_args = ["--model", a.model, "--tokens", str(a.tokens)], ["--tokens", str(a.tokens)]
    out = []
    for sup in sups:
        s = ["--supervised", sup] if sup else []
        env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
        lo = Proc(f"lorac-{what}-{prec}" + (f"-{sup}" if sup else ""),
                  [a.lorac, "bench", what, *lo_args, *s, "--precision", prec, *common], env)
        # the baseline's process only: the OpenMP OpenBLAS first on its library path, glibc's
        # transparent huge pages for malloc (its best setting here)
        tenv = dict(env, LD_LIBRARY_PATH=OPENBLAS_OMP + (":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else ""),
                    GLIBC_TUNABLES="glibc.malloc.hugetlb=1")
        tname = f"pytorch-{what}-{prec}" + (f"-{sup}" if sup else "")
        targv = ["/usr/bin/python3", os.path.join(here, "bench_torch.py"), what, *to_args, *s, "--precision", prec,
                 "--threads", str(a.threads), *common]
        need = TORCH_PEAK_MB[what, prec] + 2560   # + lorac's growth from loaded to its step's peak
        together = mem_available_mb() >= need
        if not together:   # lorac's turns first, then the baseline's, never both in memory
            print(f"bench: {mem_available_mb()} MB available, the baseline needs about {need} MB beside lorac: "
                  f"running them one after the other for this row", file=sys.stderr, flush=True)
            turns(lo, None)
            lo_sum = lo.summary()
        to = Proc(tname, targv, tenv)
        turns(lo, to) if together else turns(to, None)
        pair = []
        for q in (lo, to):
            r = (q.summary() if together or q is to else lo_sum) or \
                {"impl": q.name.split("-")[0], "bench": what, "precision": prec, "error": q.error}
            r["interleaved"] = together
            if sup:
                r.setdefault("supervised", sup)
            pair.append(r)
        with open(a.out, "a") as f:
            for r in pair:
                f.write(json.dumps(r) + "\n")
        out.append(pair)
    return out


def cpu_name():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


t_start, load_start = time.time(), open("/proc/loadavg").read().split()[:3]
rows = []
for spec in a.rows:   # lora | lora-all | lora-half | eval | siglip, each optionally :fp32 or :bf16
    name, _, only = spec.partition(":")
    what, _, sup = name.partition("-")
    if what not in ("lora", "eval", "siglip") or (sup and (what != "lora" or sup not in ("all", "half"))) or \
            only not in ("", "fp32", "bf16"):
        sys.exit(f"error: bench: unknown row '{spec}' (expected lora, lora-all, lora-half, eval or siglip, "
                 "optionally :fp32 or :bf16)")
    sups = [sup] if sup else ["all", "half"] if what == "lora" else [None]
    for prec in [only] if only else a.precisions:
        rows += run_row(what, prec, sups)

NAMES = {("lora", "all"): f"LoRA step, Llama-3.2-1B, r=16 all 7 projections, 1×{a.tokens} tokens, all supervised",
         ("lora", "half"): f"LoRA step, same, first half an unsupervised prompt",
         ("eval", None): f"eval forward + NLL, Llama-3.2-1B, {a.tokens}-token window",
         ("siglip", None): f"SigLIP-base-patch16-224 forward, batch {a.batch}"}
# the targets (lorac / PyTorch on the same BLAS; bf16 against bf16 autocast)
TARGET = {"fp32": 1.15, "bf16": 1.3}


def rate(r):
    if "error" in r:
        return "n/a"
    u = "tok/s" if r["unit"] == "tokens/s" else "img/s"
    return f"{r['per_s']:.1f} {u}" if r["per_s"] >= 10 else f"{r['per_s']:.2f} {u}"


def spread(r):
    return "" if "error" in r else f"{r['per_s_min']:.3g}–{r['per_s_max']:.3g}"


def gb(r):
    return "n/a" if "error" in r else f"{r['peak_rss_mb'] / 1024:.1f} GB"


print()
print(f"`make bench`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(t_start))}, {cpu_name()}, "
      f"{os.cpu_count()} cores, {a.threads} threads, {a.iters} measured iterations after {a.warmup} warm-up, "
      f"lorac and PyTorch taking turns step by step; load average at start {' '.join(load_start)}, at end "
      f"{' '.join(open('/proc/loadavg').read().split()[:3])}")
print()
print("| benchmark | precision | lorac (median) | PyTorch (median) | ratio | target | lorac min–max | PyTorch min–max "
      "| % of plain GEMM | peak RSS lorac / PyTorch |")
print("|---|---|---|---|---|---|---|---|---|---|")
ORDER = list(NAMES)
prev = None
for lo, to in sorted(rows, key=lambda p: (ORDER.index((p[0]["bench"], p[0].get("supervised") if p[0]["bench"] == "lora"
                                                                                       else None)), p[0]["precision"] != "fp32")):
    key = (lo["bench"], lo.get("supervised") if lo["bench"] == "lora" else None)
    name = NAMES[key] if key != prev else "″"
    prev = key
    if not lo.get("interleaved", True):
        name += " †"
    prec = lo["precision"]
    tname = "PyTorch fp32" if prec == "fp32" else "PyTorch bf16 autocast"
    ok = "error" not in lo and "error" not in to
    ratio = lo["per_s"] / to["per_s"] if ok else float("nan")
    tgt = TARGET[prec]
    target = f"≥ {tgt}× {'✓' if ok and ratio >= tgt else '✗'}" if ok else f"≥ {tgt}×"
    if "error" in lo:
        gemm = "n/a"
    else:
        ceil = lo["sgemm_gflops"] if prec == "fp32" else lo["bf16_gemm_gflops"]
        gemm = f"{100 * lo['gflops'] / ceil:.0f}% of {'sgemm' if prec == 'fp32' else 'BF16 matmul'} ({ceil:.0f} GF/s)"
    print(f"| {name} | {prec} | {rate(lo)} | {rate(to)} ({tname}) | {f'{ratio:.2f}×' if ok else 'n/a'} | {target} | {spread(lo)} | "
          f"{spread(to)} | {gemm} | {gb(lo)} / {gb(to)} |")
print()
blas = {r.get("blas") for pair in rows for r in pair if "error" not in r}
print(f"OpenBLAS mapped by the processes: {', '.join(sorted(blas))}")
for pair in rows:
    for r in pair:
        if "error" in r:
            print(f"{r['impl']} {r['bench']} {r['precision']}: not measured ({r['error']})")
if any(not r.get("interleaved", True) for pair in rows for r in pair):
    print("† too little memory to hold both processes: lorac's iterations ran first, then PyTorch's")
print(f"(all summaries: {a.out}; per-process logs beside it; total {time.time() - t_start:.0f} s)")
if len(blas) > 1:
    sys.exit("bench: lorac and PyTorch mapped different OpenBLAS builds")
