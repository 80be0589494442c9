/* chanmon: runs a synthetic workload on kcoro channels and monitors every live
 * channel (kc_chan_foreach + kc_chan_snapshot + kc_chan_compute_rate), as a
 * live terminal table or as NDJSON lines (--headless).
 *
 * Workload: --channels K independent pipelines, each P producers -> one
 * channel `data.i` of the chosen kind -> C consumers. Elements are BYTES-sized
 * copies, or with --zdesc kc_zdesc descriptors of BYTES-sized heap payloads
 * that are never copied; consumers hand payloads back through a buffered
 * `pool.i` channel so producers reuse them instead of calling malloc.
 *
 * Shutdown (after --duration or SIGINT/SIGTERM): producers stop (their sends
 * use a short timeout, so none ever fails with an element in flight), the data
 * channels are closed, consumers drain them and see -EPIPE, every thread is
 * joined and every payload freed. */
#include <kcoro/kcoro.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_WATCHED 256                 /* channels shown per refresh          */
#define SEND_SLICE_MS 50                /* producers re-check `stop` this often */
#define UNLIMITED_BUDGET (64u << 20)    /* unlimited: bytes buffered at most    */
#define MAX_ZDESC_SIZE (1u << 30)       /* --zdesc payload size limit           */

struct options {
    int producers, consumers, channels;
    size_t size;          /* element (copy) or payload (zdesc) bytes      */
    int kind;             /* enum kc_chan_kind                            */
    size_t capacity;      /* buffered capacity / unlimited initial size   */
    double duration;      /* seconds                                      */
    long interval_ms;     /* refresh period                               */
    bool zdesc;           /* send kc_zdesc descriptors                    */
    bool headless;        /* NDJSON instead of the terminal table         */
};

struct pipeline {
    kc_chan_t *data;       /* producers -> consumers                      */
    kc_chan_t *pool;       /* zdesc: consumers -> producers, spare payloads */
    size_t high_water;     /* unlimited: producers pause above this length */
    pthread_t *threads;    /* producers first, then consumers             */
    int nthreads;          /* threads started                             */
};

static struct options opt = {
    .producers = 1, .consumers = 1, .channels = 1, .size = 64, .kind = KC_BUFFERED,
    .capacity = 1024, .duration = 10, .interval_ms = 1000,
};
static atomic_bool stop;                 /* producers: finish               */
static volatile sig_atomic_t interrupted; /* SIGINT/SIGTERM seen            */
static atomic_uint_fast64_t freed_dropped; /* zdesc payloads freed by the callback */

static const char *kind_name(int kind)
{
    switch (kind) {
    case KC_RENDEZVOUS: return "rendezvous";
    case KC_BUFFERED: return "buffered";
    case KC_UNLIMITED: return "unlimited";
    case KC_CONFLATED: return "conflated";
    default: return "?";
    }
}

/* ---- workload ----------------------------------------------------------- */

/* Undelivered zdesc elements (conflation, destroy) own their payload. */
static void free_dropped_payload(void *user, void *elem)
{
    kc_zdesc *d = elem;
    free(d->addr);
    atomic_fetch_add_explicit(&freed_dropped, 1, memory_order_relaxed);
}

/* Sends one element, retrying on timeout until it goes or `stop` is set.
 * Returns 0 when sent, 1 when stopped (the element stays with the caller). */
static int send_until_stop(struct pipeline *pl, const void *elem)
{
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        if (pl->high_water && kc_chan_len(pl->data) > pl->high_water) {
            nanosleep(&(struct timespec){.tv_nsec = 200000}, NULL);
            continue;
        }
        int rc = opt.zdesc ? kc_chan_send_desc(pl->data, elem, SEND_SLICE_MS)
                           : kc_chan_send(pl->data, elem, SEND_SLICE_MS);
        if (rc == 0)
            return 0;
        if (rc != -ETIME) {
            fprintf(stderr, "chanmon: send: %s\n", kc_strerror(rc));
            return 1;
        }
    }
    return 1;
}

static void *producer_main(void *arg)
{
    struct pipeline *pl = arg;
    uint64_t seq = 0;
    if (opt.zdesc) {
        for (;; seq++) {
            kc_zdesc d;
            if (kc_chan_recv_desc(pl->pool, &d, 0) != 0) {
                d = (kc_zdesc){.addr = malloc(opt.size), .len = opt.size, .flags = KC_ZDESC_FREE};
                if (!d.addr) {
                    fprintf(stderr, "chanmon: out of memory\n");
                    break;
                }
            }
            memcpy(d.addr, &seq, opt.size < sizeof seq ? opt.size : sizeof seq);
            if (send_until_stop(pl, &d)) {
                free(d.addr);
                break;
            }
        }
    } else {
        unsigned char *buf = calloc(1, opt.size);
        if (!buf) {
            fprintf(stderr, "chanmon: out of memory\n");
            return NULL;
        }
        for (;; seq++) {
            memcpy(buf, &seq, opt.size < sizeof seq ? opt.size : sizeof seq);
            if (send_until_stop(pl, buf))
                break;
        }
        free(buf);
    }
    return NULL;
}

