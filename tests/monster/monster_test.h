/* Helpers for the Monster tests: a segment name unique to the test process
 * (Criterion runs each test in its own process), contexts on it, samples
 * that carry a checksum, and a way to see that a thread is really asleep in
 * a blocking call (its event-count registration), so no test depends on
 * timing.
 *
 * The same suite runs on either backend: FERRY_MONSTER_BACKEND=kernel runs
 * it on monster_sampler.ko (the qemu guest of tests/kmod does), anything
 * else on user space. On the kernel backend mt_seg() is a zeroed stand-in,
 * so the sleeper waits written against the segment's event counts become
 * "that many threads asleep in an ioctl on the device"; tests about the
 * segment itself call mt_user_only() and are skipped there with the reason
 * printed. The module's state is machine-wide, so on the kernel backend the
 * suite runs one test at a time (--jobs 1). */
#ifndef FERRY_MONSTER_TEST_H
#define FERRY_MONSTER_TEST_H

#include "backend.h"
#include "segment.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* True when the suite runs on the kernel backend (read once: a test may
 * change the variable to exercise the library's own choice). */
static inline bool mt_kernel(void)
{
    static int k = -1;
    if (k < 0) {
        const char *e = getenv("FERRY_MONSTER_BACKEND");
        k = e && strcmp(e, "kernel") == 0;
    }
    return k == 1;
}

static inline zkprologml_backend_t mt_backend(void)
{
    return mt_kernel() ? ZKPROLOGML_BACKEND_KERNEL : ZKPROLOGML_BACKEND_USER;
}

/* For tests of the user-space backend's own machinery (the segment, its
 * locks and positions): skipped on the kernel backend, saying why. */
#define mt_user_only(why)                                                               \
    do {                                                                                \
        if (mt_kernel())                                                                \
            cr_skip_test("user-space backend only: %s", why);                           \
    } while (0)

static char mt_name[48];

static inline const char *mt_seg_name(void)
{
    if (!mt_name[0])
        snprintf(mt_name, sizeof(mt_name), "mt%d", (int)getpid());
    return mt_name;
}

/* Opens a context on this test's segment with every pipe of capacity cap. */
static inline zkprologml_ctx_t *mt_open(uint32_t cap)
{
    zkprologml_config_t cfg;
    zkprologml_config_default(&cfg);
    cfg.name = mt_seg_name();
    cfg.backend = mt_backend();
    /* The kernel's capacity is the module's (mt_capacity() tells it). */
    for (int i = 0; i < ZKPROLOGML_PIPES; i++)
        cfg.capacity[i] = cap;
    cfg.sample_hz = 100;
    zkprologml_ctx_t *ctx = NULL;
    int rc = zkprologml_open(&ctx, &cfg);
    cr_assert_eq(rc, 0, "zkprologml_open: %d %s", rc, zkprologml_last_error());
    return ctx;
}

static inline void mt_cleanup(void)
{
    zkprologml_unlink(mt_seg_name());
}

/* The capacity the backend gave pipe `ring`. */
static inline uint32_t mt_capacity(zkprologml_ctx_t *ctx, int ring)
{
    zkprologml_pipe_status_t st[ZKPROLOGML_PIPES];
    cr_assert_eq(zkprologml_pipe_status(ctx, st), 0);
    return st[ring].capacity;
}

/* The kernel backend's stand-in segment: zeroes, never written. */
static fmon_header_t mt_ghost_hdr;
static fmon_pipe_t mt_ghost_pipes[ZKPROLOGML_PIPES];
static fmon_seg_t mt_ghost_seg = {.hdr = &mt_ghost_hdr, .pipes = mt_ghost_pipes};

static inline fmon_seg_t *mt_seg(zkprologml_ctx_t *ctx)
{
    return mt_kernel() ? &mt_ghost_seg : (fmon_seg_t *)ctx->state;
}

static inline uint64_t mt_check(uint32_t pid, uint32_t tid)
{
    return ((uint64_t)pid * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)tid * 0xC2B2AE3D27D4EB4Full);
}

