#!/usr/bin/env bash
# test_contract.sh — acceptance-style checks of the user-facing reference (docs/) through the CLI
# only: safetensors outputs pass the reference reader's checks, model-folder variants (F16/BF16,
# shards, original/tokenizer.model only, untied lm_head, bos/eos lists) give the same numbers,
# eval's --json object and perplexity windows, batches in file order with dropped records, the
# learning-rate schedule formula (also after a resume that changes max_steps), merge, projector
# outputs (LLaVA names, projector_config.json), a full SigLIP folder, and one `error:` line with
# the right exit status for every failure.
# Python parts use Debian's /usr/bin/python3 with numpy (tests/fixtures_io.py reads and checks
# safetensors files); without them each such section prints one SKIP. No section uses anything
# a skippable section makes.
set -uo pipefail
cd "$(dirname "$0")/.."
source tests/lib.sh
L=${LORAC:-build/lorac}
L=$(cd "$(dirname "$L")" && pwd)/$(basename "$L")
T=$(cd "$(scratch_dir test_contract)" && pwd)
FXIO=tests/fixtures_io.py

# stok FILE: passes the reference reader's checks; its "name DTYPE shape" lines go to $T/keys.txt
stok() { "$PY" "$FXIO" check "$1" >"$T/keys.txt" 2>"$T/st.err" || { tail -1 "$T/st.err"; return 1; }; }
# evalj ARGS...: lorac eval --json on $T/doc.txt with the given model arguments
evalj() { $L eval --data "$T/doc.txt" --json "$@" 2>"$T/eval.err"; }

# --- models (no python)
$L make-tiny --out "$T/m32" --dtype f32 --seed 3 >/dev/null 2>"$T/mk.err" &&
  $L make-tiny --out "$T/mbf" --seed 3 >/dev/null 2>>"$T/mk.err" ||
  { bad "make-tiny: $(cat "$T/mk.err")"; test_summary; exit 1; }
printf 'The quick brown fox jumps over the lazy dog, again and again.\nA second line.\n' > "$T/doc.txt"
base=$(evalj --model "$T/m32")
check "eval --json exits 0" [ $? -eq 0 ]
check "eval --json prints exactly ppl, nll, tokens, documents ($base)" \
  grep -qE '^\{"ppl": [0-9.]+, "nll": [0-9.]+, "tokens": [0-9]+, "documents": 1\}$' <<<"$base"
# nll is printed with 6 decimals: ln(ppl) equals it within that rounding (5e-7) plus ppl's (negligible)
check "eval --json: ln(ppl) = nll" awk -v p="$(jfield "$base" ppl)" -v n="$(jfield "$base" nll)" \
  'BEGIN { d = log(p) - n; if (d < 0) d = -d; exit !(p > 0 && d <= 1e-6) }'
check "eval stdout is only the JSON line" [ "$(printf '%s\n' "$base" | wc -l)" -eq 1 ]
nll0=$(jfield "$base" nll); ntok=$(( $(jfield "$base" tokens) + 1 ))

# perplexity windows: scored tokens = positions p in [max(prev_end, kS+1), end)
for ms in "4 4" "6 4" "5 1" "8 3" "1024 512"; do
  set -- $ms
  want=$(window_tokens "$ntok" "$1" "$2")
  got=$(jfield "$(evalj --model "$T/m32" --max-length "$1" --stride "$2")" tokens)
  check "eval windows M=$1 S=$2 score $want tokens (got $got)" [ "$got" = "$want" ]
done

if need_py "reader checks of make-tiny outputs, .txt = text record" numpy; then
  check "make-tiny f32 passes the reader" stok "$T/m32/model.safetensors"
  check "make-tiny bf16 passes the reader" stok "$T/mbf/model.safetensors"
  check "make-tiny bf16 is BF16" grep -q "model.embed_tokens.weight BF16" "$T/keys.txt"
  # a .txt file is one text document: same as the JSONL text record holding the whole file
  "$PY" -c 'import json,sys; print(json.dumps({"text": open(sys.argv[1]).read()}))' "$T/doc.txt" > "$T/doc.jsonl"
  check ".txt equals the text record" [ "$($L eval --model "$T/m32" --data "$T/doc.jsonl" --json 2>/dev/null)" = "$base" ]
