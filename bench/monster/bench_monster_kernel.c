/* bench_monster_kernel: the kernel backend (monster_sampler.ko) against the
 * user-space backend, in the same run on the same machine: non-blocking
 * write+read per sample, a blocked reader's wake-up, and coordinating 256
 * blocked waiters. The qemu test (tests/kmod) runs it in the guest and
 * prints its lines; the figures are reported, never asserted (emulation is
 * slow and noisy). Each figure is the median of --reps runs. */
#define _GNU_SOURCE
#include <ferry/monster.h>

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_REPS 15

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_us(long us)
{
    struct timespec ts = {.tv_sec = us / 1000000, .tv_nsec = (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(double), cmp_d);
    return v[n / 2];
}

/* Is thread tid of this process asleep (state S)? */
static int asleep(pid_t tid)
{
    char path[64], buf[256];
    snprintf(path, sizeof(path), "/proc/self/task/%d/stat", (int)tid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *rp = strrchr(buf, ')');
    return rp && rp[1] == ' ' && rp[2] == 'S';
}

/* Threads of this process other than the caller that are asleep. */
static int asleep_threads(void)
{
    DIR *d = opendir("/proc/self/task");
    int n = 0;
    if (!d)
        return 0;
    for (struct dirent *e; (e = readdir(d));) {
        pid_t tid = (pid_t)atoi(e->d_name);
        if (tid > 0 && tid != gettid() && asleep(tid))
            n++;
    }
    closedir(d);
    return n;
}

static zkprologml_sample_t sample(void)
{
    zkprologml_sample_t s;
    memset(&s, 0, sizeof(s));
    s.pid = 1;
    s.tid = 7;
    snprintf(s.comm, sizeof(s.comm), "bench");
    return s;
}

/* --- 1. non-blocking write+read ------------------------------------------------ */

static double write_read_us(zkprologml_ctx_t *ctx, int pairs)
{
    zkprologml_pipe_t *c = zkprologml_pipe_open(ctx, 12, false);
    zkprologml_pipe_t *p = zkprologml_pipe_open(ctx, 12, true);
    zkprologml_sample_t s = sample();
    double t0 = now_s();
    for (int i = 0; i < pairs; i++) {
        if (zkprologml_pipe_write(p, &s, 0) != 0 || zkprologml_pipe_read(c, &s, 0) != 0) {
            fprintf(stderr, "bench_monster_kernel: write+read failed\n");
            exit(1);
        }
    }
    double t = (now_s() - t0) / pairs * 1e6;
    zkprologml_pipe_close(p);
    zkprologml_pipe_close(c);
    return t;
}

/* --- 2. blocked reader woken ------------------------------------------------------ */

struct wake {
    zkprologml_pipe_t *c;  /* consumer end                       */
    int n;                 /* rounds                             */
    _Atomic pid_t tid;     /* the reader's thread id             */
    _Atomic int round;     /* rounds the reader has finished     */
    double sent[64];       /* when round i's sample was written  */
    double lat[64];        /* write to read returning, seconds   */
};

static void *wake_reader(void *a)
{
    struct wake *w = a;
    zkprologml_sample_t s;
    atomic_store(&w->tid, gettid());
    for (int i = 0; i < w->n; i++) {
        if (zkprologml_pipe_read(w->c, &s, -1) < 0)
            break;
        w->lat[i] = now_s() - w->sent[i];
        atomic_store(&w->round, i + 1);
    }
    return NULL;
}

static double wake_us(zkprologml_ctx_t *ctx, int rounds)
{
    static struct wake w;
    memset(&w, 0, sizeof(w));
    w.n = rounds;
    w.c = zkprologml_pipe_open(ctx, 13, false);
    zkprologml_pipe_t *p = zkprologml_pipe_open(ctx, 13, true);
    zkprologml_sample_t s = sample();
    pthread_t th;
    pthread_create(&th, NULL, wake_reader, &w);
    for (int i = 0; i < rounds; i++) {
        /* The reader finished the previous round and sleeps in the read. */
        while (atomic_load(&w.round) < i || atomic_load(&w.tid) == 0 ||
               !asleep(atomic_load(&w.tid)))
            sleep_us(100);
        w.sent[i] = now_s();
        zkprologml_pipe_write(p, &s, -1);
    }
    pthread_join(th, NULL);
    zkprologml_pipe_close(p);
    zkprologml_pipe_close(w.c);
    return median(w.lat, rounds) * 1e6;
}

/* --- 3. coordinate 256 waiters ------------------------------------------------------ */

struct waiter {
    zkprologml_wait_t *w; /* its wait state */
    double done;          /* when it woke   */
};

static void *coord_waiter(void *a)
{
    struct waiter *c = a;
    zkprologml_wait_for_coord(c->w, -1);
    c->done = now_s();
    return NULL;
}

/* Milliseconds from the coordinate call until the last waiter ran. */
static double coordinate_ms(zkprologml_ctx_t *ctx)
{
    enum { C = ZKPROLOGML_WAIT_STATES };
    static struct waiter ca[C];
    static pthread_t th[C];
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    int made = 0;
    for (int i = 0; i < C; i++) {
        ca[i].w = zkprologml_wait_create(ctx, 77);
        if (!ca[i].w || pthread_create(&th[i], &attr, coord_waiter, &ca[i]) != 0)
            break;
        made++;
    }
    pthread_attr_destroy(&attr);
    while (asleep_threads() < made) /* every waiter is blocked */
        sleep_us(1000);
    double c0 = now_s(), last = c0;
    int got = zkprologml_coordinate_shard(ctx, 77);
    for (int i = 0; i < made; i++) {
        pthread_join(th[i], NULL);
        if (ca[i].done > last)
            last = ca[i].done;
        zkprologml_wait_free(ca[i].w);
    }
    if (got != made || made != C)
        fprintf(stderr, "bench_monster_kernel: %d waiters, %d coordinated\n", made, got);
    return (last - c0) * 1e3;
}

/* --- driver ------------------------------------------------------------------------- */

struct figures {
    double wr_us;    /* write+read per sample      */
    double wake_us;  /* blocked reader woken       */
    double coord_ms; /* coordinate 256 waiters     */
};

static int run(zkprologml_backend_t be, int reps, int pairs, struct figures *out)
{
    zkprologml_config_t cfg;
    zkprologml_config_default(&cfg);
    cfg.backend = be;
    char name[32];
    snprintf(name, sizeof(name), "bench-kmod-%d", (int)getpid());
    cfg.name = name;
    zkprologml_ctx_t *ctx;
    int rc = zkprologml_open(&ctx, &cfg);
    if (rc < 0) {
        fprintf(stderr, "bench_monster_kernel: open %s backend: %s\n",
                be == ZKPROLOGML_BACKEND_KERNEL ? "kernel" : "user", zkprologml_last_error());
        return rc;
    }
    double wr[MAX_REPS], wk[MAX_REPS], co[MAX_REPS];
    for (int r = 0; r < reps; r++) {
        wr[r] = write_read_us(ctx, pairs);
        wk[r] = wake_us(ctx, 64);
        co[r] = coordinate_ms(ctx);
    }
    out->wr_us = median(wr, reps);
    out->wake_us = median(wk, reps);
    out->coord_ms = median(co, reps);
    zkprologml_close(ctx);
    if (be == ZKPROLOGML_BACKEND_USER)
        zkprologml_unlink(name);
    return 0;
}

int main(int argc, char **argv)
{
    int reps = 3, pairs = 20000;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            reps = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--pairs") && i + 1 < argc) {
            pairs = atoi(argv[++i]);
        } else {
            printf("usage: bench_monster_kernel [--reps N (3)] [--pairs N (20000)]\n"
                   "The kernel backend (needs monster_sampler.ko loaded) against the\n"
                   "user-space backend in the same run: write+read per sample, blocked\n"
                   "reader wake-up (median of 64), coordinate 256 blocked waiters; each\n"
                   "the median of N reps. Lines start with KBENCH; figures, no targets.\n");
            return strcmp(argv[i], "--help") && strcmp(argv[i], "-h") ? 2 : 0;
        }
    }
    if (reps < 1 || reps > MAX_REPS || pairs < 1) {
        fprintf(stderr, "bench_monster_kernel: --reps 1..%d, --pairs >= 1\n", MAX_REPS);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct figures k, u;
    if (run(ZKPROLOGML_BACKEND_KERNEL, reps, pairs, &k) < 0 ||
        run(ZKPROLOGML_BACKEND_USER, reps, pairs, &u) < 0)
        return 1;
    printf("KBENCH median of %d reps, %ld CPUs\n", reps, sysconf(_SC_NPROCESSORS_ONLN));
    printf("KBENCH %-36s kernel %9.2f us  user %9.2f us  kernel/user %6.2fx\n",
           "write+read per sample (1 thread)", k.wr_us, u.wr_us, k.wr_us / u.wr_us);
    printf("KBENCH %-36s kernel %9.1f us  user %9.1f us  kernel/user %6.2fx\n",
           "blocked reader woken (median)", k.wake_us, u.wake_us, k.wake_us / u.wake_us);
    printf("KBENCH %-36s kernel %9.2f ms  user %9.2f ms  kernel/user %6.2fx\n",
           "coordinate 256 waiters (last ran)", k.coord_ms, u.coord_ms, k.coord_ms / u.coord_ms);
    return 0;
}
