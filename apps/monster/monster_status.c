/* monster-status: the spec's debugfs views as a command.
 *   monster-status pipes        "Pipe 0: producer=1234, consumer=5678, readers=1, writers=1, closed=0"
 *   monster-status wait_states  "Wait 0: pid=1234, shard=5, sequence=42, ready=0" (slots in use)
 *   monster-status log          "[  12.345678] Coordinated 3 apps on shard 5" (like dmesg)
 *   monster-status reset        removes the segment
 * --json prints one JSON document per view (one line each, NDJSON with
 * --watch); --watch repeats every --interval ms. */
#define _GNU_SOURCE
#include <ferry/monster.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: monster-status [options] pipes|wait_states|log|reset\n"
            "Shows the Monster coordination segment like the spec's debugfs files.\n"
            "  pipes          one line per pipe (all 15)\n"
            "  wait_states    one line per wait state in use\n"
            "  log            the last %d coordinations, oldest first\n"
            "  reset          remove the segment (apps attached keep their mapping)\n"
            "  --json         JSON instead of text (one document per line)\n"
            "  --watch        repeat until interrupted (or --count times)\n"
            "  --interval MS  time between repeats (default 1000)\n"
            "  --count N      with --watch: stop after N repeats\n"
            "  --name NAME    segment name (default: $FERRY_MONSTER_NAME or default)\n"
            "  -h, --help     this text\n",
            ZKPROLOGML_LOG_ENTRIES);
}

static int show_pipes(zkprologml_ctx_t *ctx, bool json)
{
    zkprologml_pipe_status_t st[ZKPROLOGML_PIPES];
    int rc = zkprologml_pipe_status(ctx, st);
    if (rc < 0)
        return rc;
    if (!json) {
        for (int i = 0; i < ZKPROLOGML_PIPES; i++)
            printf("Pipe %u: producer=%d, consumer=%d, readers=%u, writers=%u, closed=%u\n",
                   st[i].id, st[i].producer_pid, st[i].consumer_pid, st[i].readers,
                   st[i].writers, st[i].closed);
        return 0;
    }
    json_t *arr = json_array();
    for (int i = 0; i < ZKPROLOGML_PIPES; i++)
        json_array_append_new(
            arr, json_pack("{s:i, s:i, s:i, s:i, s:i, s:i, s:b, s:i, s:i, s:I, s:I}", "id",
                           (int)st[i].id, "prime", (int)st[i].prime, "producer",
                           st[i].producer_pid, "consumer", st[i].consumer_pid, "readers",
                           (int)st[i].readers, "writers", (int)st[i].writers, "closed",
                           (int)st[i].closed, "capacity", (int)st[i].capacity, "count",
                           (int)st[i].count, "written", (json_int_t)st[i].written, "read",
                           (json_int_t)st[i].read));
    json_t *doc = json_pack("{s:o}", "pipes", arr);
    char *s = json_dumps(doc, JSON_COMPACT);
    puts(s);
    free(s);
    json_decref(doc);
    return 0;
}

static int show_waits(zkprologml_ctx_t *ctx, bool json)
{
    static zkprologml_wait_status_t st[ZKPROLOGML_WAIT_STATES];
    int rc = zkprologml_wait_status(ctx, st);
    if (rc < 0)
        return rc;
    json_t *arr = json ? json_array() : NULL;
    for (int i = 0; i < ZKPROLOGML_WAIT_STATES; i++) {
        if (!st[i].in_use)
            continue;
        if (!json)
            printf("Wait %u: pid=%d, shard=%u, sequence=%" PRIu64 ", ready=%u\n", st[i].id,
                   st[i].pid, st[i].shard, st[i].sequence, st[i].ready);
        else
            json_array_append_new(arr, json_pack("{s:i, s:i, s:i, s:I, s:i}", "id", (int)st[i].id,
                                                 "pid", st[i].pid, "shard", (int)st[i].shard,
                                                 "sequence", (json_int_t)st[i].sequence,
                                                 "ready", (int)st[i].ready));
    }
    if (json) {
        json_t *doc = json_pack("{s:o}", "wait_states", arr);
        char *s = json_dumps(doc, JSON_COMPACT);
        puts(s);
        free(s);
        json_decref(doc);
    }
    return 0;
}

