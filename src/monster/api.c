/* The public zkprologml_* calls: argument checks (every id is validated
 * here, so backends only ever see ids in range), handle bookkeeping, and
 * dispatch to the backend chosen at open. */
#define _GNU_SOURCE
#include "backend.h"
#include "segment.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static _Thread_local char last_error[256];

int fmon_fail(int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof(last_error), fmt, ap);
    va_end(ap);
    return err;
}

const char *zkprologml_last_error(void)
{
    return last_error;
}

void zkprologml_config_default(zkprologml_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->backend = ZKPROLOGML_BACKEND_AUTO;
    for (int i = 0; i < ZKPROLOGML_PIPES; i++)
        cfg->capacity[i] = ZKPROLOGML_DEFAULT_CAPACITY;
    cfg->sample_hz = ZKPROLOGML_DEFAULT_HZ;
}

static void link_init(fmon_link_t *l)
{
    l->prev = l->next = l;
}

static void link_add(zkprologml_ctx_t *ctx, fmon_link_t *l)
{
    pthread_mutex_lock(&ctx->lock);
    l->next = &ctx->handles;
    l->prev = ctx->handles.prev;
    ctx->handles.prev->next = l;
    ctx->handles.prev = l;
    pthread_mutex_unlock(&ctx->lock);
}

static void link_del(zkprologml_ctx_t *ctx, fmon_link_t *l)
{
    pthread_mutex_lock(&ctx->lock);
    l->prev->next = l->next;
    l->next->prev = l->prev;
    link_init(l);
    pthread_mutex_unlock(&ctx->lock);
}

/* Which backend: the config, else FERRY_MONSTER_BACKEND, else user space. */
static int pick_backend(zkprologml_backend_t want, const fmon_backend_ops_t **ops)
{
    if (want == ZKPROLOGML_BACKEND_AUTO) {
        const char *env = getenv("FERRY_MONSTER_BACKEND");
        if (!env || !*env || strcmp(env, "user") == 0)
            want = ZKPROLOGML_BACKEND_USER;
        else if (strcmp(env, "kernel") == 0)
            want = ZKPROLOGML_BACKEND_KERNEL;
        else
            return fmon_fail(-EINVAL, "FERRY_MONSTER_BACKEND=%s: expected user or kernel", env);
    }
    switch (want) {
    case ZKPROLOGML_BACKEND_USER:
        *ops = &fmon_user_backend;
        return 0;
    case ZKPROLOGML_BACKEND_KERNEL:
        return fmon_fail(-ENOTSUP, "the kernel backend (monster_sampler.ko) is not built yet");
    default:
        return fmon_fail(-EINVAL, "unknown backend %d", (int)want);
    }
}

int zkprologml_open(zkprologml_ctx_t **out, const zkprologml_config_t *cfg)
{
    zkprologml_config_t def;
    if (!out)
        return fmon_fail(-EINVAL, "out is NULL");
    if (!cfg) {
        zkprologml_config_default(&def);
        cfg = &def;
    }
    const fmon_backend_ops_t *ops;
    int rc = pick_backend(cfg->backend, &ops);
    if (rc < 0)
        return rc;
    zkprologml_ctx_t *ctx = calloc(1, sizeof(*ctx));
    if (!ctx)
        return fmon_fail(-ENOMEM, "out of memory");
    rc = -pthread_mutex_init(&ctx->lock, NULL);
    if (rc < 0) {
        free(ctx);
        return fmon_fail(rc, "mutex init");
    }
    link_init(&ctx->handles);
    ctx->ops = ops;
    rc = ops->open(&ctx->state, cfg);
    if (rc < 0) {
        pthread_mutex_destroy(&ctx->lock);
        free(ctx);
        return rc;
    }
    *out = ctx;
    return 0;
}

void zkprologml_close(zkprologml_ctx_t *ctx)
{
    if (!ctx)
        return;
    /* Release what the app left open, oldest first. */
    while (ctx->handles.next != &ctx->handles) {
        fmon_link_t *l = ctx->handles.next;
        /* Both handle kinds start with the link, then is_wait. */
        if (((zkprologml_pipe_t *)l)->is_wait)
            zkprologml_wait_free((zkprologml_wait_t *)l);
        else
            zkprologml_pipe_close((zkprologml_pipe_t *)l);
    }
    ctx->ops->close(ctx->state);
    pthread_mutex_destroy(&ctx->lock);
    free(ctx);
}

int zkprologml_unlink(const char *name)
{
    char path[96];
    int rc = fmon_seg_path(path, sizeof(path), name);
    if (rc < 0)
        return rc;
    if (shm_unlink(path) < 0)
        return fmon_fail(-errno, "shm_unlink %s: %s", path, strerror(errno));
    return 0;
}

const char *zkprologml_backend_name(const zkprologml_ctx_t *ctx)
{
    return ctx ? ctx->ops->name : "none";
}

/* --- pipes --------------------------------------------------------------- */

zkprologml_pipe_t *zkprologml_pipe_open(zkprologml_ctx_t *ctx, int ring_id, bool is_producer)
{
    if (!ctx || ring_id < 0 || ring_id >= ZKPROLOGML_PIPES) {
        fmon_fail(-EINVAL, "ring id %d: valid ids are 0..%d", ring_id, ZKPROLOGML_PIPES - 1);
        errno = EINVAL;
        return NULL;
    }
    zkprologml_pipe_t *p = calloc(1, sizeof(*p));
    if (!p) {
        errno = ENOMEM;
        return NULL;
    }
    int rc = ctx->ops->pipe_open(ctx->state, (uint32_t)ring_id, is_producer, &p->token);
    if (rc < 0) {
        free(p);
        errno = -rc;
        return NULL;
    }
    link_init(&p->link);
    p->is_wait = false;
    p->ctx = ctx;
    p->ring = (uint32_t)ring_id;
    p->producer = is_producer;
    link_add(ctx, &p->link);
    return p;
}

