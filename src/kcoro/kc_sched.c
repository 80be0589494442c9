/* kcoro: stackful coroutines on an M:N work-stealing scheduler.
 *
 * Each worker thread runs a loop (the scheduler context, on the thread's own
 * stack) that picks a coroutine and switches to it; the coroutine runs until
 * it yields, parks or ends, always by switching back to that loop. What a
 * coroutine asked for on its way out ("post" action: requeue, park, free) is
 * done by the loop after the switch, when the coroutine's registers are
 * saved: so a waker can never resume a coroutine that is still running.
 *
 * Where work waits, per worker:
 *   runnext  the coroutine woken last by this worker: runs next (a hand-off
 *            between two coroutines stays on one worker, in its cache);
 *   deque    a bounded Chase-Lev deque: the owner pushes and pops at the
 *            bottom (LIFO: a spawning tree grows depth-first, what was made
 *            runnable last is warm in the cache) with plain loads and stores
 *            and one fence; thieves take the oldest entry at the top by CAS;
 *            A coroutine that yields swaps places with the newest entry:
 *            that one runs next (runnext), the yielder goes to the bottom
 *            (a parent yielding to its children keeps the tree depth-first;
 *            taking the oldest entry instead made skynet grow breadth-first,
 *            150 s). Every runnable coroutine but runnext sits where thieves
 *            can take it: a worker stuck in one long-running coroutine holds
 *            no others (an owner-only yield queue could hang a test whose
 *            coroutine busy-waits for a yielded one);
 *   timers   a binary heap of park deadlines (sleeps and timeouts).
 * and globally the injection queue (a locked list) for coroutines made
 * runnable by threads that are not workers, and for deque overflow.
 * A worker that runs out of work spins a little (looking at the queues and
 * stealing) before it sleeps on one futex word (zero CPU when idle); making
 * work available wakes a sleeper only if no worker is spinning already, and
 * only one at a time (`waking`), so a burst of hand-offs costs no system
 * calls.
 *
 * Stacks and coroutine structs are pooled apart: a stack goes back to its
 * worker's cache the moment its coroutine ends (joined or not), so a tree
 * of coroutines that end before their parents join them (skynet) reuses a
 * few warm stacks instead of mapping fresh ones.
 *
 * Coroutine structs are never freed, only recycled (with their stacks) by a
 * pool: a parker is embedded in each, and a late unpark of a coroutine that
 * has ended must stay harmless (see kc_sync.h).
 */
#define _GNU_SOURCE
#include "kc_sched.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "kc_internal.h"
#include "kcoro/kcoro.h"

#if defined(__SANITIZE_ADDRESS__)
#define KC_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KC_ASAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define KC_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define KC_TSAN 1
#endif
#endif

#ifdef KC_ASAN
void __sanitizer_start_switch_fiber(void **fake_stack_save, const void *bottom, size_t size);
void __sanitizer_finish_switch_fiber(void *fake_stack_save, const void **bottom_old,
                                     size_t *size_old);
void __asan_unpoison_memory_region(void const volatile *addr, size_t size);
#endif
#ifdef KC_TSAN
void *__tsan_get_current_fiber(void);
void *__tsan_create_fiber(unsigned flags);
void __tsan_destroy_fiber(void *fiber);
void __tsan_switch_to_fiber(void *fiber, unsigned flags);
#endif

#define KC_RUNQ 256            /* slots of a worker's deque (power of two)  */
#define KC_POOL_LOCAL 64       /* recycled coroutine structs a worker keeps */
#define KC_STACKS_LOCAL 64     /* default-size stacks a worker keeps        */
#define KC_STACKS_GLOBAL 16384 /* ... the global cache keeps: munmap costs TLB
                                * shootdowns (slow on VMs), keep them       */
#define KC_INJECT_EVERY 61     /* a worker looks at the global queue first every N picks */
#define KC_TIMER_EVERY 8       /* a busy worker looks at its timers every N picks */
#define KC_SPIN_ROUNDS 64      /* looks for work an idle worker makes before sleeping */
#define KC_SPIN_PAUSES 32      /* pauses between two looks                  */
#define KC_POLL_BUSY_NS 100000 /* a busy worker polls I/O at most this often */

enum { POST_NONE, POST_YIELD, POST_PARK, POST_PARK_ON, POST_PARK_UNLOCK, POST_EXIT };

struct kc_coro {
    kc_parker_t parker;          /* first: what channels park and unpark      */
    void *sp;                    /* saved stack pointer while switched out     */
    kc_coro_fn fn;               /* entry function                            */
    void *arg;                   /* its argument                              */
    unsigned char *stack;        /* usable stack [stack, stack + stack_size)  */
    size_t stack_size;           /* bytes (page multiple)                     */
    _Atomic int done;            /* 1 once ended and off its stack            */
    _Atomic bool parked_on;      /* switched out by kc__coro_park_on/_unlock, not
                                  * yet resumed (for kc_coro_is_parked)       */
    _Atomic(kc_parker_t *) joiner; /* who waits in kc_coro_join (1: finishing) */
    bool detached;               /* kc_go: recycled when it ends              */
    uint64_t id;                 /* process-unique                            */
    struct kc_coro *next;        /* injection queue / pool link               */
    struct kc_coro *all_next;    /* every coroutine ever made (never freed)   */
    void *tsan_fiber;            /* TSan's fiber for this coroutine           */
};

struct kc_timer {
    uint64_t deadline;           /* CLOCK_MONOTONIC ns                        */
    struct kc_coro *c;           /* coroutine to wake                         */
    uint64_t seq;                /* its park_seq when parked (stale if changed) */
};

struct kc_worker {
    _Alignas(64) _Atomic int64_t top;     /* deque: oldest entry (CAS by thieves) */
    _Alignas(64) _Atomic int64_t bottom;  /* deque: next slot to fill (owner)  */
    _Atomic(struct kc_coro *) ring[KC_RUNQ]; /* deque slots                   */
    _Alignas(64) struct kc_coro *runnext; /* owner only: runs next           */
    void *sched_sp;              /* the scheduler context while a coroutine runs */
    struct kc_coro *cur;         /* the running coroutine or NULL             */
    int post;                    /* POST_* asked by the coroutine switching out */
    _Atomic uint32_t *park_word; /* POST_PARK_ON: the word to move ...        */
    uint32_t park_from, park_to; /* ... from park_from to park_to             */
    kc_lock_t *park_lock;        /* POST_PARK_UNLOCK: the lock to release     */
    struct kc_timer *heap;       /* timer heap (owner only)                   */
    size_t nheap, capheap;       /* its length and capacity                   */
    _Atomic size_t nheap_seen;   /* nheap, for kc_sched_stats (written by owner) */
    struct kc_coro *pool;        /* recycled coroutine structs (owner only)   */
    size_t npool;                /* their count                               */
    unsigned char *stacks[KC_STACKS_LOCAL]; /* cached default-size stacks (owner only) */
    size_t nstacks;              /* their count                               */
    uint32_t ticks;              /* picks so far (for KC_INJECT_EVERY)        */
    uint32_t timer_ticks;        /* loop turns (for KC_TIMER_EVERY)           */
    uint64_t last_poll;          /* when this worker last polled I/O while busy */
    uint32_t rng;                /* victim choice                             */
    int index;                   /* in g.w                                    */
    pthread_t thread;            /* the worker thread                         */
    const void *sched_stack_bottom; /* ASan: the thread's stack              */
    size_t sched_stack_size;     /* ASan: its size                            */
    void *tsan_fiber;            /* TSan: the thread's own fiber              */
    _Atomic uint64_t steals;     /* coroutines taken from other workers       */
    _Atomic uint64_t switches;   /* switches into coroutines                  */
    _Atomic uint64_t sleeps;     /* futex sleeps while idle                   */
};

