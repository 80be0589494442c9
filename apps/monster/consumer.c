/* consumer: reads samples from a Monster pipe and aggregates them per
 * process (the spec's App 3): CPU time, samples, largest RSS. Ends when its
 * pipe is closed and drained, after --count samples, --duration, or a
 * signal; prints "Consumer: Read N samples, processed M" and the top
 * processes by CPU over the run. */
#define _GNU_SOURCE
#include "tool.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PROCS 4096 /* processes tracked; samples of more are read, not processed */

typedef struct agg {
    uint32_t pid;                 /* 0: empty slot        */
    char comm[MONSTER_COMM_LEN];  /* name seen last       */
    uint64_t cpu_ns;              /* utime + stime deltas */
    uint64_t samples;             /* samples of it        */
    uint64_t rss_kb;              /* largest RSS seen     */
} agg_t;

static agg_t table[MAX_PROCS];

/* Open addressing on pid; NULL when the table is full. */
static agg_t *slot_for(uint32_t pid)
{
    uint32_t h = (pid * 2654435761u) % MAX_PROCS;
    for (uint32_t i = 0; i < MAX_PROCS; i++) {
        agg_t *a = &table[(h + i) % MAX_PROCS];
        if (a->pid == pid || a->pid == 0)
            return a;
    }
    return NULL;
}

static bool process(const zkprologml_sample_t *s)
{
    if (s->pid == 0)
        return false; /* not a process */
    agg_t *a = slot_for(s->pid);
    if (!a)
        return false;
    a->pid = s->pid;
    memcpy(a->comm, s->comm, sizeof(a->comm));
    a->comm[sizeof(a->comm) - 1] = '\0';
    a->cpu_ns += s->utime_delta_ns + s->stime_delta_ns;
    a->samples++;
    if (s->rss_kb > a->rss_kb)
        a->rss_kb = s->rss_kb;
    return true;
}

static int by_cpu(const void *x, const void *y)
{
    const agg_t *a = x, *b = y;
    if (a->cpu_ns != b->cpu_ns)
        return a->cpu_ns < b->cpu_ns ? 1 : -1;
    return a->pid > b->pid ? 1 : (a->pid < b->pid ? -1 : 0);
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: consumer --ring R [options]\n"
            "Reads samples from Monster pipe R and reports the processes that used the\n"
            "most CPU over the run.\n"
            "  --ring R          pipe to read (required)\n"
            "  --top N           processes listed after the summary (default 5, 0 none)\n" TOOL_COMMON_HELP);
}

typedef struct args {
    long ring; /* --ring */
    long top;  /* --top  */
} args_t;

static int own_option(void *arg, int opt, const char *val)
{
    args_t *a = arg;
    if (opt == 'R')
        return tool_parse_long("consumer", "--ring", val, 0, ZKPROLOGML_PIPES - 1, &a->ring) ? 1 : -1;
    if (opt == 'T')
        return tool_parse_long("consumer", "--top", val, 0, MAX_PROCS, &a->top) ? 1 : -1;
    return 0;
}

int main(int argc, char **argv)
{
    tool_t t;
    tool_init(&t, "consumer");
    args_t a = {.ring = -1, .top = 5};
    static const struct option opts[] = {{"ring", required_argument, NULL, 'R'},
                                         {"top", required_argument, NULL, 'T'},
                                         TOOL_COMMON_OPTIONS, {NULL, 0, NULL, 0}};
    int prc = tool_parse(&t, argc, argv, opts, own_option, &a, usage);
    if (prc >= 0)
        return prc;
    if (a.ring < 0)
        return tool_usage_error(&t, usage, "--ring R is required");
    long ring = a.ring, top = a.top;
    if (tool_start(&t))
        return tool_end(&t, 1);
    zkprologml_pipe_t *in = tool_pipe(&t, ring, false);
    if (!in)
        return tool_end(&t, 1);
    uint64_t nread = 0, processed = 0;
    int status = 0;
    while (!tool_stop(&t) && (t.count == 0 || nread < t.count)) {
        tool_poll_coord(&t);
        zkprologml_sample_t s;
        int rc = zkprologml_pipe_read(in, &s, TOOL_SLICE_MS);
        if (rc == -EPIPE)
            break;
        if (rc == -ETIME || rc == -EAGAIN || rc == -EINTR)
            continue;
        if (rc < 0) {
            fprintf(stderr, "consumer: read from ring %ld failed: %s\n", ring, strerror(-rc));
            status = 1;
            break;
        }
        nread++;
        processed += process(&s);
    }
    zkprologml_pipe_close(in);
    printf("Consumer: Read %" PRIu64 " samples, processed %" PRIu64 "\n", nread, processed);
    if (top > 0) {
        size_t n = 0;
        for (size_t i = 0; i < MAX_PROCS; i++)
            if (table[i].pid)
                table[n++] = table[i];
        qsort(table, n, sizeof(table[0]), by_cpu);
        if (n > (size_t)top)
            n = (size_t)top;
        if (n)
            printf("Top %zu processes by CPU:\n", n);
        for (size_t i = 0; i < n; i++)
            printf("  %7u %-16s cpu %10.3f ms  samples %6" PRIu64 "  rss %8" PRIu64 " KiB\n",
                   table[i].pid, table[i].comm, table[i].cpu_ns / 1e6, table[i].samples,
                   table[i].rss_kb);
    }
    return tool_end(&t, status);
}