fi

# --- model-folder variants give the same numbers. Every variant is compared with an F32 folder
# holding exactly the values it holds: the original for lossless rewrites, a twin rounded
# through F16/BF16 (tests/model_variant.py --round) for the 16-bit ones. Weights are widened
# exactly and computed in fp32, so the printed results must be identical: a tolerance would
# have to stay below the 0.007 nats that separate this model's NLL from uniform logits (what a
# reader returning zeros gives), and identical output is the tightest check there is.
if need_py "model-folder variants" numpy; then
  for v in "f16sh:--dtype F16 --shards 3:f16twin:--round F16" "bf16:--dtype BF16:bf16twin:--round BF16" \
           "tiktoken:--tiktoken::" "untied:--untie::" "lists:--lists::"; do
    IFS=: read -r name opts twin twinopts <<<"$v"
    if ! "$PY" tests/model_variant.py "$T/m32" "$T/v_$name" $opts 2>"$T/v.err"; then bad "variant $name: $(tail -1 "$T/v.err")"; continue; fi
    want=$base
    if [ -n "$twin" ]; then
      "$PY" tests/model_variant.py "$T/m32" "$T/v_$twin" $twinopts 2>"$T/v.err" || { bad "variant $twin: $(tail -1 "$T/v.err")"; continue; }
      want=$(evalj --model "$T/v_$twin")
      check "variant $name: its F32 twin differs from the original (the rounding is real)" [ "$want" != "$base" ]
    fi
    out=$(evalj --model "$T/v_$name")
    if [ $? -ne 0 ]; then bad "variant $name: $(cat "$T/eval.err")"; continue; fi
    check "variant $name: same tokens and nll as its F32 reference ($out vs $want)" [ -n "$out" -a "$out" = "$want" ]
  done
  # an untied model reads lm_head.weight: a zero head gives the uniform distribution, ppl = the
  # vocabulary size (128256) up to the float32 rounding of the log-softmax (~1e-7 relative)
  "$PY" tests/model_variant.py "$T/m32" "$T/v_zero" --untie --zero-head
  out=$(evalj --model "$T/v_zero")
  check "untied lm_head.weight is used (ppl $(jfield "$out" ppl) = vocab size)" close "$(jfield "$out" ppl)" 128256 1e-6
fi

# --- training: file order, dropped records, schedule, outputs
cat > "$T/train.jsonl" <<'EOF'
{"text": "The quick brown fox jumps."}
{"text": "This record is far too long to fit into the sixteen token limit that we set for training here, so it is dropped."}

{"text": "Hello there, general."}
{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": " Yo. "}]}
{"instruction": "Say", "input": "", "output": "ok"}
{"text": "Sixth record."}
{"text": "Seventh one."}
EOF
tc=(model="$T/m32" data.train="$T/train.jsonl" data.eval=null data.max_seq_len=16 data.shuffle=false
    lora.r=4 lora.alpha=8 lora.dropout=0 train.batch_size=2 train.grad_accum=2 train.eval_every=0 train.epochs=5
    optim.lr=0.01 schedule.kind=cosine schedule.warmup_steps=2 schedule.min_lr_ratio=0.2)
$L train configs/tiny-lora.yaml "${tc[@]}" output_dir="$T/t1" train.max_steps=5 train.save_every=2 train.keep_last=2 \
    train.dump_grads="$T/grads.safetensors" >"$T/t1.out" 2>"$T/t1.err"
check "train exits 0" [ $? -eq 0 ]
check "train: the dropped record is counted" grep -q "1 dropped" "$T/t1.err"
lr_want() { awk -v N="$1" -v w=2 -v m=0.2 -v lr=0.01 -v k="$2" -v from="${3:-0}" 'BEGIN { for (n = from; n < N; n++) {
            if (n < w) x = lr * (n + 1) / w; else { p = (n - w) / (N - w); f = k == "cosine" ? (1 + cos(3.141592653589793 * p)) / 2 : k == "linear" ? 1 - p : 1;
            x = lr * (m + (1 - m) * f) } printf "%.6g ", x } }'; }