static struct {
    pthread_mutex_t mu;          /* start/stop                                */
    _Atomic bool running;        /* workers exist                             */
    _Atomic bool stopping;       /* kc_sched_stop waits for the end           */
    int nw;                      /* number of workers                         */
    struct kc_worker *w;         /* the workers                               */
    pthread_mutex_t inj_mu;      /* guards the injection queue                */
    struct kc_coro *inj_head, *inj_tail; /* FIFO                              */
    _Atomic size_t inj_n;        /* its length (read without the lock)        */
    _Atomic uint32_t wake_seq;   /* idle workers' futex word                  */
    _Atomic int nidle;           /* workers spinning for work, or asleep      */
    _Atomic int nspinning;       /* of those, the ones still looking          */
    _Atomic int waking;          /* 1: a sleeper was woken and is not spinning yet */
    _Atomic int poll_blocked;    /* 1: an idle worker blocks in kc__netpoll   */
    _Atomic int64_t live;        /* coroutines spawned and not yet ended      */
    _Atomic uint64_t spawned, finished, injected, next_id; /* counters        */
    uint64_t old_steals, old_switches, old_sleeps; /* of stopped runtimes     */
    pthread_mutex_t pool_mu;     /* guards pool, stacks and all               */
    struct kc_coro *pool;        /* recycled coroutine structs (no stacks)    */
    size_t npool;                /* their count                               */
    unsigned char *stacks[KC_STACKS_GLOBAL]; /* cached default-size stacks    */
    size_t nstacks;              /* their count                               */
    struct kc_coro *all;         /* every coroutine struct (keeps them reachable) */
} g = {.mu = PTHREAD_MUTEX_INITIALIZER,
       .inj_mu = PTHREAD_MUTEX_INITIALIZER,
       .pool_mu = PTHREAD_MUTEX_INITIALIZER};

static __thread struct kc_worker *t_worker;
static __thread struct kc_coro *t_cur;

/* TLS is read through these out-of-line functions: a coroutine may resume
 * on another thread, and the compiler may otherwise reuse a TLS address it
 * computed before the switch. */
__attribute__((noinline)) static struct kc_worker *cur_worker(void)
{
    __asm__ __volatile__("" ::: "memory");
    return t_worker;
}

__attribute__((noinline)) struct kc_coro *kc__coro_current(void)
{
    __asm__ __volatile__("" ::: "memory");
    return t_cur;
}

kc_parker_t *kc__coro_parker(struct kc_coro *c) { return &c->parker; }

int kc__worker_index(void)
{
    struct kc_worker *w = cur_worker();
    return w ? w->index : -1;
}

bool kc__coro_stack_bounds(unsigned char **lo, size_t *size, uint64_t *id)
{
    struct kc_coro *c = t_cur;
    if (!c)
        return false;
    *lo = c->stack;
    *size = c->stack_size;
    *id = c->id;
    return true;
}

/* ---- the switch, with sanitizer annotations ---------------------------- */

/* Scheduler -> coroutine c; returns when c switches back. */
static void switch_to_coro(struct kc_worker *w, struct kc_coro *c)
{
    w->cur = c;
    t_cur = c;
    /* Written by this worker only: no locked add on the switch path. */
    atomic_store_explicit(&w->switches,
                          atomic_load_explicit(&w->switches, memory_order_relaxed) + 1,
                          memory_order_relaxed);
#ifdef KC_ASAN
    void *fake = NULL;
    __sanitizer_start_switch_fiber(&fake, c->stack, c->stack_size);
#endif
#ifdef KC_TSAN
    __tsan_switch_to_fiber(c->tsan_fiber, 0);
#endif
    kc__ctx_switch(&w->sched_sp, c->sp);
#ifdef KC_ASAN
    __sanitizer_finish_switch_fiber(fake, NULL, NULL);
#endif
    t_cur = NULL;
    w->cur = NULL;
}

/* Bookkeeping on a coroutine's side after it was switched to. */
static void arrived(void *fake)
{
#ifdef KC_ASAN
    const void *bottom;
    size_t size;
    __sanitizer_finish_switch_fiber(fake, &bottom, &size);
    struct kc_worker *w = cur_worker();
    w->sched_stack_bottom = bottom;
    w->sched_stack_size = size;
#else
    (void)fake;
#endif
}

/* Coroutine c -> its worker w's scheduler, asking it for `post` (POST_*).
 * Returns when c is resumed (maybe by another worker: w is stale then). */
static void switch_to_sched(struct kc_worker *w, struct kc_coro *c, int post, bool exiting)
{
    w->post = post;
#ifdef KC_ASAN
    void *fake = NULL;
    __sanitizer_start_switch_fiber(exiting ? NULL : &fake, w->sched_stack_bottom,
                                   w->sched_stack_size);
#else
    void *fake = NULL;
    (void)exiting;
#endif
#ifdef KC_TSAN
    __tsan_switch_to_fiber(w->tsan_fiber, 0);
#endif
    kc__ctx_switch(&c->sp, w->sched_sp);
    arrived(fake);
}

static void coro_main(struct kc_coro *c)
{
    arrived(NULL);
    c->fn(c->arg);
    switch_to_sched(cur_worker(), c, POST_EXIT, true);
    abort(); /* never resumed */
}

/* ---- runnable queues --------------------------------------------------- */

/* A full fence between a store and a later load of other words (Dekker).
 * TSan does not model fences: there an RMW on a word both sides touch
 * orders the same way (callers pass one). */
static inline void fence_sc(_Atomic int *rmw_word)
{
#ifdef KC_TSAN
    atomic_fetch_add(rmw_word, 0);
#else
    (void)rmw_word;
    atomic_thread_fence(memory_order_seq_cst);
#endif
}

/* FUTEX_WAKE returning how many it woke (0 also on error). */
static int futex_wake_n(_Atomic uint32_t *addr, int n)
{
    long r = syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
    return r > 0 ? (int)r : 0;
}

/* Called after work was published where any worker may take it. Wakes
 * one sleeper, unless a worker is already looking for work (it will find
 * it) or a woken one has not started looking yet. Dekker with idle(): we
 * publish work then read nidle/nspinning, an idle worker publishes its
 * counts then reads the queues; one of the two sees the other. */
