/* Coroutines and the M:N scheduler: switch correctness (registers and FP
 * state), many coroutines, stack overflow, stealing, timers, cancellation,
 * thread <-> coroutine channels, start/stop. */
#include <fenv.h>
#include <signal.h>
#include <sys/wait.h>

#include "kt.h"

/* Every test starts its own runtime with a known number of workers. */
static void start(int threads)
{
    kc_sched_opts_t o = {.threads = threads};
    cr_assert_eq(kc_sched_start(&o), 0);
}

static void stop(void) { cr_assert_eq(kc_sched_stop(), 0); }

/* ---- basics ------------------------------------------------------------ */

struct basic { kc_coro_t *self; _Atomic int ran; };

static void basic_fn(void *arg)
{
    struct basic *b = arg;
    b->self = kc_self();
    atomic_store(&b->ran, 1);
}

Test(coro, spawn_join_and_self)
{
    start(2);
    cr_assert_null(kc_self(), "a thread is not a coroutine");
    struct basic b = {0};
    kc_coro_t *c;
    cr_assert_eq(kc_spawn(&c, basic_fn, &b, NULL), 0);
    cr_assert_eq(kc_coro_join(c), 0);
    cr_assert_eq(atomic_load(&b.ran), 1);
    cr_assert_eq(b.self, c, "kc_self inside is the handle kc_spawn gave");
    cr_assert_eq(kc_spawn(&c, NULL, NULL, NULL), -EINVAL);
    kc_coro_opts_t tiny = {.stack_size = 1024};
    cr_assert_eq(kc_spawn(&c, basic_fn, &b, &tiny), -EINVAL);
    cr_assert_eq(kc_coro_join(NULL), -EINVAL);
    stop();
}

Test(coro, default_scheduler_and_restart)
{
    /* No kc_sched_start: the first spawn starts the default runtime. */
    struct basic b = {0};
    kc_coro_t *c;
    cr_assert_eq(kc_spawn(&c, basic_fn, &b, NULL), 0);
    cr_assert_eq(kc_coro_join(c), 0);
    kc_sched_stats_t st;
    kc_sched_stats(&st);
    cr_assert_geq(st.threads, 1);
    cr_assert_eq(kc_sched_start(NULL), -EALREADY);
    stop();
    cr_assert_eq(kc_sched_stop(), 0, "stopping twice is fine");
    start(1);
    atomic_store(&b.ran, 0);
    cr_assert_eq(kc_spawn(&c, basic_fn, &b, NULL), 0);
    cr_assert_eq(kc_coro_join(c), 0);
    cr_assert_eq(atomic_load(&b.ran), 1, "a restarted runtime runs coroutines");
    stop();
}

/* ---- registers and FP state across switches ----------------------------- */

/* An opaque call: the compiler must keep every value live across it in
 * callee-saved registers (or the stack), and kc_yield switches inside it. */
__attribute__((noinline)) static uint64_t mix(uint64_t x)
{
    kc_yield();
    return x * 6364136223846793005ull + 1442695040888963407ull;
}

struct regs { uint64_t seed; uint64_t got, want; double dgot, dwant; };

static void regs_fn(void *arg)
{
    struct regs *r = arg;
    uint64_t a = r->seed, b = a ^ 0x1111, c = a ^ 0x2222, d = a ^ 0x3333, e = a ^ 0x4444;
    uint64_t f = a ^ 0x5555, g = a ^ 0x6666, h = a ^ 0x7777, i = a ^ 0x8888, j = a ^ 0x9999;
    double x = (double)a * 0.5, y = (double)b * 0.25, z = (double)c * 0.125;
    for (int k = 0; k < 200; k++) {
        a = mix(a) + j; b = mix(b) ^ a; c = mix(c) + b; d = mix(d) ^ c; e = mix(e) + d;
        f = mix(f) ^ e; g = mix(g) + f; h = mix(h) ^ g; i = mix(i) + h; j = mix(j) ^ i;
        x = x * 1.000001 + (double)(a & 0xff);
        y = y * 0.999999 + x;
        z = z + y * 1e-9;
    }
    r->got = a ^ b ^ c ^ d ^ e ^ f ^ g ^ h ^ i ^ j;
    r->dgot = x + y + z;
}

/* The same computation without switches. */
static uint64_t mix0(uint64_t x) { return x * 6364136223846793005ull + 1442695040888963407ull; }

