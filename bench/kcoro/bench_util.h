/* Shared helpers of the kcoro benchmarks: timing, medians, and running the
 * Go baseline program that sits next to the benchmark binary. */
#ifndef FERRY_BENCH_KCORO_BENCH_UTIL_H
#define FERRY_BENCH_KCORO_BENCH_UTIL_H

#include <stddef.h>

/* Median of n doubles (n > 0); sorts v in place. */
double bench_median(double *v, size_t n);

/* Parses a positive integer argument; exits with status 2 and a message on
 * anything else. */
long bench_parse_pos(const char *what, const char *s);

/* Locates the Go baseline program `name`: in $FERRY_GO_BENCH_DIR if set,
 * else in the directory of the running executable. Writes the path to buf and
 * returns 0, or returns -ENOENT (buf then holds the path that was tried). */
int bench_find_go(const char *name, char *buf, size_t bufsz);

/* Runs `path args` with GOMAXPROCS=gomaxprocs through popen and returns in
 * *value the number after `key=` on the first output line that contains it.
 * Returns 0, or a negative errno (-EIO when the program fails or prints no
 * such key). */
int bench_run_go(const char *path, const char *args, int gomaxprocs, const char *key,
                 double *value);

/* CPUs the calling thread may run on (at least 1). */
int bench_allowed_cpus(void);

/* The first CPU the calling thread may run on, or -1. */
int bench_first_cpu(void);

/* Pins the calling thread to one CPU (0 or a negative errno); with
 * `saved` non-NULL, stores the previous mask there first. */
#define _BENCH_CPUSET_BYTES 128
typedef struct { unsigned char bytes[_BENCH_CPUSET_BYTES]; } bench_cpumask_t;
int bench_pin_self(int cpu, bench_cpumask_t *saved);
/* Restores a mask saved by bench_pin_self. */
void bench_restore_mask(const bench_cpumask_t *saved);

/* bench_run_go with the child confined to `cpu` (it inherits the calling
 * thread's mask, which is restored afterwards); cpu < 0: no pinning. */
int bench_run_go_on(const char *path, const char *args, int gomaxprocs, const char *key,
                    double *value, int cpu);

#endif
