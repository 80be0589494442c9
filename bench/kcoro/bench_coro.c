/* bench_coro: kcoro coroutines against goroutines, same workloads, same run.
 *
 *   yield     two coroutines yielding to each other on one worker: ns per switch
 *   spawn     spawn + join of N coroutines: ns per coroutine
 *   mem       N coroutines parked at once: resident bytes per coroutine
 *   pingpong  rendezvous ping-pong between two coroutines: ns per round trip
 *   pc P C    buffered channel (1024), P producers, C consumers: ns per element
 *   skynet    1M leaf coroutines in a tree of channels (fan-out 10): ms
 *             (each node also joins its children before freeing its channel)
 *
 * Each line prints the kcoro figure, Go's, and the ratio Go/kcoro for times
 * (> 1: kcoro faster) or kcoro/Go for memory. The median of --reps runs.
 * Lines with a target of issue 10 say MET or NOT MET: yield <= 30 ns,
 * rendezvous go/kcoro >= 2, every buffered PxC and skynet go/kcoro >= 1.
 * Usage: bench_coro [--reps R] [--scale S] [--only NAME] [--help]
 * Workers: KCORO_THREADS or one per CPU; Go gets GOMAXPROCS equal to it. */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_util.h"
#include "kcoro/kcoro.h"

static double now_s(void) { return (double)kc_now_ns() / 1e9; }

static void die(const char *what, int rc)
{
    fprintf(stderr, "bench_coro: %s failed: %s\n", what, kc_strerror(rc));
    exit(1);
}

#define CK(what, expr)                 \
    do {                               \
        int rc_ = (expr);              \
        if (rc_ < 0)                   \
            die(what, rc_);            \
    } while (0)

/* ---- workloads ---------------------------------------------------------- */

static long g_n;

static void yielder(void *arg)
{
    (void)arg;
    for (long i = 0; i < g_n; i++)
        kc_yield();
}

static double run_yield(long n)
{
    g_n = n;
    kc_coro_t *a, *b;
    double t0 = now_s();
    CK("spawn", kc_spawn(&a, yielder, NULL, NULL));
    CK("spawn", kc_spawn(&b, yielder, NULL, NULL));
    CK("join", kc_coro_join(a));
    CK("join", kc_coro_join(b));
    return (now_s() - t0) * 1e9 / (double)(2 * n);
}

static void nop(void *arg) { (void)arg; }

struct spawner { long n; };

static void spawn_all(void *arg)
{
    struct spawner *s = arg;
    kc_coro_t **cs = malloc(sizeof *cs * 1024);
    if (!cs)
        die("malloc", -ENOMEM);
    for (long done = 0; done < s->n; done += 1024) {
        long k = s->n - done < 1024 ? s->n - done : 1024;
        for (long i = 0; i < k; i++)
            CK("spawn", kc_spawn(&cs[i], nop, NULL, NULL));
        for (long i = 0; i < k; i++)
            CK("join", kc_coro_join(cs[i]));
    }
    free(cs);
}

static double run_spawn(long n)
{
    /* Spawned and joined from a coroutine, as the Go loop runs on a goroutine. */
    struct spawner s = {n};
    kc_coro_t *c;
    double t0 = now_s();
    CK("spawn", kc_spawn(&c, spawn_all, &s, NULL));
    CK("join", kc_coro_join(c));
    return (now_s() - t0) * 1e9 / (double)n;
}

static long rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, res = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &res) != 2)
            res = 0;
        fclose(f);
    }
    return res * sysconf(_SC_PAGESIZE);
}

static _Atomic long g_started;

static void parked(void *arg)
{
    int v;
    atomic_fetch_add(&g_started, 1);
    kc_chan_recv(arg, &v, -1);
}

