# lorac — build, test, bench.  `make` builds build/lorac; see README.md.
CC      ?= gcc
PKGS     = hdf5 libpcre2-8 libcjson yaml-0.1 stb ompi-c
# ompi-c: Open MPI (Debian's libopenmpi-dev) for data-parallel runs under mpirun (autograd/dist.c);
# a plain run never initializes it.
# OpenBLAS: the OpenMP build (Debian's libopenblas0-openmp), so BLAS and our OpenMP loops share
# one thread pool instead of two sets of spinning threads fighting for the cores; the header
# comes from libopenblas-dev.
BLASDIR  = /usr/lib/x86_64-linux-gnu/openblas-openmp
BLAS     = -L$(BLASDIR) -l:libopenblas.so.0 -Wl,-rpath,$(BLASDIR)
OPT     ?= -O3 -march=native
SAN     ?=
CFLAGS  := $(OPT) $(SAN) $(CFLAGS) -std=gnu11 -Wall -Wextra -fopenmp -MMD -MP -I. -Iautograd -Imodel -Idata -Ieval -Itrain -Icli \
           $(shell pkg-config --cflags openblas $(PKGS) 2>/dev/null)
# oneDNN (Debian's libdnnl-dev): the BF16 matmuls of precision: bf16. Its CPU runtime is OpenMP
# (libgomp), the same pool as OpenBLAS and our loops.
LDLIBS  := $(BLAS) -ldnnl $(shell pkg-config --libs $(PKGS) 2>/dev/null) -ljpeg -lm -fopenmp $(SAN)
BUILD   ?= build

