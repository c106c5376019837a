// test_opts.c — the one option parser of every command (cli/opts.c on getopt_long): strict
// numbers and ranges, whole names, values inline or separate, flags, arguments in order, `--`,
// --help, and the exit code of each outcome (0 parsed, 1 help printed, 2 usage error). The
// wording of the errors is checked end to end by the shell tests (test_bench.sh, ...).
#include <math.h>
#include <stdint.h>

#include "opts.h"
#include "test.h"

typedef struct vals {
    const char *dir, *word, *text;
    int64_t n;
    uint64_t seed;
    float p;
    int flag;
} vals;

// Parses the NULL-terminated words (a command name first) into v; returns cli_parse's code.
static int parse(vals *v, char **pos, int *npos, int once, char *const *words) {
    *v = (vals){.n = -7};
    const cli_opt opts[] = {
        CLI_TEXT("dir", OPT_DIR, &v->dir, "DIR", "a folder"),
        CLI_TEXT("text", OPT_STR, &v->text, "TEXT", "any text"),
        CLI_WORD("word", &v->word, "W", "fp32 bf16", "one of two"),
        CLI_INT("n", &v->n, "N", 2, 65536, "an integer in 2..65536"),
        {.name = "seed", .type = OPT_U64, .dst = &v->seed, .arg = "S", .help = "an integer >= 0"},
        CLI_NUM("p", OPT_F32, &v->p, "P", 0, 1, 1, "a number in (0, 1]"),
        CLI_FLAG("flag", &v->flag, "a flag"),
    };
    const cli_spec spec = {"test", "[options] ARG...", NULL, opts, CLI_NOPTS(opts), NULL, once};
    int argc = 0;
    char *argv[32];
    while (words[argc]) argv[argc] = words[argc], argc++;
    argv[argc] = NULL;
    return cli_parse(&spec, argc, argv, pos, 4, npos, 0, NULL);
}

#define PARSE(v, pos, npos, ...) parse(v, pos, npos, 0, (char *const[]){"test", __VA_ARGS__, NULL})

static void test_values(void) {
    vals v;
    char *pos[4];
    int np;
    CHECK(PARSE(&v, pos, &np, "--dir", "d", "--n", "512", "--seed=18446744073709551615", "--p", "0.5", "--flag",
                "--word=bf16", "--text", "") == 0, "a full line parses");
    CHECK(!strcmp(v.dir, "d") && v.n == 512 && v.seed == UINT64_MAX && v.p == 0.5f && v.flag && !strcmp(v.word, "bf16") &&
              !strcmp(v.text, ""), "values stored");
    CHECK(PARSE(&v, pos, &np, "--n", "-4") == 2 && v.n == -7, "a negative count is out of range, nothing stored");
    const char *bad_ints[] = {"512x", " 5", "+5", "1e3", "", "2.5", "1", "65537", "99999999999999999999", "0x10"};
    for (size_t i = 0; i < sizeof bad_ints / sizeof *bad_ints; i++)
        CHECK(PARSE(&v, pos, &np, "--n", (char *)bad_ints[i]) == 2, "--n '%s' must be a usage error", bad_ints[i]);
    CHECK(PARSE(&v, pos, &np, "--n", "2") == 0 && v.n == 2 && PARSE(&v, pos, &np, "--n=65536") == 0 && v.n == 65536,
          "the range ends are in");
    const char *bad_nums[] = {"0", "1.5", "nan", "inf", "-0.1", "0.5x", " 0.5", ""};
    for (size_t i = 0; i < sizeof bad_nums / sizeof *bad_nums; i++)
        CHECK(PARSE(&v, pos, &np, "--p", (char *)bad_nums[i]) == 2, "--p '%s' must be a usage error", bad_nums[i]);
    CHECK(PARSE(&v, pos, &np, "--p", "1") == 0 && v.p == 1.0f, "(0, 1] includes 1");
    CHECK(PARSE(&v, pos, &np, "--seed", "-1") == 2 && PARSE(&v, pos, &np, "--seed", "+1") == 2, "--seed: digits only");
    CHECK(PARSE(&v, pos, &np, "--word", "fp16") == 2 && PARSE(&v, pos, &np, "--word", "") == 2, "--word: one of the words");
    CHECK(PARSE(&v, pos, &np, "--dir", "") == 2 && PARSE(&v, pos, &np, "--dir=") == 2, "--dir: not empty");
}

static void test_names_and_arguments(void) {
    vals v;
    char *pos[4];
    int np;
    CHECK(PARSE(&v, pos, &np, "--di", "d") == 2, "an abbreviation is an unknown option");
    CHECK(PARSE(&v, pos, &np, "--bogus") == 2 && PARSE(&v, pos, &np, "-x") == 2, "unknown options");
    CHECK(PARSE(&v, pos, &np, "--flag=1") == 2, "a flag takes no value");
    CHECK(PARSE(&v, pos, &np, "--n") == 2, "a missing value at the end");
    CHECK(PARSE(&v, pos, &np, "--text", "--flag") == 0 && !strcmp(v.text, "--flag") && !v.flag,
          "the next word is the value, even when it looks like an option");
    CHECK(PARSE(&v, pos, &np, "a", "--flag", "b=c", "--", "-d", "--n") == 0 && np == 4 && !strcmp(pos[0], "a") &&
              !strcmp(pos[1], "b=c") && !strcmp(pos[2], "-d") && !strcmp(pos[3], "--n") && v.flag && v.n == -7,
          "arguments come back in order; after -- everything is an argument");
    CHECK(PARSE(&v, pos, &np, "a", "b", "c", "d", "e") == 2, "one argument more than room is a usage error");
    CHECK(PARSE(&v, pos, &np, "--n", "3", "--n", "4") == 0 && v.n == 4, "given twice: the last counts");
    CHECK(parse(&v, pos, &np, 1, (char *const[]){"test", "--n", "3", "--n", "4", NULL}) == 2,
          "given twice with spec.once: a usage error");
    CHECK(PARSE(&v, pos, &np, "--flag", "--help") == 1 && PARSE(&v, pos, &np, "-h") == 1, "--help and -h: 1");
    CHECK(PARSE(&v, pos, &np, "--bogus", "--help") == 2, "an error before --help wins");
}

int main(void) {
    RUN(test_values);
    RUN(test_names_and_arguments);
    return test_summary();
}
