/* Shared by the Monster tools (producer, filter, consumer, coordinator):
 * the common flags, opening the context, the stop conditions (--count,
 * --duration, SIGINT/SIGTERM) and the wait state each app takes on its
 * shard so a coordinator can count and release it. */
#ifndef FERRY_MONSTER_TOOL_H
#define FERRY_MONSTER_TOOL_H

#include <ferry/monster.h>

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdbool.h>
#include <stdint.h>

#define TOOL_SLICE_MS 200 /* blocking calls wake this often to check for a stop */

typedef struct tool {
    const char *prog;          /* "Producer", ... (summary line prefix)            */
    const char *name;          /* --name: segment name (NULL: default)             */
    uint64_t count;            /* --count: stop after this many (0: no limit)      */
    double duration;           /* --duration seconds (0: no limit)                 */
    int shard;                 /* --shard: wait state shard (-1: none)             */
    int wait_coord_ms;         /* --wait-coord: block until coordinated first      */
    uint32_t hz;               /* --rate: sampler scans per second                 */
    uint32_t capacity;         /* --capacity: pipe size if this app creates it     */
    bool verbose;              /* -v                                               */
    uint64_t end_ns;           /* CLOCK_MONOTONIC deadline from --duration, 0 none */
    uint64_t coordinations;    /* coordinations received                           */
    uint64_t next_poll_ns;     /* tool_poll_coord: next look                       */
    zkprologml_ctx_t *ctx;     /* the context                                      */
    zkprologml_wait_t *wait;   /* our wait state on `shard`, or NULL               */
} tool_t;

/* The long options every app takes (terminated list to append to). */
#define TOOL_COMMON_OPTIONS                                                        \
    {"name", required_argument, NULL, 'N'}, {"count", required_argument, NULL, 'n'}, \
    {"duration", required_argument, NULL, 'd'}, {"shard", required_argument, NULL, 's'}, \
    {"wait-coord", required_argument, NULL, 'W'}, {"rate", required_argument, NULL, 'r'}, \
    {"capacity", required_argument, NULL, 'C'}, {"verbose", no_argument, NULL, 'v'}, \
    {"help", no_argument, NULL, 'h'}

#define TOOL_COMMON_HELP                                                                     \
    "  --count N         stop after N samples (default: no limit)\n"                          \
    "  --duration S      stop after S seconds (default: no limit)\n"                          \
    "  --name NAME       coordination segment name (default: $FERRY_MONSTER_NAME or default)\n" \
    "  --shard S         take a wait state on shard S for the coordinator (default 0; -1 none)\n" \
    "  --wait-coord MS   wait up to MS ms to be coordinated before starting (default 0: don't)\n" \
    "  --rate HZ         sampler scans per second (default 10)\n"                              \
    "  --capacity N      samples per pipe, if this app creates the segment (default 1024)\n"   \
    "  -v, --verbose     progress on stderr\n"                                                \
    "  -h, --help        this text\n"

extern volatile sig_atomic_t tool_interrupted;

/* A tool's own option: 1 handled, 0 not its own, -1 bad value (the message
 * is printed). `arg` is the tool's pointer given to tool_parse(). */
typedef int (*tool_own_fn)(void *arg, int opt, const char *val);

void tool_init(tool_t *t, const char *prog);
/* Handles a common option; 1 if it was one, 0 if not, -1 on a bad value. */
int tool_option(tool_t *t, int opt, const char *arg);
/* Parses a bounded integer option value; false (with a message) if bad. */
bool tool_parse_long(const char *prog, const char *flag, const char *arg, long lo, long hi, long *out);
/* Parses argv with getopt_long over `opts` (the tool's own options, then
 * TOOL_COMMON_OPTIONS or the subset it takes): each option goes to own()
 * first, then to tool_option(); --help prints usage(stdout). Returns -1 to
 * go on, else the exit code: 0 after --help, 2 after a bad or unknown flag
 * or a stray argument (the message and usage(stderr) printed). */
int tool_parse(tool_t *t, int argc, char **argv, const struct option *opts, tool_own_fn own,
               void *arg, void (*usage)(FILE *));
/* "prog: <why>" and usage(stderr); returns 2 (the exit code of a usage error). */
int tool_usage_error(const tool_t *t, void (*usage)(FILE *), const char *why);
/* Opens pipe `ring` as producer or consumer; NULL after printing why. */
zkprologml_pipe_t *tool_pipe(tool_t *t, long ring, bool producer);
/* Signals, context, wait state (+ ready, + optional wait for coordination). 0 or exit code. */
int tool_start(tool_t *t);
/* True when the run should end (signal, --duration). */
bool tool_stop(const tool_t *t);
/* Between units of work: consumes coordinations (signalling ready again). */
void tool_poll_coord(tool_t *t);
void tool_finish(tool_t *t);
/* The end of every tool: flushes the summary, tool_finish(), returns status. */
int tool_end(tool_t *t, int status);

#endif
