/* The machine's core-to-core round trip: two threads pinned to two different
 * CPUs bounce one cache line (A writes, B sees it and writes back, A sees
 * that). No message between threads can go faster, so every latency
 * benchmark measures it in the same run and prints its own figure as a
 * multiple of it (see docs/shm.md, "Cache lines per round trip").
 *
 * The two CPUs are taken from the machine's online CPUs, not from the
 * caller's affinity: under `taskset -c 0` the limit is still the one between
 * two cores, which is what the one-core figures are compared with. */
#ifndef FERRY_BENCH_C2C_H
#define FERRY_BENCH_C2C_H

typedef struct bench_c2c {
    int cpu_a, cpu_b;  /* the CPUs the two threads ran on                  */
    double median_ns;  /* median over batches of the mean round trip       */
    double best_ns;    /* fastest batch (closest to an idle machine)       */
    int batches;       /* batches measured                                 */
} bench_c2c_t;

/* Measures the round trip (about 0.1 s; at most ~2 s on a loaded machine).
 * Creates and joins two threads; the caller's own affinity is untouched.
 * Returns 0, or a negative errno (-ENODEV: fewer than two usable CPUs). */
int bench_c2c_measure(bench_c2c_t *out);

/* Prints one line: "core-to-core round trip (CPU a <-> CPU b, one cache
 * line): median X ns, best Y ns", or why it is not available (rc < 0). */
void bench_c2c_print(const bench_c2c_t *c, int rc);

/* ns as a multiple of the median core-to-core round trip; 0 when the
 * measurement is not available (rc < 0 or no batch). */
double bench_c2c_times(const bench_c2c_t *c, int rc, double ns);

/* The one-CPU floor of a thread hand-off: two threads pinned to one CPU
 * (the first the caller may run on) pass a token back and forth, each
 * yielding the CPU (sched_yield) until the token is its own. Two system
 * calls and two switches per round trip: what any wait between two OS
 * threads costs at best when they share a CPU (Go's goroutines switch in
 * user space and are not bound by it). Returns 0 and the median round trip
 * in *median_ns, or a negative errno. */
int bench_c2c_yield_floor(double *median_ns, int *cpu);

/* The same hand-off between two processes (fork, a shared anonymous page),
 * both pinned to cpu: what a round trip between a server and its worker
 * process costs at best on one CPU. Each switch changes address space
 * (page tables; with page-table isolation also on every system call), so on
 * many machines this floor is several times the threads' one. Safe to call
 * in a process that has threads (the child only yields, stores and exits).
 * Returns 0 and the median round trip in *median_ns, or a negative errno. */
int bench_c2c_yield_floor_procs(double *median_ns, int cpu);

#endif