static double run_mem(long n)
{
    kc_chan_t *gate;
    CK("chan", kc_chan_make(&gate, KC_RENDEZVOUS, sizeof(int), 0));
    atomic_store(&g_started, 0);
    long before = rss_bytes();
    for (long i = 0; i < n; i++)
        CK("go", kc_go(parked, gate, NULL));
    while (atomic_load(&g_started) < n)
        usleep(1000);
    long after = rss_bytes();
    kc_chan_close(gate);
    kc_sched_stop();
    kc_chan_destroy(gate);
    return (double)(after - before) / (double)n;
}

struct pp { kc_chan_t *ping, *pong; long n; };

static void ponger(void *arg)
{
    struct pp *p = arg;
    long v;
    while (kc_chan_recv(p->ping, &v, -1) == 0)
        kc_chan_send(p->pong, &v, -1);
}

static void pinger(void *arg)
{
    struct pp *p = arg;
    for (long i = 0; i < p->n; i++) {
        long v = i;
        kc_chan_send(p->ping, &v, -1);
        kc_chan_recv(p->pong, &v, -1);
        if (v != i)
            die("pingpong (wrong value)", -EPROTO);
    }
    kc_chan_close(p->ping);
}

static double run_pingpong(long n)
{
    struct pp p = {.n = n};
    CK("chan", kc_chan_make(&p.ping, KC_RENDEZVOUS, sizeof(long), 0));
    CK("chan", kc_chan_make(&p.pong, KC_RENDEZVOUS, sizeof(long), 0));
    kc_coro_t *a, *b;
    double t0 = now_s();
    CK("spawn", kc_spawn(&b, ponger, &p, NULL));
    CK("spawn", kc_spawn(&a, pinger, &p, NULL));
    CK("join", kc_coro_join(a));
    double el = now_s() - t0;
    CK("join", kc_coro_join(b));
    kc_chan_destroy(p.ping);
    kc_chan_destroy(p.pong);
    return el * 1e9 / (double)n;
}

struct pcarg { kc_chan_t *ch; long per; };

static void producer(void *arg)
{
    struct pcarg *a = arg;
    for (long k = 0; k < a->per; k++)
        kc_chan_send(a->ch, &k, -1);
}

static void consumer(void *arg)
{
    struct pcarg *a = arg;
    long v;
    while (kc_chan_recv(a->ch, &v, -1) == 0)
        ;
}

static double run_pc(int p, int c, long n)
{
    struct pcarg a = {.per = n / p};
    CK("chan", kc_chan_make(&a.ch, KC_BUFFERED, sizeof(long), 1024));
    kc_coro_t *ps[16], *cs[16];
    double t0 = now_s();
    for (int i = 0; i < c; i++)
        CK("spawn", kc_spawn(&cs[i], consumer, &a, NULL));
    for (int i = 0; i < p; i++)
        CK("spawn", kc_spawn(&ps[i], producer, &a, NULL));
    for (int i = 0; i < p; i++)
        CK("join", kc_coro_join(ps[i]));
    kc_chan_close(a.ch);
    for (int i = 0; i < c; i++)
        CK("join", kc_coro_join(cs[i]));
    double el = now_s() - t0;
    kc_chan_destroy(a.ch);
    return el * 1e9 / (double)(a.per * p);
}

struct sky { kc_chan_t *out; long num, size; };

static void skynet(void *arg)
{
    struct sky s = *(struct sky *)arg;
    free(arg);
    long sum = s.num;
    if (s.size > 1) {
        kc_chan_t *rc;
        kc_coro_t *kids[10];
        CK("chan", kc_chan_make(&rc, KC_BUFFERED, sizeof(long), 10));
        for (long i = 0; i < 10; i++) {
            struct sky *c = malloc(sizeof *c);
            if (!c)
                die("malloc", -ENOMEM);
            *c = (struct sky){rc, s.num + i * (s.size / 10), s.size / 10};
            CK("spawn", kc_spawn(&kids[i], skynet, c, NULL));
        }
        sum = 0;
        for (long i = 0; i < 10; i++) {
            long v;
            CK("recv", kc_chan_recv(rc, &v, -1));
            sum += v;
        }
        /* A child may still be inside its send when its value arrived:
         * the channel may go only after all of them ended (Go has a GC). */
        for (long i = 0; i < 10; i++)
            CK("join", kc_coro_join(kids[i]));
        kc_chan_destroy(rc);
    }
    kc_chan_send(s.out, &sum, -1);
}

