/* kcoro internal: channel, waiter and cancellation structures shared by
 * kc_chan.c (send/recv), kc_select.c and kc_stats.c. Not installed. */
#ifndef KC_INTERNAL_H
#define KC_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kc_sync.h"
#include "kcoro/kcoro.h"

/* One blocked operation (or one select) waiting to be completed. The
 * completing thread claims it by CAS on `winner`, does the copy under the
 * channel lock, then swaps `done` to KC_SEL_DONE and unparks the owner only
 * if `done` said it may be asleep (KC_SEL_SLEEPY). A spinning owner polls
 * `done` alone: a hand-off between two running threads touches the
 * waiter's line and nothing of its parker. Kept to 24 bytes so that a
 * single operation's sel, waiter and a small element fit one cache line
 * (kc_wait1_t). */
typedef struct kc_sel {
    _Atomic uint32_t done;   /* KC_SEL_WAITING, KC_SEL_SLEEPY or KC_SEL_DONE      */
    _Atomic int16_t winner;  /* KC_SEL_OPEN, KC_SEL_ABORTED or the winning clause */
    int16_t result;          /* 0 or -EPIPE for the winning clause               */
    kc_parker_t *parker;     /* the waiting thread                               */
    kc_parker_t *waker;      /* the completing thread (valid once DONE)          */
} kc_sel_t;

/* sel->winner: open; aborted by its owner; KC_SEL_SOLO: open, and its one
 * waiter can be claimed by nobody but the one peer that unlinks it, and
 * its owner never gives up (one operation with no deadline and no cancel
 * token): claimed by a plain store instead of a CAS. */
enum { KC_SEL_OPEN = -1, KC_SEL_ABORTED = -2, KC_SEL_SOLO = -3 };
/* sel->done: spinning owner; owner may sleep (completer must unpark);
 * completed (winner's copy and result are visible); a coroutine owner
 * switched out on `done` itself (kc__coro_park_on: the completer makes it
 * runnable directly, no parker involved). */
enum { KC_SEL_WAITING = 0, KC_SEL_DONE = 1, KC_SEL_SLEEPY = 2, KC_SEL_PARKED = 3 };

/* A waiter sits in a channel's send or receive queue (intrusive, no
 * allocation). It lives on the waiting thread's stack. */
typedef struct kc_waiter {
    struct kc_waiter *next;  /* queue link                                     */
    struct kc_waiter *prev;  /* queue link                                     */
    kc_sel_t *sel;           /* shared by all clauses of one select            */
    union {
        void *ptr;           /* send: element to take; recv: where to put it   */
        unsigned char bytes[sizeof(void *)]; /* the element itself, if inl     */
    } buf;
    int32_t clause;          /* index reported to the selector                 */
    bool queued;             /* still linked in a queue (guarded by chan lock)  */
    bool inl;                /* the element travels in buf.bytes (see below)   */
    bool handoff;            /* buffered kc_chan_send/recv (not a select): a
                              * peer may move its element (buf.ptr) and
                              * complete it with KC_BUF_HANDED               */
} kc_waiter_t;

/* sel->result of a buffered waiter whose element a peer moved for it (into
 * the ring for a sender, into buf.ptr for a receiver): the operation is
 * over. Any other result only asks the waiter to retry. */
#define KC_BUF_HANDED 1

/* Where a completer copies to (recv waiter) or from (send waiter). */
static inline void *kc__wbuf(kc_waiter_t *w)
{
    return w->inl ? (void *)w->buf.bytes : w->buf.ptr;
}

/* A single send or receive waits in one cache line: its sel, its waiter
 * and, when the element fits in buf.bytes (KC_INLINE_MAX), the element
 * itself. The completer then moves one line (besides the channel's lock
 * line) and the woken owner reads that same line back: a rendezvous
 * hand-off between two running threads costs about three line transfers
 * instead of six (docs/kcoro.md, "Cache lines per message"). */
typedef struct kc_wait1 {
    _Alignas(64) kc_sel_t sel; /* the operation's completion state            */
    kc_waiter_t w;             /* its entry in the channel's queue            */
} kc_wait1_t;

#define KC_INLINE_MAX sizeof(((kc_waiter_t *)0)->buf.bytes)
_Static_assert(sizeof(kc_wait1_t) == 64, "kc_wait1_t must fill exactly one cache line");

typedef struct kc_wqueue {
    kc_waiter_t *head;       /* oldest waiter: served first (FIFO fairness)    */
    kc_waiter_t *tail;       /* newest waiter                                  */
} kc_wqueue_t;

#define KC_CACHELINE 64

struct kc_chan {
    /* Line 0: what a hand-off of the locked kinds touches, and nothing else.
     * The lock, the waiter queues, the element size and the counters (which
     * the completer updates while it holds the lock) share one cache line:
     * a hand-off takes the lock, looks at a queue and counts on the line it
     * already owns. */
    kc_lock_t lock;          /* guards the queues, the ring of the locked kinds */
    uint8_t kind;            /* enum kc_chan_kind                              */
    bool closed;             /* set once by kc_chan_close (under lock)         */
    bool is_desc;            /* elements are kc_zdesc (bytes counted by len)   */
    kc_wqueue_t sendq;       /* blocked senders                                */
    kc_wqueue_t recvq;       /* blocked receivers                              */
    size_t esz;              /* element size in bytes                          */
    uint64_t sends;          /* locked kinds: completed sends (under lock)     */
    uint64_t recvs;          /* locked kinds: completed receives (under lock)  */
    size_t cap;              /* slots (buffered: the bound)                    */
    /* Locked ring (unlimited, conflated). */
    size_t head;             /* index of the oldest buffered element           */
    size_t count;            /* buffered elements                              */
    unsigned char *buf;      /* ring of cap * esz bytes                        */
    /* Lock-free ring (buffered): cells of {seq, element}, see kc_chan.c. */
    unsigned char *cells;    /* cap * stride bytes                             */
    size_t cells_mapped;     /* bytes mmap'd for cells, 0 if they came from calloc */
    size_t stride;           /* bytes per cell                                 */
    size_t mask;             /* cap - 1 when cap is a power of two, else 0     */
    kc_undelivered_fn undelivered; /* called for dropped elements              */
    void *undelivered_user;  /* argument of undelivered                        */
    char name[32];           /* for monitors                                   */
    uint64_t id;             /* kc_chan_id, assigned at creation               */
    struct kc_chan *reg_next, *reg_prev; /* registry links                     */

