// main.c — the `lorac` entry point: dispatches to the subcommands declared in cli.h. Every
// subcommand is a strong reference: a command missing from the build is a link error, never a
// runtime surprise.
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "dist.h"
#include "threads.h"
#include "util.h"

typedef struct {
    const char *name;
    int (*fn)(int, char **);
    const char *usage;
} command;

static const command commands[] = {
    {"train", cmd_train, "train CONFIG.yaml [key=value ...]"},
    {"eval", cmd_eval,
     "eval --model DIR --data FILE [--adapter DIR] [--vision DIR --projector DIR] [--max-length N] "
     "[--stride S] [--json]"},
    {"generate", cmd_generate,
     "generate --model DIR [--adapter DIR] [--vision DIR --projector DIR --image FILE] --prompt TEXT "
     "[--chat] [--max-new-tokens N] [--temperature T] [--top-k K] [--top-p P] [--seed S]"},
    {"tokenize", cmd_tokenize, "tokenize --model DIR [--bos] [--chat] [TEXT]"},
    {"prepare", cmd_prepare, "prepare CONFIG.yaml [key=value ...] --out FILE.h5"},
    {"merge", cmd_merge, "merge --model DIR --adapter DIR --out DIR"},
    {"bench", cmd_bench,
     "bench gemm|lora|eval|siglip [--model DIR] [--vision DIR] [--tokens T] [--batch B] [--rank R] "
     "[--supervised all|half] [--precision fp32|bf16] [--iters N] [--warmup N] [--interleave] (lorac bench --help)"},
    {"make-tiny", cmd_make_tiny,
     "make-tiny --out DIR [--kind llama|siglip] [--seed N] [--preset llama-3.2-1b|llama-3.2-3b|llama-3.1-8b|siglip-base-patch16-224] "
     "[--dtype bf16|f16|f32] [--tokenizer DIR] [--force]"},
};
#define NCOMMANDS (int)(sizeof commands / sizeof commands[0])

static void usage(FILE *fp) {
    fprintf(fp, "lorac — LoRA fine-tuning for LLaMA-3.2 and SigLIP on the CPU\n\nusage:\n");
    for (int i = 0; i < NCOMMANDS; i++) fprintf(fp, "  lorac %s\n", commands[i].usage);
}

int main(int argc, char **argv) {
    threads_wait_policy(argv);
    if (argc < 2) {   // a usage error: one `error:` line, like every other failure
        fprintf(stderr, "error: missing command (train, eval, generate, tokenize, prepare, merge, make-tiny, bench; "
                        "try: lorac --help)\n");
        return 2;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    for (int i = 0; i < NCOMMANDS; i++) {
        if (strcmp(argv[1], commands[i].name)) continue;
        // under mpirun: train, eval and prepare run data-parallel (autograd/dist.h)
        int par = !strcmp(argv[1], "train") || !strcmp(argv[1], "eval") || !strcmp(argv[1], "prepare");
        if (par && dist_init(&argc, &argv) != 0) {
            fprintf(stderr, "error: %s\n", err_get());
            return 1;
        }
        return dist_finish(commands[i].fn(argc - 1, argv + 1));
    }
    fprintf(stderr, "error: unknown command '%s' (try: lorac --help)\n", argv[1]);
    return 2;
}