static double run_skynet(long size)
{
    kc_chan_t *out;
    CK("chan", kc_chan_make(&out, KC_BUFFERED, sizeof(long), 1));
    struct sky *r = malloc(sizeof *r);
    if (!r)
        die("malloc", -ENOMEM);
    *r = (struct sky){out, 0, size};
    double t0 = now_s();
    CK("go", kc_go(skynet, r, NULL));
    long sum;
    CK("recv", kc_chan_recv(out, &sum, -1));
    double el = now_s() - t0;
    if (sum != size * (size - 1) / 2)
        die("skynet (wrong sum)", -EPROTO);
    kc_chan_destroy(out);
    return el * 1e3;
}

/* ---- driver ------------------------------------------------------------- */

static int g_reps = 5;
static char g_go[PATH_MAX];
static int g_have_go;
static int g_threads;

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Issue 10's target for a line: kcoro's median at most max_ns (0: none),
 * the ratio at least min_ratio (0: none). */
struct target { double max_ns, min_ratio; };

static void report_t(const char *name, const char *unit, double *k, double *g, int ng,
                     bool lower_is_better_ratio_go_over_k, struct target t);

static void report(const char *name, const char *unit, double *k, double *g, int ng,
                   bool lower_is_better_ratio_go_over_k)
{
    report_t(name, unit, k, g, ng, lower_is_better_ratio_go_over_k, (struct target){0, 0});
}

static void report_t(const char *name, const char *unit, double *k, double *g, int ng,
                     bool lower_is_better_ratio_go_over_k, struct target t)
{
    qsort(k, (size_t)g_reps, sizeof *k, cmp_d);
    double km = k[g_reps / 2];
    printf("%-14s kcoro %10.2f %s (min %.2f max %.2f)", name, km, unit, k[0], k[g_reps - 1]);
    if (ng > 0) {
        qsort(g, (size_t)ng, sizeof *g, cmp_d);
        double gm = g[ng / 2];
        double ratio = lower_is_better_ratio_go_over_k ? gm / km : km / gm;
        printf("   go %10.2f %s (min %.2f max %.2f)   %s %.2f", gm, unit, g[0], g[ng - 1],
               lower_is_better_ratio_go_over_k ? "go/kcoro" : "kcoro/go", ratio);
        if (t.min_ratio > 0)
            printf("   target ratio >= %.1f %s", t.min_ratio,
                   ratio >= t.min_ratio ? "MET" : "NOT MET");
    }
    if (t.max_ns > 0)
        printf("   target <= %.0f %s %s", t.max_ns, unit, km <= t.max_ns ? "MET" : "NOT MET");
    printf("\n");
    fflush(stdout);
}

static void go_runs(const char *args, const char *key, int procs, double *g, int *ng)
{
    *ng = 0;
    if (!g_have_go)
        return;
    for (int i = 0; i < g_reps; i++) {
        double v;
        if (bench_run_go(g_go, args, procs, key, &v) == 0)
            g[(*ng)++] = v;
    }
}

static bool want(const char *only, const char *name) { return !only || !strcmp(only, name); }

