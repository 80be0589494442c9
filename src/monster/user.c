/* The user-space backend: the ops table over the shared segment. */
#define _GNU_SOURCE
#include "segment.h"

#include <errno.h>

static int u_open(void **state, const zkprologml_config_t *cfg)
{
    fmon_seg_t *seg;
    int rc = fmon_seg_open(&seg, cfg);
    if (rc == 0)
        *state = seg;
    return rc;
}

static void u_close(void *state)
{
    fmon_seg_close(state);
}

static int u_pipe_open(void *state, uint32_t ring, bool producer, uint64_t *token)
{
    return fmon_pipe_open(state, ring, producer, token);
}

static void u_pipe_close(void *state, uint32_t ring, uint64_t token)
{
    fmon_pipe_close(state, ring, token);
}

static int u_pipe_write(void *state, uint32_t ring, uint64_t token, const struct process_sample *s,
                        int timeout_ms)
{
    return fmon_pipe_write(state, ring, s, timeout_ms);
}

static int u_pipe_read(void *state, uint32_t ring, uint64_t token, struct process_sample *s,
                       int timeout_ms)
{
    return fmon_pipe_read(state, ring, s, timeout_ms);
}

static int u_wait_create(void *state, uint32_t shard, uint32_t *slot, uint64_t *sequence,
                         uint32_t *seen)
{
    return fmon_wait_create(state, shard, slot, sequence, seen);
}

static int u_wait_for_coord(void *state, uint32_t slot, uint64_t sequence, uint32_t *seen,
                            int timeout_ms)
{
    return fmon_wait_for_coord(state, slot, sequence, seen, timeout_ms);
}

static int u_signal_ready(void *state, uint32_t slot, uint64_t sequence)
{
    return fmon_signal_ready(state, slot, sequence);
}

static void u_wait_free(void *state, uint32_t slot, uint64_t sequence)
{
    fmon_wait_free(state, slot, sequence);
}

static int u_coordinate_shard(void *state, uint32_t shard)
{
    return fmon_coordinate_shard(state, shard);
}

static int u_wait_ready(void *state, uint32_t shard, uint32_t n, int timeout_ms)
{
    return fmon_wait_ready(state, shard, n, timeout_ms);
}

static int u_read_samples(void *state, struct process_sample *out, size_t n, size_t *count)
{
    fmon_seg_t *seg = state;
    pthread_mutex_lock(&seg->sampler_lock);
    int rc = fmon_sampler_read(&seg->sampler, out, n, count);
    pthread_mutex_unlock(&seg->sampler_lock);
    return rc;
}

static int u_pipe_status(void *state, zkprologml_pipe_status_t *out)
{
    return fmon_pipe_status(state, out);
}

static int u_wait_status(void *state, zkprologml_wait_status_t *out)
{
    return fmon_wait_status(state, out);
}

static int u_log_read(void *state, zkprologml_log_entry_t *out, size_t n)
{
    return fmon_log_read(state, out, n);
}

const fmon_backend_ops_t fmon_user_backend = {
    .name = "user",
    .open = u_open,
    .close = u_close,
    .pipe_open = u_pipe_open,
    .pipe_close = u_pipe_close,
    .pipe_write = u_pipe_write,
    .pipe_read = u_pipe_read,
    .wait_create = u_wait_create,
    .wait_for_coord = u_wait_for_coord,
    .signal_ready = u_signal_ready,
    .wait_free = u_wait_free,
    .coordinate_shard = u_coordinate_shard,
    .wait_ready = u_wait_ready,
    .read_samples = u_read_samples,
    .pipe_status = u_pipe_status,
    .wait_status = u_wait_status,
    .log_read = u_log_read,
};