lr_got() { grep '"loss"' "$1" | sed 's/.*"lr": \([0-9.e+-]*\).*/\1/' | awk '{ printf "%.6g ", $1 }'; }
check "cosine schedule formula ($(lr_got "$T/t1/metrics.jsonl"))" [ "$(lr_got "$T/t1/metrics.jsonl")" = "$(lr_want 5 cosine)" ]
for k in linear constant; do
  $L train configs/tiny-lora.yaml "${tc[@]}" output_dir="$T/s_$k" train.max_steps=5 train.save_every=0 schedule.kind=$k >/dev/null 2>&1
  check "$k schedule formula" [ "$(lr_got "$T/s_$k/metrics.jsonl")" = "$(lr_want 5 $k)" ]
done
tokens_got=$(grep '"loss"' "$T/t1/metrics.jsonl" | sed 's/.*"tokens": \([0-9]*\).*/\1/' | tr '\n' ' ')
# resume with a larger max_steps: the schedule follows the new N from the checkpoint on
$L train configs/tiny-lora.yaml "${tc[@]}" output_dir="$T/t1" train.max_steps=8 train.save_every=2 train.keep_last=2 resume=true >/dev/null 2>"$T/r.err"
check "resume with max_steps=8 exits 0" [ $? -eq 0 ]
got=$(grep '"loss"' "$T/t1/metrics.jsonl" | tail -3 | sed 's/.*"lr": \([0-9.e+-]*\).*/\1/' | awk '{ printf "%.6g ", $1 }')
check "resumed schedule follows the new N ($got)" [ "$got" = "$(lr_want 8 cosine 5)" ]
check "keep_last=2 after resume" [ "$(ls "$T/t1/checkpoints" | tr '\n' ' ')" = "step_0000006 step_0000008 " ]

