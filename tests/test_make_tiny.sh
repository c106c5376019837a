#!/usr/bin/env bash
# test_make_tiny.sh — `lorac make-tiny`: the files of a llama and a siglip folder, determinism
# (same seed -> identical bytes, another seed -> other weights), dtypes, atomic replacement,
# usage (exit 2) and runtime (exit 1) errors. That the folders load through lorac's own
# readers (config, weight shapes, value statistics) is checked in tests/test_hfconfig.c.
set -uo pipefail
cd "$(dirname "$0")/.."
LORAC=${LORAC:-build/lorac}
source tests/lib.sh
T=$(scratch_dir make_tiny)

has_files() { local d=$1; shift; for f in "$@"; do [ -s "$d/$f" ] || return 1; done; }

# --- llama
expect 0 "llama seed 1" -- "$LORAC" make-tiny --out "$T/a" --seed 1
check "llama files" has_files "$T/a" config.json generation_config.json model.safetensors tokenizer.json tokenizer_config.json
check "llama config fields" grep -q '"model_type": "llama"' "$T/a/config.json"
check "llama rope_scaling" grep -q '"rope_type": "llama3"' "$T/a/config.json"
check "llama tied" grep -q '"tie_word_embeddings": true' "$T/a/config.json"
check "llama eos list" grep -q '"eos_token_id": \[128001, 128008, 128009\]' "$T/a/config.json"
check "tokenizer copied byte for byte" cmp -s "$T/a/tokenizer.json" .cache/tokenizer/tokenizer.json
check "format pt" grep -q '"__metadata__":{"format":"pt"}' "$T/a/model.safetensors"
check "bf16 by default" grep -q '"dtype":"BF16"' "$T/a/model.safetensors"
check "no lm_head" bash -c "! grep -q 'lm_head' '$T/a/model.safetensors'"
expect 0 "llama seed 1 again" -- "$LORAC" make-tiny --out "$T/b" --seed 1
check "same seed -> identical weights" cmp -s "$T/a/model.safetensors" "$T/b/model.safetensors"
check "same seed -> identical config" cmp -s "$T/a/config.json" "$T/b/config.json"
expect 0 "llama seed 2" -- "$LORAC" make-tiny --out "$T/c" --seed 2
check "other seed -> other weights" bash -c "! cmp -s '$T/a/model.safetensors' '$T/c/model.safetensors'"
check "other seed -> same size" test "$(stat -c %s "$T/a/model.safetensors")" -eq "$(stat -c %s "$T/c/model.safetensors")"
expect 0 "threads do not change the bytes" -- env OMP_NUM_THREADS=1 "$LORAC" make-tiny --out "$T/a1" --seed 1
check "1 thread == default threads" cmp -s "$T/a/model.safetensors" "$T/a1/model.safetensors"
expect 0 "f32" -- "$LORAC" make-tiny --out "$T/f32" --seed 1 --dtype f32
check "f32 dtype" grep -q '"torch_dtype": "float32"' "$T/f32/config.json"
check "f32 twice the bytes" test "$(stat -c %s "$T/f32/model.safetensors")" -gt "$(( $(stat -c %s "$T/a/model.safetensors") * 2 - 4096 ))"
expect 0 "f16" -- "$LORAC" make-tiny --out "$T/f16" --dtype f16
check "f16 dtype" grep -q '"dtype":"F16"' "$T/f16/model.safetensors"

# --- siglip
expect 0 "siglip" -- "$LORAC" make-tiny --out "$T/s" --kind siglip --seed 1
check "siglip files" has_files "$T/s" config.json preprocessor_config.json model.safetensors
check "siglip model_type" grep -q '"model_type": "siglip_vision_model"' "$T/s/config.json"
check "siglip processor" grep -q '"image_processor_type": "SiglipImageProcessor"' "$T/s/preprocessor_config.json"
check "siglip keys" grep -q 'vision_model.encoder.layers.1.mlp.fc2.bias' "$T/s/model.safetensors"
check "siglip has no tokenizer" test ! -e "$T/s/tokenizer.json"
expect 0 "siglip again" -- "$LORAC" make-tiny --out "$T/s2" --kind siglip --seed 1
check "siglip deterministic" cmp -s "$T/s/model.safetensors" "$T/s2/model.safetensors"

# --- replacing, atomicity
expect 1 "existing non-empty folder refused" -- "$LORAC" make-tiny --out "$T/a" --seed 3
check "refused run left the old folder" cmp -s "$T/a/model.safetensors" "$T/b/model.safetensors"
expect 0 "--force replaces" -- "$LORAC" make-tiny --out "$T/a" --seed 2 --force
check "replaced content" cmp -s "$T/a/model.safetensors" "$T/c/model.safetensors"
mkdir -p "$T/empty"
expect 0 "existing empty folder is fine" -- "$LORAC" make-tiny --out "$T/empty" --kind siglip
expect 1 "missing tokenizer" -- "$LORAC" make-tiny --out "$T/notok" --tokenizer "$T/nonexistent"
check "failed run leaves nothing" test ! -e "$T/notok"
expect 0 "LORAC_TOKENIZER_DIR" -- env LORAC_TOKENIZER_DIR=.cache/tokenizer "$LORAC" make-tiny --out "$T/envtok"
check "no temp folders left" no_leftovers "$T"

# --- usage errors
expect 2 "no --out" -- "$LORAC" make-tiny
expect 2 "bad kind" -- "$LORAC" make-tiny --out "$T/x" --kind gpt2
expect 2 "bad seed" -- "$LORAC" make-tiny --out "$T/x" --seed -4
expect 2 "bad seed text" -- "$LORAC" make-tiny --out "$T/x" --seed abc
expect 2 "bad dtype" -- "$LORAC" make-tiny --out "$T/x" --dtype int8
expect 2 "bad preset" -- "$LORAC" make-tiny --out "$T/x" --preset llama-70b
expect 2 "preset/kind conflict" -- "$LORAC" make-tiny --out "$T/x" --preset llama-3.2-1b --kind siglip
expect 2 "preset/kind conflict 8b" -- "$LORAC" make-tiny --out "$T/x" --preset llama-3.1-8b --kind siglip
expect 2 "preset with --layers" -- "$LORAC" make-tiny --out "$T/x" --preset llama-3.2-3b --layers 2
expect 2 "unknown option" -- "$LORAC" make-tiny --out "$T/x" --bogus 1
expect 2 "missing value" -- "$LORAC" make-tiny --out
check "usage errors wrote nothing" test ! -e "$T/x"

test_summary
