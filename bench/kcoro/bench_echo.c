/* bench_echo: kc_echo (one kcoro coroutine per connection) against go_echo
 * (one goroutine per connection), same load, same run.
 *
 * For each server in turn (alternating which goes first, --reps times) this
 * program starts the server as its own process, opens --conns connections
 * to it and runs one client coroutine per connection that sends a --size
 * byte request and waits for the whole echo, as fast as it can, for --secs
 * seconds (after a short warm-up). The client is the same for both servers
 * (kcoro coroutines on this process's scheduler), so the ratio compares the
 * servers. Prints requests/s per run, the medians, and the ratio kcoro/Go
 * with the target (>= 1x) MET or NOT MET.
 *
 * Servers get the same number of threads: --threads, else KCORO_THREADS,
 * else one per CPU (kc_echo --threads N, GOMAXPROCS=N).
 * Usage: bench_echo [--conns N] [--secs S] [--reps R] [--size B] [--threads N] [--help] */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_util.h"
#include "kcoro/kcoro.h"

#define IO_MS 30000            /* bound on any single client operation      */
#define WARMUP_MS 1000         /* load runs this long before counting        */

/* The server running now, killed by every exit path (no orphans). */
static pid_t g_server;

static void kill_server(void)
{
    if (g_server > 0)
        kill(g_server, SIGKILL);
}

static void on_signal(int sig)
{
    kill_server();
    signal(sig, SIG_DFL);
    raise(sig);
}

static void die(const char *msg)
{
    fprintf(stderr, "bench_echo: %s\n", msg);
    exit(1);
}

/* ---- servers ------------------------------------------------------------- */

struct server {
    pid_t pid;                 /* the server process                          */
    int port;                  /* where it listens                            */
};