static void regs_expect(struct regs *r)
{
    uint64_t a = r->seed, b = a ^ 0x1111, c = a ^ 0x2222, d = a ^ 0x3333, e = a ^ 0x4444;
    uint64_t f = a ^ 0x5555, g = a ^ 0x6666, h = a ^ 0x7777, i = a ^ 0x8888, j = a ^ 0x9999;
    double x = (double)a * 0.5, y = (double)b * 0.25, z = (double)c * 0.125;
    for (int k = 0; k < 200; k++) {
        a = mix0(a) + j; b = mix0(b) ^ a; c = mix0(c) + b; d = mix0(d) ^ c; e = mix0(e) + d;
        f = mix0(f) ^ e; g = mix0(g) + f; h = mix0(h) ^ g; i = mix0(i) + h; j = mix0(j) ^ i;
        x = x * 1.000001 + (double)(a & 0xff);
        y = y * 0.999999 + x;
        z = z + y * 1e-9;
    }
    r->want = a ^ b ^ c ^ d ^ e ^ f ^ g ^ h ^ i ^ j;
    r->dwant = x + y + z;
}

Test(coro, callee_saved_registers_survive_switches)
{
    /* One worker: the eight coroutines interleave at every mix(), each
     * with different values in the same registers. A register the switch
     * failed to save would carry another coroutine's value. */
    start(1);
    enum { N = 8 };
    struct regs r[N];
    kc_coro_t *c[N];
    for (int k = 0; k < N; k++) {
        r[k] = (struct regs){.seed = 0x9e3779b97f4a7c15ull * (uint64_t)(k + 1)};
        regs_expect(&r[k]);
        cr_assert_eq(kc_spawn(&c[k], regs_fn, &r[k], NULL), 0);
    }
    for (int k = 0; k < N; k++) {
        cr_assert_eq(kc_coro_join(c[k]), 0);
        cr_assert_eq(r[k].got, r[k].want, "coroutine %d: integer state lost", k);
        cr_assert(r[k].dgot == r[k].dwant, "coroutine %d: FP state lost", k);
    }
    stop();
}

struct fpmode { int mode; _Atomic int bad; double third; };

static void fp_fn(void *arg)
{
    struct fpmode *m = arg;
    fesetround(m->mode);
    for (int k = 0; k < 500; k++) {
        kc_yield();
        if (fegetround() != m->mode)
            atomic_fetch_add(&m->bad, 1);
    }
    volatile double one = 1.0, three = 3.0;
    m->third = one / three; /* rounded by this coroutine's mode */
    fesetround(FE_TONEAREST);
}

Test(coro, fp_control_word_is_per_coroutine)
{
    /* Two coroutines on one worker with different rounding modes (MXCSR
     * and x87 CW on x86-64, FPCR on aarch64): each keeps its own. */
    start(1);
    struct fpmode up = {.mode = FE_UPWARD}, down = {.mode = FE_DOWNWARD};
    kc_coro_t *a, *b;
    cr_assert_eq(kc_spawn(&a, fp_fn, &up, NULL), 0);
    cr_assert_eq(kc_spawn(&b, fp_fn, &down, NULL), 0);
    cr_assert_eq(kc_coro_join(a), 0);
    cr_assert_eq(kc_coro_join(b), 0);
    cr_assert_eq(atomic_load(&up.bad), 0, "upward mode lost across switches");
    cr_assert_eq(atomic_load(&down.bad), 0, "downward mode lost across switches");
    cr_assert(up.third > down.third, "the modes really differed");
    cr_assert_eq(fegetround(), FE_TONEAREST, "the test thread's mode is untouched");
    stop();
}

/* ---- many coroutines --------------------------------------------------- */

struct many { kc_chan_t *gate; _Atomic long started, ended; };

static void many_fn(void *arg)
{
    struct many *m = arg;
    atomic_fetch_add(&m->started, 1);
    int v;
    if (kc_chan_recv(m->gate, &v, -1) == -EPIPE)
        atomic_fetch_add(&m->ended, 1);
}

