/* coordinator: coordinates every app on a shard at a fixed interval (the
 * spec's Coordinator): each round wakes every wait state on the shard and
 * is logged ("Coordinated N apps on shard S", see monster-status log). With
 * --apps N it first waits until N apps on the shard are ready (a barrier).
 * Prints "Coordinator: Coordinated N apps on shard S", N being the most apps
 * one round coordinated. */
#define _GNU_SOURCE
#include "tool.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: coordinator --shard S [options]\n"
            "Every --interval ms, wakes every app waiting on shard S.\n"
            "  --shard S         shard to coordinate, 0..255 (required)\n"
            "  --interval MS     time between rounds (default 1000)\n"
            "  --count N         stop after N rounds (default: no limit)\n"
            "  --duration S      stop after S seconds (default: no limit)\n"
            "  --apps N          before the first round, wait until N apps on the shard\n"
            "                    are ready (default 0: don't wait)\n"
            "  --barrier-timeout MS  give up waiting for --apps after MS (default 60000)\n"
            "  --name NAME       coordination segment name\n"
            "  -v, --verbose     one line per round on stderr\n"
            "  -h, --help        this text\n");
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL); /* a signal cuts it short: the loop checks */
}

typedef struct args {
    long shard;      /* --shard           */
    long interval;   /* --interval ms     */
    long apps;       /* --apps            */
    long barrier_ms; /* --barrier-timeout */
} args_t;

static int own_option(void *arg, int opt, const char *val)
{
    args_t *a = arg;
    switch (opt) {
    case 'S':
        return tool_parse_long("coordinator", "--shard", val, 0, ZKPROLOGML_SHARDS - 1, &a->shard) ? 1 : -1;
    case 'i':
        return tool_parse_long("coordinator", "--interval", val, 0, 86400000, &a->interval) ? 1 : -1;
    case 'a':
        return tool_parse_long("coordinator", "--apps", val, 0, ZKPROLOGML_WAIT_STATES, &a->apps) ? 1 : -1;
    case 'B':
        return tool_parse_long("coordinator", "--barrier-timeout", val, 1, 86400000, &a->barrier_ms) ? 1
                                                                                                   : -1;
    default:
        return 0;
    }
}

int main(int argc, char **argv)
{
    tool_t t;
    tool_init(&t, "coordinator");
    args_t a = {.shard = -1, .interval = 1000, .apps = 0, .barrier_ms = 60000};
    static const struct option opts[] = {
        {"shard", required_argument, NULL, 'S'},   {"interval", required_argument, NULL, 'i'},
        {"apps", required_argument, NULL, 'a'},    {"barrier-timeout", required_argument, NULL, 'B'},
        {"name", required_argument, NULL, 'N'},    {"count", required_argument, NULL, 'n'},
        {"duration", required_argument, NULL, 'd'}, {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0}};
    int prc = tool_parse(&t, argc, argv, opts, own_option, &a, usage);
    if (prc >= 0)
        return prc;
    if (a.shard < 0)
        return tool_usage_error(&t, usage, "--shard S is required");
    long shard = a.shard, interval = a.interval, apps = a.apps, barrier_ms = a.barrier_ms;
    t.shard = -1; /* the coordinator itself takes no wait state */
    if (tool_start(&t))
        return tool_end(&t, 1);
    int status = 0;
    if (apps > 0) {
        int rc;
        do /* in slices, so a signal or --duration ends the wait */
            rc = zkprologml_wait_ready(t.ctx, (int)shard, (int)apps, TOOL_SLICE_MS);
        while ((rc == -ETIME || rc == -EINTR) && !tool_stop(&t) && (barrier_ms -= TOOL_SLICE_MS) > 0);
        if (rc < 0) {
            fprintf(stderr, "coordinator: %ld apps on shard %ld not ready: %s\n", apps, shard,
                    strerror(-rc));
            status = 1;
        } else if (t.verbose) {
            fprintf(stderr, "coordinator: %d apps ready on shard %ld\n", rc, shard);
        }
    }
    int most = 0;
    uint64_t rounds = 0;
    while (status == 0 && !tool_stop(&t) && (t.count == 0 || rounds < t.count)) {
        if (rounds > 0)
            sleep_ms(interval);
        if (tool_stop(&t))
            break;
        int n = zkprologml_coordinate_shard(t.ctx, (int)shard);
        if (n < 0) {
            fprintf(stderr, "coordinator: coordinate failed: %s\n", strerror(-n));
            status = 1;
            break;
        }
        rounds++;
        if (n > most)
            most = n;
        if (t.verbose)
            fprintf(stderr, "Coordinated %d apps on shard %ld\n", n, shard);
    }
    printf("Coordinator: Coordinated %d apps on shard %ld\n", most, shard);
    return tool_end(&t, status);
}
