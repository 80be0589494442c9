/* The Monster tests against the kernel backend, run inside the qemu guest
 * by tests/kmod/init (built statically; Criterion cannot be linked
 * statically). Each test runs in its own child process under alarm(), and
 * prints exactly one line "KTEST <name> PASS" or "KTEST <name> FAIL <why>",
 * which tests/kmod/run.sh reads from the console log.
 * `guest_test bench` prints "KBENCH ..." figures (not asserted) for the
 * kernel and the user-space backend. */
#define _GNU_SOURCE
#include <ferry/monster.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/klog.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DEV "/dev/monster_sampler"
#define DBG "/sys/kernel/debug/monster_sampler"

static char why[512];

#define CHECK(cond, ...)                                                                \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            snprintf(why, sizeof(why), "line %d: %s: ", __LINE__, #cond);               \
            size_t l_ = strlen(why);                                                    \
            snprintf(why + l_, sizeof(why) - l_, __VA_ARGS__);                          \
            return -1;                                                                  \
        }                                                                               \
    } while (0)

static zkprologml_ctx_t *kopen(void)
{
    zkprologml_config_t cfg;
    zkprologml_config_default(&cfg);
    cfg.backend = ZKPROLOGML_BACKEND_KERNEL;
    zkprologml_ctx_t *ctx = NULL;
    if (zkprologml_open(&ctx, &cfg) < 0)
        return NULL;
    return ctx;
}

static zkprologml_sample_t mk(uint32_t i)
{
    zkprologml_sample_t s;
    memset(&s, 0, sizeof(s));
    s.pid = i;
    s.tid = i * 7u;
    s.timestamp_ns = (uint64_t)i * 1000003u;
    snprintf(s.comm, sizeof(s.comm), "s%u", i);
    return s;
}

/* --- tests --------------------------------------------------------------------- */

static int t_auto_detect(void)
{
    unsetenv("FERRY_MONSTER_BACKEND");
    zkprologml_ctx_t *ctx = NULL;
    int rc = zkprologml_open(&ctx, NULL);
    CHECK(rc == 0, "open %d %s", rc, zkprologml_last_error());
    CHECK(strcmp(zkprologml_backend_name(ctx), "kernel") == 0, "%s", zkprologml_backend_name(ctx));
    zkprologml_close(ctx);
    setenv("FERRY_MONSTER_BACKEND", "user", 1);
    rc = zkprologml_open(&ctx, NULL);
    CHECK(rc == 0 && strcmp(zkprologml_backend_name(ctx), "user") == 0, "env user %d", rc);
    zkprologml_close(ctx);
    zkprologml_unlink(NULL);
    setenv("FERRY_MONSTER_BACKEND", "kernel", 1);
    rc = zkprologml_open(&ctx, NULL);
    CHECK(rc == 0 && strcmp(zkprologml_backend_name(ctx), "kernel") == 0, "env kernel %d", rc);
    zkprologml_close(ctx);
    return 0;
}

static int t_fifo(void)
{
    zkprologml_ctx_t *ctx = kopen();
    CHECK(ctx, "open");
    zkprologml_pipe_t *c = zkprologml_pipe_open(ctx, 3, false);
    zkprologml_pipe_t *p = zkprologml_pipe_open(ctx, 3, true);
    CHECK(c && p, "pipe open");
    for (uint32_t i = 1; i <= 500; i++) {
        zkprologml_sample_t s = mk(i);
        CHECK(zkprologml_pipe_write(p, &s, 0) == 0, "write %u", i);
        if (i % 3 == 0) {
            zkprologml_sample_t r;
            static uint32_t next = 1;
            CHECK(zkprologml_pipe_read(c, &r, 0) == 0, "read");
            CHECK(r.pid == next && r.tid == next * 7u, "got %u want %u", r.pid, next);
            next++;
        }
    }
    zkprologml_pipe_close(p);
    zkprologml_pipe_close(c);
    zkprologml_close(ctx);
    return 0;
}