Test(coro, hundred_thousand_alive_at_once, .timeout = 300)
{
#ifdef __SANITIZE_THREAD__
    const long n = 4000; /* TSan allows 8128 threads+fibers in all */
#else
    const long n = 100000;
#endif
    start(0);
    struct many m = {0};
    cr_assert_eq(kc_chan_make(&m.gate, KC_RENDEZVOUS, sizeof(int), 0), 0);
    for (long i = 0; i < n; i++)
        cr_assert_eq(kc_go(many_fn, &m, NULL), 0, "spawn %ld", i);
    /* All of them block on the gate: alive at once, none ended. */
    while (atomic_load(&m.started) < n)
        kt_sleep_ms(5);
    kc_sched_stats_t st;
    kc_sched_stats(&st);
    cr_assert_geq(st.live, (uint64_t)n);
    cr_assert_eq(atomic_load(&m.ended), 0);
    kc_chan_close(m.gate);
    stop(); /* waits for all to end */
    cr_assert_eq(atomic_load(&m.ended), n);
    kc_chan_destroy(m.gate);
}

/* ---- stack overflow ---------------------------------------------------- */

static volatile int g_depth_limit = 1 << 30;

__attribute__((noinline)) static int deep(int n)
{
    volatile char pad[512];
    pad[0] = (char)n;
    if (n > g_depth_limit)
        return 0;
    return deep(n + 1) + pad[0];
}

static void overflow_fn(void *arg)
{
    (void)arg;
    printf("%d\n", deep(0));
}

Test(coro, stack_overflow_dies_with_a_message)
{
    if (getenv("KCORO_UNDER_QEMU")) {
        /* qemu-user reports a guest fault on the guard page as uncaught
         * instead of running the guest's handler: nothing to check there. */
        fprintf(stderr, "SKIP stack_overflow_dies_with_a_message under qemu-user\n");
        return;
    }
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        dup2(fds[1], 2);
        close(fds[0]);
        kc_sched_opts_t o = {.threads = 1};
        kc_coro_opts_t so = {.stack_size = KC_STACK_MIN};
        kc_coro_t *c;
        if (kc_sched_start(&o) != 0 || kc_spawn(&c, overflow_fn, NULL, &so) != 0)
            _exit(3);
        kc_coro_join(c);
        _exit(0); /* reached only if the overflow went unnoticed */
    }
    close(fds[1]);
    char buf[4096];
    size_t len = 0;
    ssize_t r;
    while (len < sizeof buf - 1 && (r = read(fds[0], buf + len, sizeof buf - 1 - len)) > 0)
        len += (size_t)r;
    buf[len] = 0;
    close(fds[0]);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV,
              "child must die of SIGSEGV (status 0x%x), stderr: %s", status, buf);
    cr_assert_not_null(strstr(buf, "kcoro: stack overflow in coroutine"),
                       "clear message expected, got: %s", buf);
}

/* ---- stealing ---------------------------------------------------------- */

struct stealer { _Atomic int ran; };

static void child_fn(void *arg)
{
    struct stealer *s = arg;
    atomic_fetch_add(&s->ran, 1);
}

static void spawner_fn(void *arg)
{
    struct stealer *s = arg;
    for (int i = 0; i < 64; i++)
        kc_go(child_fn, s, NULL);
    /* Keep this worker busy without yielding: the children sit in its run
     * queue, so the only way one runs now is another worker stealing it. */
    while (atomic_load(&s->ran) == 0)
        __asm__ __volatile__("" ::: "memory");
}

Test(coro, idle_worker_steals)
{
    start(2);
    kc_sched_stats_t before, after;
    kc_sched_stats(&before);
    struct stealer s = {0};
    kc_coro_t *c;
    cr_assert_eq(kc_spawn(&c, spawner_fn, &s, NULL), 0);
    cr_assert_eq(kc_coro_join(c), 0);
    kc_sched_stats(&after);
    cr_assert_gt(after.steals, before.steals, "a child ran while its worker was busy");
    stop();
    cr_assert_eq(atomic_load(&s.ran), 64);
}

/* Deque stress: spawners push onto their workers' deques (each spawn
 * displaces the previous one from runnext), leaves yield and hand off over
 * channels while idle workers steal from the top and owners pop at the
 * bottom. Every coroutine must run exactly once, none twice (a lost or
 * duplicated deque entry), and the scheduler's counters must add up. Run
 * under TSan too (label concurrency): the deque's ordering is checked there. */
