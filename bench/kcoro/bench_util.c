/* Shared helpers of the kcoro benchmarks (see bench_util.h). */
#define _GNU_SOURCE
#include "bench_util.h"

#include <pthread.h>
#include <sched.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_median(double *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

long bench_parse_pos(const char *what, const char *s)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v <= 0) {
        fprintf(stderr, "bad %s: '%s' (want a positive integer)\n", what, s);
        exit(2);
    }
    return v;
}

int bench_find_go(const char *name, char *buf, size_t bufsz)
{
    const char *dir = getenv("FERRY_GO_BENCH_DIR");
    char self[PATH_MAX];
    if (!dir || !*dir) {
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        if (n < 0)
            return -errno;
        self[n] = '\0';
        char *slash = strrchr(self, '/');
        if (slash)
            *slash = '\0';
        dir = self;
    }
    if ((size_t)snprintf(buf, bufsz, "%s/%s", dir, name) >= bufsz)
        return -ENAMETOOLONG;
    return access(buf, X_OK) == 0 ? 0 : -ENOENT;
}

int bench_run_go(const char *path, const char *args, int gomaxprocs, const char *key,
                 double *value)
{
    char cmd[PATH_MAX + 256], line[1024], pat[64];
    snprintf(pat, sizeof pat, "%s=", key);
    /* The path is quoted for the shell; a quote inside it is refused. */
    if (strchr(path, '\''))
        return -EINVAL;
    snprintf(cmd, sizeof cmd, "GOMAXPROCS=%d '%s' %s", gomaxprocs, path, args);
    fflush(stdout);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -errno;
    int found = 0;
    while (fgets(line, sizeof line, p)) {
        const char *at = strstr(line, pat);
        if (at && !found) {
            *value = strtod(at + strlen(pat), NULL);
            found = 1;
        }
    }
    int st = pclose(p);
    if (st != 0 || !found)
        return -EIO;
    return 0;
}

_Static_assert(sizeof(cpu_set_t) <= sizeof(bench_cpumask_t), "bench_cpumask_t too small");

int bench_allowed_cpus(void)
{
    cpu_set_t set;
    if (pthread_getaffinity_np(pthread_self(), sizeof set, &set) != 0)
        return 1;
    int n = CPU_COUNT(&set);
    return n > 0 ? n : 1;
}

int bench_first_cpu(void)
{
    cpu_set_t set;
    if (pthread_getaffinity_np(pthread_self(), sizeof set, &set) != 0)
        return -1;
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &set))
            return c;
    return -1;
}

int bench_pin_self(int cpu, bench_cpumask_t *saved)
{
    if (saved) {
        memset(saved, 0, sizeof *saved);
        int rc = pthread_getaffinity_np(pthread_self(), sizeof(cpu_set_t), (cpu_set_t *)saved);
        if (rc)
            return -rc;
    }
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return -pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

void bench_restore_mask(const bench_cpumask_t *saved)
{
    pthread_setaffinity_np(pthread_self(), sizeof(cpu_set_t), (const cpu_set_t *)saved);
}

int bench_run_go_on(const char *path, const char *args, int gomaxprocs, const char *key,
                    double *value, int cpu)
{
    bench_cpumask_t saved;
    if (cpu >= 0) {
        int rc = bench_pin_self(cpu, &saved);
        if (rc)
            return rc;
    }
    int rc = bench_run_go(path, args, gomaxprocs, key, value);
    if (cpu >= 0)
        bench_restore_mask(&saved);
    return rc;
}
