/* bench_monster: the Monster user-space backend against POSIX pipe(2) and
 * POSIX message queues, same 64-byte sample, same run. Prints the spec's
 * figures and the targets:
 *   1. non-blocking write+read, one thread       (target >= 10M/s, >= 10x pipe(2))
 *   2. streaming between two processes           (informational, vs pipe(2))
 *   3. a blocked reader woken by a write         (target <= 20 us; vs pipe(2))
 *   4. create a wait state                       (target <= 10 us)
 *   5. coordinate a shard with 256 blocked waiters, until the last one runs
 *                                                (target <= 100 us)
 * Usage: bench_monster [scale]   (scale multiplies the iteration counts, default 1)
 * Figures on a shared, oversubscribed machine are noisy: run it a few times. */
#define _GNU_SOURCE
#include <ferry/monster.h>

#include <errno.h>
#include <fcntl.h>
#include <mqueue.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* This thread's CPU time (user + system): on a shared machine the wall
 * clock also counts the time other processes held the CPU. */
static uint64_t cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Rates of one run: per wall second and per CPU second. */
typedef struct rate {
    double wall; /* samples per wall-clock second */
    double cpu;  /* samples per CPU second        */
} rate_t;

static rate_t rate_of(long n, uint64_t wall0, uint64_t cpu0)
{
    uint64_t w = now_ns() - wall0, c = cpu_ns() - cpu0;
    return (rate_t){n / (w / 1e9), n / ((c ? c : 1) / 1e9)};
}

static void die(const char *what, int err)
{
    fprintf(stderr, "bench_monster: %s: %s (%s)\n", what, strerror(err < 0 ? -err : err),
            zkprologml_last_error());
    exit(1);
}

static char seg_name[64];

static zkprologml_ctx_t *open_ctx(uint32_t cap)
{
    zkprologml_config_t cfg;
    zkprologml_config_default(&cfg);
    cfg.name = seg_name;
    for (int i = 0; i < ZKPROLOGML_PIPES; i++)
        cfg.capacity[i] = cap;
    zkprologml_ctx_t *ctx;
    int rc = zkprologml_open(&ctx, &cfg);
    if (rc < 0)
        die("open", rc);
    return ctx;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* --- 1. non-blocking write+read in one thread ------------------------------ */

static rate_t monster_pingpong(zkprologml_ctx_t *ctx, long n)
{
    zkprologml_pipe_t *w = zkprologml_pipe_open(ctx, 0, true);
    zkprologml_pipe_t *r = zkprologml_pipe_open(ctx, 0, false);
    zkprologml_sample_t s = {.pid = 1}, got;
    uint64_t t0 = now_ns(), c0 = cpu_ns();
    for (long i = 0; i < n; i++) {
        s.tid = (uint32_t)i;
        if (zkprologml_pipe_write(w, &s, 0) != 0 || zkprologml_pipe_read(r, &got, 0) != 0)
            die("write+read", -EIO);
    }
    rate_t rt = rate_of(n, t0, c0);
    zkprologml_pipe_close(w);
    zkprologml_pipe_close(r);
    return rt;
}

static rate_t pipe_pingpong(long n)
{
    int fd[2];
    if (pipe(fd) < 0)
        die("pipe", errno);
    zkprologml_sample_t s = {.pid = 1}, got;
    uint64_t t0 = now_ns(), c0 = cpu_ns();
    for (long i = 0; i < n; i++)
        if (write(fd[1], &s, sizeof(s)) != sizeof(s) || read(fd[0], &got, sizeof(got)) != sizeof(got))
            die("pipe write+read", errno);
    rate_t rt = rate_of(n, t0, c0);
    close(fd[0]);
    close(fd[1]);
    return rt;
}

static rate_t mq_pingpong(long n)
{
    char name[64];
    snprintf(name, sizeof(name), "/ferry-bench-mq-%d", (int)getpid());
    struct mq_attr a = {.mq_maxmsg = 8, .mq_msgsize = sizeof(zkprologml_sample_t)};
    mqd_t q = mq_open(name, O_RDWR | O_CREAT | O_EXCL, 0600, &a);
    if (q == (mqd_t)-1) {
        fprintf(stderr, "bench_monster: mq_open: %s (message queues unavailable)\n", strerror(errno));
        return (rate_t){0, 0};
    }
    mq_unlink(name);
    zkprologml_sample_t s = {.pid = 1}, got;
    uint64_t t0 = now_ns(), c0 = cpu_ns();
    for (long i = 0; i < n; i++)
        if (mq_send(q, (const char *)&s, sizeof(s), 0) < 0 ||
            mq_receive(q, (char *)&got, sizeof(got), NULL) != sizeof(got))
            die("mq send+receive", errno);
    rate_t rt = rate_of(n, t0, c0);
    mq_close(q);
    return rt;
}

/* --- 2. streaming between two processes ------------------------------------- */

static double monster_stream(long n)
{
    zkprologml_ctx_t *ctx = open_ctx(1024);
    zkprologml_pipe_t *r = zkprologml_pipe_open(ctx, 1, false);
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        zkprologml_ctx_t *c = open_ctx(1024);
        zkprologml_pipe_t *w = zkprologml_pipe_open(c, 1, true);
        zkprologml_sample_t s = {.pid = 2};
        for (long i = 0; i < n; i++)
            if (zkprologml_pipe_write(w, &s, -1) != 0)
                _exit(1);
        zkprologml_pipe_close(w);
        _exit(0);
    }
    zkprologml_sample_t got;
    long k = 0;
    uint64_t t0 = now_ns();
    while (zkprologml_pipe_read(r, &got, -1) == 0)
        k++;
    uint64_t dt = now_ns() - t0;
    waitpid(pid, NULL, 0);
    zkprologml_close(ctx);
    if (k != n)
        die("stream count", -EIO);
    return n / (dt / 1e9);
}