static void *consumer_main(void *arg)
{
    struct pipeline *pl = arg;
    volatile unsigned char sink = 0;
    unsigned char *buf = opt.zdesc ? NULL : malloc(opt.size);
    if (!opt.zdesc && !buf) {
        fprintf(stderr, "chanmon: out of memory\n");
        return NULL;
    }
    for (;;) {
        int rc;
        if (opt.zdesc) {
            kc_zdesc d;
            rc = kc_chan_recv_desc(pl->data, &d, -1);
            if (rc == 0) {
                sink ^= ((unsigned char *)d.addr)[0]; /* look at it, never copy it */
                if (kc_chan_send_desc(pl->pool, &d, 0) != 0)
                    free(d.addr);
            }
        } else {
            rc = kc_chan_recv(pl->data, buf, -1);
            if (rc == 0)
                sink ^= buf[0];
        }
        if (rc == -EPIPE)
            break;
        if (rc) {
            fprintf(stderr, "chanmon: recv: %s\n", kc_strerror(rc));
            break;
        }
    }
    free(buf);
    (void)sink;
    return NULL;
}

static int pipeline_start(struct pipeline *pl, int idx)
{
    char name[32];
    int rc;
    memset(pl, 0, sizeof *pl);
    rc = opt.zdesc ? kc_chan_make_desc(&pl->data, opt.kind, opt.capacity)
                   : kc_chan_make(&pl->data, opt.kind, opt.size, opt.capacity);
    if (rc) {
        fprintf(stderr, "chanmon: creating channel: %s\n", kc_strerror(rc));
        return rc;
    }
    snprintf(name, sizeof name, "data.%d", idx);
    kc_chan_set_name(pl->data, name);
    if (opt.zdesc) {
        kc_chan_set_undelivered(pl->data, free_dropped_payload, NULL);
        size_t pool_cap = (opt.kind == KC_BUFFERED ? opt.capacity : 64) +
                          (size_t)opt.producers + (size_t)opt.consumers;
        if ((rc = kc_chan_make_desc(&pl->pool, KC_BUFFERED, pool_cap))) {
            fprintf(stderr, "chanmon: creating pool channel: %s\n", kc_strerror(rc));
            return rc;
        }
        snprintf(name, sizeof name, "pool.%d", idx);
        kc_chan_set_name(pl->pool, name);
    }
    if (opt.kind == KC_UNLIMITED) {
        size_t elem = opt.zdesc ? sizeof(kc_zdesc) + opt.size : opt.size;
        pl->high_water = UNLIMITED_BUDGET / elem > 1024 ? UNLIMITED_BUDGET / elem : 1024;
    }
    pl->threads = calloc((size_t)(opt.producers + opt.consumers), sizeof *pl->threads);
    if (!pl->threads)
        return -ENOMEM;
    for (int i = 0; i < opt.producers + opt.consumers; i++) {
        rc = pthread_create(&pl->threads[i], NULL, i < opt.producers ? producer_main : consumer_main,
                            pl);
        if (rc) {
            fprintf(stderr, "chanmon: pthread_create: %s\n", strerror(rc));
            return -rc;
        }
        pl->nthreads = i + 1;
    }
    return 0;
}

/* Joins the producers; the caller has set `stop`. Then closes data so the
 * consumers drain it and end. */
static void pipeline_stop_producers(struct pipeline *pl)
{
    for (int i = 0; i < pl->nthreads && i < opt.producers; i++)
        pthread_join(pl->threads[i], NULL);
    if (pl->data)
        kc_chan_close(pl->data);
}

static void pipeline_finish(struct pipeline *pl)
{
    for (int i = opt.producers; i < pl->nthreads; i++)
        pthread_join(pl->threads[i], NULL);
    if (pl->pool) {
        kc_zdesc d;
        kc_chan_close(pl->pool);
        while (kc_chan_recv_desc(pl->pool, &d, 0) == 0)
            free(d.addr);
    }
    free(pl->threads);
}

static void pipeline_destroy(struct pipeline *pl)
{
    kc_chan_destroy(pl->data);
    kc_chan_destroy(pl->pool);
}

