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

int main(int argc, char **argv)
{
    tool_t t;
    tool_init(&t, "filter");
    long in = -1, outr = -1, v;
    rule_t rule = {.min_cpu_ns = 1000};
    static const struct option opts[] = {
        {"in-ring", required_argument, NULL, 'I'}, {"out-ring", required_argument, NULL, 'O'},
        {"min-cpu-us", required_argument, NULL, 'M'}, {"keep-idle", no_argument, NULL, 'K'},
        {"pid", required_argument, NULL, 'P'}, {"comm", required_argument, NULL, 'c'},
        TOOL_COMMON_OPTIONS, {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
        switch (c) {
        case 'I':
            if (!tool_parse_long("filter", "--in-ring", optarg, 0, ZKPROLOGML_PIPES - 1, &in))
                return 2;
            continue;
        case 'O':
            if (!tool_parse_long("filter", "--out-ring", optarg, 0, ZKPROLOGML_PIPES - 1, &outr))
                return 2;
            continue;
        case 'M':
            if (!tool_parse_long("filter", "--min-cpu-us", optarg, 0, 1000000000L, &v))
                return 2;
            rule.min_cpu_ns = (uint64_t)v * 1000;
            continue;
        case 'K':
            rule.min_cpu_ns = 0;
            continue;
        case 'P':
            if (!tool_parse_long("filter", "--pid", optarg, 1, 0x7fffffff, &rule.pid))
                return 2;
            continue;
        case 'c':
            rule.comm = optarg;
            continue;
        case 'h':
            usage(stdout);
            return 0;
        }
        int rc = tool_option(&t, c, optarg);
        if (rc < 0)
            return 2;
        if (rc == 0) {
            usage(stderr);
            return 2;
        }
    }
    if (in < 0 || outr < 0 || in == outr || optind != argc) {
        fprintf(stderr, "filter: --in-ring and --out-ring are required and must differ\n");
        usage(stderr);
        return 2;
    }
    if (tool_start(&t))
        return 1;
    zkprologml_pipe_t *src = zkprologml_pipe_open(t.ctx, (int)in, false);
    zkprologml_pipe_t *dst = src ? zkprologml_pipe_open(t.ctx, (int)outr, true) : NULL;
    if (!src || !dst) {
        fprintf(stderr, "filter: cannot open pipes %ld -> %ld: %s\n", in, outr, strerror(errno));
        zkprologml_pipe_close(src);
        tool_finish(&t);
        return 1;
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
    fflush(stdout);
    tool_finish(&t);
    return status;
}
