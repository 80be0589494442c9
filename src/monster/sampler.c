/* The /proc sampler. A scan lists /proc, then each process's task/ folder,
 * reads every thread's stat line and turns it into a sample; CPU times are
 * differences against the same thread in the previous scan, found by binary
 * search in the previous scan's table sorted by tid. The first call primes
 * the table, so the first samples handed out already carry real deltas. */
#define _GNU_SOURCE
#include "sampler.h"

#include <ctype.h>
#include <stdbool.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int fmon_sampler_init(fmon_sampler_t *s, uint32_t hz)
{
    memset(s, 0, sizeof(*s));
    if (hz == 0 || hz > 1000)
        return -EINVAL;
    s->period_ns = 1000000000ull / hz;
    long tck = sysconf(_SC_CLK_TCK);
    s->ns_per_tick = tck > 0 ? 1000000000ull / (uint64_t)tck : 10000000ull;
    long page = sysconf(_SC_PAGESIZE);
    s->page_kb = page > 0 ? (uint64_t)page / 1024 : 4;
    return 0;
}

void fmon_sampler_destroy(fmon_sampler_t *s)
{
    if (!s)
        return;
    free(s->buf);
    free(s->prev);
    free(s->cur);
    memset(s, 0, sizeof(*s));
}

static bool all_digits(const char *p)
{
    if (!*p)
        return false;
    for (; *p; p++)
        if (!isdigit((unsigned char)*p))
            return false;
    return true;
}

static int cmp_prev(const void *a, const void *b)
{
    uint32_t x = ((const fmon_prev_t *)a)->tid, y = ((const fmon_prev_t *)b)->tid;
    return x < y ? -1 : x > y;
}

/* Grows the three tables to hold at least want entries (bounded). */
static int grow(fmon_sampler_t *s, size_t want)
{
    if (want <= s->cap)
        return 0;
    if (want > FMON_SAMPLER_MAX_THREADS)
        return -ENOSPC;
    size_t cap = s->cap ? s->cap * 2 : 512;
    while (cap < want)
        cap *= 2;
    if (cap > FMON_SAMPLER_MAX_THREADS)
        cap = FMON_SAMPLER_MAX_THREADS;
    struct process_sample *buf = realloc(s->buf, cap * sizeof(*buf));
    if (!buf)
        return -ENOMEM;
    s->buf = buf;
    fmon_prev_t *prev = realloc(s->prev, cap * sizeof(*prev));
    if (!prev)
        return -ENOMEM;
    s->prev = prev;
    fmon_prev_t *cur = realloc(s->cur, cap * sizeof(*cur));
    if (!cur)
        return -ENOMEM;
    s->cur = cur;
    s->cap = cap;
    return 0;
}

/* One thread: read its stat line and append a sample and a table entry. */
static void sample_thread(fmon_sampler_t *s, int pid, int tid, uint64_t now)
{
    char path[96], line[1024];
    snprintf(path, sizeof(path), "/proc/%d/task/%d/stat", pid, tid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return; /* gone since the listing */
    ssize_t n = read(fd, line, sizeof(line) - 1);
    close(fd);
    if (n <= 0)
        return;
    line[n] = '\0';
    fmon_stat_t st;
    if (fmon_parse_stat(line, &st) < 0)
        return;
    if (grow(s, s->ncur + 1) < 0)
        return; /* bounded: threads past the limit are skipped this scan */
    fmon_prev_t key = {.tid = (uint32_t)tid};
    const fmon_prev_t *old = s->nprev ? bsearch(&key, s->prev, s->nprev, sizeof(key), cmp_prev) : NULL;
    struct process_sample *out = &s->buf[s->nbuf++];
    memset(out, 0, sizeof(*out));
    out->pid = (uint32_t)pid;
    out->tid = (uint32_t)tid;
    out->cpu = st.cpu;
    out->state = (uint8_t)st.state;
    out->timestamp_ns = now;
    out->rss_kb = st.rss_pages * s->page_kb;
    memcpy(out->comm, st.comm, sizeof(out->comm));
    if (old && old->pid == (uint32_t)pid && st.utime >= old->utime && st.stime >= old->stime) {
        out->utime_delta_ns = (st.utime - old->utime) * s->ns_per_tick;
        out->stime_delta_ns = (st.stime - old->stime) * s->ns_per_tick;
    } else {
        out->flags |= MONSTER_SAMPLE_FIRST;
    }
    s->cur[s->ncur++] = (fmon_prev_t){(uint32_t)tid, (uint32_t)pid, st.utime, st.stime};
}

static int scan(fmon_sampler_t *s)
{
    DIR *proc = opendir("/proc");
    if (!proc)
        return -errno;
    s->nbuf = s->pos = s->ncur = 0;
    uint64_t now = mono_ns();
    struct dirent *de;
    while ((de = readdir(proc))) {
        if (!all_digits(de->d_name))
            continue;
        int pid = atoi(de->d_name);
        char path[64];
        snprintf(path, sizeof(path), "/proc/%d/task", pid);
        DIR *task = opendir(path);
        if (!task)
            continue;
        struct dirent *te;
        while ((te = readdir(task)))
            if (all_digits(te->d_name))
                sample_thread(s, pid, atoi(te->d_name), now);
        closedir(task);
    }
    closedir(proc);
    qsort(s->cur, s->ncur, sizeof(*s->cur), cmp_prev);
    fmon_prev_t *t = s->prev;
    s->prev = s->cur;
    s->cur = t;
    s->nprev = s->ncur;
    s->ncur = 0;
    return 0;
}

/* Sleeps until the next scan is due. -EINTR on a signal. */
static int wait_due(fmon_sampler_t *s)
{
    uint64_t due = s->next_scan_ns;
    if (mono_ns() >= due)
        return 0;
    struct timespec ts = {.tv_sec = (time_t)(due / 1000000000ull), .tv_nsec = (long)(due % 1000000000ull)};
    int rc = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
    return rc == 0 ? 0 : -rc;
}

int fmon_sampler_read(fmon_sampler_t *s, struct process_sample *out, size_t n, size_t *count)
{
    *count = 0;
    if (n == 0)
        return 0;
    if (!s->primed) {
        int rc = scan(s);
        if (rc < 0)
            return rc;
        s->nbuf = 0; /* priming only: these have no deltas yet */
        s->primed = 1;
        s->next_scan_ns = mono_ns() + s->period_ns;
    }
    if (s->pos == s->nbuf) {
        int rc = wait_due(s);
        if (rc < 0)
            return rc;
        rc = scan(s);
        if (rc < 0)
            return rc;
        /* Fixed rate, but never a burst of catch-up scans after a stall. */
        uint64_t now = mono_ns();
        s->next_scan_ns += s->period_ns;
        if (s->next_scan_ns < now)
            s->next_scan_ns = now + s->period_ns;
    }
    size_t k = s->nbuf - s->pos;
    if (k > n)
        k = n;
    memcpy(out, s->buf + s->pos, k * sizeof(*out));
    s->pos += k;
    *count = k;
    return 0;
}
