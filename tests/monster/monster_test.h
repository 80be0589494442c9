/* Helpers for the Monster tests: a segment name unique to the test process
 * (Criterion runs each test in its own process), contexts on it, samples
 * that carry a checksum, and a way to see that a thread is really asleep in
 * a blocking call (its event-count registration), so no test depends on
 * timing. */
#ifndef FERRY_MONSTER_TEST_H
#define FERRY_MONSTER_TEST_H

#include "backend.h"
#include "segment.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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
    cfg.backend = ZKPROLOGML_BACKEND_USER;
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

static inline fmon_seg_t *mt_seg(zkprologml_ctx_t *ctx)
{
    return (fmon_seg_t *)ctx->state;
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

/* Waits until at least n sleepers are registered on the event count (the
 * test's timeout catches a wait that never ends). */
static inline void mt_wait_sleepers(fshm_evc_t *e, uint32_t n)
{
    while (atomic_load(&e->waiters) < n)
        mt_sleep_ms(1);
}

#endif
