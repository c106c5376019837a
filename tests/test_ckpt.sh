#!/usr/bin/env bash
# train.activation_checkpointing end to end: short `lorac train` runs with LoRA dropout write
# byte-identical adapters (and optimizer states) with it on and off, in lora mode (fp32 and
# bf16 precision), projector+lora and xattn+lora modes; a run may resume with the setting flipped; the key
# takes only true/false. (Gradient bit-identity per micro-step: tests/test_ckpt.c.)
set -u
cd "$(dirname "$0")/.."
L=${LORAC:-build/lorac}
source tests/lib.sh
T=$(scratch_dir ckpt)

tiny_vision_models
head -n 32 data/demo/train.jsonl > "$T/text.jsonl"
text=(model="$T/llama" data.train="$T/text.jsonl" data.eval=null train.max_steps=4 train.batch_size=2
      train.grad_accum=2 lora.r=4 lora.dropout=0.1 train.save_every=2 train.eval_every=0 train.log_every=100
      train.sample_every=0 data.packing=true)

# 1. lora mode, fp32 and bf16: adapters and optimizer moments byte-identical on and off
for prec in fp32 bf16; do
  for ck in false true; do
    $L train configs/tiny-lora.yaml "${text[@]}" precision=$prec train.activation_checkpointing=$ck \
        output_dir="$T/$prec-$ck" >"$T/$prec-$ck.out" 2>"$T/$prec-$ck.err"
    check "lora $prec checkpointing=$ck: train exits 0" [ $? -eq 0 ]
  done
  check "lora $prec: the run says checkpointing is on" grep -q "^train: activation checkpointing" "$T/$prec-true.err"
  check "lora $prec: and only when it is" bash -c "! grep -q 'activation checkpointing' '$T/$prec-false.err'"
  check "lora $prec: adapter byte-identical with checkpointing" \
    cmp -s "$T/$prec-false/adapter_model.safetensors" "$T/$prec-true/adapter_model.safetensors"
  check "lora $prec: optimizer state byte-identical with checkpointing" \
    cmp -s "$T/$prec-false/checkpoints/step_0000004/optimizer.safetensors" "$T/$prec-true/checkpoints/step_0000004/optimizer.safetensors"
done

# 2. resume with the setting flipped (the gradients are the same): the same final adapter
$L train configs/tiny-lora.yaml "${text[@]}" train.max_steps=2 output_dir="$T/flip" >"$T/flip.out" 2>"$T/flip.err" &&
  $L train configs/tiny-lora.yaml "${text[@]}" train.activation_checkpointing=true resume=true output_dir="$T/flip" \
      >"$T/flip2.out" 2>"$T/flip2.err"
check "resume with checkpointing switched on exits 0 ($(tail -1 "$T/flip2.err"))" [ $? -eq 0 ]
check "resumed run's adapter byte-identical" cmp -s "$T/fp32-false/adapter_model.safetensors" "$T/flip/adapter_model.safetensors"

# 3. projector+lora mode (LLaVA stage 1 with LoRA) and xattn+lora (cross-attention blocks run
# between the checkpointed decoder layers): every trained file byte-identical
vis=(model="$T/llama" vision.model="$T/siglip" data.train="$T/train.jsonl" data.eval=null lora.r=4
     lora.dropout=0.1 train.max_steps=3 train.batch_size=2 train.grad_accum=2 train.save_every=0
     train.eval_every=0 train.log_every=100 xattn.every=1)
for mode in projector+lora xattn+lora; do
  for ck in false true; do
    $L train configs/tiny-projector.yaml "${vis[@]}" mode=$mode train.activation_checkpointing=$ck \
        output_dir="$T/$mode-$ck" >"$T/$mode-$ck.out" 2>"$T/$mode-$ck.err"
    check "$mode checkpointing=$ck: train exits 0" [ $? -eq 0 ]
  done
  for f in projector.safetensors adapter_model.safetensors $([ $mode = xattn+lora ] && echo xattn.safetensors); do
    check "$mode: $f written" [ -s "$T/$mode-true/$f" ]
    check "$mode: $f byte-identical" cmp -s "$T/$mode-false/$f" "$T/$mode-true/$f"
  done
done

# 4. the key is a boolean
expect 1 "activation_checkpointing: a non-boolean is a config error" -- \
  $L train configs/tiny-lora.yaml "${text[@]}" train.activation_checkpointing=sometimes output_dir="$T/bad"
check "the error names the key" grep -q "train.activation_checkpointing" "$T/err"

test_summary