static void notify(void)
{
    fence_sc(&g.nidle);
    if (atomic_load_explicit(&g.nidle, memory_order_relaxed) == 0 ||
        atomic_load_explicit(&g.nspinning, memory_order_relaxed) != 0)
        return;
    int z = 0;
    if (!atomic_compare_exchange_strong(&g.waking, &z, 1))
        return;
    atomic_fetch_add(&g.wake_seq, 1);
    /* The idle worker may be the one blocked in the netpoller (it set
     * poll_blocked before its last look at the queues: Dekker as above). */
    if (futex_wake_n(&g.wake_seq, 1) == 0 && atomic_load(&g.poll_blocked))
        kc__netpoll_break();
}

/* Wakes every idle worker (stop). */
static void wake_all(void)
{
    atomic_fetch_add(&g.wake_seq, 1);
    kc__futex_wake(&g.wake_seq, INT_MAX);
    kc__netpoll_break();
}

/* Appends the list head..tail (n coroutines, linked by next) at once. */
static void inject_list(struct kc_coro *head, struct kc_coro *tail, uint32_t n)
{
    tail->next = NULL;
    pthread_mutex_lock(&g.inj_mu);
    if (g.inj_tail)
        g.inj_tail->next = head;
    else
        g.inj_head = head;
    g.inj_tail = tail;
    atomic_fetch_add(&g.inj_n, n);
    pthread_mutex_unlock(&g.inj_mu);
    atomic_fetch_add_explicit(&g.injected, n, memory_order_relaxed);
}

static void inject(struct kc_coro *c)
{
    inject_list(c, c, 1);
}

static struct kc_coro *inject_pop(void)
{
    if (atomic_load_explicit(&g.inj_n, memory_order_relaxed) == 0)
        return NULL;
    pthread_mutex_lock(&g.inj_mu);
    struct kc_coro *c = g.inj_head;
    if (c) {
        g.inj_head = c->next;
        if (!g.inj_head)
            g.inj_tail = NULL;
        atomic_fetch_sub(&g.inj_n, 1);
    }
    pthread_mutex_unlock(&g.inj_mu);
    return c;
}

/* ---- the Chase-Lev deque ----------------------------------------------
 *
 * Indices grow without wrapping (int64); slot i is ring[i % KC_RUNQ]. The
 * owner alone writes `bottom`; `top` only grows, by CAS (thieves, and the
 * owner when it takes the last entry). Entries live in [top, bottom).
 * (Chase & Lev 2005, in the C11 formulation of Le et al. 2013, with a fixed
 * ring: a full deque overflows to the injection queue instead of growing.)
 */

/* Owner: pushes c at the bottom; false when the ring is full. */
static bool deque_push(struct kc_worker *w, struct kc_coro *c)
{
    int64_t b = atomic_load_explicit(&w->bottom, memory_order_relaxed);
    int64_t t = atomic_load_explicit(&w->top, memory_order_acquire);
    if (b - t >= KC_RUNQ)
        return false;
    atomic_store_explicit(&w->ring[b % KC_RUNQ], c, memory_order_relaxed);
    /* Release: a thief that sees the new bottom sees the slot and c. */
    atomic_store_explicit(&w->bottom, b + 1, memory_order_release);
    return true;
}

/* Owner: pops the newest entry, or NULL. */
static struct kc_coro *deque_pop(struct kc_worker *w)
{
    int64_t b = atomic_load_explicit(&w->bottom, memory_order_relaxed);
    /* top only grows: seen empty now, it stays empty for the owner. */
    if (atomic_load_explicit(&w->top, memory_order_relaxed) >= b)
        return NULL;
    b--;
#ifdef KC_TSAN
    atomic_exchange_explicit(&w->bottom, b, memory_order_seq_cst);
#else
    atomic_store_explicit(&w->bottom, b, memory_order_relaxed);
    /* The claim of slot b must be visible before we read top (a thief
     * reads top then bottom: one of us sees the other). */
    atomic_thread_fence(memory_order_seq_cst);
#endif
    int64_t t = atomic_load_explicit(&w->top, memory_order_seq_cst);
    struct kc_coro *c = NULL;
    if (t <= b) {
        c = atomic_load_explicit(&w->ring[b % KC_RUNQ], memory_order_relaxed);
        if (t == b) {
            /* The last entry: a thief may want it too; the CAS decides. */
            if (!atomic_compare_exchange_strong_explicit(&w->top, &t, t + 1,
                                                         memory_order_seq_cst,
                                                         memory_order_relaxed))
                c = NULL;
            atomic_store_explicit(&w->bottom, b + 1, memory_order_relaxed);
        }
    } else {
        atomic_store_explicit(&w->bottom, b + 1, memory_order_relaxed);
    }
    return c;
}

/* Anyone: takes the oldest entry of v, or NULL (empty, or lost a race). */
static struct kc_coro *deque_steal(struct kc_worker *v)
{
    int64_t t = atomic_load_explicit(&v->top, memory_order_seq_cst);
#ifndef KC_TSAN
    atomic_thread_fence(memory_order_seq_cst);
#endif
    int64_t b = atomic_load_explicit(&v->bottom, memory_order_seq_cst);
    if (t >= b)
        return NULL;
    /* The slot may be overwritten by a push after we read it only if top
     * moved past t meanwhile, and then the CAS below fails. */
    struct kc_coro *c = atomic_load_explicit(&v->ring[t % KC_RUNQ], memory_order_relaxed);
    if (!atomic_compare_exchange_strong_explicit(&v->top, &t, t + 1, memory_order_seq_cst,
                                                 memory_order_relaxed))
        return NULL;
    return c;
}

static bool deque_empty(struct kc_worker *w)
{
    return atomic_load_explicit(&w->top, memory_order_acquire) >=
           atomic_load_explicit(&w->bottom, memory_order_acquire);
}

/* Owner: makes c runnable on w (deque, or the injection queue when full)
 * and lets an idle worker know there is something to steal. */
static void runq_put(struct kc_worker *w, struct kc_coro *c)
{
    if (!deque_push(w, c))
        inject(c);
    notify();
}

/* Thief: one entry of another worker, starting at a random victim. */
static struct kc_coro *steal(struct kc_worker *w)
{
    if (g.nw < 2)
        return NULL;
    w->rng = w->rng * 1103515245u + 12345u;
    int start = (int)((w->rng >> 16) % (uint32_t)g.nw);
    for (int i = 0; i < g.nw; i++) {
        struct kc_worker *v = &g.w[(start + i) % g.nw];
        if (v == w)
            continue;
        struct kc_coro *c = deque_steal(v);
        if (c) {
            atomic_fetch_add_explicit(&w->steals, 1, memory_order_relaxed);
            return c;
        }
    }
    return NULL;
}