static int t_try_and_timeout(void)
{
    zkprologml_ctx_t *ctx = kopen();
    CHECK(ctx, "open");
    zkprologml_pipe_t *p = zkprologml_pipe_open(ctx, 4, true);
    zkprologml_sample_t s = mk(1);
    CHECK(zkprologml_pipe_write(p, &s, 0) == -EAGAIN, "writer without consumer: try");
    CHECK(zkprologml_pipe_write(p, &s, 30) == -ETIME, "writer without consumer: timeout");
    zkprologml_pipe_t *c = zkprologml_pipe_open(ctx, 4, false);
    CHECK(zkprologml_pipe_read(c, &s, 0) == -EAGAIN, "empty: try");
    CHECK(zkprologml_pipe_read(c, &s, 30) == -ETIME, "empty: timeout");
    CHECK(zkprologml_pipe_write(c, &s, 0) == -EBADF, "write on consumer");
    CHECK(zkprologml_pipe_read(p, &s, 0) == -EBADF, "read on producer");
    /* Full: capacity (module default 1024) then -EAGAIN. */
    zkprologml_pipe_status_t st[ZKPROLOGML_PIPES];
    CHECK(zkprologml_pipe_status(ctx, st) == 0, "status");
    uint32_t cap = st[4].capacity;
    CHECK(cap == 1024, "capacity %u", cap);
    for (uint32_t i = 0; i < cap; i++)
        CHECK(zkprologml_pipe_write(p, &s, 0) == 0, "fill %u", i);
    CHECK(zkprologml_pipe_write(p, &s, 0) == -EAGAIN, "full: try");
    CHECK(zkprologml_pipe_write(p, &s, 20) == -ETIME, "full: timeout");
    CHECK(zkprologml_pipe_status(ctx, st) == 0 && st[4].count == cap && st[4].written == cap,
          "count %u", st[4].count);
    zkprologml_close(ctx); /* closes both ends: a fresh session next time */
    ctx = kopen();
    CHECK(zkprologml_pipe_status(ctx, st) == 0 && st[4].count == 0 && st[4].closed == 0,
          "new session count %u closed %u", st[4].count, st[4].closed);
    zkprologml_close(ctx);
    return 0;
}

static int t_end_of_stream(void)
{
    zkprologml_ctx_t *ctx = kopen();
    zkprologml_pipe_t *c = zkprologml_pipe_open(ctx, 5, false);
    zkprologml_pipe_t *p = zkprologml_pipe_open(ctx, 5, true);
    zkprologml_sample_t s = mk(9);
    CHECK(zkprologml_pipe_write(p, &s, 0) == 0 && zkprologml_pipe_write(p, &s, 0) == 0, "write");
    zkprologml_pipe_close(p);
    CHECK(zkprologml_pipe_read(c, &s, 0) == 0 && zkprologml_pipe_read(c, &s, 0) == 0, "drain");
    CHECK(zkprologml_pipe_read(c, &s, -1) == -EPIPE, "then EPIPE");
    zkprologml_pipe_close(c);
    /* Consumer gone: the writer gets EPIPE. */
    p = zkprologml_pipe_open(ctx, 6, true);
    c = zkprologml_pipe_open(ctx, 6, false);
    zkprologml_pipe_close(c);
    CHECK(zkprologml_pipe_write(p, &s, -1) == -EPIPE, "writer EPIPE");
    zkprologml_close(ctx);
    return 0;
}