/* ---- monitor ------------------------------------------------------------ */

struct watched {
    kc_chan_t *ch;
    kc_chan_snapshot_t snap;
};

struct sample {
    struct watched w[MAX_WATCHED];
    size_t n;
};

static void collect_one(void *user, kc_chan_t *ch)
{
    struct sample *s = user;
    if (s->n == MAX_WATCHED)
        return;
    s->w[s->n].ch = ch;
    kc_chan_snapshot(ch, &s->w[s->n].snap);
    s->n++;
}

static int by_name(const void *a, const void *b)
{
    const struct watched *x = a, *y = b;
    return strcmp(x->snap.name, y->snap.name);
}

/* Snapshots every live channel, sorted by name for a stable display. */
static void collect(struct sample *s)
{
    s->n = 0;
    kc_chan_foreach(collect_one, s);
    qsort(s->w, s->n, sizeof s->w[0], by_name);
}

static const kc_chan_snapshot_t *find_prev(const struct sample *prev, const struct watched *w)
{
    for (size_t i = 0; i < prev->n; i++)
        if (prev->w[i].snap.id == w->snap.id) /* ids are never reused */
            return &prev->w[i].snap;
    return NULL;
}

static kc_chan_rate_t rate_of(const struct sample *prev, const struct watched *w)
{
    kc_chan_rate_t r = {0};
    const kc_chan_snapshot_t *p = find_prev(prev, w);
    if (p)
        kc_chan_compute_rate(p, &w->snap, &r);
    return r;
}

static void fmt_count(char *buf, size_t n, double v)
{
    if (v >= 1e9)
        snprintf(buf, n, "%.2fG", v / 1e9);
    else if (v >= 1e6)
        snprintf(buf, n, "%.2fM", v / 1e6);
    else if (v >= 1e3)
        snprintf(buf, n, "%.1fK", v / 1e3);
    else
        snprintf(buf, n, "%.0f", v);
}

static void fmt_bytes_rate(char *buf, size_t n, double bps)
{
    if (bps >= 1e9)
        snprintf(buf, n, "%.2f Gbit/s", bps * 8 / 1e9);
    else
        snprintf(buf, n, "%.1f MB/s", bps / 1e6);
}

static void fmt_lencap(char *buf, size_t n, const kc_chan_snapshot_t *s)
{
    if (s->kind == KC_UNLIMITED)
        snprintf(buf, n, "%" PRIu64 "/inf", s->len);
    else
        snprintf(buf, n, "%" PRIu64 "/%" PRIu64, s->len, s->cap);
}

static void show_table(const struct sample *prev, const struct sample *cur, double elapsed)
{
    char lc[48], sps[16], rps[16], tput[24];
    printf("\033[H\033[2J");
    printf("chanmon  %.1f/%g s  %s%s  P=%d C=%d size=%zu  channels=%zu  (Ctrl-C stops)\n\n",
           elapsed, opt.duration, kind_name(opt.kind), opt.zdesc ? " zdesc" : "", opt.producers,
           opt.consumers, opt.size, cur->n);
    printf("%-16s %-10s %16s %10s %10s %14s %8s %6s\n", "NAME", "KIND", "LEN/CAP", "SENDS/S",
           "RECVS/S", "THROUGHPUT", "FAIL+", "CLOSED");
    for (size_t i = 0; i < cur->n; i++) {
        const kc_chan_snapshot_t *s = &cur->w[i].snap;
        kc_chan_rate_t r = rate_of(prev, &cur->w[i]);
        fmt_lencap(lc, sizeof lc, s);
        fmt_count(sps, sizeof sps, r.sends_per_sec);
        fmt_count(rps, sizeof rps, r.recvs_per_sec);
        fmt_bytes_rate(tput, sizeof tput, r.bytes_per_sec);
        printf("%-16s %-10s %16s %10s %10s %14s %8" PRIu64 " %6s\n",
               s->name[0] ? s->name : "(unnamed)", kind_name(s->kind), lc, sps, rps, tput,
               r.failures, s->closed ? "yes" : "no");
    }
    fflush(stdout);
}