void kc__coro_ready(struct kc_coro *c)
{
    struct kc_worker *w = cur_worker();
    if (w) {
        /* A hand-off: the waker usually parks soon, and the woken one runs
         * next on this worker without waking anybody. The one it displaces
         * goes to the ring, where idle workers may steal it. */
        struct kc_coro *old = w->runnext;
        w->runnext = c;
        if (old)
            runq_put(w, old);
        return;
    }
    inject(c);
    notify();
}

void kc__batch_unpark(kc_batch_t *b, kc_parker_t *p)
{
    if (!p->coro) {
        kc__unpark(p);
        return;
    }
    /* kc__unpark's transition; the coroutine is not in any queue while
     * SLEEPING, so its `next` link is free. */
    if (atomic_exchange_explicit(&p->state, KC_PARK_NOTIFIED, memory_order_acq_rel) !=
        KC_PARK_SLEEPING)
        return;
    struct kc_coro *c = p->coro;
    c->next = NULL;
    if (b->tail)
        b->tail->next = c;
    else
        b->head = c;
    b->tail = c;
    b->n++;
}

/* Worker: pushes the batch but its first coroutine, which it returns (to
 * run at once), onto w's deque, and lets one idle worker know (it steals,
 * and wakes another if there is more: spin_end). */
static struct kc_coro *batch_take(struct kc_worker *w, kc_batch_t *b)
{
    struct kc_coro *c = b->head;
    if (!c)
        return NULL;
    struct kc_coro *n = c->next;
    if (!n)
        return c;
    while (n) {
        struct kc_coro *next = n->next;
        if (!deque_push(w, n))
            inject(n);
        n = next;
    }
    notify();
    return c;
}

void kc__batch_ready(kc_batch_t *b)
{
    if (!b->n)
        return;
    struct kc_worker *w = cur_worker();
    if (w) {
        for (struct kc_coro *c = b->head, *next; c; c = next) {
            next = c->next;
            if (!deque_push(w, c))
                inject(c);
        }
    } else {
        inject_list(b->head, b->tail, b->n);
    }
    notify();
}

/* ---- timers ------------------------------------------------------------ */

static void heap_swap(struct kc_timer *a, struct kc_timer *b)
{
    struct kc_timer t = *a;
    *a = *b;
    *b = t;
}

/* A timer whose park is over: its coroutine parked again (the sequence
 * moved) or is no longer asleep (woken, maybe running: the same park never
 * sleeps again, a new park takes a new sequence). Firing it would do
 * nothing. Exact for entries of coroutines switched out on this worker,
 * which is every entry but one being added. */
static bool timer_stale(const struct kc_timer *t)
{
    const kc_parker_t *p = &t->c->parker;
    return atomic_load_explicit(&p->park_seq, memory_order_relaxed) != t->seq ||
           atomic_load_explicit(&p->state, memory_order_relaxed) != KC_PARK_SLEEPING;
}

static void heap_down(struct kc_worker *w, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < w->nheap && w->heap[l].deadline < w->heap[m].deadline)
            m = l;
        if (r < w->nheap && w->heap[r].deadline < w->heap[m].deadline)
            m = r;
        if (m == i)
            break;
        heap_swap(&w->heap[i], &w->heap[m]);
        i = m;
    }
}

/* Drops the stale timers and rebuilds the heap. A timer stays in the heap
 * after its park ends (woken by I/O or a channel long before its deadline),
 * so without this a server whose reads carry a 10-minute idle timeout grew
 * its heap by one entry per request (kc_echo: 240 MB after 10 minutes at
 * 17,000 requests/s). Run when the heap is full: O(n) per doubling at most,
 * so the heap holds at most twice the live timers (plus 64). */
static void timer_compact(struct kc_worker *w)
{
    size_t n = 0;
    for (size_t i = 0; i < w->nheap; i++)
        if (!timer_stale(&w->heap[i]))
            w->heap[n++] = w->heap[i];
    w->nheap = n;
    for (size_t i = n / 2; i-- > 0;)
        heap_down(w, i);
}

static bool timer_add(struct kc_worker *w, uint64_t deadline, struct kc_coro *c, uint64_t seq)
{
    if (w->nheap == w->capheap) {
        /* Full: drop the stale timers; grow if more than half were live. */
        timer_compact(w);
        if (w->nheap * 2 > w->capheap || !w->capheap) {
            size_t cap = w->capheap ? w->capheap * 2 : 64;
            struct kc_timer *h = realloc(w->heap, cap * sizeof *h);
            if (h) {
                w->heap = h;
                w->capheap = cap;
            } else if (w->nheap == w->capheap) {
                return false;
            }
        }
    }
    size_t i = w->nheap++;
    w->heap[i] = (struct kc_timer){deadline, c, seq};
    while (i > 0 && w->heap[(i - 1) / 2].deadline > w->heap[i].deadline) {
        heap_swap(&w->heap[(i - 1) / 2], &w->heap[i]);
        i = (i - 1) / 2;
    }
    atomic_store_explicit(&w->nheap_seen, w->nheap, memory_order_relaxed);
    return true;
}

static void timer_pop(struct kc_worker *w)
{
    w->heap[0] = w->heap[--w->nheap];
    heap_down(w, 0);
    atomic_store_explicit(&w->nheap_seen, w->nheap, memory_order_relaxed);
}

/* Wakes the coroutines whose deadline passed (a timer of a park that
 * already ended is stale: its sequence number moved on), earliest first:
 * the owner pops its deque newest first, so several that expire together
 * are pushed latest deadline first (a worker held up for longer than the
 * gap between two deadlines, as under qemu-user, woke them in reverse). */
static void run_timers(struct kc_worker *w)
{
    if (!w->nheap)
        return;
    uint64_t now = kc_now_ns();
    while (w->nheap && w->heap[0].deadline <= now) {
        struct kc_coro *due[32];
        int n = 0;
        while (n < 32 && w->nheap && w->heap[0].deadline <= now) {
            struct kc_timer t = w->heap[0];
            timer_pop(w);
            kc_parker_t *p = &t.c->parker;
            uint32_t s = KC_PARK_SLEEPING;
            if (atomic_load_explicit(&p->park_seq, memory_order_acquire) == t.seq &&
                atomic_compare_exchange_strong_explicit(&p->state, &s, KC_PARK_EMPTY,
                                                        memory_order_acq_rel,
                                                        memory_order_relaxed))
                due[n++] = t.c;
        }
        while (n > 0)
            runq_put(w, due[--n]);
    }
}

/* ---- parking ----------------------------------------------------------- */

