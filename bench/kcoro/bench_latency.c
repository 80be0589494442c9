/* bench_latency: rendezvous ping-pong between two threads over two kcoro
 * rendezvous channels, and the same workload on Go unbuffered channels
 * (go_chan_latency) in the same run.
 *
 * Usage: bench_latency [round_trips [reps]]     (defaults 100000 5)
 * Prints the machine's core-to-core round trip (the physical limit, see
 * bench/common/bench_c2c.h), the median round trip and one-way time of each
 * side with its multiple of that limit, the ratio (Go time / kcoro time:
 * higher is better for kcoro) and whether the target (round trip no slower
 * than Go) is met. */
#include "bench_c2c.h"
#include "bench_util.h"

#include <kcoro/kcoro.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_REPS 15
/* Time limits of the kcoro part: a run that takes longer stops early and
 * reports the round trips it made (a loaded machine can slow kcoro's
 * spin-then-sleep waits by orders of magnitude; the bench must still end). */
#define WARMUP_MAX_NS 500000000ull
#define RUN_MAX_NS 2000000000ull

struct pair {
    kc_chan_t *ping; /* main -> echo thread */
    kc_chan_t *pong; /* echo thread -> main */
};

/* Sends back every value until ping is closed. */
static void *echo_main(void *arg)
{
    struct pair *p = arg;
    int64_t v;
    for (;;) {
        int rc = kc_chan_recv(p->ping, &v, -1);
        if (rc == -EPIPE)
            break;
        if (rc == 0)
            rc = kc_chan_send(p->pong, &v, -1);
        if (rc) {
            fprintf(stderr, "bench_latency: echo: %s\n", kc_strerror(rc));
            exit(1);
        }
    }
    return NULL;
}

/* Up to n round trips, stopping early at deadline_ns (checked every 1024).
 * Returns the mean round trip in ns; *done gets the round trips made. */
static double ping_pong(struct pair *p, long n, uint64_t deadline_ns, long *done)
{
    uint64_t t0 = kc_now_ns();
    int64_t i;
    for (i = 0; i < n; i++) {
        int64_t v = -1;
        int rc = kc_chan_send(p->ping, &i, -1);
        if (rc == 0)
            rc = kc_chan_recv(p->pong, &v, -1);
        if (rc || v != i) {
            fprintf(stderr, "bench_latency: round trip %" PRId64 ": %s (got %" PRId64 ")\n", i,
                    rc ? kc_strerror(rc) : "wrong value", v);
            exit(1);
        }
        if ((i & 1023) == 1023 && kc_now_ns() > deadline_ns) {
            i++;
            break;
        }
    }
    *done = (long)i;
    return (double)(kc_now_ns() - t0) / (double)i;
}

int main(int argc, char **argv)
{
    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("usage: %s [round_trips [reps]]   (defaults 100000 5)\n"
               "Rendezvous ping-pong between two threads on kcoro, then on Go channels,\n"
               "each also printed as a multiple of the core-to-core round trip.\n",
               argv[0]);
        return 0;
    }
    if (argc > 3 || (argc > 1 && argv[1][0] == '-')) {
        fprintf(stderr, "usage: %s [round_trips [reps]]   (defaults 100000 5)\n", argv[0]);
        return 2;
    }
    long n = argc > 1 ? bench_parse_pos("round_trips", argv[1]) : 100000;
    long reps = argc > 2 ? bench_parse_pos("reps", argv[2]) : 5;
    if (reps > MAX_REPS)
        reps = MAX_REPS;

    /* The limit first, while no other thread of ours runs. */
    bench_c2c_t c2c;
    int c2c_rc = bench_c2c_measure(&c2c);
    double floor_ns = 0;
    int floor_cpu = -1;
    int floor_rc = bench_c2c_yield_floor(&floor_ns, &floor_cpu);

    struct pair p;
    pthread_t echo;
    int rc = kc_chan_make(&p.ping, KC_RENDEZVOUS, sizeof(int64_t), 0);
    if (rc == 0)
        rc = kc_chan_make(&p.pong, KC_RENDEZVOUS, sizeof(int64_t), 0);
    if (rc) {
        fprintf(stderr, "bench_latency: kc_chan_make: %s\n", kc_strerror(rc));
        return 1;
    }
    kc_chan_set_name(p.ping, "ping");
    kc_chan_set_name(p.pong, "pong");
    if ((rc = pthread_create(&echo, NULL, echo_main, &p)) != 0) {
        fprintf(stderr, "bench_latency: pthread_create: %s\n", kc_strerror(-rc));
        return 1;
    }

    long done, total = 0;
    ping_pong(&p, n / 10 + 1, kc_now_ns() + WARMUP_MAX_NS, &done);
    double rt[MAX_REPS];
    for (long r = 0; r < reps; r++) {
        rt[r] = ping_pong(&p, n, kc_now_ns() + RUN_MAX_NS, &done);
        total += done;
    }
    double kc_rt = bench_median(rt, (size_t)reps);

    kc_chan_close(p.ping);
    pthread_join(echo, NULL);
    kc_chan_close(p.pong);
    kc_chan_destroy(p.ping);
    kc_chan_destroy(p.pong);

    bench_c2c_print(&c2c, c2c_rc);
    if (floor_rc == 0)
        printf("one-CPU thread hand-off floor (2 threads on CPU %d, sched_yield ping-pong): "
               "round trip %.0f ns\n",
               floor_cpu, floor_ns);
    printf("rendezvous ping-pong, 2 threads, %ld round trips x %ld runs (median)\n", n, reps);
    if (total < n * reps)
        printf("  (kcoro runs hit the %.0f s limit: %ld round trips per run on average)\n",
               RUN_MAX_NS / 1e9, total / reps);
    printf("  kcoro: round trip %.0f ns, one way %.0f ns (min round trip %.0f ns), "
           "%.1fx core-to-core\n",
           kc_rt, kc_rt / 2, rt[0], bench_c2c_times(&c2c, c2c_rc, kc_rt));
    if (floor_rc == 0 && floor_ns > 0)
        printf("  kcoro: %.1fx the one-CPU hand-off floor\n", kc_rt / floor_ns);

    char go[4096], args[64];
    double go_rt = 0;
    rc = bench_find_go("go_chan_latency", go, sizeof go);
    if (rc) {
        printf("  Go baseline not found (%s); build with Go installed or set FERRY_GO_BENCH_DIR\n",
               go);
        printf("rendezvous round trip: kcoro %.0f ns, Go n/a\n", kc_rt);
        return 0;
    }
    snprintf(args, sizeof args, "%ld %ld", n, reps);
    rc = bench_run_go(go, args, 2, "rt_ns_median", &go_rt);
    if (rc || go_rt <= 0) {
        printf("  Go baseline failed (%s %s)\n", go, args);
        printf("rendezvous round trip: kcoro %.0f ns, Go n/a\n", kc_rt);
        return 0;
    }
    printf("  Go:    round trip %.0f ns, one way %.0f ns (GOMAXPROCS=2), %.1fx core-to-core\n",
           go_rt, go_rt / 2, bench_c2c_times(&c2c, c2c_rc, go_rt));
    double ratio = go_rt / kc_rt;
    printf("rendezvous round trip: kcoro %.0f ns, Go %.0f ns, ratio %.2fx (Go time / kcoro time, "
           "higher is better)\n",
           kc_rt, go_rt, ratio);
    printf("target: round trip no slower than Go (ratio >= 1.00): %s\n",
           ratio >= 1.0 ? "MET" : "NOT MET");
    return 0;
}