static int show_log(zkprologml_ctx_t *ctx, bool json)
{
    zkprologml_log_entry_t e[ZKPROLOGML_LOG_ENTRIES];
    int n = zkprologml_log_read(ctx, e, ZKPROLOGML_LOG_ENTRIES);
    if (n < 0)
        return n;
    json_t *arr = json ? json_array() : NULL;
    for (int i = 0; i < n; i++) {
        if (!json)
            printf("[%5" PRIu64 ".%06" PRIu64 "] Coordinated %u apps on shard %u\n",
                   (uint64_t)(e[i].timestamp_ns / 1000000000u), (uint64_t)((e[i].timestamp_ns / 1000u) % 1000000u),
                   e[i].count, e[i].shard);
        else
            json_array_append_new(arr, json_pack("{s:I, s:I, s:i, s:i, s:i}", "seq",
                                                 (json_int_t)e[i].seq, "timestamp_ns",
                                                 (json_int_t)e[i].timestamp_ns, "pid", e[i].pid,
                                                 "shard", (int)e[i].shard, "count", (int)e[i].count));
    }
    if (json) {
        json_t *doc = json_pack("{s:o}", "log", arr);
        char *s = json_dumps(doc, JSON_COMPACT);
        puts(s);
        free(s);
        json_decref(doc);
    }
    return 0;
}

int main(int argc, char **argv)
{
    bool json = false, watch = false;
    long interval = 1000, count = 0;
    const char *name = NULL;
    static const struct option opts[] = {
        {"json", no_argument, NULL, 'j'},         {"watch", no_argument, NULL, 'w'},
        {"interval", required_argument, NULL, 'i'}, {"count", required_argument, NULL, 'n'},
        {"name", required_argument, NULL, 'N'},   {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    int c;
    char *end;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'j':
            json = true;
            break;
        case 'w':
            watch = true;
            break;
        case 'i':
        case 'n': {
            long v = strtol(optarg, &end, 10);
            if (*end || end == optarg || v < 1 || v > 86400000) {
                fprintf(stderr, "monster-status: --%s %s: expected 1..86400000\n",
                        c == 'i' ? "interval" : "count", optarg);
                return 2;
            }
            *(c == 'i' ? &interval : &count) = v;
            break;
        }
        case 'N':
            name = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc - 1) {
        usage(stderr);
        return 2;
    }
    const char *view = argv[optind];
    int (*show)(zkprologml_ctx_t *, bool) = NULL;
    if (strcmp(view, "pipes") == 0)
        show = show_pipes;
    else if (strcmp(view, "wait_states") == 0)
        show = show_waits;
    else if (strcmp(view, "log") == 0)
        show = show_log;
    else if (strcmp(view, "reset") == 0) {
        int rc = zkprologml_unlink(name);
        if (rc < 0 && rc != -ENOENT) {
            fprintf(stderr, "monster-status: reset: %s\n", zkprologml_last_error());
            return 1;
        }
        return 0;
    } else {
        fprintf(stderr, "monster-status: unknown view '%s'\n", view);
        usage(stderr);
        return 2;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    zkprologml_config_t cfg;
    zkprologml_config_default(&cfg);
    cfg.name = name;
    zkprologml_ctx_t *ctx;
    int rc = zkprologml_open(&ctx, &cfg);
    if (rc < 0) {
        fprintf(stderr, "monster-status: %s (%s)\n", strerror(-rc), zkprologml_last_error());
        return 1;
    }
    long shown = 0;
    for (;;) {
        if (watch && !json && isatty(1))
            printf("\033[H\033[2J"); /* clear the terminal between views */
        rc = show(ctx, json);
        fflush(stdout);
        if (rc < 0) {
            fprintf(stderr, "monster-status: %s: %s\n", view, strerror(-rc));
            break;
        }
        shown++;
        if (!watch || interrupted || (count && shown >= count))
            break;
        struct timespec ts = {.tv_sec = interval / 1000, .tv_nsec = (interval % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        if (interrupted)
            break;
        if (!json && !isatty(1))
            printf("\n"); /* separates the repeats in a file */
    }
    zkprologml_close(ctx);
    return rc < 0 ? 1 : 0;
}