static int t_bad_values(void)
{
    zkprologml_ctx_t *ctx = kopen();
    CHECK(zkprologml_pipe_open(ctx, 15, true) == NULL && errno == EINVAL, "ring 15");
    CHECK(zkprologml_wait_create(ctx, 256) == NULL && errno == EINVAL, "shard 256");
    zkprologml_close(ctx);
    /* The raw ioctls: the module checks everything itself. */
    int fd = open(DEV, O_RDWR);
    CHECK(fd >= 0, "open %s", strerror(errno));
    int bad[] = {15, -1, 0x200, 0x10000, 15 | MONSTER_PIPE_PRODUCER};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK(ioctl(fd, MONSTER_IOC_PIPE_OPEN, &bad[i]) < 0 && errno == EINVAL, "ring %#x", bad[i]);
    CHECK(ioctl(fd, MONSTER_IOC_PIPE_OPEN, (void *)16) < 0 && errno == EFAULT, "bad pointer");
    struct process_sample s;
    CHECK(ioctl(fd, MONSTER_IOC_PIPE_READ, &s) < 0 && errno == EBADF, "read without pipe");
    CHECK(ioctl(fd, MONSTER_IOC_PIPE_CLOSE) < 0 && errno == EBADF, "close without pipe");
    CHECK(ioctl(fd, MONSTER_IOC_SIGNAL_READY) < 0 && errno == EBADF, "ready without wait");
    CHECK(ioctl(fd, _IO(MONSTER_IOC_MAGIC, 99)) < 0 && errno == ENOTTY, "unknown cmd");
    int ring = 7 | MONSTER_PIPE_PRODUCER;
    CHECK(ioctl(fd, MONSTER_IOC_PIPE_OPEN, &ring) == 0, "open 7");
    CHECK(ioctl(fd, MONSTER_IOC_PIPE_OPEN, &ring) < 0 && errno == EBUSY, "second pipe on one fd");
    struct monster_xfer x = {.sample = 8, .timeout_ms = 0};
    CHECK(ioctl(fd, MONSTER_IOC_PIPE_WRITE_T, &x) < 0 && errno == EFAULT, "bad sample pointer");
    x.reserved = 1;
    CHECK(ioctl(fd, MONSTER_IOC_PIPE_WRITE_T, &x) < 0 && errno == EINVAL, "reserved");
    struct monster_barrier b = {.shard = 256, .n = 1};
    CHECK(ioctl(fd, MONSTER_IOC_WAIT_READY, &b) < 0 && errno == EINVAL, "barrier shard 256");
    b = (struct monster_barrier){.shard = 1, .n = 257};
    CHECK(ioctl(fd, MONSTER_IOC_WAIT_READY, &b) < 0 && errno == EINVAL, "barrier n 257");
    struct monster_buf mb = {.ptr = 8, .n = 15};
    CHECK(ioctl(fd, MONSTER_IOC_PIPE_STATUS, &mb) < 0 && errno == EFAULT, "status bad ptr");
    mb = (struct monster_buf){.ptr = 8, .n = 4, .timeout_ms = -1};
    CHECK(ioctl(fd, MONSTER_IOC_READ_SAMPLES, &mb) < 0 && errno == EFAULT, "samples bad ptr");
    uint8_t sh = 3;
    CHECK(ioctl(fd, MONSTER_IOC_WAIT_CREATE, &sh) == 0, "wait create");
    CHECK(ioctl(fd, MONSTER_IOC_WAIT_CREATE, &sh) < 0 && errno == EBUSY, "second wait on one fd");
    close(fd);
    return 0;
}

struct rd_arg {
    zkprologml_pipe_t *c;   /* consumer end */
    int rc;                 /* read result  */
    uint32_t pid;           /* sample read  */
};

static void *reader(void *a)
{
    struct rd_arg *r = a;
    zkprologml_sample_t s;
    r->rc = zkprologml_pipe_read(r->c, &s, -1);
    r->pid = s.pid;
    return NULL;
}