enum { DS_SPAWNERS = 8, DS_LEAVES = 4000 / KT_SCALE, DS_TOTAL = DS_SPAWNERS * DS_LEAVES };

struct dstress {
    _Atomic unsigned char ran[DS_TOTAL]; /* runs per leaf          */
    _Atomic int done;                    /* leaves finished        */
    kc_chan_t *relay;                    /* buffered hand-offs     */
};

struct dleaf { struct dstress *d; int id; };

static struct dleaf g_leaves[DS_TOTAL];

static void dleaf_fn(void *arg)
{
    struct dleaf *l = arg;
    atomic_fetch_add(&l->d->ran[l->id], 1);
    if (l->id % 3 == 0)
        kc_yield();
    if (l->id % 5 == 0) {
        /* A wake-up of a parked coroutine from this worker (runnext). */
        int v = l->id;
        kc_chan_send(l->d->relay, &v, -1);
        kc_chan_recv(l->d->relay, &v, -1);
    }
    atomic_fetch_add(&l->d->done, 1);
}

static void dspawner_fn(void *arg)
{
    struct dleaf *first = arg;
    for (int i = 0; i < DS_LEAVES; i++) {
        while (kc_go(dleaf_fn, &first[i], NULL) < 0)
            kc_yield(); /* out of memory: retry (should not happen) */
        if (i % 64 == 0)
            kc_yield();
    }
}

Test(coro, deque_stress_every_coroutine_runs_exactly_once, .timeout = 300)
{
    start(4); /* more workers than CPUs: preemption inside deque operations */
    static struct dstress d;
    memset(&d, 0, sizeof d);
    cr_assert_eq(kc_chan_make(&d.relay, KC_BUFFERED, sizeof(int), 1), 0);
    kc_sched_stats_t before, after;
    kc_sched_stats(&before);
    kc_coro_t *sp[DS_SPAWNERS];
    for (int i = 0; i < DS_TOTAL; i++)
        g_leaves[i] = (struct dleaf){&d, i};
    for (int i = 0; i < DS_SPAWNERS; i++)
        cr_assert_eq(kc_spawn(&sp[i], dspawner_fn, &g_leaves[i * DS_LEAVES], NULL), 0);
    for (int i = 0; i < DS_SPAWNERS; i++)
        cr_assert_eq(kc_coro_join_ms(sp[i], 120000), 0);
    uint64_t t0 = kt_now_ms();
    while (atomic_load(&d.done) < DS_TOTAL && kt_now_ms() - t0 < 120000)
        kt_sleep_ms(1);
    cr_assert_eq(atomic_load(&d.done), DS_TOTAL, "leaves lost");
    for (int i = 0; i < DS_TOTAL; i++)
        cr_assert_eq(atomic_load(&d.ran[i]), 1, "leaf %d ran %d times", i,
                     (int)atomic_load(&d.ran[i]));
    stop();
    kc_sched_stats(&after);
    cr_assert_eq(after.spawned - before.spawned, DS_TOTAL + DS_SPAWNERS);
    cr_assert_eq(after.finished - before.finished, DS_TOTAL + DS_SPAWNERS);
    cr_assert_eq(after.live, 0);
    kc_chan_destroy(d.relay);
}

/* ---- timers ------------------------------------------------------------ */

/* Criterion asserts only on the test thread: coroutines count failures. */
static _Atomic int g_bad;
#define CHECK(cond) do { if (!(cond)) atomic_fetch_add(&g_bad, 1); } while (0)

/* Each sleeper records the deadline it slept until, in the order they
 * woke. Deadlines, not durations: under qemu-user on a loaded machine the
 * sleepers start milliseconds apart, so a longer sleep may end first. */
struct sleeper { int ms; uint64_t *order; _Atomic int *pos; kc_chan_t *gate; };

static void sleeper_fn(void *arg)
{
    struct sleeper *s = arg;
    int v;
    CHECK(kc_chan_recv(s->gate, &v, -1) == -EPIPE);
    uint64_t dl = kc_now_ns() + (uint64_t)s->ms * 1000000u;
    CHECK(kc_sleep_ms(s->ms) == 0);
    CHECK(kc_now_ns() >= dl);
    s->order[atomic_fetch_add(s->pos, 1)] = dl;
}