/* A sample whose every field derives from (pid, tid). */
static inline zkprologml_sample_t mt_sample(uint32_t pid, uint32_t tid)
{
    zkprologml_sample_t s;
    memset(&s, 0, sizeof(s));
    s.pid = pid;
    s.tid = tid;
    s.cpu = tid % 7;
    s.timestamp_ns = mt_check(pid, tid);
    s.utime_delta_ns = ~s.timestamp_ns;
    s.stime_delta_ns = s.timestamp_ns >> 3;
    s.rss_kb = pid + tid;
    snprintf(s.comm, sizeof(s.comm), "p%u", pid);
    return s;
}

static inline bool mt_sample_ok(const zkprologml_sample_t *s)
{
    zkprologml_sample_t want = mt_sample(s->pid, s->tid);
    return memcmp(&want, s, sizeof(want)) == 0;
}

static inline void mt_sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Reads a small /proc file into buf; false if it is gone. */
static inline bool mt_slurp(const char *path, char *buf, size_t n)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t got = fread(buf, 1, n - 1, f);
    buf[got] = 0;
    fclose(f);
    return true;
}

/* Is thread tid of process pid asleep in an ioctl on /dev/monster_sampler?
 * (state S in stat; /proc/.../syscall names the call and its fd.) */
static inline bool mt_asleep_in_device(const char *pid, const char *tid)
{
    char path[600], buf[512], link[64];
    snprintf(path, sizeof(path), "/proc/%s/task/%s/stat", pid, tid);
    if (!mt_slurp(path, buf, sizeof(buf)))
        return false;
    const char *rp = strrchr(buf, ')');
    if (!rp || rp[1] != ' ' || rp[2] != 'S')
        return false;
    snprintf(path, sizeof(path), "/proc/%s/task/%s/syscall", pid, tid);
    long nr = -1;
    unsigned long fd = 0;
    if (!mt_slurp(path, buf, sizeof(buf)) || sscanf(buf, "%ld %lx", &nr, &fd) != 2 ||
        nr != SYS_ioctl)
        return false;
    snprintf(path, sizeof(path), "/proc/%s/fd/%lu", pid, fd);
    ssize_t l = readlink(path, link, sizeof(link) - 1);
    if (l < 0)
        return false;
    link[l] = 0;
    return strcmp(link, "/dev/monster_sampler") == 0;
}

/* Threads of this process and of its children asleep in the device. */
static inline uint32_t mt_device_sleepers(void)
{
    uint32_t n = 0;
    char self[16], buf[512], path[300];
    snprintf(self, sizeof(self), "%d", (int)getpid());
    DIR *procs = opendir("/proc");
    if (!procs)
        return 0;
    for (struct dirent *p; (p = readdir(procs));) {
        if (p->d_name[0] < '0' || p->d_name[0] > '9')
            continue;
        if (strcmp(p->d_name, self) != 0) {
            snprintf(path, sizeof(path), "/proc/%s/stat", p->d_name);
            const char *rp;
            int ppid = 0;
            if (!mt_slurp(path, buf, sizeof(buf)) || !(rp = strrchr(buf, ')')) ||
                sscanf(rp + 1, " %*c %d", &ppid) != 1 || ppid != (int)getpid())
                continue;
        }
        snprintf(path, sizeof(path), "/proc/%s/task", p->d_name);
        DIR *tasks = opendir(path);
        if (!tasks)
            continue;
        for (struct dirent *t; (t = readdir(tasks));)
            if (t->d_name[0] >= '0' && t->d_name[0] <= '9' &&
                mt_asleep_in_device(p->d_name, t->d_name))
                n++;
        closedir(tasks);
    }
    closedir(procs);
    return n;
}

/* Waits until at least n sleepers are registered on the event count; on
 * the kernel backend (e is in the stand-in), until at least n threads of
 * this test are asleep in the device, whichever queue they sleep on. The
 * test's timeout catches a wait that never ends. */
static inline void mt_wait_device_sleepers(uint32_t n)
{
    while (mt_device_sleepers() < n)
        mt_sleep_ms(1);
}

static inline void mt_wait_sleepers(fshm_evc_t *e, uint32_t n)
{
    if (mt_kernel()) {
        mt_wait_device_sleepers(n);
        return;
    }
    while (atomic_load(&e->waiters) < n)
        mt_sleep_ms(1);
}

#endif