static double pipe_stream(long n)
{
    int fd[2];
    if (pipe(fd) < 0)
        die("pipe", errno);
    pid_t pid = fork();
    if (pid == 0) {
        close(fd[0]);
        zkprologml_sample_t s = {.pid = 2};
        for (long i = 0; i < n; i++)
            if (write(fd[1], &s, sizeof(s)) != sizeof(s))
                _exit(1);
        _exit(0);
    }
    close(fd[1]);
    zkprologml_sample_t got;
    long k = 0;
    uint64_t t0 = now_ns();
    for (;;) {
        ssize_t m = read(fd[0], &got, sizeof(got)); /* writes <= PIPE_BUF are atomic */
        if (m <= 0)
            break;
        k++;
    }
    uint64_t dt = now_ns() - t0;
    waitpid(pid, NULL, 0);
    close(fd[0]);
    return k / (dt / 1e9);
}

/* --- 3. blocked reader wake-up ----------------------------------------------- */

typedef struct wake_arg {
    zkprologml_pipe_t *pipe; /* monster reader, or NULL for pipe(2) */
    int fd;                  /* pipe(2) read end                    */
    int rounds;              /* samples to wait for                 */
    uint64_t *lat;           /* per round: woken - written          */
} wake_arg_t;

static void *wake_reader(void *p)
{
    wake_arg_t *a = p;
    for (int i = 0; i < a->rounds; i++) {
        zkprologml_sample_t s;
        if (a->pipe) {
            if (zkprologml_pipe_read(a->pipe, &s, -1) != 0)
                return NULL;
        } else if (read(a->fd, &s, sizeof(s)) != sizeof(s)) {
            return NULL;
        }
        a->lat[i] = now_ns() - s.timestamp_ns;
    }
    return NULL;
}

static void sleep_us(long us)
{
    struct timespec ts = {.tv_sec = 0, .tv_nsec = us * 1000};
    nanosleep(&ts, NULL);
}