Test(coro, timers_fire_in_deadline_order)
{
    start(1);
    int ms[] = {70, 10, 50, 20, 40, 30, 60};
    enum { N = sizeof ms / sizeof ms[0] };
    uint64_t order[N];
    _Atomic int pos = 0;
    struct sleeper s[N];
    kc_coro_t *c[N];
    kc_chan_t *gate;
    cr_assert_eq(kc_chan_make(&gate, KC_RENDEZVOUS, sizeof(int), 0), 0);
    for (int i = 0; i < N; i++) {
        s[i] = (struct sleeper){ms[i], order, &pos, gate};
        cr_assert_eq(kc_spawn(&c[i], sleeper_fn, &s[i], NULL), 0);
    }
    uint64_t t0 = kt_now_ms();
    kc_chan_close(gate);
    for (int i = 0; i < N; i++)
        cr_assert_eq(kc_coro_join(c[i]), 0);
    cr_assert_geq(kt_now_ms() - t0, 70, "the longest sleep really slept");
    kc_chan_destroy(gate);
    /* kc_sleep_ms takes its own clock reading a moment after the one
     * recorded: deadlines closer than 1 ms may legitimately swap. */
    for (int i = 1; i < N; i++)
        cr_assert_leq(order[i - 1], order[i] + 1000000u, "woke out of deadline order at %d", i);
    cr_assert_eq(atomic_load(&g_bad), 0);
    stop();
}

/* ---- cancellation ------------------------------------------------------ */

struct blocked { kc_chan_t *ch; kc_cancel_t *tok; _Atomic int rc; _Atomic int in; };

static void recv_blocked_fn(void *arg)
{
    struct blocked *b = arg;
    int v;
    atomic_store(&b->in, 1);
    atomic_store(&b->rc, kc_chan_recv_c(b->ch, &v, -1, b->tok));
}

static void sleep_blocked_fn(void *arg)
{
    struct blocked *b = arg;
    atomic_store(&b->in, 1);
    atomic_store(&b->rc, kc_sleep_ms_c(600000, b->tok));
}

static void cancel_case(kc_coro_fn fn)
{
    start(2);
    struct blocked b = {.rc = 1};
    cr_assert_eq(kc_chan_make(&b.ch, KC_RENDEZVOUS, sizeof(int), 0), 0);
    cr_assert_eq(kc_cancel_create(&b.tok, NULL), 0);
    kc_coro_t *c;
    cr_assert_eq(kc_spawn(&c, fn, &b, NULL), 0);
    while (!atomic_load(&b.in))
        kt_sleep_ms(1);
    kt_sleep_ms(20); /* most likely parked by now; either way it must end */
    cr_assert_eq(kc_coro_join_ms(c, 0), -EAGAIN, "still blocked before the cancel");
    kc_cancel_trigger(b.tok);
    cr_assert_eq(kc_coro_join_ms(c, KT_PROMPT_MS), 0, "cancel did not wake the coroutine");
    cr_assert_eq(atomic_load(&b.rc), -ECANCELED);
    kc_cancel_destroy(b.tok);
    kc_chan_destroy(b.ch);
    stop();
}

Test(coro, cancel_wakes_coroutine_in_recv) { cancel_case(recv_blocked_fn); }
Test(coro, cancel_wakes_coroutine_in_sleep) { cancel_case(sleep_blocked_fn); }

Test(coro, join_times_out_then_joins)
{
    start(1);
    struct blocked b = {.rc = 1};
    cr_assert_eq(kc_chan_make(&b.ch, KC_RENDEZVOUS, sizeof(int), 0), 0);
    cr_assert_eq(kc_cancel_create(&b.tok, NULL), 0);
    kc_coro_t *c;
    cr_assert_eq(kc_spawn(&c, recv_blocked_fn, &b, NULL), 0);
    cr_assert_eq(kc_coro_join_ms(c, 30), -ETIME);
    kc_chan_close(b.ch);
    cr_assert_eq(kc_coro_join(c), 0);
    cr_assert_eq(atomic_load(&b.rc), -EPIPE);
    kc_cancel_destroy(b.tok);
    kc_chan_destroy(b.ch);
    stop();
}

/* ---- threads and coroutines on one channel ------------------------------ */

struct pp { kc_chan_t *ch; long n; long sum; };

static void coro_sender(void *arg)
{
    struct pp *p = arg;
    for (long i = 1; i <= p->n; i++)
        CHECK(kc_chan_send(p->ch, &i, -1) == 0);
}

