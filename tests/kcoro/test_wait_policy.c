/* The waiting paths of the spin policy (kc_sync.h): every way a wait can
 * end must deliver every element exactly once and never lose a wake-up.
 *
 * - one CPU: the whole test process pinned to one CPU, so waiters take the
 *   yield path (and the lock its yield path) instead of pause-spinning;
 * - sleepy waiters: the peer pauses longer than any spin budget before each
 *   operation, so the waiter announces SLEEPY and parks, and the completer
 *   must unpark it (a lost wake-up hangs the waiter: kt_join fails);
 * - alternating: fast and slow operations mixed, so budgets shrink and grow
 *   and waits end by spinning, yielding and sleeping in turn.
 * No timing is asserted: only delivery, order and termination. */
#include <sched.h>

#include "kt.h"

/* Pins the calling thread (and the threads it creates from now on) to its
 * first allowed CPU; *saved receives the previous mask. */
static void pin_one_cpu(cpu_set_t *saved)
{
    cr_assert_eq(sched_getaffinity(0, sizeof *saved, saved), 0);
    int cpu = -1;
    for (int c = 0; c < CPU_SETSIZE && cpu < 0; c++)
        if (CPU_ISSET(c, saved))
            cpu = c;
    cr_assert_geq(cpu, 0);
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    cr_assert_eq(sched_setaffinity(0, sizeof one, &one), 0);
}

/* ---- rendezvous ping-pong ---- */

struct pp {
    kc_chan_t *ping, *pong; /* main -> echo, echo -> main            */
    long slow_every;        /* echo sleeps before every n-th reply (0: never) */
    long sleep_us;          /* how long                               */
    _Atomic int err;        /* first failure of the echo thread       */
};