/* Median and 90th percentile of the wake-up latency in us. */
static void wake_latency(zkprologml_ctx_t *ctx, bool use_pipe, int rounds, double *med, double *p90)
{
    uint64_t *lat = calloc((size_t)rounds, sizeof(*lat));
    int fd[2] = {-1, -1};
    zkprologml_pipe_t *w = NULL, *r = NULL;
    if (use_pipe) {
        if (pipe(fd) < 0)
            die("pipe", errno);
    } else {
        w = zkprologml_pipe_open(ctx, 2, true);
        r = zkprologml_pipe_open(ctx, 2, false);
    }
    wake_arg_t a = {.pipe = r, .fd = fd[0], .rounds = rounds, .lat = lat};
    pthread_t t;
    pthread_create(&t, NULL, wake_reader, &a);
    for (int i = 0; i < rounds; i++) {
        sleep_us(1000); /* the reader is asleep by now */
        zkprologml_sample_t s = {.pid = 3, .timestamp_ns = now_ns()};
        if (use_pipe ? write(fd[1], &s, sizeof(s)) != sizeof(s) : zkprologml_pipe_write(w, &s, -1) != 0)
            die("wake write", -EIO);
    }
    pthread_join(t, NULL);
    qsort(lat, (size_t)rounds, sizeof(*lat), cmp_u64);
    *med = lat[rounds / 2] / 1e3;
    *p90 = lat[rounds * 9 / 10] / 1e3;
    free(lat);
    if (use_pipe) {
        close(fd[0]);
        close(fd[1]);
    } else {
        zkprologml_pipe_close(w);
        zkprologml_pipe_close(r);
    }
}

/* --- 4. create a wait state ----------------------------------------------------- */

static double create_wait_us(zkprologml_ctx_t *ctx, int rounds)
{
    zkprologml_wait_t *w[ZKPROLOGML_WAIT_STATES];
    uint64_t total = 0;
    long n = 0;
    for (int r = 0; r < rounds; r++) {
        uint64_t t0 = now_ns();
        for (int i = 0; i < 64; i++)
            if (!(w[i] = zkprologml_wait_create(ctx, i)))
                die("wait_create", errno);
        total += now_ns() - t0;
        n += 64;
        for (int i = 0; i < 64; i++)
            zkprologml_wait_free(w[i]);
    }
    return total / 1e3 / n;
}

/* --- 5. coordinate 256 waiters ----------------------------------------------------- */

enum { WAITERS = ZKPROLOGML_WAIT_STATES };

typedef struct coord_shared {
    pthread_barrier_t done;      /* waiters + main, after each round  */
    _Atomic uint64_t last_wake;  /* latest wake time this round      */
    _Atomic int woken;           /* waiters back from wait_for_coord */
    _Atomic int stop;            /* end of the benchmark             */
} coord_shared_t;

typedef struct coord_arg {
    zkprologml_wait_t *w;        /* this waiter's wait state */
    coord_shared_t *sh;          /* shared                   */
} coord_arg_t;

static void *coord_waiter(void *p)
{
    coord_arg_t *a = p;
    for (;;) {
        zkprologml_signal_ready(a->w);
        if (zkprologml_wait_for_coord(a->w, -1) != 0)
            return NULL;
        uint64_t t = now_ns(), cur = atomic_load(&a->sh->last_wake);
        while (t > cur && !atomic_compare_exchange_weak(&a->sh->last_wake, &cur, t))
            ;
        atomic_fetch_add(&a->sh->woken, 1);
        /* Nobody signals ready again until every waiter ran: the next
         * round's barrier traffic stays out of this round's measurement. */
        pthread_barrier_wait(&a->sh->done);
        if (atomic_load(&a->sh->stop))
            return NULL;
    }
}

static void coordinate_latency(zkprologml_ctx_t *ctx, int rounds, double *med, double *worst,
                               double *call_med, int *count)
{
    static coord_arg_t args[WAITERS];
    static pthread_t th[WAITERS];
    static coord_shared_t sh;
    pthread_barrier_init(&sh.done, NULL, WAITERS + 1);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    for (int i = 0; i < WAITERS; i++) {
        args[i] = (coord_arg_t){.w = zkprologml_wait_create(ctx, 200), .sh = &sh};
        if (!args[i].w)
            die("wait_create", errno);
        pthread_create(&th[i], &attr, coord_waiter, &args[i]);
    }
    uint64_t *lat = calloc((size_t)rounds, sizeof(*lat));
    uint64_t *call = calloc((size_t)rounds, sizeof(*call));
    for (int r = 0; r < rounds; r++) {
        /* Barrier: every waiter signalled ready; then give them time to fall asleep. */
        if (zkprologml_wait_ready(ctx, 200, WAITERS, 60000) < WAITERS)
            die("barrier", -ETIME);
        sleep_us(20000);
        if (r == rounds - 1)
            atomic_store(&sh.stop, 1);
        atomic_store(&sh.woken, 0);
        atomic_store(&sh.last_wake, 0);
        uint64_t t0 = now_ns();
        *count = zkprologml_coordinate_shard(ctx, 200);
        call[r] = now_ns() - t0;
        while (atomic_load(&sh.woken) < WAITERS)
            sleep_us(100);
        lat[r] = atomic_load(&sh.last_wake) - t0;
        pthread_barrier_wait(&sh.done);
    }
    for (int i = 0; i < WAITERS; i++) {
        pthread_join(th[i], NULL);
        zkprologml_wait_free(args[i].w);
    }
    pthread_barrier_destroy(&sh.done);
    qsort(lat, (size_t)rounds, sizeof(*lat), cmp_u64);
    *med = lat[rounds / 2] / 1e3;
    *worst = lat[rounds - 1] / 1e3;
    qsort(call, (size_t)rounds, sizeof(*call), cmp_u64);
    *call_med = call[rounds / 2] / 1e3;
    free(lat);
    free(call);
}