int kc__coro_park(kc_parker_t *p, uint64_t deadline_ns)
{
    struct kc_coro *c = p->coro;
    for (;;) {
        if (atomic_load_explicit(&p->state, memory_order_acquire) == KC_PARK_NOTIFIED) {
            atomic_exchange_explicit(&p->state, KC_PARK_EMPTY, memory_order_acquire);
            return 0;
        }
        /* No clock read before parking: callers have just computed the
         * deadline, and a timer that is already due wakes us on the
         * worker's next look at its timers. */
        /* Written by this coroutine only (read by its worker's timers). */
        uint64_t seq = atomic_load_explicit(&p->park_seq, memory_order_relaxed) + 1;
        atomic_store_explicit(&p->park_seq, seq, memory_order_release);
        struct kc_worker *w = cur_worker();
        if (deadline_ns && !timer_add(w, deadline_ns, c, seq)) {
            /* No memory for a timer: poll the deadline by yielding. */
            switch_to_sched(w, c, POST_YIELD, false);
            if (kc_now_ns() >= deadline_ns)
                return -ETIME;
            continue;
        }
        switch_to_sched(w, c, POST_PARK, false);
        uint32_t prev = atomic_exchange_explicit(&p->state, KC_PARK_EMPTY, memory_order_acquire);
        if (prev == KC_PARK_NOTIFIED)
            return 0;
        if (deadline_ns && kc_now_ns() >= deadline_ns)
            return -ETIME;
    }
}

void kc__coro_park_on(_Atomic uint32_t *word, uint32_t from, uint32_t to)
{
    struct kc_coro *c = kc__coro_current();
    struct kc_worker *w = cur_worker();
    w->park_word = word;
    w->park_from = from;
    w->park_to = to;
    switch_to_sched(w, c, POST_PARK_ON, false);
    atomic_store_explicit(&c->parked_on, false, memory_order_relaxed);
}

void kc__coro_park_unlock(kc_lock_t *lock)
{
    struct kc_coro *c = kc__coro_current();
    struct kc_worker *w = cur_worker();
    w->park_lock = lock;
    switch_to_sched(w, c, POST_PARK_UNLOCK, false);
    atomic_store_explicit(&c->parked_on, false, memory_order_relaxed);
}

/* ---- pools: coroutine structs and stacks ------------------------------ */

static struct kc_coro *pool_get(struct kc_worker *w)
{
    struct kc_coro *c = NULL;
    if (w && w->pool) {
        c = w->pool;
        w->pool = c->next;
        w->npool--;
        return c;
    }
    pthread_mutex_lock(&g.pool_mu);
    if (g.pool) {
        c = g.pool;
        g.pool = c->next;
        g.npool--;
    }
    pthread_mutex_unlock(&g.pool_mu);
    return c;
}

static void pool_put(struct kc_worker *w, struct kc_coro *c)
{
    if (w && w->npool < KC_POOL_LOCAL) {
        c->next = w->pool;
        w->pool = c;
        w->npool++;
        return;
    }
    pthread_mutex_lock(&g.pool_mu);
    c->next = g.pool;
    g.pool = c;
    g.npool++;
    pthread_mutex_unlock(&g.pool_mu);
}

/* A stack of `size` bytes: from w's cache, the global cache (taking half a
 * local cache's worth at once), or a fresh mapping. Only default-size
 * stacks are cached. */
static int stack_get(struct kc_worker *w, size_t size, unsigned char **out)
{
    if (size == KC_STACK_DEFAULT) {
        if (w && w->nstacks) {
            *out = w->stacks[--w->nstacks];
            return 0;
        }
        unsigned char *got = NULL;
        pthread_mutex_lock(&g.pool_mu);
        if (g.nstacks) {
            got = g.stacks[--g.nstacks];
            while (w && g.nstacks && w->nstacks < KC_STACKS_LOCAL / 2)
                w->stacks[w->nstacks++] = g.stacks[--g.nstacks];
        }
        pthread_mutex_unlock(&g.pool_mu);
        if (got) {
            *out = got;
            return 0;
        }
    }
    return kc__stack_map(size, out);
}

/* Gives a stack back: w's cache, else (half of w's cache with it) the
 * global one, else the kernel. */
static void stack_put(struct kc_worker *w, unsigned char *lo, size_t size)
{
    if (size != KC_STACK_DEFAULT) {
        kc__stack_unmap(lo, size);
        return;
    }
    if (w && w->nstacks < KC_STACKS_LOCAL) {
        w->stacks[w->nstacks++] = lo;
        return;
    }
    bool unmap = false;
    pthread_mutex_lock(&g.pool_mu);
    while (w && w->nstacks > KC_STACKS_LOCAL / 2 && g.nstacks < KC_STACKS_GLOBAL)
        g.stacks[g.nstacks++] = w->stacks[--w->nstacks];
    if (g.nstacks < KC_STACKS_GLOBAL)
        g.stacks[g.nstacks++] = lo;
    else
        unmap = true;
    pthread_mutex_unlock(&g.pool_mu);
    if (unmap)
        kc__stack_unmap(lo, size);
}

/* ---- the worker loop --------------------------------------------------- */

/* A worker that keeps finding work never gets to idle(): it polls I/O
 * itself, without blocking, at most every KC_POLL_BUSY_NS (unless an idle
 * worker blocks in the poll and gets the events anyway). */
static void busy_poll(struct kc_worker *w)
{
    if (!kc__netpoll_waiting() || atomic_load_explicit(&g.poll_blocked, memory_order_relaxed))
        return;
    uint64_t now = kc_now_ns();
    if (now - w->last_poll < KC_POLL_BUSY_NS)
        return;
    w->last_poll = now;
    kc_batch_t b = {0};
    kc__netpoll(0, &b);
    kc__batch_ready(&b);
}

static struct kc_coro *find_work(struct kc_worker *w)
{
    struct kc_coro *c;
    ++w->ticks;
    if (w->ticks % KC_INJECT_EVERY == 0) {
        if ((c = inject_pop())) {
            /* runnext is the one slot thieves cannot take: if c never yields
             * (a busy loop), whatever waits there would be stranded. */
            if (w->runnext) {
                runq_put(w, w->runnext);
                w->runnext = NULL;
            }
            return c;
        }
        busy_poll(w);
    }
    if ((c = w->runnext)) {
        w->runnext = NULL;
        return c;
    }
    if ((c = deque_pop(w)) || (c = inject_pop()))
        return c;
    return steal(w);
}

static bool any_work(void)
{
    if (atomic_load(&g.inj_n))
        return true;
    for (int i = 0; i < g.nw; i++)
        if (!deque_empty(&g.w[i]))
            return true;
    return false;
}

static bool all_done(void)
{
    return atomic_load(&g.stopping) && atomic_load(&g.live) == 0;
}

/* Stops looking for work. The last spinner to find some wakes another
 * worker, which looks for what may be left (Go's wakep chain). */
static void spin_end(bool found)
{
    if (atomic_fetch_sub(&g.nspinning, 1) == 1 && found)
        notify();
}

/* Nothing to run: spin a little looking for work (a hand-off from another
 * worker usually comes within microseconds; sleeping and being woken costs
 * two system calls and a trip through the kernel's scheduler), then sleep
 * until notify() or the next timer. While coroutines wait for fds, I/O is
 * polled here too (see kc_netpoll.c): once without blocking before the
 * spin, and the worker that goes to sleep first blocks in the poll itself,
 * the others on the futex. Returns work found, or NULL. */