int main(int argc, char **argv)
{
    const char *only = NULL;
    long scale = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: bench_coro [--reps R] [--scale S] [--only yield|spawn|mem|pingpong|pc|skynet]\n"
                   "Runs kcoro coroutine workloads and the same on goroutines (go_coro next to\n"
                   "this binary or in $FERRY_GO_BENCH_DIR) and prints medians and ratios.\n"
                   "Workers: KCORO_THREADS or one per CPU; GOMAXPROCS is set to match.\n");
            return 0;
        } else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            g_reps = (int)bench_parse_pos("--reps", argv[++i]);
        } else if (!strcmp(argv[i], "--scale") && i + 1 < argc) {
            scale = bench_parse_pos("--scale", argv[++i]);
        } else if (!strcmp(argv[i], "--only") && i + 1 < argc) {
            only = argv[++i];
        } else {
            fprintf(stderr, "bench_coro: unknown argument %s (try --help)\n", argv[i]);
            return 2;
        }
    }
    if (g_reps > 64)
        g_reps = 64;
    g_have_go = bench_find_go("go_coro", g_go, sizeof g_go) == 0;
    if (!g_have_go)
        printf("note: Go baseline %s not found, kcoro figures only\n", g_go);
    kc_sched_stats_t st;
    CK("start", kc_sched_start(NULL));
    kc_sched_stats(&st);
    g_threads = (int)st.threads;
    kc_sched_stop();
    printf("workers: %d (GOMAXPROCS=%d), reps %d, medians\n", g_threads, g_threads, g_reps);

    double k[64], g[64];
    int ng;
    char args[128];
    long n;

    if (want(only, "yield")) {
        n = 1000000 / scale;
        kc_sched_opts_t one = {.threads = 1};
        CK("start", kc_sched_start(&one));
        for (int i = 0; i < g_reps; i++)
            k[i] = run_yield(n);
        kc_sched_stop();
        snprintf(args, sizeof args, "yield %ld", n);
        go_runs(args, "ns_per_op", 1, g, &ng);
        report_t("yield (1 thr)", "ns", k, g, ng, true, (struct target){30, 0});
    }
    if (want(only, "spawn")) {
        n = 200000 / scale;
        for (int i = 0; i < g_reps; i++)
            k[i] = run_spawn(n);
        kc_sched_stop();
        snprintf(args, sizeof args, "spawn %ld", n);
        go_runs(args, "ns_per_op", g_threads, g, &ng);
        report("spawn+join", "ns", k, g, ng, true);
    }
    if (want(only, "mem")) {
        n = 100000 / scale;
        for (int i = 0; i < g_reps; i++)
            k[i] = run_mem(n);
        snprintf(args, sizeof args, "mem %ld", n);
        go_runs(args, "bytes_per_op", g_threads, g, &ng);
        report("mem/coroutine", "B", k, g, ng, false);
    }
    if (want(only, "pingpong")) {
        n = 200000 / scale;
        for (int i = 0; i < g_reps; i++)
            k[i] = run_pingpong(n);
        kc_sched_stop();
        snprintf(args, sizeof args, "pingpong %ld", n);
        go_runs(args, "ns_per_op", g_threads, g, &ng);
        report_t("rendezvous rt", "ns", k, g, ng, true, (struct target){0, 2});
    }
    if (want(only, "pc")) {
        static const int pcs[] = {1, 4, 16};
        for (int pi = 0; pi < 3; pi++)
            for (int ci = 0; ci < 3; ci++) {
                int p = pcs[pi], c = pcs[ci];
                n = 1600000 / scale;
                for (int i = 0; i < g_reps; i++)
                    k[i] = run_pc(p, c, n);
                kc_sched_stop();
                snprintf(args, sizeof args, "pc %d %d %ld", p, c, n);
                go_runs(args, "ns_per_op", g_threads, g, &ng);
                char name[32];
                snprintf(name, sizeof name, "buffered %dx%d", p, c);
                report_t(name, "ns", k, g, ng, true, (struct target){0, 1});
            }
    }
    if (want(only, "skynet")) {
        for (int i = 0; i < g_reps; i++)
            k[i] = run_skynet(getenv("SKY") ? atol(getenv("SKY")) : 1000000);
        kc_sched_stop();
        go_runs("skynet", "ms", g_threads, g, &ng);
        report_t("skynet 1M", "ms", k, g, ng, true, (struct target){0, 1});
    }
    return 0;
}
