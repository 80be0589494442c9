/* producer: samples the processes on this machine and writes the samples
 * into a Monster pipe (the spec's App 1). Ends after --count samples,
 * --duration seconds, SIGINT/SIGTERM, or when every consumer is gone, and
 * prints "Producer: Wrote N samples to ring R". */
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
            "usage: producer --ring R [options]\n"
            "Samples every thread on this machine (from /proc) and writes the samples\n"
            "into Monster pipe R (0..14). Blocks while the pipe is full or has no consumer.\n"
            "  --ring R          pipe to write (required)\n" TOOL_COMMON_HELP);
}

static int own_option(void *arg, int opt, const char *val)
{
    if (opt != 'R')
        return 0;
    return tool_parse_long("producer", "--ring", val, 0, ZKPROLOGML_PIPES - 1, arg) ? 1 : -1;
}

int main(int argc, char **argv)
{
    tool_t t;
    tool_init(&t, "producer");
    long ring = -1;
    static const struct option opts[] = {{"ring", required_argument, NULL, 'R'}, TOOL_COMMON_OPTIONS,
                                         {NULL, 0, NULL, 0}};
    int prc = tool_parse(&t, argc, argv, opts, own_option, &ring, usage);
    if (prc >= 0)
        return prc;
    if (ring < 0)
        return tool_usage_error(&t, usage, "--ring R is required");
    if (tool_start(&t))
        return tool_end(&t, 1);
    zkprologml_pipe_t *out = tool_pipe(&t, ring, true);
    if (!out)
        return tool_end(&t, 1);
    uint64_t written = 0;
    zkprologml_sample_t batch[64];
    size_t have = 0, next = 0;
    int status = 0;
    while (!tool_stop(&t) && (t.count == 0 || written < t.count)) {
        tool_poll_coord(&t);
        if (next == have) {
            int rc = zkprologml_read_samples(t.ctx, batch, sizeof(batch) / sizeof(batch[0]), &have);
            next = 0;
            if (rc == -EINTR)
                continue;
            if (rc < 0) {
                fprintf(stderr, "producer: sampling failed: %s\n", strerror(-rc));
                status = 1;
                break;
            }
            continue;
        }
        int rc = zkprologml_pipe_write(out, &batch[next], TOOL_SLICE_MS);
        if (rc == 0) {
            next++;
            written++;
        } else if (rc == -EPIPE) {
            if (t.verbose)
                fprintf(stderr, "producer: every consumer of ring %ld is gone\n", ring);
            break;
        } else if (rc != -ETIME && rc != -EAGAIN && rc != -EINTR) {
            fprintf(stderr, "producer: write to ring %ld failed: %s\n", ring, strerror(-rc));
            status = 1;
            break;
        }
    }
    zkprologml_pipe_close(out);
    printf("Producer: Wrote %" PRIu64 " samples to ring %ld\n", written, ring);
    return tool_end(&t, status);
}