static struct kc_coro *idle(struct kc_worker *w)
{
    struct kc_coro *c = NULL;
    kc_batch_t b = {0};
    atomic_fetch_add(&g.nidle, 1); /* seq_cst RMW: see notify() */
    atomic_fetch_add(&g.nspinning, 1);
    atomic_store(&g.waking, 0);    /* a woken worker is spinning now */
    if (kc__netpoll_waiting() && !atomic_load(&g.poll_blocked)) {
        kc__netpoll(0, &b);
        c = batch_take(w, &b); /* a wake-up, if any, comes from spin_end */
        b = (kc_batch_t){0};
    }
    /* The clock is read every 8 rounds (100-200 ns on a VM). */
    uint64_t due = w->nheap ? w->heap[0].deadline : 0;
    for (int r = 0; r < KC_SPIN_ROUNDS && !c && !all_done(); r++) {
        for (int i = 0; i < KC_SPIN_PAUSES; i++)
            kc__cpu_relax();
        if ((c = deque_pop(w)) || (c = inject_pop()) || (c = steal(w)))
            break;
        if (due && r % 8 == 0 && due <= kc_now_ns())
            break;
    }
    spin_end(c != NULL);
    bool slept = false;
    if (!c) {
        uint32_t seq = atomic_load(&g.wake_seq);
        int z = 0;
        bool poller = kc__netpoll_waiting() && atomic_compare_exchange_strong(&g.poll_blocked, &z, 1);
        fence_sc(&g.nspinning);
        if (!any_work() && !all_done()) {
            uint64_t dl = w->nheap ? w->heap[0].deadline : 0;
            if (!dl || dl > kc_now_ns()) {
                atomic_fetch_add_explicit(&w->sleeps, 1, memory_order_relaxed);
                if (poller)
                    kc__netpoll(dl ? dl : UINT64_MAX, &b);
                else
                    kc__futex_wait(&g.wake_seq, seq, dl);
                slept = true;
            }
        }
        if (poller)
            atomic_store(&g.poll_blocked, 0);
    }
    atomic_fetch_sub(&g.nidle, 1);
    /* Whoever was woken is awake now (maybe us, maybe it took the work
     * without sleeping): the next notify() may wake another sleeper. */
    atomic_store(&g.waking, 0);
    if (!c)
        c = batch_take(w, &b); /* no longer idle: notify() wakes another */
    /* notify() calls made while `waking` was set woke nobody. If work is
     * queued (maybe more than we are about to take), pass the wake-up on,
     * or it could wait behind a coroutine that never yields while the
     * other workers sleep (seen: four coroutines left in the injection
     * queue, one worker asleep, the other in a busy loop). */
    if (slept)
        fence_sc(&g.nidle);
    if (slept && any_work())
        notify();
    return c;
}

static void finish(struct kc_worker *w, struct kc_coro *c)
{
#ifdef KC_TSAN
    __tsan_destroy_fiber(c->tsan_fiber);
    c->tsan_fiber = NULL;
#endif
    atomic_fetch_add_explicit(&g.finished, 1, memory_order_relaxed);
    /* Off its stack now: the stack serves the next spawn at once, the
     * struct waits for the joiner (if any). */
    stack_put(w, c->stack, c->stack_size);
    c->stack = NULL;
    c->stack_size = 0;
    if (c->detached) {
        pool_put(w, c);
    } else {
        kc_parker_t *j = atomic_exchange(&c->joiner, (kc_parker_t *)1);
        atomic_store(&c->done, 1);
        if (j)
            kc__unpark(j);
    }
    if (atomic_fetch_sub(&g.live, 1) == 1 && atomic_load(&g.stopping))
        wake_all();
}

/* The yielder c goes behind this worker's other runnable coroutines:
 * runnext, if any, runs first anyway; else the newest deque entry runs
 * next and c takes its place at the bottom. Nothing is added to what other
 * workers can see when c swaps places (the deque's length is the same
 * before and after, and never drops to zero in between), so no idle worker
 * needs a wake-up and notify()'s fence is skipped: a yield ping-pong costs
 * one locked instruction besides the two switches. */
static void yield_requeue(struct kc_worker *w, struct kc_coro *c)
{
    if (w->runnext) {
        runq_put(w, c);
        return;
    }
    int64_t b = atomic_load_explicit(&w->bottom, memory_order_relaxed);
    int64_t t = atomic_load_explicit(&w->top, memory_order_acquire);
    if (t >= b) {
        /* Alone on this worker (thieves could only take it to run it
         * later than we do): it runs again at once. */
        w->runnext = c;
        return;
    }
    if (b - t == 1) {
        /* One other entry, which is both the newest and the oldest: push c
         * first (the deque holds two), then take the other from the top
         * as a thief would (the CAS settles a race with a real thief; if
         * one won, c runs next from the bottom). */
        if (!deque_push(w, c)) {
            runq_put(w, c);
            return;
        }
        struct kc_coro *n = atomic_load_explicit(&w->ring[t % KC_RUNQ], memory_order_relaxed);
        if (atomic_compare_exchange_strong_explicit(&w->top, &t, t + 1, memory_order_seq_cst,
                                                    memory_order_relaxed))
            w->runnext = n;
        return;
    }
    /* Two or more: the deque keeps at least one entry throughout. */
    struct kc_coro *n = deque_pop(w);
    if (!n) {
        runq_put(w, c); /* thieves emptied it meanwhile */
        return;
    }
    if (!deque_push(w, c))
        runq_put(w, c);
    w->runnext = n;
}

static void run(struct kc_worker *w, struct kc_coro *c)
{
    w->post = POST_NONE;
    switch_to_coro(w, c);
    switch (w->post) {
    case POST_YIELD:
        yield_requeue(w, c);
        break;
    case POST_PARK: {
        uint32_t s = KC_PARK_EMPTY;
        /* Now that its registers are saved, it may be woken; a notification
         * that came while it was switching out makes it runnable again. */
        if (!atomic_compare_exchange_strong_explicit(&c->parker.state, &s, KC_PARK_SLEEPING,
                                                     memory_order_acq_rel,
                                                     memory_order_acquire))
            runq_put(w, c);
        break;
    }
    case POST_PARK_ON: {
        /* As POST_PARK, on the caller's word (see kc__coro_park_on). */
        uint32_t s = w->park_from;
        atomic_store_explicit(&c->parked_on, true, memory_order_relaxed);
        if (!atomic_compare_exchange_strong_explicit(w->park_word, &s, w->park_to,
                                                     memory_order_acq_rel,
                                                     memory_order_acquire))
            runq_put(w, c);
        break;
    }
    case POST_PARK_UNLOCK:
        /* Registers saved: whoever takes the lock next may wake it. */
        atomic_store_explicit(&c->parked_on, true, memory_order_relaxed);
        kc__unlock(w->park_lock);
        break;
    case POST_EXIT:
        finish(w, c);
        break;
    default:
        abort(); /* a coroutine switched out without saying why */
    }
}

