// cli.c — the error/usage printing every subcommand shares (see cli.h). Kept out of main.c
// so that tests can link the commands.
#include <stdarg.h>
#include <stdio.h>

#include "cli.h"
#include "util.h"

int cli_fail(void) {
    fprintf(stderr, "error: %s\n", err_get()[0] ? err_get() : "unknown failure");
    return 1;
}

int cli_usage(const char *cmd, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "error: %s (usage: lorac %s --help)\n", msg, cmd);
    return 2;
}
