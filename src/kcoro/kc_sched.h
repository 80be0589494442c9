/* kcoro internal: coroutines and the M:N scheduler (kc_sched.c), stacks and
 * the guard-page handler (kc_stack.c), the assembly switch (kc_ctx_*.S). */
#ifndef KC_SCHED_H
#define KC_SCHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kc_sync.h"

struct kc_coro;

/* Saves the callee-saved registers and FP control words on the current
 * stack, stores sp in *save_sp and resumes the context saved at new_sp. */
void kc__ctx_switch(void **save_sp, void *new_sp);
/* Entry of a fresh context (see the .S files for its register contract). */
void kc__ctx_trampoline(void);

/* The coroutine running on this thread, or NULL (scheduler or plain thread). */
struct kc_coro *kc__coro_current(void);
kc_parker_t *kc__coro_parker(struct kc_coro *c);
/* The calling thread's worker index (0 .. threads-1), or -1 off the workers. */
int kc__worker_index(void);
/* Parks the current coroutine (p is its parker) until kc__unpark or the
 * deadline; same contract as kc__park. */
int kc__coro_park(kc_parker_t *p, uint64_t deadline_ns);
/* For a coroutine about to park: if its worker has other runnable
 * coroutines (maybe the very peer it waits for), yields to them and returns
 * true (the caller retries before parking); false at once otherwise, and
 * always on a plain thread. Parking costs the peer a lock and a wake-up;
 * a yield costs two switches on this worker. */
bool kc__coro_yield_if_busy(void);
/* Parks the current coroutine on a word of its own (no parker, no timer):
 * it switches out and then, its registers saved, its worker moves *word
 * from `from` to `to` by CAS. If *word no longer holds `from` (whoever ends
 * the wait changed it first), the coroutine is runnable again at once;
 * else whoever next exchanges *word and finds `to` must make it runnable
 * (kc__coro_ready), exactly once. Returns when resumed; the caller
 * re-checks *word. Three atomic operations per wait (CAS, exchange, the
 * waiter's load) instead of the parker's five: for waits with no
 * deadline and no cancel token (kc__sel_wait). */
void kc__coro_park_on(_Atomic uint32_t *word, uint32_t from, uint32_t to);
/* Parks the current coroutine, which holds `lock`, until whoever finds it
 * under that lock makes it runnable (kc__coro_ready): it switches out and
 * its worker then releases the lock, so a holder of the lock never sees a
 * waiter that is still running. No wake-up race to settle: two atomic
 * operations fewer per wait than kc__coro_park_on. The caller registers
 * its wait (under the lock) so that exactly one waker will ready it, and
 * nothing else may: no deadline, no cancel token. Returns when resumed,
 * without the lock. */
void kc__coro_park_unlock(kc_lock_t *lock);
/* Makes a parked coroutine runnable (called once per SLEEPING -> NOTIFIED). */
void kc__coro_ready(struct kc_coro *c);

/* Coroutines made runnable together (one netpoll batch). Zero-initialise. */
typedef struct kc_batch {
    struct kc_coro *head;        /* first to run                             */
    struct kc_coro *tail;        /* last                                     */
    uint32_t n;                  /* how many                                 */
} kc_batch_t;
/* As kc__unpark(p), but a coroutine it makes runnable is appended to b
 * instead of a run queue (a thread's parker is woken at once). */
void kc__batch_unpark(kc_batch_t *b, kc_parker_t *p);
/* Makes b's coroutines runnable: from a worker, onto its own run queue with
 * one wake-up of another worker at most; from any other thread, through
 * the injection queue under one lock. */
void kc__batch_ready(kc_batch_t *b);

/* The netpoller (kc_netpoll.c), polled by the scheduler's workers. */
/* True while some operation is parked waiting for an fd. */
bool kc__netpoll_waiting(void);
/* Takes the ready events: their coroutines go into b. deadline_ns 0 does
 * not block; otherwise blocks until an event, the CLOCK_MONOTONIC deadline
 * (UINT64_MAX: none) or kc__netpoll_break. At most one worker blocks. */
void kc__netpoll(uint64_t deadline_ns, kc_batch_t *b);
/* Ends the blocked kc__netpoll early (no-op if the netpoller is unused). */
void kc__netpoll_break(void);

/* Stacks: [lo, lo + size) usable, a guard of KC__GUARD bytes below lo. */
int kc__stack_map(size_t size, unsigned char **lo_out);
void kc__stack_unmap(unsigned char *lo, size_t size);
size_t kc__page_size(void);
/* Installs (once) the SIGSEGV handler that names a guard-page hit. */
void kc__guard_handler_install(void);
/* Gives the calling thread an alternate signal stack (workers); the
 * returned pointer goes to kc__altstack_free when the thread ends. */
void *kc__altstack_init(void);
void kc__altstack_free(void *ss);
/* For the handler: the running coroutine's stack bounds (lo, size), or
 * false when no coroutine runs on this thread. */
bool kc__coro_stack_bounds(unsigned char **lo, size_t *size, uint64_t *id);

/* KCORO_DEBUG=1: debug log to stderr. */
extern int kc__debug;
void kc__dbg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