    /* Hot words, one cache line per writer side, so a producer and a
     * consumer running on two cores do not steal each other's lines. */
    _Alignas(KC_CACHELINE) _Atomic size_t enq_pos; /* next cell to fill; top bit: closed */
    _Atomic uint64_t bytes_sent; /* descriptor channels: payload bytes sent  */
    _Alignas(KC_CACHELINE) _Atomic size_t deq_pos; /* next cell to drain   */
    _Atomic uint64_t bytes_recv; /* descriptor channels: payload bytes received */
    /* Read by every buffered operation, written only by slow paths. */
    _Alignas(KC_CACHELINE) _Atomic uint32_t send_waiters; /* senders queued in sendq (buffered)  */
    _Atomic uint32_t recv_waiters; /* receivers queued in recvq (buffered) */
    /* Failure counters (off the hot path). */
    _Alignas(KC_CACHELINE) _Atomic uint64_t fail_again, fail_timeout, fail_canceled, fail_closed;
    _Atomic uint64_t dropped; /* elements handed to the undelivered callback */
    _Atomic uint64_t handed; /* buffered: elements handed from a sender straight
                              * to a parked receiver (counted in both
                              * directions; under lock, read without)   */

};

/* Queue operations (chan lock held). */
void kc__wq_push(kc_wqueue_t *q, kc_waiter_t *w);
void kc__wq_remove(kc_wqueue_t *q, kc_waiter_t *w);

/* Try to complete a send/recv on a locked channel without blocking.
 * Returns true when the operation is over, with *res = 0 or -EPIPE;
 * false when it would block. For buffered channels a waiter that blocks
 * is only notified (it must retry), see kc__is_notify_chan. */
bool kc__try_send(kc_chan_t *ch, const void *src, int *res);
bool kc__try_recv(kc_chan_t *ch, void *dst, int *res);

/* Waits until sel is done, the deadline passes or cancel fires.
 * Returns 1 when completed by a peer (sel->winner/result valid), or -ETIME /
 * -ECANCELED after the wait was aborted (no peer can complete it any more;
 * the caller must still unlink its waiters). */
int kc__sel_wait(kc_sel_t *sel, uint64_t deadline, const kc_cancel_t *cancel);

/* Buffered channels wake waiters to retry instead of handing elements
 * over; their waiters are also counted in send_waiters/recv_waiters. */
static inline bool kc__is_notify_chan(const kc_chan_t *ch) { return ch->kind == KC_BUFFERED; }
void kc__waiters_add(kc_chan_t *ch, bool is_send, int delta);
/* A buffered waiter that was woken to retry but did not take the element
 * (or the room) it was woken for, because a select completed another clause,
 * hands the wake-up to the next waiter of the same side (recv_side: a
 * receiver was woken) so nobody sleeps on a non-empty or non-full channel.
 * No channel lock may be held. */
void kc__pass_on(kc_chan_t *ch, bool recv_side);
/* A registered buffered waiter whose attempt failed: true when a peer's
 * claimed push (for a receiver) or pop (for a sender) is still landing and
 * may not wake it; retry after kc__landing_pause instead of parking. */
bool kc__buf_landing(kc_chan_t *ch, bool is_send);
/* One pause of such a retry loop (*n counts them: spins, then yields). */
void kc__landing_pause(unsigned *n);
/* Completed operations of a buffered channel, from its ring positions (and
 * byte counters for descriptors); always recvs <= sends, bytes likewise. */
struct kc_counts {
    uint64_t sends;      /* pushes (claimed positions)        */
    uint64_t recvs;      /* pops                              */
    uint64_t bytes_sent; /* payload bytes of the pushes       */
    uint64_t bytes_recv; /* payload bytes of the pops         */
};
void kc__buffered_counts(const kc_chan_t *ch, struct kc_counts *c);

/* Hands an element that will never be delivered to the callback. */
void kc__drop(kc_chan_t *ch, void *elem);

/* Counts a failure of kind err on ch. */
void kc__count_fail(kc_chan_t *ch, int err);

/* Cancellation hooks: a blocked operation registers its parker so that
 * trigger wakes it. kc__cancel_hook returns -ECANCELED (and registers
 * nothing) if the token is already set. */
typedef struct kc_cancel_hook {
    struct kc_cancel_hook *next, *prev; /* links in the token's hook list */
    kc_parker_t *parker;               /* woken on trigger               */
} kc_cancel_hook_t;

int kc__cancel_hook(const kc_cancel_t *tok, kc_cancel_hook_t *h);
void kc__cancel_unhook(const kc_cancel_t *tok, kc_cancel_hook_t *h);

/* Registry (kc_stats.c). */
void kc__registry_add(kc_chan_t *ch);
void kc__registry_remove(kc_chan_t *ch);

#endif