/* Starts argv[0] with env_kv (or NULL) and reads "... listening on H:PORT". */
static struct server server_start(char *const argv[], const char *env_kv)
{
    int pfd[2];
    if (pipe(pfd) < 0)
        die("pipe failed");
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        die("fork failed");
    if (pid == 0) {
        dup2(pfd[1], 1);
        close(pfd[0]);
        close(pfd[1]);
        if (env_kv)
            putenv((char *)env_kv);
        execv(argv[0], argv);
        fprintf(stderr, "bench_echo: exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(pfd[1]);
    g_server = pid;
    char line[256];
    size_t got = 0;
    line[0] = '\0';
    while (got < sizeof line - 1 && !strchr(line, '\n')) {
        struct pollfd p = {.fd = pfd[0], .events = POLLIN};
        if (poll(&p, 1, 20000) <= 0)
            die("a server did not start within 20 s");
        ssize_t r = read(pfd[0], line + got, sizeof line - 1 - got);
        if (r <= 0) {
            fprintf(stderr, "bench_echo: %s exited before listening\n", argv[0]);
            exit(1);
        }
        got += (size_t)r;
        line[got] = '\0';
    }
    close(pfd[0]); /* both servers print nothing more on stdout */
    const char *colon = strrchr(line, ':');
    struct server s = {.pid = pid, .port = colon ? atoi(colon + 1) : 0};
    if (s.port <= 0) {
        fprintf(stderr, "bench_echo: cannot read the port from '%s'\n", line);
        exit(1);
    }
    return s;
}

static void server_stop(struct server *s)
{
    kill(s->pid, SIGTERM);
    int st;
    waitpid(s->pid, &st, 0);
    g_server = 0;
}

/* ---- the load ---------------------------------------------------------------- */

struct load {
    int port;                  /* server port                                 */
    size_t size;               /* request bytes                               */
    _Atomic int connected;     /* clients connected                           */
    _Atomic int failed;        /* clients that hit an error                   */
    _Atomic bool stop;         /* end of the run                              */
    _Atomic uint64_t *count;   /* requests completed, per client              */
    int first_err;             /* an error seen (for the message)             */
};

struct client { struct load *l; int idx; };

static void client_main(void *arg)
{
    struct client *c = arg;
    struct load *l = c->l;
    int err = 0;
    char buf[4096];
    memset(buf, 'e', sizeof buf);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)l->port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        err = -errno;
        goto out;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    err = kc_connect(fd, (struct sockaddr *)&a, sizeof a, IO_MS, NULL);
    if (err < 0)
        goto out;
    atomic_fetch_add(&l->connected, 1);
    while (!atomic_load_explicit(&l->stop, memory_order_relaxed)) {
        ssize_t w = kc_write(fd, buf, l->size, IO_MS, NULL);
        if (w != (ssize_t)l->size) {
            err = w < 0 ? (int)w : -EIO;
            break;
        }
        size_t got = 0;
        while (got < l->size) {
            ssize_t r = kc_read(fd, buf + got, l->size - got, IO_MS, NULL);
            if (r <= 0) {
                err = r < 0 ? (int)r : -ECONNRESET;
                break;
            }
            got += (size_t)r;
        }
        if (err)
            break;
        atomic_fetch_add_explicit(&l->count[c->idx], 1, memory_order_relaxed);
    }
out:
    if (err) {
        if (atomic_fetch_add(&l->failed, 1) == 0)
            l->first_err = err;
    }
    if (fd >= 0) {
        /* Reset instead of a FIN: no TIME_WAIT left holding client ports
         * across the many runs. */
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        close(fd);
    }
}

static uint64_t total(struct load *l, int n)
{
    uint64_t s = 0;
    for (int i = 0; i < n; i++)
        s += atomic_load_explicit(&l->count[i], memory_order_relaxed);
    return s;
}

/* Runs the load against port; returns requests per second. */
static double run_load(int port, int conns, size_t size, double secs)
{
    struct load l = {.port = port, .size = size};
    l.count = calloc((size_t)conns, sizeof *l.count);
    struct client *cs = calloc((size_t)conns, sizeof *cs);
    kc_coro_t **co = calloc((size_t)conns, sizeof *co);
    if (!l.count || !cs || !co)
        die("out of memory");
    kc_coro_opts_t o = {.stack_size = 32 * 1024};
    for (int i = 0; i < conns; i++) {
        cs[i] = (struct client){.l = &l, .idx = i};
        int r = kc_spawn(&co[i], client_main, &cs[i], &o);
        if (r < 0) {
            fprintf(stderr, "bench_echo: kc_spawn: %s\n", kc_strerror(r));
            exit(1);
        }
    }
    uint64_t deadline = kc_now_ns() + 120ull * 1000000000ull;
    while (atomic_load(&l.connected) + atomic_load(&l.failed) < conns) {
        if (kc_now_ns() > deadline)
            die("clients did not connect within 120 s");
        usleep(10000);
    }
    if (atomic_load(&l.failed) == 0) {
        usleep(WARMUP_MS * 1000);
        uint64_t c0 = total(&l, conns), t0 = kc_now_ns();
        usleep((useconds_t)(secs * 1e6));
        uint64_t c1 = total(&l, conns), t1 = kc_now_ns();
        atomic_store(&l.stop, true);
        for (int i = 0; i < conns; i++)
            kc_coro_join(co[i]);
        if (atomic_load(&l.failed) == 0) {
            free(l.count);
            free(cs);
            free(co);
            return (double)(c1 - c0) / ((double)(t1 - t0) / 1e9);
        }
    }
    atomic_store(&l.stop, true);
    for (int i = 0; i < conns; i++)
        kc_coro_join(co[i]);
    fprintf(stderr, "bench_echo: %d of %d clients failed (first: %s)\n", atomic_load(&l.failed),
            conns, kc_strerror(l.first_err));
    exit(1);
}

/* ---- main ---------------------------------------------------------------------- */

static void usage(FILE *to)
{
    fputs("usage: bench_echo [--conns N] [--secs S] [--reps R] [--size B] [--threads N]\n"
          "Echo requests/s of kc_echo (coroutines) vs go_echo (goroutines), 10,000\n"
          "connections by default, one client coroutine each, same run.\n"
          "  --conns N    connections (default 10000)\n"
          "  --secs S     measured seconds per run (default 5)\n"
          "  --reps R     runs per server, alternating, median reported (default 3)\n"
          "  --size B     request bytes, 1..4096 (default 64)\n"
          "  --threads N  server threads: kc_echo --threads, GOMAXPROCS (default\n"
          "               KCORO_THREADS or one per CPU)\n",
          to);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"conns", required_argument, NULL, 'c'},
                                         {"secs", required_argument, NULL, 's'},
                                         {"reps", required_argument, NULL, 'r'},
                                         {"size", required_argument, NULL, 'b'},
                                         {"threads", required_argument, NULL, 't'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    long conns = 10000, secs = 5, reps = 3, size = 64, threads = 0;
    int o;
    while ((o = getopt_long(argc, argv, "c:s:r:b:t:h", opts, NULL)) != -1) {
        switch (o) {
        case 'c': conns = bench_parse_pos("--conns", optarg); break;
        case 's': secs = bench_parse_pos("--secs", optarg); break;
        case 'r': reps = bench_parse_pos("--reps", optarg); break;
        case 'b': size = bench_parse_pos("--size", optarg); break;
        case 't': threads = bench_parse_pos("--threads", optarg); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (size > 4096 || reps > 100 || conns > 1000000) {
        usage(stderr);
        return 2;
    }
    if (!threads) {
        const char *e = getenv("KCORO_THREADS");
        cpu_set_t set;
        if (e && atoi(e) > 0)
            threads = atoi(e);
        else if (sched_getaffinity(0, sizeof set, &set) == 0)
            threads = CPU_COUNT(&set);
        else
            threads = 1;
    }
    /* The client holds conns fds; each server raises its own limit. */
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rlim_t need = (rlim_t)conns + 64;
    if (rl.rlim_cur < need) {
        if (rl.rlim_max < need) {
            fprintf(stderr,
                    "bench_echo: %ld connections need %llu file descriptors, the hard limit "
                    "(ulimit -Hn) is %llu; raise it or use --conns\n",
                    conns, (unsigned long long)need, (unsigned long long)rl.rlim_max);
            return 1;
        }
        rl.rlim_cur = need;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
            die("setrlimit(RLIMIT_NOFILE) failed");
    }
    signal(SIGPIPE, SIG_IGN);
    atexit(kill_server);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);

    char kc_path[PATH_MAX], go_path[PATH_MAX];
    if (bench_find_go("kc_echo", kc_path, sizeof kc_path) < 0) {
        fprintf(stderr, "bench_echo: %s not found (build the kc_echo target)\n", kc_path);
        return 1;
    }
    bool have_go = bench_find_go("go_echo", go_path, sizeof go_path) == 0;
    if (!have_go)
        fprintf(stderr, "bench_echo: %s not found (Go not installed?): kcoro figures only\n",
                go_path);

    printf("bench_echo: %ld connections, %ld-byte requests, %ld s per run, %ld runs each, "
           "%ld server threads (GOMAXPROCS %ld)\n",
           conns, size, secs, reps, threads, threads);
    char tstr[32], cstr[32], gmp[64];
    snprintf(tstr, sizeof tstr, "%ld", threads);
    snprintf(cstr, sizeof cstr, "%ld", conns + 16);
    snprintf(gmp, sizeof gmp, "GOMAXPROCS=%ld", threads);
    char *kc_argv[] = {kc_path, "--port", "0", "--max-conns", cstr, "--threads", tstr, NULL};
    char *go_argv[] = {go_path, "0", NULL};

    double *kv = calloc((size_t)reps, sizeof *kv), *gv = calloc((size_t)reps, sizeof *gv);
    if (!kv || !gv)
        die("out of memory");
    for (long r = 0; r < reps; r++) {
        for (int k = 0; k < 2; k++) {
            bool kc_turn = (k == 0) == (r % 2 == 0); /* alternate who goes first */
            if (!kc_turn && !have_go)
                continue;
            struct server s = kc_turn ? server_start(kc_argv, NULL) : server_start(go_argv, gmp);
            double v = run_load(s.port, (int)conns, (size_t)size, (double)secs);
            server_stop(&s);
            (kc_turn ? kv : gv)[r] = v;
        }
        if (have_go)
            printf("run %ld: kcoro %.0f req/s, go %.0f req/s (ratio %.2fx)\n", r + 1, kv[r],
                   gv[r], kv[r] / gv[r]);
        else
            printf("run %ld: kcoro %.0f req/s\n", r + 1, kv[r]);
        fflush(stdout);
    }
    double km = bench_median(kv, (size_t)reps);
    if (!have_go) {
        printf("echo %ld conns: kcoro %.0f req/s (median); no Go baseline: ratio not measured\n",
               conns, km);
        return 0;
    }
    double gm = bench_median(gv, (size_t)reps);
    double ratio = km / gm;
    printf("echo %ld conns: kcoro %.0f req/s, go %.0f req/s (medians), "
           "ratio kcoro/go %.2fx (target >= 1x: %s)\n",
           conns, km, gm, ratio, ratio >= 1.0 ? "MET" : "NOT MET");
    free(kv);
    free(gv);
    return 0;
}