# the layers, bottom to top: a file includes headers of its own layer and those below it
# (scripts/check_layers.sh, run by tests/test_layers.sh; README.md "Map of the code")
MODULES  = autograd model data eval train cli
LIB_SRC  = $(filter-out cli/main.c,$(foreach m,$(MODULES),$(wildcard $(m)/*.c)))
LIB_OBJ  = $(LIB_SRC:%.c=$(BUILD)/%.o)
TEST_SRC = $(wildcard tests/test_*.c)
TEST_BIN = $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
TOKENIZER = .cache/tokenizer/tokenizer.json

.PHONY: all deps tokenizer test bench bench-mpi bench-busy bench-mem asan fixtures demo demo-vision clean
.PHONY: fuzz fuzz-build fuzz-seeds
all: $(BUILD)/lorac

# System packages (apt-get as root when something is missing) and the Llama 3 tokenizer.
deps:
	@bash scripts/deps.sh
tokenizer: $(TOKENIZER)
$(TOKENIZER):
	@bash scripts/fetch_tokenizer.sh .cache/tokenizer

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/lorac: $(BUILD)/cli/main.o $(LIB_OBJ)
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/tests/%: tests/%.c tests/test.h $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< $(LIB_OBJ) -o $@ $(LDLIBS)

# The fuzz harnesses (tests/fuzz/fuzz_*.c) replayed under gcc: each is compiled with its entry
# point renamed and linked into one test program that feeds it the committed corpus/regressions.
FUZZ_NAMES  = $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_REPLAY = $(FUZZ_NAMES:%=$(BUILD)/tests/fuzz/replay_%.o)
$(BUILD)/tests/fuzz/replay_%.o: tests/fuzz/fuzz_%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/fuzz -DFUZZ_REPLAY_NAME=fuzz_one_$* -c $< -o $@
$(BUILD)/tests/test_fuzz_replay: tests/test_fuzz_replay.c tests/test.h $(FUZZ_REPLAY) $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< $(FUZZ_REPLAY) $(LIB_OBJ) -o $@ $(LDLIBS)

test: deps
	@$(MAKE) --no-print-directory $(TOKENIZER) $(BUILD)/lorac $(TEST_BIN)
	@BUILD=$(BUILD) bash tests/run.sh

asan:
	@$(MAKE) --no-print-directory test BUILD=build-asan OPT="-O1 -g -march=native" \
	    SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"

# libFuzzer: every harness built with clang -fsanitize=fuzzer,address,undefined (build-fuzz/) and
# run FUZZ_TIME seconds (default 60) on a copy of its corpus; see scripts/fuzz.sh.
FUZZ_BUILD = build-fuzz
FUZZ_SAN   = -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
fuzz: deps
	@$(MAKE) --no-print-directory fuzz-build
	@FUZZ_BUILD=$(FUZZ_BUILD) bash scripts/fuzz.sh $(FUZZ_NAMES)
fuzz-build:
	@$(MAKE) --no-print-directory $(FUZZ_NAMES:%=$(FUZZ_BUILD)/fuzz_%) BUILD=$(FUZZ_BUILD) CC=clang \
	    OPT="-O1 -g -march=native -Wno-unknown-attributes -Wno-unknown-pragmas" \
	    SAN="$(FUZZ_SAN) -fsanitize=fuzzer-no-link"
$(BUILD)/fuzz_%: tests/fuzz/fuzz_%.c $(LIB_OBJ)
	$(CC) $(CFLAGS) -Itests/fuzz -fsanitize=fuzzer $< $(LIB_OBJ) -o $@ $(LDLIBS)
# Regenerates the seeds that lorac itself must write (HDF5 files, adapters): tests/fuzz/gen_seeds.c.
fuzz-seeds: $(BUILD)/tests/fuzz/gen_seeds
	@mkdir -p tests/fuzz/corpus/h5data tests/fuzz/corpus/featcache tests/fuzz/corpus/lora
	$(BUILD)/tests/fuzz/gen_seeds
$(BUILD)/tests/fuzz/gen_seeds: tests/fuzz/gen_seeds.c $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/fuzz $< $(LIB_OBJ) -o $@ $(LDLIBS)

# make bench [ROWS="lora eval siglip"] [ITERS=5] [PRECISIONS="fp32 bf16"]: lorac beside PyTorch
# (scripts/bench.sh; runs under /tmp/lorac-heavy.lock, about 20 minutes on 2 cores)
bench: deps
	@$(MAKE) --no-print-directory $(TOKENIZER) $(BUILD)/lorac
	@bash scripts/bench.sh $(ROWS)

# data-parallel training on the Llama-3.2-1B shapes: 1 x 2 threads vs 2 ranks x 1 (shared
# memory, TCP); under flock /tmp/lorac-heavy.lock (scripts/bench_mpi.sh)
bench-mpi: deps
	@$(MAKE) --no-print-directory $(TOKENIZER) $(BUILD)/lorac
	@bash scripts/bench_mpi.sh

# tokens/s quiet vs next to one busy process (issue 17), small model and Llama-3.2-1B shapes, with
# lorac's GOMP_SPINCOUNT and libgomp's default; the 1B rows under flock /tmp/lorac-heavy.lock
# (scripts/bench_busy.sh, about 10 minutes)
bench-busy: deps
	@$(MAKE) --no-print-directory $(TOKENIZER) $(BUILD)/lorac
	@bash scripts/bench_busy.sh

# memory rows (issue 10): peak RSS and tokens/s of the 1B/3B/8B-shaped LoRA step with and without
# activation checkpointing and 16-bit weight storage; each row under flock /tmp/lorac-heavy.lock
# (scripts/bench_mem.sh; ROWS="1b-512 3b-512 1b-4096 8b-512" ITERS=5)
bench-mem: deps
	@$(MAKE) --no-print-directory $(TOKENIZER) $(BUILD)/lorac
	@ROWS="$(ROWS)" bash scripts/bench_mem.sh

demo: deps
	@$(MAKE) --no-print-directory $(TOKENIZER) $(BUILD)/lorac
	@bash scripts/demo.sh

demo-vision: deps
	@$(MAKE) --no-print-directory $(TOKENIZER) $(BUILD)/lorac
	@bash scripts/demo_vision.sh

fixtures:
	set -e; for g in tests/gen_*.py; do echo "== $$g"; /usr/bin/python3 $$g; done

clean:
	rm -rf build build-asan build-fuzz

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
