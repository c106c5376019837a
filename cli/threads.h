// threads.h — how lorac's OpenMP threads wait (the one pool shared by lorac's loops,
// OpenBLAS and oneDNN: all three use libgomp).
#ifndef LORAC_THREADS_H
#define LORAC_THREADS_H

// Called first in main(). libgomp reads its wait policy when it loads, before main, so a
// setting must be in the environment at process start: when the user has set neither
// OMP_WAIT_POLICY nor GOMP_SPINCOUNT, this sets GOMP_SPINCOUNT=LORAC_SPINCOUNT and re-executes
// the binary once (same pid, same arguments). libgomp's default spins ~300,000 iterations
// (milliseconds) at every barrier; on a machine where another process holds a core, the
// spinning thread keeps a core while the thread it waits for is parked behind that process.
// A short spin (tens of microseconds) costs nothing on a quiet machine and gives the core back
// quickly on a busy one. LORAC_SPINCOUNT (environment) overrides the count.
void threads_wait_policy(char **argv);

#endif