static void *worker_main(void *arg)
{
    struct kc_worker *w = arg;
    t_worker = w;
    void *alt = kc__altstack_init();
#ifdef KC_TSAN
    w->tsan_fiber = __tsan_get_current_fiber();
#endif
    kc__dbg("worker %d started", w->index);
    bool timers_now = true;
    for (;;) {
        /* A clock read costs 100-200 ns on a VM (kvm-clock): while there
         * is work, expired timers are looked for every KC_TIMER_EVERY
         * picks (they are at most that many runs late), and at once after
         * idle() came back empty (maybe for a timer). */
        if (timers_now || ++w->timer_ticks % KC_TIMER_EVERY == 0)
            run_timers(w);
        timers_now = false;
        struct kc_coro *c = find_work(w);
        if (!c && !all_done()) {
            c = idle(w);
            timers_now = !c;
        }
        if (c) {
            run(w, c);
            continue;
        }
        if (all_done())
            break;
    }
    kc__dbg("worker %d stopped", w->index);
    kc__altstack_free(alt);
    t_worker = NULL;
    return NULL;
}

/* ---- runtime start/stop ------------------------------------------------ */

static int default_threads(void)
{
    const char *e = getenv("KCORO_THREADS");
    if (e && *e) {
        char *end;
        long v = strtol(e, &end, 10);
        if (*end == 0 && v > 0 && v <= KC_THREADS_MAX)
            return (int)v;
    }
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
        return CPU_COUNT(&set) > KC_THREADS_MAX ? KC_THREADS_MAX : CPU_COUNT(&set);
    return 1;
}

static int start_locked(const kc_sched_opts_t *opts)
{
    const char *dbg = getenv("KCORO_DEBUG");
    kc__debug = dbg && *dbg && *dbg != '0';
    int n = opts && opts->threads > 0 ? opts->threads : default_threads();
    if (n > KC_THREADS_MAX)
        return -EINVAL;
    struct kc_worker *ws = aligned_alloc(64, sizeof *ws * (size_t)n);
    if (!ws)
        return -ENOMEM;
    memset(ws, 0, sizeof *ws * (size_t)n);
    kc__guard_handler_install();
    g.w = ws;
    g.nw = n;
    atomic_store(&g.stopping, false);
    for (int i = 0; i < n; i++) {
        ws[i].index = i;
        ws[i].rng = (uint32_t)i * 2654435761u + 1;
    }
    for (int i = 0; i < n; i++) {
        int r = pthread_create(&ws[i].thread, NULL, worker_main, &ws[i]);
        if (r != 0) {
            /* Stop the ones that started (no coroutine exists yet). */
            atomic_store(&g.stopping, true);
            atomic_fetch_add(&g.wake_seq, 1);
            kc__futex_wake(&g.wake_seq, INT_MAX);
            for (int j = 0; j < i; j++)
                pthread_join(ws[j].thread, NULL);
            free(ws);
            g.w = NULL;
            g.nw = 0;
            atomic_store(&g.stopping, false);
            return -r;
        }
    }
    atomic_store(&g.running, true);
    kc__dbg("scheduler started with %d worker threads", n);
    return 0;
}

int kc_sched_start(const kc_sched_opts_t *opts)
{
    pthread_mutex_lock(&g.mu);
    int r = atomic_load(&g.running) ? -EALREADY : start_locked(opts);
    pthread_mutex_unlock(&g.mu);
    return r;
}

static int ensure_started(void)
{
    if (atomic_load_explicit(&g.running, memory_order_acquire))
        return 0;
    pthread_mutex_lock(&g.mu);
    int r = atomic_load(&g.running) ? 0 : start_locked(NULL);
    pthread_mutex_unlock(&g.mu);
    return r;
}

int kc_sched_stop(void)
{
    if (kc__coro_current() || cur_worker())
        return -EDEADLK;
    pthread_mutex_lock(&g.mu);
    if (!atomic_load(&g.running)) {
        pthread_mutex_unlock(&g.mu);
        return 0;
    }
    atomic_store(&g.stopping, true);
    wake_all();
    for (int i = 0; i < g.nw; i++)
        pthread_join(g.w[i].thread, NULL);
    for (int i = 0; i < g.nw; i++) {
        struct kc_worker *w = &g.w[i];
        g.old_steals += atomic_load(&w->steals);
        g.old_switches += atomic_load(&w->switches);
        g.old_sleeps += atomic_load(&w->sleeps);
        while (w->pool) {
            struct kc_coro *c = w->pool;
            w->pool = c->next;
            w->npool--;
            pool_put(NULL, c);
        }
        while (w->nstacks)
            stack_put(NULL, w->stacks[--w->nstacks], KC_STACK_DEFAULT);
        free(w->heap);
    }
    free(g.w);
    g.w = NULL;
    g.nw = 0;
    atomic_store(&g.running, false);
    atomic_store(&g.stopping, false);
    pthread_mutex_unlock(&g.mu);
    kc__dbg("scheduler stopped");
    return 0;
}

void kc_sched_stats(kc_sched_stats_t *out)
{
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&g.mu);
    out->steals = g.old_steals;
    out->switches = g.old_switches;
    out->idle_sleeps = g.old_sleeps;
    for (int i = 0; i < g.nw; i++) {
        out->steals += atomic_load(&g.w[i].steals);
        out->switches += atomic_load(&g.w[i].switches);
        out->idle_sleeps += atomic_load(&g.w[i].sleeps);
        out->timers += atomic_load_explicit(&g.w[i].nheap_seen, memory_order_relaxed);
    }
    out->threads = (uint32_t)g.nw;
    pthread_mutex_unlock(&g.mu);
    out->spawned = atomic_load(&g.spawned);
    out->finished = atomic_load(&g.finished);
    out->injected = atomic_load(&g.injected);
    int64_t live = atomic_load(&g.live);
    out->live = live > 0 ? (uint64_t)live : 0;
}

/* ---- coroutines -------------------------------------------------------- */

static void init_frame(struct kc_coro *c)
{
    uintptr_t top = ((uintptr_t)(c->stack + c->stack_size)) & ~(uintptr_t)15;
#if defined(__x86_64__)
    uint64_t *f = (uint64_t *)(top - 64);
    f[0] = 0x1F80ull | (0x037Full << 32); /* MXCSR, x87 CW: the ABI's initial values */
    f[1] = 0;                              /* r15 */
    f[2] = 0;                              /* r14 */
    f[3] = (uint64_t)(uintptr_t)coro_main; /* r13: entry */
    f[4] = (uint64_t)(uintptr_t)c;         /* r12: argument */
    f[5] = 0;                              /* rbx */
    f[6] = 0;                              /* rbp */
    f[7] = (uint64_t)(uintptr_t)kc__ctx_trampoline;
    c->sp = f;
#elif defined(__aarch64__)
    uint64_t *f = (uint64_t *)(top - 176);
    memset(f, 0, 176);
    f[0] = (uint64_t)(uintptr_t)c;          /* x19: argument */
    f[1] = (uint64_t)(uintptr_t)coro_main;  /* x20: entry */
    f[11] = (uint64_t)(uintptr_t)kc__ctx_trampoline; /* x30 */
    c->sp = f;
#else
#error "kcoro: no context switch for this architecture"
#endif
}