static int t_blocked_reader_woken(void)
{
    zkprologml_ctx_t *ctx = kopen();
    struct rd_arg r = {.c = zkprologml_pipe_open(ctx, 8, false), .rc = 1};
    zkprologml_pipe_t *p = zkprologml_pipe_open(ctx, 8, true);
    pthread_t th;
    pthread_create(&th, NULL, reader, &r);
    usleep(100000); /* let it block (correct either way: the write wakes or precedes it) */
    zkprologml_sample_t s = mk(42);
    CHECK(zkprologml_pipe_write(p, &s, -1) == 0, "write");
    pthread_join(th, NULL);
    CHECK(r.rc == 0 && r.pid == 42, "reader rc %d pid %u", r.rc, r.pid);
    /* And a close wakes a blocked reader with EPIPE. */
    r.rc = 1;
    pthread_create(&th, NULL, reader, &r);
    usleep(100000);
    zkprologml_pipe_close(p);
    pthread_join(th, NULL);
    CHECK(r.rc == -EPIPE, "reader after close %d", r.rc);
    zkprologml_close(ctx);
    return 0;
}

static int t_wait_coord(void)
{
    zkprologml_ctx_t *ctx = kopen();
    zkprologml_wait_t *w[4];
    for (int i = 0; i < 3; i++)
        w[i] = zkprologml_wait_create(ctx, 5);
    w[3] = zkprologml_wait_create(ctx, 6);
    for (int i = 0; i < 4; i++)
        CHECK(w[i], "create %d", i);
    for (int i = 1; i < 4; i++)
        CHECK(zkprologml_wait_sequence(w[i]) > zkprologml_wait_sequence(w[i - 1]), "sequence");
    CHECK(zkprologml_wait_for_coord(w[0], 0) == -EAGAIN, "not yet");
    CHECK(zkprologml_wait_for_coord(w[0], 20) == -ETIME, "timeout");
    CHECK(zkprologml_coordinate_shard(ctx, 5) == 3, "count");
    for (int i = 0; i < 3; i++) {
        CHECK(zkprologml_wait_for_coord(w[i], 0) == 0, "kept %d", i);
        CHECK(zkprologml_wait_for_coord(w[i], 0) == -EAGAIN, "consumed once %d", i);
    }
    CHECK(zkprologml_wait_for_coord(w[3], 0) == -EAGAIN, "other shard");
    /* Barrier. */
    CHECK(zkprologml_signal_ready(w[0]) == 0 && zkprologml_signal_ready(w[1]) == 0, "ready");
    CHECK(zkprologml_wait_ready(ctx, 5, 2, 0) == 2, "barrier 2");
    CHECK(zkprologml_wait_ready(ctx, 5, 3, 0) == -EAGAIN, "barrier 3");
    CHECK(zkprologml_coordinate_shard(ctx, 5) == 3, "count again");
    CHECK(zkprologml_wait_ready(ctx, 5, 1, 0) == -EAGAIN, "ready cleared");
    zkprologml_log_entry_t log[4];
    int n = zkprologml_log_read(ctx, log, 4);
    CHECK(n >= 2 && log[n - 1].shard == 5 && log[n - 1].count == 3 &&
              log[n - 1].pid == (int32_t)getpid(), "log n=%d", n);
    for (int i = 0; i < 4; i++)
        zkprologml_wait_free(w[i]);
    CHECK(zkprologml_coordinate_shard(ctx, 5) == 0, "freed");
    zkprologml_close(ctx);
    return 0;
}

static int t_256_wait_states(void)
{
    zkprologml_ctx_t *ctx = kopen();
    static zkprologml_wait_t *w[ZKPROLOGML_WAIT_STATES];
    for (int i = 0; i < ZKPROLOGML_WAIT_STATES; i++)
        CHECK((w[i] = zkprologml_wait_create(ctx, i)) != NULL, "create %d: %s", i, strerror(errno));
    CHECK(zkprologml_wait_create(ctx, 0) == NULL && errno == ENOSPC, "257th");
    static zkprologml_wait_status_t st[ZKPROLOGML_WAIT_STATES];
    CHECK(zkprologml_wait_status(ctx, st) == 256, "status");
    zkprologml_close(ctx); /* frees all */
    ctx = kopen();
    CHECK(zkprologml_wait_status(ctx, st) == 0, "all released");
    zkprologml_close(ctx);
    return 0;
}

