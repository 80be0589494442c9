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

int main(int argc, char **argv)
{
    tool_t t;
    tool_init(&t, "coordinator");
    long shard = -1, interval = 1000, apps = 0, barrier_ms = 60000;
    static const struct option opts[] = {
        {"shard", required_argument, NULL, 'S'},   {"interval", required_argument, NULL, 'i'},
        {"apps", required_argument, NULL, 'a'},    {"barrier-timeout", required_argument, NULL, 'B'},
        {"name", required_argument, NULL, 'N'},    {"count", required_argument, NULL, 'n'},
        {"duration", required_argument, NULL, 'd'}, {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
        switch (c) {
        case 'S':
            if (!tool_parse_long("coordinator", "--shard", optarg, 0, ZKPROLOGML_SHARDS - 1, &shard))
                return 2;
            continue;
        case 'i':
            if (!tool_parse_long("coordinator", "--interval", optarg, 0, 86400000, &interval))
                return 2;
            continue;
        case 'a':
            if (!tool_parse_long("coordinator", "--apps", optarg, 0, ZKPROLOGML_WAIT_STATES, &apps))
                return 2;
            continue;
        case 'B':
            if (!tool_parse_long("coordinator", "--barrier-timeout", optarg, 1, 86400000, &barrier_ms))
                return 2;
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
    if (shard < 0 || optind != argc) {
        fprintf(stderr, "coordinator: --shard S is required\n");
        usage(stderr);
        return 2;
    }
    t.shard = -1; /* the coordinator itself takes no wait state */
    if (tool_start(&t))
        return 1;
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
    fflush(stdout);
    tool_finish(&t);
    return status;
}