static void sleep_us(long us)
{
    struct timespec ts = {.tv_sec = 0, .tv_nsec = us * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void *echo_main(void *arg)
{
    struct pp *p = arg;
    long v;
    for (long i = 0;; i++) {
        int rc = kc_chan_recv(p->ping, &v, -1);
        if (rc == -EPIPE)
            return NULL;
        if (rc == 0 && p->slow_every && i % p->slow_every == 0)
            sleep_us(p->sleep_us);
        if (rc == 0)
            rc = kc_chan_send(p->pong, &v, -1);
        if (rc) {
            atomic_store(&p->err, rc);
            return NULL;
        }
    }
}

/* n round trips; main sleeps before every slow_every-th send too. */
static void ping_pong(long n, long slow_every, long us)
{
    struct pp p = {.slow_every = slow_every, .sleep_us = us};
    p.ping = kt_chan(KC_RENDEZVOUS, sizeof(long), 0);
    p.pong = kt_chan(KC_RENDEZVOUS, sizeof(long), 0);
    pthread_t t;
    kt_start(&t, echo_main, &p);
    for (long i = 0; i < n; i++) {
        long v = -1;
        if (slow_every && i % slow_every == slow_every / 2)
            sleep_us(us);
        cr_assert_eq(kc_chan_send(p.ping, &i, -1), 0);
        cr_assert_eq(kc_chan_recv(p.pong, &v, -1), 0);
        cr_assert_eq(v, i, "round trip %ld came back as %ld", i, v);
    }
    kc_chan_close(p.ping);
    kt_join(t, KT_PROMPT_MS);
    cr_assert_eq(atomic_load(&p.err), 0, "echo failed: %d", atomic_load(&p.err));
    kc_chan_destroy(p.ping);
    kc_chan_destroy(p.pong);
}

/* ---- buffered producers/consumers ---- */

struct pc {
    kc_chan_t *ch;          /* the channel                            */
    long share;             /* producer: messages to send             */
    long slow_every;        /* sleep before every n-th op (0: never)  */
    long count, sum;        /* consumer: received                     */
    long last[8];           /* consumer: last value seen per producer */
    bool ordered;           /* consumer: per-producer order held      */
    int id;                 /* producer index                         */
    _Atomic int err;        /* first failure                          */
};

/* Values carry the producer id in the low 3 bits: (k << 3) | id. */
static void *producer_main(void *arg)
{
    struct pc *w = arg;
    for (long k = 1; k <= w->share; k++) {
        if (w->slow_every && k % w->slow_every == 0)
            sleep_us(200);
        long v = k << 3 | w->id;
        int rc = kc_chan_send(w->ch, &v, -1);
        if (rc) {
            atomic_store(&w->err, rc);
            return NULL;
        }
    }
    return NULL;
}

static void *consumer_main(void *arg)
{
    struct pc *w = arg;
    long v;
    w->ordered = true;
    for (long i = 0;; i++) {
        if (w->slow_every && i % w->slow_every == 0)
            sleep_us(200);
        int rc = kc_chan_recv(w->ch, &v, -1);
        if (rc == -EPIPE)
            return NULL;
        if (rc) {
            atomic_store(&w->err, rc);
            return NULL;
        }
        long id = v & 7, k = v >> 3;
        if (k <= w->last[id])
            w->ordered = false;
        w->last[id] = k;
        w->count++;
        w->sum += k;
    }
}

static void producers_consumers(int np, int nc, long msgs, size_t cap, long slow_every)
{
    kc_chan_t *ch = kt_chan(KC_BUFFERED, sizeof(long), cap);
    struct pc w[8];
    pthread_t t[8];
    cr_assert_leq(np + nc, 8);
    long want_sum = 0;
    for (int i = 0; i < np + nc; i++) {
        w[i] = (struct pc){.ch = ch, .id = i, .slow_every = slow_every};
        if (i < np) {
            w[i].share = msgs / np;
            want_sum += w[i].share * (w[i].share + 1) / 2;
        }
        kt_start(&t[i], i < np ? producer_main : consumer_main, &w[i]);
    }
    for (int i = 0; i < np; i++)
        kt_join(t[i], 60000);
    kc_chan_close(ch);
    long count = 0, sum = 0;
    for (int i = np; i < np + nc; i++) {
        kt_join(t[i], KT_PROMPT_MS);
        count += w[i].count;
        sum += w[i].sum;
        cr_assert(w[i].ordered, "consumer %d saw a producer's values out of order", i);
    }
    for (int i = 0; i < np + nc; i++)
        cr_assert_eq(atomic_load(&w[i].err), 0, "thread %d failed: %d", i,
                     atomic_load(&w[i].err));
    cr_assert_eq(count, (msgs / np) * np, "received %ld", count);
    cr_assert_eq(sum, want_sum);
    kc_chan_destroy(ch);
}

/* ---- select receiver woken from sleep ---- */

struct sel_rx {
    kc_chan_t *a, *b; /* two rendezvous channels                 */
    long n;           /* values expected in all                  */
    long got;         /* values received                         */
    _Atomic int err;  /* first failure                           */
};

static void *select_rx_main(void *arg)
{
    struct sel_rx *s = arg;
    long va, vb;
    while (s->got < s->n) {
        kc_select_clause_t cl[2] = {{.ch = s->a, .op = KC_SELECT_RECV, .buf = &va},
                                    {.ch = s->b, .op = KC_SELECT_RECV, .buf = &vb}};
        int win = kc_select(cl, 2, KC_SELECT_UNBIASED, -1, NULL);
        if (win < 0) {
            atomic_store(&s->err, win);
            return NULL;
        }
        s->got++;
    }
    return NULL;
}

Test(wait_policy, sleepy_rendezvous_waiters_are_woken)
{
    /* Every round trip waits past any spin budget on both sides. */
    ping_pong(300 / (KT_SCALE > 1 ? 3 : 1), 1, 300);
}

Test(wait_policy, sleepy_buffered_waiters_are_woken)
{
    /* Capacity 1: both sides block; one side sleeps before every op. */
    producers_consumers(1, 1, 400, 1, 1);
    producers_consumers(2, 2, 400, 1, 1);
}

Test(wait_policy, sleepy_select_is_woken)
{
    struct sel_rx s = {.n = 200};
    s.a = kt_chan(KC_RENDEZVOUS, sizeof(long), 0);
    s.b = kt_chan(KC_RENDEZVOUS, sizeof(long), 0);
    pthread_t t;
    kt_start(&t, select_rx_main, &s);
    for (long i = 0; i < s.n; i++) {
        sleep_us(200);
        cr_assert_eq(kc_chan_send(i % 2 ? s.a : s.b, &i, -1), 0);
    }
    kt_join(t, KT_PROMPT_MS);
    cr_assert_eq(atomic_load(&s.err), 0);
    cr_assert_eq(s.got, s.n);
    kc_chan_destroy(s.a);
    kc_chan_destroy(s.b);
}

Test(wait_policy, alternating_fast_and_slow_waits)
{
    ping_pong(20000 / KT_SCALE, 97, 150);
    producers_consumers(2, 2, 100000 / KT_SCALE, 4, 997);
}

Test(wait_policy, one_cpu_rendezvous_ping_pong)
{
    cpu_set_t saved;
    pin_one_cpu(&saved);
    ping_pong(20000 / KT_SCALE, 0, 0);
    ping_pong(2000 / KT_SCALE, 7, 100);
    sched_setaffinity(0, sizeof saved, &saved);
}

Test(wait_policy, one_cpu_buffered_producers_consumers)
{
    cpu_set_t saved;
    pin_one_cpu(&saved);
    producers_consumers(1, 1, 200000 / KT_SCALE, 1024, 0);
    producers_consumers(2, 2, 100000 / KT_SCALE, 8, 0);
    producers_consumers(4, 4, 100000 / KT_SCALE, 2, 0);
    sched_setaffinity(0, sizeof saved, &saved);
}