int zkprologml_pipe_write(zkprologml_pipe_t *pipe, const zkprologml_sample_t *sample, int timeout_ms)
{
    if (!pipe || !sample)
        return fmon_fail(-EINVAL, "NULL pipe or sample");
    if (!pipe->producer)
        return fmon_fail(-EBADF, "pipe %u was opened as a consumer", pipe->ring);
    return pipe->ctx->ops->pipe_write(pipe->ctx->state, pipe->ring, pipe->token, sample, timeout_ms);
}

int zkprologml_pipe_read(zkprologml_pipe_t *pipe, zkprologml_sample_t *sample, int timeout_ms)
{
    if (!pipe || !sample)
        return fmon_fail(-EINVAL, "NULL pipe or sample");
    if (pipe->producer)
        return fmon_fail(-EBADF, "pipe %u was opened as a producer", pipe->ring);
    return pipe->ctx->ops->pipe_read(pipe->ctx->state, pipe->ring, pipe->token, sample, timeout_ms);
}

void zkprologml_pipe_close(zkprologml_pipe_t *pipe)
{
    if (!pipe)
        return;
    link_del(pipe->ctx, &pipe->link);
    pipe->ctx->ops->pipe_close(pipe->ctx->state, pipe->ring, pipe->token);
    free(pipe);
}

/* --- wait states ------------------------------------------------------------ */

static bool shard_ok(int shard_id)
{
    if (shard_id >= 0 && shard_id < ZKPROLOGML_SHARDS)
        return true;
    fmon_fail(-EINVAL, "shard id %d: valid ids are 0..%d", shard_id, ZKPROLOGML_SHARDS - 1);
    return false;
}

zkprologml_wait_t *zkprologml_wait_create(zkprologml_ctx_t *ctx, int shard_id)
{
    if (!ctx || !shard_ok(shard_id)) {
        errno = EINVAL;
        return NULL;
    }
    zkprologml_wait_t *w = calloc(1, sizeof(*w));
    if (!w) {
        errno = ENOMEM;
        return NULL;
    }
    int rc = ctx->ops->wait_create(ctx->state, (uint32_t)shard_id, &w->slot, &w->sequence, &w->seen);
    if (rc < 0) {
        free(w);
        errno = -rc;
        return NULL;
    }
    link_init(&w->link);
    w->is_wait = true;
    w->ctx = ctx;
    link_add(ctx, &w->link);
    return w;
}

int zkprologml_wait_for_coord(zkprologml_wait_t *wait, int timeout_ms)
{
    if (!wait)
        return fmon_fail(-EINVAL, "NULL wait state");
    return wait->ctx->ops->wait_for_coord(wait->ctx->state, wait->slot, wait->sequence, &wait->seen,
                                          timeout_ms);
}

int zkprologml_signal_ready(zkprologml_wait_t *wait)
{
    if (!wait)
        return fmon_fail(-EINVAL, "NULL wait state");
    return wait->ctx->ops->signal_ready(wait->ctx->state, wait->slot, wait->sequence);
}

int zkprologml_coordinate_shard(zkprologml_ctx_t *ctx, int shard_id)
{
    if (!ctx || !shard_ok(shard_id))
        return -EINVAL;
    return ctx->ops->coordinate_shard(ctx->state, (uint32_t)shard_id);
}

int zkprologml_wait_ready(zkprologml_ctx_t *ctx, int shard_id, int n, int timeout_ms)
{
    if (!ctx || !shard_ok(shard_id))
        return -EINVAL;
    if (n < 0 || n > ZKPROLOGML_WAIT_STATES)
        return fmon_fail(-EINVAL, "n = %d: expected 0..%d", n, ZKPROLOGML_WAIT_STATES);
    return ctx->ops->wait_ready(ctx->state, (uint32_t)shard_id, (uint32_t)n, timeout_ms);
}

void zkprologml_wait_free(zkprologml_wait_t *wait)
{
    if (!wait)
        return;
    link_del(wait->ctx, &wait->link);
    wait->ctx->ops->wait_free(wait->ctx->state, wait->slot, wait->sequence);
    free(wait);
}

uint64_t zkprologml_wait_sequence(const zkprologml_wait_t *wait)
{
    return wait ? wait->sequence : 0;
}

int zkprologml_wait_id(const zkprologml_wait_t *wait)
{
    return wait ? (int)wait->slot : -EINVAL;
}

/* --- sampler and status ------------------------------------------------------- */

int zkprologml_read_samples(zkprologml_ctx_t *ctx, zkprologml_sample_t *samples, size_t n,
                            size_t *count)
{
    if (!ctx || !count || (n > 0 && !samples))
        return fmon_fail(-EINVAL, "NULL argument");
    return ctx->ops->read_samples(ctx->state, samples, n, count);
}

int zkprologml_pipe_status(zkprologml_ctx_t *ctx, zkprologml_pipe_status_t *out)
{
    if (!ctx || !out)
        return fmon_fail(-EINVAL, "NULL argument");
    return ctx->ops->pipe_status(ctx->state, out);
}

int zkprologml_wait_status(zkprologml_ctx_t *ctx, zkprologml_wait_status_t *out)
{
    if (!ctx || !out)
        return fmon_fail(-EINVAL, "NULL argument");
    return ctx->ops->wait_status(ctx->state, out);
}

int zkprologml_log_read(zkprologml_ctx_t *ctx, zkprologml_log_entry_t *out, size_t n)
{
    if (!ctx || (n > 0 && !out))
        return fmon_fail(-EINVAL, "NULL argument");
    return ctx->ops->log_read(ctx->state, out, n);
}
