/* kcoro actors: a coroutine or a thread that handles the messages of one
 * inbox channel. An actor started from a coroutine (or by kc_actor_go) is a
 * coroutine on the scheduler: thousands cost a few KiB each and a blocked
 * receive parks the coroutine, not a thread. kc_actor_start_ex from a plain
 * thread keeps starting a thread (process may block the thread: a sleep, a
 * blocking read). Stopping is cooperative but prompt: the actor's receive
 * takes the actor's own cancellation token, so kc_actor_cancel interrupts a
 * blocked receive. */
#include <errno.h>
#include <stdbool.h>
#include <pthread.h>
#include <stdlib.h>

#include "kc_internal.h"

struct kc_actor {
    pthread_t thread;        /* runs actor_main (thread actors)          */
    kc_coro_t *coro;         /* runs actor_main (coroutine actors) or NULL */
    kc_actor_ctx_ex ctx;     /* copy of the start parameters              */
    kc_cancel_t *tok;        /* child of ctx.cancel: cancels this actor   */
    void *msg;               /* receive buffer of the inbox's elem size   */
    int reason;              /* why the loop ended (valid after join)     */
};

static void *actor_main(void *arg)
{
    kc_actor_t *a = arg;
    int reason;
    for (;;) {
        int r = kc_chan_recv_c(a->ctx.inbox, a->msg, a->ctx.timeout_ms, a->tok);
        if (r == 0) {
            int rc = a->ctx.process(a->ctx.user, a->msg);
            if (rc != 0) {
                reason = rc;
                break;
            }
        } else if (r != -ETIME && r != -EAGAIN) {
            reason = r; /* -EPIPE (closed and drained) or -ECANCELED */
            break;
        }
    }
    a->reason = reason;
    if (a->ctx.on_exit)
        a->ctx.on_exit(a->ctx.user, reason);
    return NULL;
}

static void actor_coro(void *arg) { actor_main(arg); }

static int actor_start(kc_actor_t **out, const kc_actor_ctx_ex *ctx, bool coro)
{
    int r;
    if (!out || !ctx || !ctx->inbox || !ctx->process)
        return -EINVAL;
    kc_actor_t *a = calloc(1, sizeof *a);
    if (!a)
        return -ENOMEM;
    a->ctx = *ctx;
    if (a->ctx.timeout_ms == 0)
        a->ctx.timeout_ms = -1; /* a polling actor would spin: wait instead */
    a->msg = malloc(kc_chan_elem_size(ctx->inbox));
    if (!a->msg) {
        r = -ENOMEM;
        goto fail_msg;
    }
    r = kc_cancel_create(&a->tok, ctx->cancel);
    if (r < 0)
        goto fail_tok;
    if (coro) {
        r = kc_spawn(&a->coro, actor_coro, a, NULL);
        if (r < 0)
            goto fail_thread;
    } else {
        r = pthread_create(&a->thread, NULL, actor_main, a);
        if (r != 0) {
            r = -r;
            goto fail_thread;
        }
    }
    *out = a;
    return 0;

fail_thread:
    kc_cancel_destroy(a->tok);
fail_tok:
    free(a->msg);
fail_msg:
    free(a);
    return r;
}

int kc_actor_start_ex(kc_actor_t **out, const kc_actor_ctx_ex *ctx)
{
    return actor_start(out, ctx, kc_self() != NULL);
}

int kc_actor_go(kc_actor_t **out, const kc_actor_ctx_ex *ctx)
{
    return actor_start(out, ctx, true);
}

bool kc_actor_is_coro(const kc_actor_t *a)
{
    return a && a->coro;
}

void kc_actor_cancel(kc_actor_t *a)
{
    if (a)
        kc_cancel_trigger(a->tok);
}

int kc_actor_join(kc_actor_t *a)
{
    if (!a)
        return -EINVAL;
    if (a->coro) {
        int r = kc_coro_join(a->coro);
        if (r < 0)
            return r; /* -EDEADLK: an actor joining itself; a is not freed */
    } else {
        pthread_join(a->thread, NULL);
    }
    int reason = a->reason;
    kc_cancel_destroy(a->tok);
    free(a->msg);
    free(a);
    return reason;
}
