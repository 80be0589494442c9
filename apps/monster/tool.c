/* Common start-up and stop logic of the Monster tools. */
#define _GNU_SOURCE
#include "tool.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

volatile sig_atomic_t tool_interrupted;

static void on_signal(int sig)
{
    (void)sig;
    tool_interrupted = 1;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void tool_init(tool_t *t, const char *prog)
{
    memset(t, 0, sizeof(*t));
    t->prog = prog;
    t->shard = 0;
    t->hz = ZKPROLOGML_DEFAULT_HZ;
    t->capacity = ZKPROLOGML_DEFAULT_CAPACITY;
}

bool tool_parse_long(const char *prog, const char *flag, const char *arg, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(arg, &end, 10);
    if (errno || end == arg || *end || v < lo || v > hi) {
        fprintf(stderr, "%s: %s %s: expected an integer in %ld..%ld\n", prog, flag, arg, lo, hi);
        return false;
    }
    *out = v;
    return true;
}

int tool_option(tool_t *t, int opt, const char *arg)
{
    long v;
    switch (opt) {
    case 'N':
        t->name = arg;
        return 1;
    case 'n':
        if (!tool_parse_long(t->prog, "--count", arg, 1, 1000000000000L, &v))
            return -1;
        t->count = (uint64_t)v;
        return 1;
    case 'd': {
        char *end;
        double d = strtod(arg, &end);
        if (end == arg || *end || !(d > 0) || d > 1e7) {
            fprintf(stderr, "%s: --duration %s: expected seconds > 0\n", t->prog, arg);
            return -1;
        }
        t->duration = d;
        return 1;
    }
    case 's':
        if (!tool_parse_long(t->prog, "--shard", arg, -1, ZKPROLOGML_SHARDS - 1, &v))
            return -1;
        t->shard = (int)v;
        return 1;
    case 'W':
        if (!tool_parse_long(t->prog, "--wait-coord", arg, 0, 86400000, &v))
            return -1;
        t->wait_coord_ms = (int)v;
        return 1;
    case 'r':
        if (!tool_parse_long(t->prog, "--rate", arg, 1, ZKPROLOGML_MAX_HZ, &v))
            return -1;
        t->hz = (uint32_t)v;
        return 1;
    case 'C':
        if (!tool_parse_long(t->prog, "--capacity", arg, 1, ZKPROLOGML_MAX_CAPACITY, &v))
            return -1;
        t->capacity = (uint32_t)v;
        return 1;
    case 'v':
        t->verbose = true;
        return 1;
    default:
        return 0;
    }
}

int tool_parse(tool_t *t, int argc, char **argv, const struct option *opts, tool_own_fn own,
               void *arg, void (*usage)(FILE *))
{
    int c;
    while ((c = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
        if (c == 'h') {
            usage(stdout);
            return 0;
        }
        int rc = own ? own(arg, c, optarg) : 0;
        if (rc == 0)
            rc = tool_option(t, c, optarg);
        if (rc < 0)
            return 2;
        if (rc == 0) { /* getopt said which flag */
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "%s: unexpected argument '%s'\n", t->prog, argv[optind]);
        usage(stderr);
        return 2;
    }
    return -1;
}

int tool_usage_error(const tool_t *t, void (*usage)(FILE *), const char *why)
{
    fprintf(stderr, "%s: %s\n", t->prog, why);
    usage(stderr);
    return 2;
}

zkprologml_pipe_t *tool_pipe(tool_t *t, long ring, bool producer)
{
    zkprologml_pipe_t *p = zkprologml_pipe_open(t->ctx, (int)ring, producer);
    if (!p)
        fprintf(stderr, "%s: cannot open pipe %ld as %s: %s (%s)\n", t->prog, ring,
                producer ? "producer" : "consumer", strerror(errno), zkprologml_last_error());
    return p;
}

int tool_start(tool_t *t)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal; /* no SA_RESTART: blocking calls return -EINTR */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    zkprologml_config_t cfg;
    zkprologml_config_default(&cfg);
    cfg.name = t->name;
    cfg.sample_hz = t->hz;
    for (int i = 0; i < ZKPROLOGML_PIPES; i++)
        cfg.capacity[i] = t->capacity;
    int rc = zkprologml_open(&t->ctx, &cfg);
    if (rc < 0) {
        fprintf(stderr, "%s: cannot open the coordination segment: %s (%s)\n", t->prog,
                strerror(-rc), zkprologml_last_error());
        return 1;
    }
    if (t->duration > 0)
        t->end_ns = now_ns() + (uint64_t)(t->duration * 1e9);
    if (t->shard >= 0) {
        t->wait = zkprologml_wait_create(t->ctx, t->shard);
        if (!t->wait) {
            fprintf(stderr, "%s: no wait state on shard %d: %s\n", t->prog, t->shard, strerror(errno));
            return 1;
        }
        zkprologml_signal_ready(t->wait);
        if (t->wait_coord_ms > 0) {
            rc = zkprologml_wait_for_coord(t->wait, t->wait_coord_ms);
            if (rc < 0) {
                fprintf(stderr, "%s: not coordinated on shard %d within %d ms: %s\n", t->prog,
                        t->shard, t->wait_coord_ms, strerror(-rc));
                return 1;
            }
            t->coordinations++;
            if (t->verbose)
                fprintf(stderr, "%s: coordinated on shard %d, starting\n", t->prog, t->shard);
        }
    }
    return 0;
}

bool tool_stop(const tool_t *t)
{
    return tool_interrupted || (t->end_ns && now_ns() >= t->end_ns);
}

void tool_poll_coord(tool_t *t)
{
    if (!t->wait)
        return;
    /* Looking takes the segment's lock: at most every 50 ms, not per sample. */
    uint64_t now = now_ns();
    if (now < t->next_poll_ns)
        return;
    t->next_poll_ns = now + 50000000ull;
    if (zkprologml_wait_for_coord(t->wait, 0) == 0) {
        t->coordinations++;
        zkprologml_signal_ready(t->wait); /* ready for the next round */
    }
}

void tool_finish(tool_t *t)
{
    if (t->verbose && t->wait)
        fprintf(stderr, "%s: %llu coordinations received\n", t->prog,
                (unsigned long long)t->coordinations);
    zkprologml_wait_free(t->wait);
    t->wait = NULL;
    zkprologml_close(t->ctx);
    t->ctx = NULL;
}

int tool_end(tool_t *t, int status)
{
    fflush(stdout);
    tool_finish(t);
    return status;
}
