/* Helpers shared by the shm tests: unique segment names (pid + counter, so
 * parallel test processes never collide) and a callback that collects
 * completions. */
#ifndef FERRY_TEST_SHM_H
#define FERRY_TEST_SHM_H

#include <ferry/shm.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static inline const char *shm_test_name(char *buf, size_t size, const char *tag)
{
    static int counter;
    snprintf(buf, size, "t%d-%s%d", (int)getpid(), tag, ++counter);
    return buf;
}

/* One delivered completion. */
typedef struct shm_done {
    uint64_t task_id; /* id given to the callback */
    int status;       /* status given to the callback */
    char resp[256];   /* first bytes of the answer, NUL-terminated */
    size_t len;       /* full answer length */
} shm_done_t;

typedef struct shm_sink {
    shm_done_t items[64]; /* the first 64 completions */
    size_t count;         /* completions seen (may exceed 64) */
} shm_sink_t;

static inline void shm_sink_cb(void *arg, uint64_t task_id, int status, const void *resp,
                               size_t len)
{
    shm_sink_t *s = arg;
    if (s->count < 64) {
        shm_done_t *d = &s->items[s->count];
        d->task_id = task_id;
        d->status = status;
        d->len = len;
        size_t n = len < sizeof(d->resp) - 1 ? len : sizeof(d->resp) - 1;
        memcpy(d->resp, resp, n);
        d->resp[n] = '\0';
    }
    s->count++;
}

/* Waits (no busy loop: fshm_server_wait sleeps) until the sink holds n. */
static inline void shm_sink_wait(fshm_server_t *srv, shm_sink_t *s, size_t n)
{
    while (s->count < n) {
        if (fshm_server_wait(srv, 200) >= 0)
            fshm_server_poll(srv, shm_sink_cb, s);
    }
}

#endif
