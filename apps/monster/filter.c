/* filter: reads samples from one Monster pipe, keeps the interesting ones
 * and writes them to another (the spec's App 2). By default it drops idle
 * samples (threads that used no CPU since their previous sample); --min-cpu-us,
 * --pid, --comm and --keep-idle change that. Ends when its input is closed
 * and drained, after --count samples read, --duration, or a signal, and
 * prints "Filter: Read N samples, wrote M to ring R". */
#define _GNU_SOURCE
#include "tool.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: filter --in-ring A --out-ring B [options]\n"
            "Reads samples from Monster pipe A, writes those that pass to pipe B.\n"
            "  --in-ring A       pipe to read (required)\n"
            "  --out-ring B      pipe to write (required, != A)\n"
            "  --min-cpu-us U    keep samples with at least U us of CPU time since the\n"
            "                    thread's previous sample (default 1: drop idle samples)\n"
            "  --keep-idle       keep every sample (same as --min-cpu-us 0)\n"
            "  --pid P           keep only process P\n"
            "  --comm TEXT       keep only threads whose name contains TEXT\n" TOOL_COMMON_HELP);
}

typedef struct rule {
    uint64_t min_cpu_ns; /* utime + stime delta at least this */
    long pid;            /* 0: any                            */
    const char *comm;    /* NULL: any                         */
} rule_t;

static bool keep(const rule_t *r, const zkprologml_sample_t *s)
{
    if (s->utime_delta_ns + s->stime_delta_ns < r->min_cpu_ns)
        return false;
    if (r->pid && s->pid != (uint32_t)r->pid)
        return false;
    if (r->comm) {
        char comm[MONSTER_COMM_LEN + 1];
        memcpy(comm, s->comm, MONSTER_COMM_LEN);
        comm[MONSTER_COMM_LEN] = '\0'; /* from another process: bound it */
        if (!strstr(comm, r->comm))
            return false;
    }
    return true;
}

typedef struct args {
    long in, out; /* --in-ring, --out-ring */
    rule_t rule;  /* what passes           */
} args_t;

static int own_option(void *arg, int opt, const char *val)
{
    args_t *a = arg;
    long v;
    switch (opt) {
    case 'I':
        return tool_parse_long("filter", "--in-ring", val, 0, ZKPROLOGML_PIPES - 1, &a->in) ? 1 : -1;
    case 'O':
        return tool_parse_long("filter", "--out-ring", val, 0, ZKPROLOGML_PIPES - 1, &a->out) ? 1 : -1;
    case 'M':
        if (!tool_parse_long("filter", "--min-cpu-us", val, 0, 1000000000L, &v))
            return -1;
        a->rule.min_cpu_ns = (uint64_t)v * 1000;
        return 1;
    case 'K':
        a->rule.min_cpu_ns = 0;
        return 1;
    case 'P':
        return tool_parse_long("filter", "--pid", val, 1, 0x7fffffff, &a->rule.pid) ? 1 : -1;
    case 'c':
        a->rule.comm = val;
        return 1;
    default:
        return 0;
    }
}

int main(int argc, char **argv)
{
    tool_t t;
    tool_init(&t, "filter");
    args_t a = {.in = -1, .out = -1, .rule = {.min_cpu_ns = 1000}};
    static const struct option opts[] = {
        {"in-ring", required_argument, NULL, 'I'}, {"out-ring", required_argument, NULL, 'O'},
        {"min-cpu-us", required_argument, NULL, 'M'}, {"keep-idle", no_argument, NULL, 'K'},
        {"pid", required_argument, NULL, 'P'}, {"comm", required_argument, NULL, 'c'},
        TOOL_COMMON_OPTIONS, {NULL, 0, NULL, 0}};
    int prc = tool_parse(&t, argc, argv, opts, own_option, &a, usage);
    if (prc >= 0)
        return prc;
    if (a.in < 0 || a.out < 0 || a.in == a.out)
        return tool_usage_error(&t, usage, "--in-ring and --out-ring are required and must differ");
    long in = a.in, outr = a.out;
    const rule_t rule = a.rule;
    if (tool_start(&t))
        return tool_end(&t, 1);
    zkprologml_pipe_t *src = tool_pipe(&t, in, false);
    zkprologml_pipe_t *dst = src ? tool_pipe(&t, outr, true) : NULL;
    if (!src || !dst) {
        zkprologml_pipe_close(src);
        return tool_end(&t, 1);
    }
    uint64_t nread = 0, nwritten = 0;
    int status = 0;
    bool done = false;
    while (!done && !tool_stop(&t) && (t.count == 0 || nread < t.count)) {
        tool_poll_coord(&t);
        zkprologml_sample_t s;
        int rc = zkprologml_pipe_read(src, &s, TOOL_SLICE_MS);
        if (rc == -EPIPE)
            break; /* every producer gone, drained */
        if (rc == -ETIME || rc == -EAGAIN || rc == -EINTR)
            continue;
        if (rc < 0) {
            fprintf(stderr, "filter: read from ring %ld failed: %s\n", in, strerror(-rc));
            status = 1;
            break;
        }
        nread++;
        if (!keep(&rule, &s))
            continue;
        /* A sample read is passed on even if a stop comes meanwhile: nothing
         * read and kept is lost while the consumer is there. */
        for (;;) {
            rc = zkprologml_pipe_write(dst, &s, TOOL_SLICE_MS);
            if (rc == 0) {
                nwritten++;
                break;
            }
            if (rc == -ETIME || rc == -EAGAIN || rc == -EINTR) {
                if (tool_interrupted)
                    break;
                continue;
            }
            if (rc != -EPIPE) {
                fprintf(stderr, "filter: write to ring %ld failed: %s\n", outr, strerror(-rc));
                status = 1;
            } else if (t.verbose) {
                fprintf(stderr, "filter: every consumer of ring %ld is gone\n", outr);
            }
            done = true;
            break;
        }
    }
    zkprologml_pipe_close(src);
    zkprologml_pipe_close(dst);
    printf("Filter: Read %" PRIu64 " samples, wrote %" PRIu64 " to ring %ld\n", nread, nwritten, outr);
    return tool_end(&t, status);
}
