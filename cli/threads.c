// threads.c — the OpenMP wait policy, set before libgomp reads it (see threads.h).
#include "threads.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define DEFAULT_SPINCOUNT "20000"   // ~20-60 µs of spinning on this class of CPU, then sleep

void threads_wait_policy(char **argv) {
    if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT") || getenv("LORAC_WAIT_POLICY_SET")) return;
    const char *n = getenv("LORAC_SPINCOUNT");
    if (setenv("GOMP_SPINCOUNT", n && *n ? n : DEFAULT_SPINCOUNT, 1) != 0 ||
        setenv("LORAC_WAIT_POLICY_SET", "1", 1) != 0)
        return;
    execv("/proc/self/exe", argv);
    // exec failed (no /proc?): run on with libgomp's defaults; results are the same.
    unsetenv("GOMP_SPINCOUNT");
}