static void emit_ndjson(const struct sample *prev, const struct sample *cur)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    double ts = (double)now.tv_sec + (double)(now.tv_nsec / 1000000) / 1e3;
    for (size_t i = 0; i < cur->n; i++) {
        const kc_chan_snapshot_t *s = &cur->w[i].snap;
        kc_chan_rate_t r = rate_of(prev, &cur->w[i]);
        json_t *o = json_pack(
            "{s:f, s:s, s:s, s:I, s:o, s:I, s:I, s:I, s:I, s:f, s:f, s:f, s:I, s:I, s:b}",
            "ts", ts, "name", s->name, "kind", kind_name(s->kind), "len", (json_int_t)s->len,
            "cap", s->kind == KC_UNLIMITED ? json_null() : json_integer((json_int_t)s->cap),
            "sends", (json_int_t)s->sends, "recvs", (json_int_t)s->recvs,
            "bytes_sent", (json_int_t)s->bytes_sent, "bytes_recv", (json_int_t)s->bytes_recv,
            "sends_per_sec", r.sends_per_sec, "recvs_per_sec", r.recvs_per_sec,
            "bytes_per_sec", r.bytes_per_sec, "failures", (json_int_t)r.failures,
            "dropped", (json_int_t)s->dropped, "closed", (int)s->closed);
        char *line = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15)) : NULL;
        if (line)
            puts(line);
        else
            fprintf(stderr, "chanmon: cannot encode NDJSON for %s\n", s->name);
        free(line);
        json_decref(o);
    }
    fflush(stdout);
}

static void report(const struct sample *prev, const struct sample *cur, double elapsed)
{
    if (opt.headless)
        emit_ndjson(prev, cur);
    else
        show_table(prev, cur, elapsed);
}

static void summary(FILE *f, const struct sample *first, const struct sample *last, double secs)
{
    fprintf(f, "chanmon: %.1f s, %s%s, P=%d C=%d size=%zu\n", secs, kind_name(opt.kind),
            opt.zdesc ? " zdesc" : "", opt.producers, opt.consumers, opt.size);
    for (size_t i = 0; i < last->n; i++) {
        const kc_chan_snapshot_t *s = &last->w[i].snap;
        kc_chan_rate_t r = rate_of(first, &last->w[i]);
        char sps[16], tput[24];
        fmt_count(sps, sizeof sps, r.recvs_per_sec);
        fmt_bytes_rate(tput, sizeof tput, r.bytes_per_sec);
        fprintf(f,
                "  %-10s sends %" PRIu64 " recvs %" PRIu64 " bytes %" PRIu64 " dropped %" PRIu64
                " failures %" PRIu64 "  avg %s recvs/s, %s\n",
                s->name, s->sends, s->recvs, s->bytes_recv, s->dropped,
                s->fail_again + s->fail_timeout + s->fail_canceled + s->fail_closed, sps, tput);
    }
}

/* ---- options and main --------------------------------------------------- */

static void usage(FILE *f, const char *argv0)
{
    fprintf(f,
            "usage: %s [options]\n"
            "Runs P producers -> channel -> C consumers on kcoro and monitors every channel.\n"
            "  -p, --producers P     producer threads per channel (default 1)\n"
            "  -c, --consumers C     consumer threads per channel (default 1)\n"
            "  -n, --channels K      independent channels (pipelines) (default 1)\n"
            "  -s, --size BYTES      element size, or payload size with --zdesc (default 64)\n"
            "  -k, --kind KIND       buffered|rendezvous|unlimited|conflated (default buffered)\n"
            "  -C, --capacity N      buffered capacity / unlimited initial size (default 1024)\n"
            "  -d, --duration SEC    run time in seconds, fractions allowed (default 10)\n"
            "  -i, --interval MS     refresh interval in milliseconds (default 1000)\n"
            "  -z, --zdesc           send kc_zdesc descriptors of BYTES-sized payloads\n"
            "  -H, --headless        print NDJSON (one object per channel per interval)\n"
            "      --ndjson          same as --headless\n"
            "  -h, --help            this text\n"
            "NDJSON fields: ts name kind len cap(null: unlimited) sends recvs bytes_sent\n"
            "bytes_recv sends_per_sec recvs_per_sec bytes_per_sec failures(interval) dropped closed\n",
            argv0);
}

static long parse_long(const char *what, const char *s, long min, long max)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max) {
        fprintf(stderr, "chanmon: bad %s '%s' (want %ld..%ld)\n", what, s, min, max);
        exit(2);
    }
    return v;
}