if need_py "batch order, PEFT outputs and their reader checks" numpy; then
  # record lengths as rendered (the rendered string encoded at once): docs/formats.md
  lens=()
  while IFS= read -r line; do
    [ -z "$line" ] && continue
    r=$("$PY" -c '
import json, sys
j = json.loads(sys.argv[1])
if "text" in j: print("T" + j["text"])
else:
    m = j.get("messages") or [{"role": "user", "content": j["instruction"]}, {"role": "assistant", "content": j["output"]}]
    print("C" + "".join("<|start_header_id|>%s<|end_header_id|>\n\n%s<|eot_id|>" % (x["role"], x["content"].strip()) for x in m))' "$line")
    lens+=("$($L tokenize --model "$T/m32" --bos -- "${r:1}" | wc -w)")
  done < "$T/train.jsonl"
  kept=(); for n in "${lens[@]}"; do [ "$n" -le 16 ] && kept+=("$n"); done
  # step n consumes the next 4 kept records in file order, wrapping at the end of the file
  want=$(awk -v k="${kept[*]}" 'BEGIN { n = split(k, a, " "); c = 0; for (s = 0; s < 5; s++) { t = 0;
         for (i = 0; i < 4; i++) { t += a[c % n + 1]; c++ } printf "%d ", t } }')
  check "shuffle false: steps take records in file order with wrap (tokens $tokens_got, want $want)" [ "$tokens_got" = "$want" ]

  check "adapter passes the reader" stok "$T/t1/adapter_model.safetensors"
  nk=$(grep -cE '^base_model\.model\.model\.layers\.[01]\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)\.lora_[AB]\.weight F32 ' "$T/keys.txt")
  check "adapter holds the 28 PEFT keys ($nk)" [ "$nk" -eq 28 -a "$(wc -l < "$T/keys.txt")" -eq 28 ]
  cp "$T/keys.txt" "$T/adapter_keys.txt"
  check "dump_grads passes the reader" stok "$T/grads.safetensors"
  check "dump_grads uses the adapter's key names" cmp -s <(cut -d' ' -f1,3 "$T/keys.txt") <(cut -d' ' -f1,3 "$T/adapter_keys.txt")
  for f in "$T"/t1/checkpoints/step_0000008/*.safetensors; do check "checkpoint $(basename "$f") passes the reader" stok "$f"; done
  check "adapter_config.json PEFT fields" "$PY" -c '
import json, sys
c = json.load(open(sys.argv[1]))
want = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 4, "lora_alpha": 8, "lora_dropout": 0, "bias": "none",
        "use_rslora": False, "fan_in_fan_out": False, "base_model_name_or_path": sys.argv[2]}
for k, v in want.items(): assert c.get(k) == v, (k, c.get(k))
assert sorted(c["target_modules"]) == sorted(["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])' \
    "$T/t1/adapter_config.json" "$T/m32"
  check "metrics.jsonl step fields" "$PY" -c '
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
steps = [r for r in rows if "loss" in r]
assert [r["step"] for r in steps] == list(range(1, 9)), [r["step"] for r in steps]
for r in steps:
    for k in ("step", "loss", "lr", "grad_norm", "tokens_per_s"): assert k in r, k' "$T/t1/metrics.jsonl"
fi

# --- one CLI training run against PyTorch (tests/gen_contract.py): dump_grads of step 1 and the
# losses of steps 1 and 2 (file order, a dropped record, a blank line, mixed formats, loss
# averaged over the supervised tokens of both micro-batches, AdamW + clipping, epoch wrap)
if need_py "training run against PyTorch's gradients and losses" numpy; then
  model_hash=$("$PY" -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$T/m32/model.safetensors")
  fx_hash=$("$PY" -c 'import sys; sys.path.insert(0, "tests"); from fixtures_io import read_safetensors
print(read_safetensors(sys.argv[1])[1]["model_sha256"])' tests/fixtures/contract_ref.safetensors)
  if [ "$model_hash" != "$fx_hash" ]; then
    # the fixture was computed for other weights: nothing to compare against on this machine
    skip "training run against PyTorch" "make-tiny --seed 3 gives other weights here (sha256 $model_hash, fixture $fx_hash)"
  else
    $L train configs/tiny-lora.yaml model="$T/m32" output_dir="$T/g" data.train=tests/fixtures/contract_train.jsonl data.eval=null \
        data.max_seq_len=16 data.shuffle=false lora.init=tests/fixtures/contract_init lora.r=4 lora.alpha=8 lora.dropout=0 \
        train.batch_size=2 train.grad_accum=2 train.max_steps=2 train.epochs=3 train.save_every=0 train.eval_every=0 \
        optim.lr=1e-3 optim.weight_decay=0 optim.grad_clip=1.0 schedule.kind=constant schedule.warmup_steps=0 \
        train.dump_grads="$T/g_grads.safetensors" >/dev/null 2>"$T/g.err"
    check "golden run exits 0" [ $? -eq 0 ]
    # 1e-4 relative to each tensor's largest gradient: fp32 sums in another order than
    # PyTorch's over the 128256-entry softmax (test_train.c sees ~1e-6 on the smaller model)
    check "golden: dump_grads equals PyTorch's gradients" "$PY" -c '
import sys
sys.path.insert(0, "tests")
import numpy as np
from fixtures_io import read_safetensors
got, _ = read_safetensors(sys.argv[1]); ref, _ = read_safetensors(sys.argv[2])
assert sorted(got) == sorted(ref), "keys differ"
for k in ref:
    err = np.abs(got[k].astype(np.float64) - ref[k]).max() / (np.abs(ref[k]).max() + 1e-12)
    assert err < 1e-4, "%s: relative error %g" % (k, err)' "$T/g_grads.safetensors" tests/fixtures/contract_ref.safetensors
    check "golden: step losses and grad norm equal PyTorch's" "$PY" -c '
import json, sys
sys.path.insert(0, "tests")
from fixtures_io import read_safetensors
meta = read_safetensors(sys.argv[2])[1]
rows = [json.loads(l) for l in open(sys.argv[1]) if "\"loss\"" in l]
assert len(rows) == 2
# losses are printed with 6 decimals (~11 nats): 2e-5 covers that rounding and fp32 sums
assert abs(rows[0]["loss"] - float(meta["loss1"])) < 2e-5, (rows[0]["loss"], meta["loss1"])
assert abs(rows[1]["loss"] - float(meta["loss2"])) < 2e-5, (rows[1]["loss"], meta["loss2"])
assert abs(rows[0]["grad_norm"] - float(meta["grad_norm"])) < 1e-4 * float(meta["grad_norm"]), (rows[0]["grad_norm"], meta["grad_norm"])' \
      "$T/g/metrics.jsonl" tests/fixtures/contract_ref.safetensors
  fi
fi

# --- merge: sharded F16 in, sharded F16 out; every merged tensor is W + s·B·A rounded to F16
if need_py "merge of a sharded F16 folder" numpy; then
  "$PY" tests/model_variant.py "$T/m32" "$T/mg_in" --dtype F16 --shards 3 2>"$T/v.err" || bad "merge input: $(tail -1 "$T/v.err")"
  $L merge --model "$T/mg_in" --adapter "$T/t1" --out "$T/merged" >/dev/null 2>"$T/mg.err"
  check "merge exits 0 ($(head -c 200 "$T/mg.err"))" [ $? -eq 0 ]
  check "merge keeps the shards and the index" [ -f "$T/merged/model.safetensors.index.json" -a -f "$T/merged/model-00003-of-00003.safetensors" ]
  allok=1; for f in "$T"/merged/*.safetensors; do { stok "$f" && grep -q " F16 " "$T/keys.txt"; } || allok=0; done
  check "merged shards pass the reader and stay F16" [ $allok -eq 1 ]
  # reference in float64: W + (alpha/r)·B·A, rounded once to F16. lorac sums in fp32, so a
  # value near a rounding boundary may land on the neighbouring F16 (one ulp); anything else
  # (an unmerged, twice-merged or wrongly scaled delta) is many ulps off. Tensors without an
  # adapter must come back bit-identical.
  check "merged tensors = F16(W + s·B·A) within one F16 ulp, the rest unchanged" "$PY" -c '
import glob, json, os, sys
sys.path.insert(0, "tests")
import numpy as np
from fixtures_io import read_safetensors
src, ad, out = sys.argv[1:4]
def folder(d):
    t = {}
    for f in sorted(glob.glob(os.path.join(d, "*.safetensors"))): t.update(read_safetensors(f)[0])
    return t
W, M = folder(src), folder(out)
A, _ = read_safetensors(os.path.join(ad, "adapter_model.safetensors"))
c = json.load(open(os.path.join(ad, "adapter_config.json")))
s = c["lora_alpha"] / c["r"]
assert sorted(W) == sorted(M), "tensor names differ"
merged = 0
for k in W:
    assert M[k].dtype == np.float16, (k, M[k].dtype)
    pre = "base_model.model." + k[:-len(".weight")]
    if pre + ".lora_A.weight" not in A:
        assert np.array_equal(M[k].view(np.uint16), W[k].view(np.uint16)), k + " changed without an adapter"
        continue
    ref = (W[k].astype(np.float64) + s * (A[pre + ".lora_B.weight"].astype(np.float64) @ A[pre + ".lora_A.weight"].astype(np.float64))).astype(np.float16)
    ulps = np.abs(M[k].astype(np.float64) - ref.astype(np.float64)) / np.spacing(np.abs(ref)).astype(np.float64)
    assert ulps.max() <= 1, "%s: %g F16 ulps from W + s*B*A" % (k, ulps.max())
    assert not np.array_equal(M[k], W[k]), k + ": the adapter changed nothing"
    merged += 1
assert merged == 14, merged   # 7 projections x 2 layers' "$T/mg_in" "$T/t1" "$T/merged"
fi

# merge copies the folder's other files (tokenizer, original/tokenizer.model) but no stale weights
mkdir -p "$T/snap/original" && cp "$T/m32"/* "$T/snap/" && echo "stub" > "$T/snap/original/tokenizer.model" &&
  echo "stub" > "$T/snap/original/consolidated.00.pth" && echo "stub" > "$T/snap/pytorch_model.bin"
$L merge --model "$T/snap" --adapter "$T/t1" --out "$T/snap_merged" >/dev/null 2>"$T/mg.err"
check "merge of a snapshot folder exits 0 ($(head -c 200 "$T/mg.err"))" [ $? -eq 0 ]
check "merge keeps tokenizer files and original/tokenizer.model" \
  [ -f "$T/snap_merged/tokenizer.json" -a -f "$T/snap_merged/tokenizer_config.json" -a -f "$T/snap_merged/original/tokenizer.model" ]
check "merge leaves out the unmerged weight files (.pth, .bin)" \
  [ ! -e "$T/snap_merged/original/consolidated.00.pth" -a ! -e "$T/snap_merged/pytorch_model.bin" ]

# --- projector mode: LLaVA names, projector_config.json, a full SigLIP folder reads vision_model.* only
$L make-tiny --out "$T/sig" --kind siglip >/dev/null 2>&1
mkdir -p "$T/cap/img"
for i in 0 1 2 3; do
  cp data/demo/captions/images/train_0000$i.png "$T/cap/img/$i.png"
  echo "{\"image\": \"img/$i.png\", \"caption\": \"A square, number $i.\"}"
done > "$T/cap/captions.jsonl"
for pt in mlp2x_gelu linear; do
  $L train configs/tiny-projector.yaml model="$T/m32" vision.model="$T/sig" data.train="$T/cap/captions.jsonl" data.eval=null \
      output_dir="$T/pj_$pt" projector.type=$pt train.max_steps=1 train.batch_size=2 train.grad_accum=1 train.save_every=0 >/dev/null 2>"$T/pj.err"
  check "projector ($pt) training exits 0 ($(tail -1 "$T/pj.err" | head -c 200))" [ $? -eq 0 ]
done
a=$($L eval --model "$T/m32" --vision "$T/sig" --projector "$T/pj_mlp2x_gelu" --data "$T/cap/captions.jsonl" --json 2>"$T/ev.err")
want=0; for i in 0 1 2 3; do want=$((want + $($L tokenize --model "$T/m32" "A square, number $i.<|end_of_text|>" | wc -w))); done
check "caption eval scores the caption and <|end_of_text|> ($want tokens)" [ "$(jfield "$a" tokens)" = "$want" -a "$(jfield "$a" documents)" = 4 ]

if need_py "projector outputs: reader checks, LLaVA names, config; full SigLIP folder" numpy; then
  for pt in mlp2x_gelu linear; do
    check "projector ($pt) passes the reader" stok "$T/pj_$pt/projector.safetensors"
    if [ $pt = linear ]; then want="model.mm_projector.bias model.mm_projector.weight"
    else want="model.mm_projector.0.bias model.mm_projector.0.weight model.mm_projector.2.bias model.mm_projector.2.weight"; fi
    check "projector ($pt) LLaVA key names" [ "$(cut -d' ' -f1 "$T/keys.txt" | tr '\n' ' ')" = "$want " ]
    check "projector ($pt) projector_config.json fields" "$PY" -c '
import json, sys
c = json.load(open(sys.argv[1]))
assert c["projector_type"] == sys.argv[2] and c["select_layer"] == -2 and c["vision_hidden_size"] == 32 and c["text_hidden_size"] == 64 and c["num_patches"] == 16, c' \
      "$T/pj_$pt/projector_config.json" $pt
  done
  # the full SigLIP model: text_model.*, head and logit_scale next to vision_model.*, and the
  # SiglipModel config with vision_config / text_config
  "$PY" - "$T/sig" "$T/sigfull" <<'PYEOF'
import json, os, shutil, sys
sys.path.insert(0, "tests")
from fixtures_io import read_entries, write_safetensors
src, dst = sys.argv[1], sys.argv[2]
shutil.copytree(src, dst)
entries, meta = read_entries(os.path.join(src, "model.safetensors"))
for k, s in {"text_model.embeddings.token_embedding.weight": [10, 32], "text_model.final_layer_norm.weight": [32],
             "vision_model.head.probe": [1, 1, 32], "logit_scale": [1]}.items():
    nb = 2
    for d in s: nb *= d
    entries.append((k, "BF16", s, b"\0" * nb))
write_safetensors(os.path.join(dst, "model.safetensors"), entries, meta)
vc = json.load(open(os.path.join(src, "config.json")))
json.dump({"architectures": ["SiglipModel"], "model_type": "siglip", "vision_config": vc, "torch_dtype": "bfloat16",
           "text_config": {"hidden_size": 32, "model_type": "siglip_text_model", "vocab_size": 10}}, open(os.path.join(dst, "config.json"), "w"))
PYEOF
  b=$($L eval --model "$T/m32" --vision "$T/sigfull" --projector "$T/pj_mlp2x_gelu" --data "$T/cap/captions.jsonl" --json 2>>"$T/ev.err")
  check "full SigLIP folder (text_model.* present) evaluates like the vision-only one ($a)" [ -n "$a" -a "$a" = "$b" ]
fi

# --- failures: exit status and one `error:` line naming the file, nothing on stdout (no python;
# everything used here is made above without it)
mkdir -p "$T/trunc" && cp "$T/m32/config.json" "$T/m32/tokenizer.json" "$T/trunc/" && head -c 100000 "$T/m32/model.safetensors" > "$T/trunc/model.safetensors"
expect_error 1 "truncated weights: error names the file and tensor" "trunc/model.safetensors: tensor" -- $L eval --model "$T/trunc" --data "$T/doc.txt"
printf '{"text": "a"}\n{"text": \n' > "$T/bad.jsonl"
expect_error 1 "bad JSONL line: error names file:line" "bad.jsonl:2" -- $L eval --model "$T/m32" --data "$T/bad.jsonl"
expect_error 2 "unknown subcommand is a usage error" "" -- $L frobnicate
expect_error 2 "eval without --data is a usage error" "data" -- $L eval --model "$T/m32"
expect_error 2 "generate without --prompt is a usage error" "prompt" -- $L generate --model "$T/m32"
mkdir -p "$T/existing" && echo keep > "$T/existing/keep.txt"
expect_error 1 "merge into an existing folder fails" "existing" -- $L merge --model "$T/m32" --adapter "$T/t1" --out "$T/existing"
check "merge left the existing folder alone" [ "$(ls "$T/existing")" = keep.txt ]
expect_error 1 "missing adapter folder names it" "nonexistent-adapter" -- $L eval --model "$T/m32" --adapter "$T/nonexistent-adapter" --data "$T/doc.txt"
expect_error 1 "bad config value names the key" "lora.r" -- $L train configs/tiny-lora.yaml model="$T/m32" output_dir="$T/x" lora.r=abc
expect_error 2 "no command: one error line, status 2" "missing command" -- $L
# every subcommand is linked in (strong global symbols, no weak fallbacks): a command missing
# from the build is a link error, never a runtime "not built" message
check "all 8 subcommands are strong symbols of the binary" \
  [ "$(nm -P "$L" | awk '$2 == "T" && $1 ~ /^cmd_(train|eval|generate|tokenize|prepare|merge|make_tiny|bench)$/' | wc -l)" -eq 8 \
    -a "$(nm -P "$L" | awk '$1 ~ /^cmd_/ && $2 ~ /^[vVwW]$/' | wc -l)" -eq 0 ]
check "no 'not built into this binary' path" bash -c "! grep -aq 'not built into this binary' '$L'"
for c in train eval generate tokenize prepare merge make-tiny bench; do
  $L $c --help >"$T/o" 2>"$T/e"; rc=$?
  check "$c --help: status 0, usage on stdout" [ $rc -eq 0 -a -s "$T/o" -a ! -s "$T/e" ]
done
expect_error 1 "unwritable output_dir gives an error line" "/proc/lorac-x" -- \
  $L train configs/tiny-lora.yaml "${tc[@]}" output_dir=/proc/lorac-x/y

test_summary