static void coro_receiver(void *arg)
{
    struct pp *p = arg;
    long v;
    for (long i = 0; i < p->n; i++) {
        CHECK(kc_chan_recv(p->ch, &v, -1) == 0);
        p->sum += v;
    }
}

static void thread_coro_case(int kind, size_t cap)
{
    start(2);
    const long n = 20000 / KT_SCALE;
    const long want = n * (n + 1) / 2;
    /* coroutine -> thread */
    struct pp a = {.n = n};
    cr_assert_eq(kc_chan_make(&a.ch, kind, sizeof(long), cap), 0);
    kc_coro_t *c;
    cr_assert_eq(kc_spawn(&c, coro_sender, &a, NULL), 0);
    long v, sum = 0;
    for (long i = 0; i < n; i++) {
        cr_assert_eq(kc_chan_recv(a.ch, &v, KT_PROMPT_MS), 0);
        sum += v;
    }
    cr_assert_eq(kc_coro_join(c), 0);
    cr_assert_eq(sum, want);
    /* thread -> coroutine */
    struct pp b = {.ch = a.ch, .n = n};
    cr_assert_eq(kc_spawn(&c, coro_receiver, &b, NULL), 0);
    for (long i = 1; i <= n; i++)
        cr_assert_eq(kc_chan_send(a.ch, &i, KT_PROMPT_MS), 0);
    cr_assert_eq(kc_coro_join(c), 0);
    cr_assert_eq(b.sum, want);
    cr_assert_eq(atomic_load(&g_bad), 0);
    kc_chan_destroy(a.ch);
    stop();
}

Test(coro, thread_and_coroutine_rendezvous) { thread_coro_case(KC_RENDEZVOUS, 0); }
Test(coro, thread_and_coroutine_buffered) { thread_coro_case(KC_BUFFERED, 8); }

/* Coroutine <-> coroutine ping-pong across more coroutines than workers,
 * with a select in the loop. */
struct ring { kc_chan_t *in, *out; long n; };

static void relay_fn(void *arg)
{
    struct ring *r = arg;
    long v;
    for (long i = 0; i < r->n; i++) {
        kc_select_clause_t cl[1] = {{.ch = r->in, .op = KC_SELECT_RECV, .buf = &v}};
        CHECK(kc_select(cl, 1, KC_SELECT_BIASED, -1, NULL) == 0);
        v++;
        CHECK(kc_chan_send(r->out, &v, -1) == 0);
    }
}

Test(coro, relay_ring_of_coroutines)
{
    start(2);
    enum { R = 16 };
    const long n = 2000 / KT_SCALE;
    kc_chan_t *ch[R + 1];
    for (int i = 0; i <= R; i++)
        cr_assert_eq(kc_chan_make(&ch[i], KC_RENDEZVOUS, sizeof(long), 0), 0);
    struct ring r[R];
    kc_coro_t *c[R];
    for (int i = 0; i < R; i++) {
        r[i] = (struct ring){ch[i], ch[i + 1], n};
        cr_assert_eq(kc_spawn(&c[i], relay_fn, &r[i], NULL), 0);
    }
    for (long i = 0; i < n; i++) {
        long v = i;
        cr_assert_eq(kc_chan_send(ch[0], &v, KT_PROMPT_MS), 0);
        cr_assert_eq(kc_chan_recv(ch[R], &v, KT_PROMPT_MS), 0);
        cr_assert_eq(v, i + R);
    }
    for (int i = 0; i < R; i++)
        cr_assert_eq(kc_coro_join(c[i]), 0);
    cr_assert_eq(atomic_load(&g_bad), 0);
    for (int i = 0; i <= R; i++)
        kc_chan_destroy(ch[i]);
    stop();
}

static void stopper(void *arg) { atomic_store((_Atomic int *)arg, kc_sched_stop()); }

Test(coro, stop_from_a_coroutine_is_refused)
{
    start(1);
    kc_coro_t *c;
    static _Atomic int rc;
    atomic_store(&rc, 1);
    cr_assert_eq(kc_spawn(&c, stopper, (void *)&rc, NULL), 0);
    cr_assert_eq(kc_coro_join(c), 0);
    cr_assert_eq(atomic_load(&rc), -EDEADLK);
    stop();
}