static uint32_t g_ncpu;

static int coro_new(struct kc_coro **out, kc_coro_fn fn, void *arg, const kc_coro_opts_t *opts,
                    bool detached)
{
    if (!fn)
        return -EINVAL;
    size_t ps = kc__page_size();
    size_t size = opts && opts->stack_size ? opts->stack_size : KC_STACK_DEFAULT;
    if (size < KC_STACK_MIN || size > KC_STACK_MAX)
        return -EINVAL;
    size = (size + ps - 1) & ~(ps - 1);
    int r = ensure_started();
    if (r < 0)
        return r;
    struct kc_worker *w = cur_worker();
    unsigned char *stack;
    r = stack_get(w, size, &stack);
    if (r < 0)
        return r;
    struct kc_coro *c = pool_get(w);
    if (!c) {
        c = aligned_alloc(_Alignof(struct kc_coro), sizeof *c);
        if (!c) {
            stack_put(w, stack, size);
            return -ENOMEM;
        }
        memset(c, 0, sizeof *c);
        c->parker.coro = c;
        if (!g_ncpu)
            g_ncpu = (uint32_t)default_threads();
        c->parker.ncpu = g_ncpu;
        atomic_store(&c->parker.cpu, -1); /* never spun for (see kc__spin_begin) */
        pthread_mutex_lock(&g.pool_mu);
        c->all_next = g.all;
        g.all = c;
        pthread_mutex_unlock(&g.pool_mu);
    }
    c->stack = stack;
    c->stack_size = size;
#ifdef KC_ASAN
    /* Frames of its previous life (and the final switch) left poison. */
    __asan_unpoison_memory_region(c->stack, c->stack_size);
#endif
#ifdef KC_TSAN
    c->tsan_fiber = __tsan_create_fiber(0);
#endif
    c->fn = fn;
    c->arg = arg;
    c->detached = detached;
    c->next = NULL;
    atomic_store(&c->done, 0);
    atomic_store_explicit(&c->parked_on, false, memory_order_relaxed);
    atomic_store(&c->joiner, NULL);
    atomic_store(&c->parker.state, KC_PARK_EMPTY);
    c->parker.peer = NULL;
    c->id = atomic_fetch_add(&g.next_id, 1) + 1;
    init_frame(c);
    atomic_fetch_add(&g.live, 1);
    atomic_fetch_add_explicit(&g.spawned, 1, memory_order_relaxed);
    if (out)
        *out = c;
    if (w) {
        /* Like a wake-up: the newest runs next (depth-first growth of a
         * spawning tree, as in Go), the one it displaces may be stolen. */
        kc__coro_ready(c);
    } else {
        inject(c);
        notify();
    }
    return 0;
}

int kc_spawn(kc_coro_t **out, kc_coro_fn fn, void *arg, const kc_coro_opts_t *opts)
{
    if (!out)
        return -EINVAL;
    return coro_new(out, fn, arg, opts, false);
}

int kc_go(kc_coro_fn fn, void *arg, const kc_coro_opts_t *opts)
{
    return coro_new(NULL, fn, arg, opts, true);
}

int kc_coro_join_ms(kc_coro_t *c, long timeout_ms)
{
    if (!c || c->detached)
        return -EINVAL;
    if (c == kc__coro_current())
        return -EDEADLK;
    kc_parker_t *self = kc__parker_self();
    uint64_t deadline = timeout_ms > 0 ? kc__deadline(timeout_ms) : 0;
    kc_parker_t *none = NULL;
    if (atomic_load(&c->done) == 0 &&
        atomic_compare_exchange_strong(&c->joiner, &none, self)) {
        while (atomic_load(&c->done) == 0) {
            if (timeout_ms == 0 || kc__park(self, deadline) == -ETIME) {
                kc_parker_t *me = self;
                if (atomic_compare_exchange_strong(&c->joiner, &me, NULL))
                    return timeout_ms == 0 ? -EAGAIN : -ETIME;
                /* It is finishing right now: the wait is short. */
                timeout_ms = -1;
                deadline = 0;
            }
        }
    } else {
        /* Ending (joiner == 1) or ended: done follows at once. */
        while (atomic_load(&c->done) == 0) {
            if (timeout_ms == 0)
                return -EAGAIN;
            if (kc__coro_current())
                kc_yield();
            else
                sched_yield();
        }
    }
    pool_put(cur_worker(), c);
    return 0;
}

int kc_coro_join(kc_coro_t *c) { return kc_coro_join_ms(c, -1); }

kc_coro_t *kc_self(void) { return kc__coro_current(); }

uint64_t kc_coro_id(const kc_coro_t *c) { return c ? c->id : 0; }

bool kc_coro_is_parked(const kc_coro_t *c)
{
    return c && (atomic_load_explicit(&c->parker.state, memory_order_acquire) == KC_PARK_SLEEPING ||
                 atomic_load_explicit(&c->parked_on, memory_order_acquire));
}

bool kc__coro_yield_if_busy(void)
{
    struct kc_coro *c = kc__coro_current();
    if (!c)
        return false;
    struct kc_worker *w = cur_worker();
    if (!w->runnext && deque_empty(w))
        return false;
    switch_to_sched(w, c, POST_YIELD, false);
    return true;
}

void kc_yield(void)
{
    /* One out-of-line TLS read (the worker's `cur` is the running
     * coroutine): this is the whole yield path besides the switches. */
    struct kc_worker *w = cur_worker();
    struct kc_coro *c = w ? w->cur : NULL;
    if (!c) {
        sched_yield();
        return;
    }
    switch_to_sched(w, c, POST_YIELD, false);
}

int kc_sleep_ms_c(long ms, const kc_cancel_t *cancel)
{
    if (cancel && kc_cancel_is_set(cancel))
        return -ECANCELED;
    if (ms <= 0) {
        kc_yield();
        return 0;
    }
    uint64_t deadline = kc__deadline(ms);
    kc_parker_t *self = kc__parker_self();
    kc_cancel_hook_t hook = {.parker = self};
    if (cancel && kc__cancel_hook(cancel, &hook) < 0)
        return -ECANCELED;
    int r = 0;
    /* Thread or coroutine, the same parker interface; notifications that
     * are not the cancel (stale ones) just loop. */
    while (!deadline || kc_now_ns() < deadline) {
        if (cancel && kc_cancel_is_set(cancel)) {
            r = -ECANCELED;
            break;
        }
        kc__park(self, deadline);
    }
    if (cancel)
        kc__cancel_unhook(cancel, &hook);
    return r;
}

int kc_sleep_ms(long ms) { return kc_sleep_ms_c(ms, NULL); }