static int t_sampler(void)
{
    pid_t busy = fork();
    if (busy == 0) {
        for (volatile unsigned long i = 0;; i++)
            ;
    }
    zkprologml_ctx_t *ctx = kopen();
    static zkprologml_sample_t s[1024];
    int found = 0, total = 0;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    for (int round = 0; round < 200 && !found; round++) {
        size_t n = 0;
        int rc = zkprologml_read_samples(ctx, s, 1024, &n);
        CHECK(rc == 0, "read_samples %d", rc);
        for (size_t i = 0; i < n; i++) {
            total++;
            CHECK(s[i].tid != 0 && s[i].cpu < (uint32_t)ncpu && s[i].timestamp_ns != 0 &&
                      (s[i].flags & (MONSTER_SAMPLE_USER | MONSTER_SAMPLE_KERNEL)) &&
                      memchr(s[i].comm, 0, sizeof(s[i].comm)),
                  "bad sample tid %u cpu %u", s[i].tid, s[i].cpu);
            if (s[i].pid == (uint32_t)busy && (s[i].flags & MONSTER_SAMPLE_USER) &&
                s[i].utime_delta_ns > 0 && strcmp(s[i].comm, "guest_test") == 0)
                found = 1;
        }
    }
    kill(busy, SIGKILL);
    waitpid(busy, NULL, 0);
    CHECK(found, "no user-mode sample of the busy child %d in %d samples", busy, total);
    zkprologml_close(ctx);
    return 0;
}

/* Reads a debugfs file into buf. */
static int slurp(const char *path, char *buf, size_t n)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -errno;
    size_t got = fread(buf, 1, n - 1, f);
    buf[got] = 0;
    fclose(f);
    return (int)got;
}

