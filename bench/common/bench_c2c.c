/* Core-to-core round trip (see bench_c2c.h). */
#define _GNU_SOURCE
#include "bench_c2c.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define C2C_BATCH 1000         /* round trips per timed batch               */
#define C2C_BATCHES 201        /* batches; the median ignores preemptions   */
#define C2C_MAX_NS 2000000000ull /* give up measuring more after this     */

/* The bounced line: A stores an odd value, B answers with the next even
 * one. Alone on its cache line so nothing else moves with it. */
struct c2c_shared {
    _Alignas(64) _Atomic uint64_t line; /* the bounced word                  */
    _Alignas(64) _Atomic int stop;      /* tells B to leave (own line)       */
    int cpu_b;                          /* where B runs                      */
    _Atomic int pinned;                 /* B: 1 pinned, -errno failed        */
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int pin_self(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return -pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

static void *c2c_b(void *arg)
{
    struct c2c_shared *s = arg;
    int rc = pin_self(s->cpu_b);
    atomic_store(&s->pinned, rc < 0 ? rc : 1);
    if (rc < 0)
        return NULL;
    /* Answers every odd value with the next even one. No pause
     * instruction: this is the limit, not a polite waiter. */
    while (!atomic_load_explicit(&s->stop, memory_order_relaxed)) {
        uint64_t v = atomic_load_explicit(&s->line, memory_order_acquire);
        if (v & 1)
            atomic_store_explicit(&s->line, v + 1, memory_order_release);
    }
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

struct c2c_run {
    struct c2c_shared *s; /* shared with B                                */
    bench_c2c_t *out;     /* results                                      */
    int cpu_a;            /* where A (this thread) runs                   */
    int rc;               /* 0 or -errno                                  */
};

/* Thread A: a thread of its own so the caller's affinity stays as it is. */
static void *c2c_a(void *arg)
{
    struct c2c_run *r = arg;
    struct c2c_shared *s = r->s;
    static double batch[C2C_BATCHES];
    if ((r->rc = pin_self(r->cpu_a)) < 0)
        return NULL;
    pthread_t b;
    int rc = pthread_create(&b, NULL, c2c_b, s);
    if (rc) {
        r->rc = -rc;
        return NULL;
    }
    while (atomic_load(&s->pinned) == 0)
        sched_yield();
    if (atomic_load(&s->pinned) < 0) {
        r->rc = atomic_load(&s->pinned);
        pthread_join(b, NULL);
        return NULL;
    }
    uint64_t v = 0, start = now_ns();
    int n = 0;
    for (int k = -5; k < C2C_BATCHES; k++) { /* 5 warm-up batches */
        uint64_t t0 = now_ns();
        for (int i = 0; i < C2C_BATCH; i++) {
            atomic_store_explicit(&s->line, v + 1, memory_order_release);
            while (atomic_load_explicit(&s->line, memory_order_acquire) != v + 2)
                ;
            v += 2;
        }
        uint64_t t1 = now_ns();
        if (k >= 0)
            batch[n++] = (double)(t1 - t0) / C2C_BATCH;
        if (t1 - start > C2C_MAX_NS && n >= 5)
            break;
    }
    atomic_store(&s->stop, 1);
    pthread_join(b, NULL);
    qsort(batch, (size_t)n, sizeof *batch, cmp_double);
    r->out->median_ns = batch[n / 2];
    r->out->best_ns = batch[0];
    r->out->batches = n;
    return NULL;
}

int bench_c2c_measure(bench_c2c_t *out)
{
    memset(out, 0, sizeof *out);
    out->cpu_a = out->cpu_b = -1;
    /* Two online CPUs: the first the caller may run on, and another. */
    cpu_set_t mine;
    int a = -1, b = -1;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (ncpu < 2)
        return -ENODEV;
    if (sched_getaffinity(0, sizeof mine, &mine) == 0)
        for (int c = 0; c < CPU_SETSIZE && a < 0; c++)
            if (CPU_ISSET(c, &mine))
                a = c;
    if (a < 0 || a >= ncpu)
        a = 0;
    b = a == 0 ? 1 : 0;

    struct c2c_shared *s = aligned_alloc(64, sizeof *s);
    if (!s)
        return -ENOMEM;
    memset(s, 0, sizeof *s);
    s->cpu_b = b;
    struct c2c_run run = {.s = s, .out = out, .cpu_a = a};
    pthread_t t;
    int rc = pthread_create(&t, NULL, c2c_a, &run);
    if (rc) {
        free(s);
        return -rc;
    }
    pthread_join(t, NULL);
    free(s);
    if (run.rc < 0)
        return run.rc == -EINVAL ? -ENODEV : run.rc;
    out->cpu_a = a;
    out->cpu_b = b;
    return 0;
}

void bench_c2c_print(const bench_c2c_t *c, int rc)
{
    if (rc < 0) {
        printf("core-to-core round trip: not measured (%s)\n",
               rc == -ENODEV ? "fewer than two usable CPUs" : strerror(-rc));
        return;
    }
    printf("core-to-core round trip (CPU %d <-> CPU %d, one cache line): median %.0f ns, "
           "best %.0f ns (%d batches of %d)\n",
           c->cpu_a, c->cpu_b, c->median_ns, c->best_ns, c->batches, C2C_BATCH);
}

double bench_c2c_times(const bench_c2c_t *c, int rc, double ns)
{
    if (rc < 0 || c->batches == 0 || c->median_ns <= 0)
        return 0;
    return ns / c->median_ns;
}

/* ---- one-CPU hand-off floor ---- */

#define YF_BATCH 200   /* round trips per timed batch */
#define YF_BATCHES 25  /* batches (median)            */

struct yf_shared {
    _Alignas(64) _Atomic uint64_t token; /* odd: B's turn, even: A's */
    int cpu;                             /* both threads' CPU        */
    _Atomic int pinned;                  /* B: 1 pinned, -errno      */
    uint64_t rounds;                     /* round trips in all       */
};

static void *yf_b(void *arg)
{
    struct yf_shared *s = arg;
    int rc = pin_self(s->cpu);
    atomic_store(&s->pinned, rc < 0 ? rc : 1);
    if (rc < 0)
        return NULL;
    for (uint64_t i = 0; i < s->rounds; i++) {
        uint64_t t;
        while ((t = atomic_load_explicit(&s->token, memory_order_acquire)) != 2 * i + 1)
            if (t == UINT64_MAX)
                return NULL; /* A gave up */
            else
                sched_yield();
        atomic_store_explicit(&s->token, 2 * i + 2, memory_order_release);
    }
    return NULL;
}

int bench_c2c_yield_floor(double *median_ns, int *cpu_out)
{
    cpu_set_t mine;
    int cpu = -1;
    if (sched_getaffinity(0, sizeof mine, &mine) == 0)
        for (int c = 0; c < CPU_SETSIZE && cpu < 0; c++)
            if (CPU_ISSET(c, &mine))
                cpu = c;
    if (cpu < 0)
        return -ENODEV;
    struct yf_shared *s = aligned_alloc(64, sizeof *s);
    if (!s)
        return -ENOMEM;
    memset(s, 0, sizeof *s);
    s->cpu = cpu;
    s->rounds = (uint64_t)YF_BATCH * YF_BATCHES;
    /* A is the calling thread, pinned for the measurement and restored. */
    pthread_t b;
    int rc = pthread_create(&b, NULL, yf_b, s);
    if (rc) {
        free(s);
        return -rc;
    }
    while (atomic_load(&s->pinned) == 0)
        sched_yield();
    rc = atomic_load(&s->pinned);
    cpu_set_t before;
    bool restore = pthread_getaffinity_np(pthread_self(), sizeof before, &before) == 0;
    if (rc > 0 && (rc = pin_self(cpu)) == 0) {
        double batch[YF_BATCHES];
        uint64_t v = 0;
        for (int k = 0; k < YF_BATCHES; k++) {
            uint64_t t0 = now_ns();
            for (int i = 0; i < YF_BATCH; i++, v += 2) {
                atomic_store_explicit(&s->token, v + 1, memory_order_release);
                while (atomic_load_explicit(&s->token, memory_order_acquire) != v + 2)
                    sched_yield();
            }
            batch[k] = (double)(now_ns() - t0) / YF_BATCH;
        }
        qsort(batch, YF_BATCHES, sizeof *batch, cmp_double);
        *median_ns = batch[YF_BATCHES / 2];
        *cpu_out = cpu;
    } else if (rc > 0) {
        /* We could not pin ourselves: let B finish on its own. */
        atomic_store(&s->token, UINT64_MAX);
    }
    pthread_join(b, NULL);
    if (restore)
        pthread_setaffinity_np(pthread_self(), sizeof before, &before);
    free(s);
    return rc < 0 ? rc : 0;
}

int bench_c2c_yield_floor_procs(double *median_ns, int cpu)
{
    struct yf_shared *s = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                               -1, 0);
    if (s == MAP_FAILED)
        return -errno;
    s->rounds = (uint64_t)YF_BATCH * YF_BATCHES;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    cpu_set_t before;
    bool restore = sched_getaffinity(0, sizeof before, &before) == 0;
    int rc = 0;
    pid_t pid = fork();
    if (pid < 0) {
        rc = -errno;
        munmap(s, 4096);
        return rc;
    }
    if (pid == 0) {
        /* B: only async-signal-safe calls (the parent may have threads). */
        if (sched_setaffinity(0, sizeof set, &set) != 0)
            _exit(1);
        for (uint64_t i = 0; i < s->rounds; i++) {
            uint64_t t;
            while ((t = atomic_load_explicit(&s->token, memory_order_acquire)) != 2 * i + 1)
                if (t == UINT64_MAX)
                    _exit(0);
                else
                    sched_yield();
            atomic_store_explicit(&s->token, 2 * i + 2, memory_order_release);
        }
        _exit(0);
    }
    if (pthread_setaffinity_np(pthread_self(), sizeof set, &set) == 0) {
        double batch[YF_BATCHES];
        uint64_t v = 0;
        for (int k = 0; k < YF_BATCHES; k++) {
            uint64_t t0 = now_ns();
            for (int i = 0; i < YF_BATCH; i++, v += 2) {
                atomic_store_explicit(&s->token, v + 1, memory_order_release);
                while (atomic_load_explicit(&s->token, memory_order_acquire) != v + 2)
                    sched_yield();
            }
            batch[k] = (double)(now_ns() - t0) / YF_BATCH;
        }
        qsort(batch, YF_BATCHES, sizeof *batch, cmp_double);
        *median_ns = batch[YF_BATCHES / 2];
    } else {
        rc = -EINVAL;
        atomic_store(&s->token, UINT64_MAX);
    }
    int st;
    waitpid(pid, &st, 0);
    if (rc == 0 && (!WIFEXITED(st) || WEXITSTATUS(st) != 0))
        rc = -ECHILD; /* B could not pin itself: the figure is not the floor */
    if (restore)
        pthread_setaffinity_np(pthread_self(), sizeof before, &before);
    munmap(s, 4096);
    return rc;
}
