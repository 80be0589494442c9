/* Shared helpers of the kcoro benchmarks (see bench_util.h). */
#include "bench_util.h"

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