static int t_debugfs(void)
{
    zkprologml_ctx_t *ctx = kopen();
    zkprologml_pipe_t *p = zkprologml_pipe_open(ctx, 0, true);
    zkprologml_wait_t *w = zkprologml_wait_create(ctx, 5);
    CHECK(p && w, "open");
    CHECK(zkprologml_signal_ready(w) == 0, "ready");
    static char buf[65536];
    CHECK(slurp(DBG "/pipes", buf, sizeof(buf)) > 0, "read pipes");
    int lines = 0;
    for (char *save, *l = strtok_r(buf, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        int id, pr, co, rd, wr, cl, end = 0;
        CHECK(sscanf(l, "Pipe %d: producer=%d, consumer=%d, readers=%d, writers=%d, closed=%d%n",
                     &id, &pr, &co, &rd, &wr, &cl, &end) == 6 && l[end] == 0 && id == lines,
              "line '%s'", l);
        if (id == 0)
            CHECK(pr == getpid() && co == 0 && rd == 0 && wr == 1 && cl == 0, "pipe 0 '%s'", l);
        lines++;
    }
    CHECK(lines == 15, "%d pipe lines", lines);
    CHECK(slurp(DBG "/wait_states", buf, sizeof(buf)) > 0, "read wait_states");
    char want[128];
    snprintf(want, sizeof(want), "Wait %d: pid=%d, shard=5, sequence=%llu, ready=1\n",
             zkprologml_wait_id(w), getpid(), (unsigned long long)zkprologml_wait_sequence(w));
    CHECK(strstr(buf, want) != NULL, "want '%.100s' in '%.200s'", want, buf);
    /* The dmesg line. */
    zkprologml_wait_t *w2 = zkprologml_wait_create(ctx, 5);
    zkprologml_wait_t *w3 = zkprologml_wait_create(ctx, 5);
    CHECK(zkprologml_coordinate_shard(ctx, 5) == 3, "coordinate");
    static char klog[1 << 17];
    int n = klogctl(3 /* SYSLOG_ACTION_READ_ALL */, klog, sizeof(klog) - 1);
    CHECK(n > 0, "klogctl %s", strerror(errno));
    klog[n] = 0;
    CHECK(strstr(klog, "Coordinated 3 apps on shard 5\n") != NULL, "no dmesg line");
    zkprologml_wait_free(w2);
    zkprologml_wait_free(w3);
    zkprologml_close(ctx);
    CHECK(slurp(DBG "/wait_states", buf, sizeof(buf)) >= 0, "read");
    CHECK(strstr(buf, want) == NULL, "wait state still listed after close");
    return 0;
}

/* A child tells the parent it is set up through a pipe(2). */
static void child_ready(int fd)
{
    char c = 1;
    if (write(fd, &c, 1) != 1)
        _exit(3);
}

static int t_sigkill(void)
{
    int sync[2];
    CHECK(pipe(sync) == 0, "pipe");
    /* A: consumer of pipe 9 (never reads) and wait state on shard 9. */
    pid_t a = fork();
    if (a == 0) {
        zkprologml_ctx_t *ctx = kopen();
        zkprologml_pipe_t *c = zkprologml_pipe_open(ctx, 9, false);
        zkprologml_wait_t *w = zkprologml_wait_create(ctx, 9);
        if (!c || !w)
            _exit(2);
        child_ready(sync[1]);
        for (;;)
            pause();
    }
    char ch;
    CHECK(read(sync[0], &ch, 1) == 1, "child A setup");
    /* B: producer of pipe 9, fills the ring and blocks on the full ring. */
    int bres[2];
    CHECK(pipe(bres) == 0, "pipe");
    pid_t b = fork();
    if (b == 0) {
        zkprologml_ctx_t *ctx = kopen();
        zkprologml_pipe_t *p = zkprologml_pipe_open(ctx, 9, true);
        zkprologml_sample_t s = mk(1);
        while (zkprologml_pipe_write(p, &s, 0) == 0)
            ;
        child_ready(sync[1]);
        int rc = zkprologml_pipe_write(p, &s, -1); /* blocks: full */
        if (write(bres[1], &rc, sizeof(rc)) != sizeof(rc))
            _exit(3);
        _exit(0);
    }
    CHECK(read(sync[0], &ch, 1) == 1, "child B setup");
    zkprologml_ctx_t *ctx = kopen();
    zkprologml_pipe_status_t ps[ZKPROLOGML_PIPES];
    static zkprologml_wait_status_t ws[ZKPROLOGML_WAIT_STATES];
    CHECK(zkprologml_pipe_status(ctx, ps) == 0 && ps[9].readers == 1 && ps[9].writers == 1 &&
              ps[9].consumer_pid == a && ps[9].producer_pid == b, "before: r %u w %u",
          ps[9].readers, ps[9].writers);
    /* A third process blocked in wait_for_coord on shard 9 via our ctx. */
    zkprologml_wait_t *mine = zkprologml_wait_create(ctx, 9);
    CHECK(zkprologml_coordinate_shard(ctx, 9) == 2, "A and us on shard 9");
    kill(a, SIGKILL);
    int st;
    CHECK(waitpid(a, &st, 0) == a && WIFSIGNALED(st), "A killed");
    /* B, blocked on the full ring, is woken with EPIPE: its only consumer died. */
    int brc = 0;
    CHECK(read(bres[0], &brc, sizeof(brc)) == sizeof(brc), "B result");
    CHECK(brc == -EPIPE, "B got %d, want -EPIPE", brc);
    CHECK(waitpid(b, &st, 0) == b && WIFEXITED(st) && WEXITSTATUS(st) == 0, "B exit");
    CHECK(zkprologml_pipe_status(ctx, ps) == 0 && ps[9].readers == 0 && ps[9].writers == 0 &&
              ps[9].count == 0, "after: r %u w %u count %u", ps[9].readers, ps[9].writers,
          ps[9].count);
    int inuse = zkprologml_wait_status(ctx, ws);
    for (int i = 0; i < ZKPROLOGML_WAIT_STATES; i++)
        CHECK(!ws[i].in_use || ws[i].pid != a, "A's wait state still there");
    CHECK(inuse >= 1, "ours is there");
    CHECK(zkprologml_coordinate_shard(ctx, 9) == 1, "only ours counted");
    zkprologml_wait_free(mine);
    zkprologml_close(ctx);
    return 0;
}

static int t_multiprocess_coord(void)
{
    enum { N = 8 };
    pid_t kids[N];
    for (int i = 0; i < N; i++) {
        kids[i] = fork();
        if (kids[i] == 0) {
            zkprologml_ctx_t *ctx = kopen();
            zkprologml_wait_t *w = zkprologml_wait_create(ctx, 11);
            if (!w || zkprologml_signal_ready(w) != 0)
                _exit(2);
            int rc = zkprologml_wait_for_coord(w, -1);
            zkprologml_close(ctx);
            _exit(rc == 0 ? 0 : 1);
        }
    }
    zkprologml_ctx_t *ctx = kopen();
    int r = zkprologml_wait_ready(ctx, 11, N, 30000);
    CHECK(r == N, "barrier %d", r);
    CHECK(zkprologml_coordinate_shard(ctx, 11) == N, "count");
    for (int i = 0; i < N; i++) {
        int st;
        CHECK(waitpid(kids[i], &st, 0) == kids[i] && WIFEXITED(st) && WEXITSTATUS(st) == 0,
              "child %d", i);
    }
    zkprologml_close(ctx);
    return 0;
}

/* --- bench (figures only) ---------------------------------------------------------- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct wk_arg {
    zkprologml_pipe_t *c;   /* consumer       */
    int n;                  /* rounds         */
    double *t;              /* write times    */
    double *lat;            /* latencies out  */
};

