// cli.h — the subcommands of the `lorac` binary. Each returns the process exit status:
// 0 success, 1 runtime failure (after printing one `error:` line), 2 usage error.
// Each command lives in its own file and defines its cmd_* function; main.c dispatches.
#ifndef LORAC_CLI_H
#define LORAC_CLI_H

int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_prepare(int argc, char **argv);
int cmd_merge(int argc, char **argv);
int cmd_make_tiny(int argc, char **argv);
int cmd_bench(int argc, char **argv);

// Prints `error: <msg>` (the message recorded by err_set) on stderr; returns 1.
int cli_fail(void);
// Prints `error: <formatted>` and a usage hint for `cmd` on stderr; returns 2.
int cli_usage(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