static void parse_args(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"producers", required_argument, NULL, 'p'}, {"consumers", required_argument, NULL, 'c'},
        {"channels", required_argument, NULL, 'n'},  {"size", required_argument, NULL, 's'},
        {"kind", required_argument, NULL, 'k'},      {"capacity", required_argument, NULL, 'C'},
        {"duration", required_argument, NULL, 'd'},  {"interval", required_argument, NULL, 'i'},
        {"zdesc", no_argument, NULL, 'z'},           {"headless", no_argument, NULL, 'H'},
        {"ndjson", no_argument, NULL, 'H'},          {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    char *end;
    while ((c = getopt_long(argc, argv, "p:c:n:s:k:C:d:i:zHh", longopts, NULL)) != -1) {
        switch (c) {
        case 'p': opt.producers = (int)parse_long("--producers", optarg, 1, 256); break;
        case 'c': opt.consumers = (int)parse_long("--consumers", optarg, 1, 256); break;
        case 'n': opt.channels = (int)parse_long("--channels", optarg, 1, 64); break;
        case 's': opt.size = (size_t)parse_long("--size", optarg, 1, MAX_ZDESC_SIZE); break;
        case 'C': opt.capacity = (size_t)parse_long("--capacity", optarg, 1, 1L << 30); break;
        case 'i': opt.interval_ms = parse_long("--interval", optarg, 10, 3600000); break;
        case 'z': opt.zdesc = true; break;
        case 'H': opt.headless = true; break;
        case 'h': usage(stdout, argv[0]); exit(0);
        case 'k':
            if (!strcmp(optarg, "buffered")) opt.kind = KC_BUFFERED;
            else if (!strcmp(optarg, "rendezvous")) opt.kind = KC_RENDEZVOUS;
            else if (!strcmp(optarg, "unlimited")) opt.kind = KC_UNLIMITED;
            else if (!strcmp(optarg, "conflated")) opt.kind = KC_CONFLATED;
            else {
                fprintf(stderr, "chanmon: unknown --kind '%s'\n", optarg);
                exit(2);
            }
            break;
        case 'd':
            errno = 0;
            opt.duration = strtod(optarg, &end);
            if (errno || end == optarg || *end || !(opt.duration > 0) || opt.duration > 1e6) {
                fprintf(stderr, "chanmon: bad --duration '%s'\n", optarg);
                exit(2);
            }
            break;
        default: usage(stderr, argv[0]); exit(2);
        }
    }
    if (optind < argc) {
        fprintf(stderr, "chanmon: unexpected argument '%s'\n", argv[optind]);
        exit(2);
    }
    if (!opt.zdesc && opt.size > KC_ELEM_MAX) {
        fprintf(stderr, "chanmon: --size above %u needs --zdesc\n", KC_ELEM_MAX);
        exit(2);
    }
}

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    struct pipeline *pl = calloc((size_t)opt.channels, sizeof *pl);
    struct sample *first = malloc(sizeof *first), *prev = malloc(sizeof *prev),
                  *cur = malloc(sizeof *cur);
    if (!pl || !first || !prev || !cur) {
        fprintf(stderr, "chanmon: out of memory\n");
        return 1;
    }
    int rc = 0, started = 0;
    uint64_t t0 = kc_now_ns();
    for (; started < opt.channels && rc == 0; started++)
        rc = pipeline_start(&pl[started], started);
    collect(first);
    *prev = *first;

    /* Refresh on absolute deadlines so intervals do not drift. */
    uint64_t end = t0 + (uint64_t)(opt.duration * 1e9);
    uint64_t next = t0;
    while (rc == 0 && !interrupted) {
        next += (uint64_t)opt.interval_ms * 1000000u;
        if (next > end)
            next = end;
        struct timespec ts = {.tv_sec = (time_t)(next / 1000000000u),
                              .tv_nsec = (long)(next % 1000000000u)};
        while (!interrupted && clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
            ;
        if (interrupted)
            break;
        collect(cur);
        report(prev, cur, (double)(kc_now_ns() - t0) / 1e9);
        struct sample *t = prev;
        prev = cur;
        cur = t;
        if (next >= end)
            break;
    }

    atomic_store(&stop, true);
    for (int i = 0; i < started; i++)
        pipeline_stop_producers(&pl[i]);
    for (int i = 0; i < started; i++)
        pipeline_finish(&pl[i]);
    /* One last look: every data channel closed and drained. */
    collect(cur);
    report(prev, cur, (double)(kc_now_ns() - t0) / 1e9);
    summary(opt.headless ? stderr : stdout, first, cur, (double)(kc_now_ns() - t0) / 1e9);
    for (int i = 0; i < started; i++)
        pipeline_destroy(&pl[i]);
    if (opt.zdesc && freed_dropped)
        fprintf(opt.headless ? stderr : stdout,
                "  %" PRIuFAST64 " payloads dropped by conflation were freed by the undelivered callback\n",
                (uint_fast64_t)freed_dropped);
    free(pl);
    free(first);
    free(prev);
    free(cur);
    return rc ? 1 : 0;
}