int main(int argc, char **argv)
{
    if (argc > 1 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        printf("usage: bench_monster [scale]\n"
               "Monster pipes and wait states vs pipe(2) and POSIX message queues, same run.\n");
        return 0;
    }
    double scale = argc > 1 ? atof(argv[1]) : 1;
    if (!(scale > 0))
        scale = 1;
    snprintf(seg_name, sizeof(seg_name), "bench%d", (int)getpid());
    zkprologml_ctx_t *ctx = open_ctx(1024);
    long n = (long)(2000000 * scale);

    printf("== 1. non-blocking write+read of one 64-byte sample, one thread (%ld) ==\n", n);
    rate_t m = monster_pingpong(ctx, n), p = pipe_pingpong(n / 4), q = mq_pingpong(n / 4);
    printf("            per wall second       per CPU second (this thread, user+system)\n");
    printf("monster  %9.2f M/s         %9.2f M/s   (target >= 10 M/s)\n", m.wall / 1e6, m.cpu / 1e6);
    printf("pipe(2)  %9.2f M/s         %9.2f M/s   ratio monster/pipe = %.1fx wall, %.1fx CPU (target >= 10x)\n",
           p.wall / 1e6, p.cpu / 1e6, m.wall / p.wall, m.cpu / p.cpu);
    if (q.wall > 0)
        printf("mq       %9.2f M/s         %9.2f M/s   ratio monster/mq   = %.1fx wall, %.1fx CPU\n",
               q.wall / 1e6, q.cpu / 1e6, m.wall / q.wall, m.cpu / q.cpu);

    long sn = (long)(1000000 * scale);
    printf("== 2. streaming between two processes (%ld samples, blocking) ==\n", sn);
    double ms = monster_stream(sn), ps = pipe_stream(sn);
    printf("monster  %10.2f M samples/s\npipe(2)  %10.2f M samples/s   ratio = %.1fx\n", ms / 1e6,
           ps / 1e6, ms / ps);

    int wr = (int)(300 * scale);
    double mmed, mp90, pmed, pp90;
    wake_latency(ctx, false, wr, &mmed, &mp90);
    wake_latency(ctx, true, wr, &pmed, &pp90);
    printf("== 3. blocked reader woken by a write (%d rounds) ==\n", wr);
    printf("monster  median %7.1f us  p90 %7.1f us   (target <= 20 us)\n", mmed, mp90);
    printf("pipe(2)  median %7.1f us  p90 %7.1f us   ratio pipe/monster (median) = %.2fx\n", pmed,
           pp90, pmed / mmed);

    printf("== 4. create a wait state ==\n");
    printf("monster  %7.2f us per create   (target <= 10 us)\n", create_wait_us(ctx, (int)(200 * scale)));

    int cr = (int)(20 * scale), count = 0;
    double cmed, cworst, ccall;
    coordinate_latency(ctx, cr < 3 ? 3 : cr, &cmed, &cworst, &ccall, &count);
    printf("== 5. coordinate a shard with %d blocked waiters, until the last one runs (%d rounds) ==\n",
           count, cr < 3 ? 3 : cr);
    printf("monster  median %8.1f us  worst %8.1f us   (target <= 100 us)\n", cmed, cworst);
    printf("         the coordinate call itself (wakes all, returns): median %.1f us\n", ccall);

    zkprologml_close(ctx);
    zkprologml_unlink(seg_name);
    return 0;
}
