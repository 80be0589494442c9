/* The /proc sampler: every thread on the machine, scanned at a fixed rate,
 * as struct process_sample records with CPU time deltas since the thread's
 * previous scan. Private to one process (not in the shared segment).
 *
 * Workload: a few hundred to a few thousand threads, scanned 1..1000 times a
 * second; one scan reads /proc/<pid>/task/<tid>/stat per thread. */
#ifndef FERRY_MONSTER_SAMPLER_H
#define FERRY_MONSTER_SAMPLER_H

#include <ferry/monster_ioctl.h>

#include <stddef.h>
#include <stdint.h>

#define FMON_SAMPLER_MAX_THREADS 32768u /* threads per scan, at most (bounded memory) */

/* Previous CPU times of one thread. */
typedef struct fmon_prev {
    uint32_t tid;    /* key                         */
    uint32_t pid;    /* its process (tid reuse)     */
    uint64_t utime;  /* clock ticks, from /proc     */
    uint64_t stime;  /* clock ticks                 */
} fmon_prev_t;

typedef struct fmon_sampler {
    uint64_t period_ns;          /* 1e9 / hz                                   */
    uint64_t next_scan_ns;       /* CLOCK_MONOTONIC of the next scan           */
    uint64_t ns_per_tick;        /* 1e9 / sysconf(_SC_CLK_TCK)                 */
    uint64_t page_kb;            /* page size in KiB                           */
    struct process_sample *buf;  /* the last scan                              */
    size_t nbuf;                 /* samples in buf                             */
    size_t pos;                  /* next one to hand out                       */
    fmon_prev_t *prev;           /* previous scan, sorted by tid               */
    size_t nprev;                /* entries in prev                            */
    fmon_prev_t *cur;            /* this scan (becomes prev)                   */
    size_t ncur;                 /* entries in cur                             */
    size_t cap;                  /* entries allocated in buf, prev and cur     */
    int primed;                  /* a first scan filled prev                   */
} fmon_sampler_t;

int fmon_sampler_init(fmon_sampler_t *s, uint32_t hz);
void fmon_sampler_destroy(fmon_sampler_t *s);
/* Hands out up to n samples, scanning (and first sleeping until the scan is
 * due) when the previous scan is used up. 0 or -errno (-EINTR on a signal). */
int fmon_sampler_read(fmon_sampler_t *s, struct process_sample *out, size_t n, size_t *count);

/* Parses one /proc/.../stat line (NUL-terminated) into sample fields;
 * utime/stime in ticks, rss in pages. 0 or -EIO if malformed. Exposed for
 * tests and for the liveness check. */
typedef struct fmon_stat {
    char comm[MONSTER_COMM_LEN]; /* truncated, NUL-terminated   */
    char state;                  /* field 3                     */
    uint64_t utime;              /* field 14                    */
    uint64_t stime;              /* field 15                    */
    uint64_t start_time;         /* field 22                    */
    uint64_t rss_pages;          /* field 24                    */
    uint32_t cpu;                /* field 39                    */
} fmon_stat_t;
int fmon_parse_stat(const char *line, fmon_stat_t *st);

#endif