static void *wake_reader(void *a)
{
    struct wk_arg *w = a;
    zkprologml_sample_t s;
    for (int i = 0; i < w->n; i++) {
        if (zkprologml_pipe_read(w->c, &s, -1) < 0)
            break;
        w->lat[i] = now_s() - w->t[i];
    }
    return NULL;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

struct cw_arg {
    zkprologml_wait_t *w;   /* its wait state */
    double done;            /* when it woke   */
};

static void *coord_waiter(void *a)
{
    struct cw_arg *c = a;
    zkprologml_wait_for_coord(c->w, -1);
    c->done = now_s();
    return NULL;
}

static void bench(zkprologml_backend_t be, const char *name)
{
    zkprologml_config_t cfg;
    zkprologml_config_default(&cfg);
    cfg.backend = be;
    cfg.name = "bench";
    zkprologml_ctx_t *ctx;
    if (zkprologml_open(&ctx, &cfg) < 0) {
        printf("KBENCH %s open failed: %s\n", name, zkprologml_last_error());
        return;
    }
    zkprologml_pipe_t *c = zkprologml_pipe_open(ctx, 12, false);
    zkprologml_pipe_t *p = zkprologml_pipe_open(ctx, 12, true);
    zkprologml_sample_t s = mk(1);
    int n = 20000;
    double t0 = now_s();
    for (int i = 0; i < n; i++) {
        zkprologml_pipe_write(p, &s, 0);
        zkprologml_pipe_read(c, &s, 0);
    }
    double t1 = now_s();
    printf("KBENCH %s write+read per sample: %.2f us (%d pairs)\n", name, (t1 - t0) / n * 1e6, n);

    enum { W = 200 };
    static double tw[W], lat[W];
    struct wk_arg wa = {.c = c, .n = W, .t = tw, .lat = lat};
    pthread_t th;
    pthread_create(&th, NULL, wake_reader, &wa);
    for (int i = 0; i < W; i++) {
        usleep(2000);
        tw[i] = now_s();
        zkprologml_pipe_write(p, &s, -1);
    }
    pthread_join(th, NULL);
    qsort(lat, W, sizeof(double), cmp_d);
    printf("KBENCH %s blocked reader wake-up: median %.1f us, p90 %.1f us\n", name,
           lat[W / 2] * 1e6, lat[W * 9 / 10] * 1e6);
    zkprologml_pipe_close(p);
    zkprologml_pipe_close(c);

    enum { C = 256 };
    static struct cw_arg ca[C];
    static pthread_t cth[C];
    int made = 0;
    for (int i = 0; i < C; i++) {
        ca[i].w = zkprologml_wait_create(ctx, 77);
        if (!ca[i].w)
            break;
        pthread_create(&cth[i], NULL, coord_waiter, &ca[i]);
        made++;
    }
    usleep(500000);
    double c0 = now_s();
    int got = zkprologml_coordinate_shard(ctx, 77);
    double last = c0;
    for (int i = 0; i < made; i++) {
        pthread_join(cth[i], NULL);
        if (ca[i].done > last)
            last = ca[i].done;
        zkprologml_wait_free(ca[i].w);
    }
    printf("KBENCH %s coordinate %d waiters (woke %d): %.2f ms until the last ran\n", name, made,
           got, (last - c0) * 1e3);
    zkprologml_close(ctx);
    if (be == ZKPROLOGML_BACKEND_USER)
        zkprologml_unlink("bench");
}

/* --- driver --------------------------------------------------------------------- */

struct ktest {
    const char *name;   /* printed */
    int (*fn)(void);    /* 0 pass  */
    unsigned timeout_s; /* alarm   */
};

static const struct ktest tests[] = {
    {"auto_detect_and_env", t_auto_detect, 30},
    {"pipe_fifo", t_fifo, 30},
    {"pipe_try_timeout_full", t_try_and_timeout, 30},
    {"pipe_end_of_stream", t_end_of_stream, 30},
    {"bad_values_rejected", t_bad_values, 30},
    {"blocked_reader_woken", t_blocked_reader_woken, 30},
    {"wait_coord_barrier_log", t_wait_coord, 30},
    {"wait_256_then_enospc", t_256_wait_states, 30},
    {"sampler_hrtimer_samples", t_sampler, 60},
    {"debugfs_formats_and_dmesg", t_debugfs, 30},
    {"sigkill_releases_and_wakes", t_sigkill, 60},
    {"multiprocess_coordinate", t_multiprocess_coord, 60},
};

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--help") == 0) {
        printf("usage: guest_test [bench|NAME]\n"
               "Runs the Monster kernel-backend tests (needs monster_sampler.ko loaded),\n"
               "one line per test: KTEST <name> PASS|FAIL <why>.\n"
               "bench: KBENCH figures for the kernel and user backends.\n");
        return 0;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc > 1 && strcmp(argv[1], "bench") == 0) {
        bench(ZKPROLOGML_BACKEND_KERNEL, "kernel");
        bench(ZKPROLOGML_BACKEND_USER, "user");
        return 0;
    }
    int failed = 0;
    for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
        if (argc > 1 && strcmp(argv[1], tests[i].name) != 0)
            continue;
        int res[2];
        if (pipe(res) < 0)
            return 2;
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            close(res[0]);
            alarm(tests[i].timeout_s);
            int rc = tests[i].fn();
            if (rc != 0 && write(res[1], why, strlen(why)) < 0)
                _exit(3);
            _exit(rc == 0 ? 0 : 1);
        }
        close(res[1]);
        char msg[512];
        ssize_t n = read(res[0], msg, sizeof(msg) - 1);
        msg[n > 0 ? n : 0] = 0;
        close(res[0]);
        int st = 0;
        waitpid(pid, &st, 0);
        if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
            printf("KTEST %s PASS\n", tests[i].name);
        } else {
            failed++;
            if (WIFSIGNALED(st))
                printf("KTEST %s FAIL killed by signal %d (timeout: SIGALRM=14) %s\n",
                       tests[i].name, WTERMSIG(st), msg);
            else
                printf("KTEST %s FAIL %s\n", tests[i].name, msg);
        }
    }
    return failed ? 1 : 0;
}
