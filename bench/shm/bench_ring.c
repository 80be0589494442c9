/* bench_shm_ring: cross-process round trip and throughput of a small message
 * through the shm ring, against a Unix-domain socket pair doing the same
 * work, measured in the same run on the same machine.
 *
 *   ring: fshm_server_submit -> worker process (fshm_worker_next/reply,
 *         echo) -> fshm_server_wait/poll; both sides spin briefly before
 *         sleeping, as in production.
 *   unix: write -> echo process (read/write) -> read on a socketpair.
 * Round trip: one message at a time. Throughput: 512 messages in flight;
 * the ring submits each message on its own, the socket side writes each
 * message with its own write() while the echo side and the reader move
 * whatever has accumulated (so the socket side gets the benefit of batching
 * on two of its three steps).
 *
 * The machine's core-to-core round trip (bench/common/bench_c2c.h) is
 * measured in the same run: the ring round trip is printed as a multiple of
 * it (target: at most 3x).
 *
 * Last, the ring round trip with server and worker confined to one CPU (as
 * under `taskset -c N`), against the one-CPU hand-off floor measured in the
 * same run (bench_c2c_yield_floor).
 *
 * Usage: bench_shm_ring [--bytes N] [--seconds S]   (defaults 64, 2 per phase)
 * Prints labelled lines: rtt_ns ..., throughput_msgs_per_s ... with ratios. */
#define _GNU_SOURCE
#include "bench_c2c.h"

#include <errno.h>
#include <ferry/shm.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WINDOW 512 /* messages in flight in the throughput phases */

static size_t msg_bytes = 64;
static double phase_s = 2.0;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *what, int err)
{
    fprintf(stderr, "bench_shm_ring: %s: %s\n", what, strerror(err < 0 ? -err : err));
    exit(1);
}

/* ---- children ---- */

static void shm_echo_worker(const char *name, int go_fd)
{
    char c;
    if (read(go_fd, &c, 1) != 1)
        _exit(1);
    fshm_worker_t *w;
    int rc = fshm_worker_attach(&w, name);
    if (rc < 0)
        die("worker attach", rc);
    for (;;) {
        uint64_t id;
        const void *req;
        size_t len;
        rc = fshm_worker_next(w, &id, &req, &len, -1);
        if (rc == -ESHUTDOWN)
            break;
        if (rc < 0)
            die("worker next", rc);
        fshm_worker_reply(w, id, 0, req, len); /* echo */
    }
    fshm_worker_detach(w);
    _exit(0);
}

/* poll != 0: spin on non-blocking reads instead of sleeping in read(), so
 * the baseline pays for the socket path, not for the kernel waking a
 * sleeping process (which dominates a blocking round trip on an idle VM). */
static int unix_poll;

static ssize_t unix_read(int fd, void *buf, size_t n)
{
    if (!unix_poll)
        return read(fd, buf, n);
    for (;;) {
        ssize_t m = recv(fd, buf, n, MSG_DONTWAIT);
        if (m >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
            return m;
    }
}

static void unix_echo(int fd)
{
    char buf[65536];
    for (;;) {
        ssize_t n = unix_read(fd, buf, sizeof(buf));
        if (n <= 0)
            _exit(0);
        for (ssize_t off = 0; off < n;) {
            ssize_t m = write(fd, buf + off, (size_t)(n - off));
            if (m <= 0)
                _exit(1);
            off += m;
        }
    }
}

static pid_t spawn(void (*fn)(void *), void *arg)
{
    pid_t pid = fork();
    if (pid < 0)
        die("fork", errno);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        fn(arg);
        _exit(0);
    }
    return pid;
}

/* ---- ring ---- */

typedef struct counter {
    size_t done;  /* completions seen */
    size_t bad;   /* wrong status or size */
    size_t bytes; /* expected size */
} counter_t;

static void on_done(void *arg, uint64_t id, int status, const void *resp, size_t len)
{
    counter_t *c = arg;
    c->done++;
    if (status != 0 || len != c->bytes)
        c->bad++;
}

static void ring_collect(fshm_server_t *srv, counter_t *c)
{
    if (fshm_server_wait(srv, 1000) < 0)
        die("server wait", errno);
    int rc = fshm_server_poll(srv, on_done, c);
    if (rc < 0)
        die("server poll", rc);
}

static double ring_rtt(fshm_server_t *srv, const char *msg, double seconds, size_t *iters)
{
    counter_t c = {.bytes = msg_bytes};
    size_t n = 0;
    double t0 = now_s(), t;
    do {
        /* Batches of 256 between clock reads. */
        for (int i = 0; i < 256; i++, n++) {
            uint64_t id;
            int rc = fshm_server_submit(srv, msg, msg_bytes, &id);
            if (rc < 0)
                die("submit", rc);
            while (c.done <= n)
                ring_collect(srv, &c);
        }
        t = now_s();
    } while (t - t0 < seconds);
    if (c.bad)
        die("ring answers", EIO);
    *iters = n;
    return (t - t0) / (double)n * 1e9;
}

static double ring_throughput(fshm_server_t *srv, const char *msg, double seconds)
{
    counter_t c = {.bytes = msg_bytes};
    size_t sent = 0;
    double t0 = now_s(), t;
    for (;;) {
        while (sent - c.done < WINDOW) {
            uint64_t id;
            int rc = fshm_server_submit(srv, msg, msg_bytes, &id);
            if (rc == -EAGAIN)
                break;
            if (rc < 0)
                die("submit", rc);
            sent++;
        }
        ring_collect(srv, &c);
        t = now_s();
        if (t - t0 >= seconds)
            break;
    }
    while (c.done < sent) /* drain, not counted in the rate */
        ring_collect(srv, &c);
    if (c.bad)
        die("ring answers", EIO);
    return (double)c.done / (t - t0);
}

/* ---- unix socket ---- */

static void read_full(int fd, char *buf, size_t n)
{
    for (size_t off = 0; off < n;) {
        ssize_t m = unix_read(fd, buf + off, n - off);
        if (m <= 0)
            die("unix read", m < 0 ? errno : EPIPE);
        off += (size_t)m;
    }
}

static double unix_rtt(int fd, const char *msg, double seconds, size_t *iters)
{
    char buf[65536];
    size_t n = 0;
    double t0 = now_s(), t;
    do {
        for (int i = 0; i < 256; i++, n++) {
            if (write(fd, msg, msg_bytes) != (ssize_t)msg_bytes)
                die("unix write", errno);
            read_full(fd, buf, msg_bytes);
        }
        t = now_s();
    } while (t - t0 < seconds);
    *iters = n;
    return (t - t0) / (double)n * 1e9;
}

static double unix_throughput(int fd, const char *msg, double seconds)
{
    /* Same shape as the ring phase: WINDOW messages in flight, each sent
     * on its own (one write per message, as a server forwarding requests
     * would); the echo side and the reader take whatever has arrived. */
    static char buf[WINDOW * 4096];
    size_t done_bytes = 0, sent = 0;
    double t0 = now_s(), t;
    for (;;) {
        while (sent - done_bytes / msg_bytes < WINDOW) {
            if (write(fd, msg, msg_bytes) != (ssize_t)msg_bytes)
                die("unix write", errno);
            sent++;
        }
        ssize_t m = read(fd, buf, sizeof(buf));
        if (m <= 0)
            die("unix read", m < 0 ? errno : EPIPE);
        done_bytes += (size_t)m;
        t = now_s();
        if (t - t0 >= seconds)
            break;
    }
    size_t done = done_bytes / msg_bytes;
    size_t left = sent * msg_bytes - done_bytes;
    read_full(fd, buf, left);
    return (double)done / (t - t0);
}

static void shm_child(void *arg)
{
    int *p = arg;
    shm_echo_worker((const char *)(p + 1), p[0]);
}

/* ---- one CPU ----
 * The same round trip with the server and its worker confined to one CPU
 * (what `taskset -c N` does to the whole program), compared with the
 * one-CPU hand-off floor (two threads passing a token with sched_yield on
 * one CPU, bench_c2c_yield_floor). Run in a child forked before any
 * thread exists: it pins itself, and everything it starts inherits that. */

typedef struct one_cpu_arg {
    int go_rd;     /* parent writes the CPU number here to start */
    int res_wr;    /* child writes the round trip (double ns, < 0: failed) */
} one_cpu_arg_t;

static void one_cpu_child(void *arg)
{
    one_cpu_arg_t *a = arg;
    int cpu;
    double res = -1;
    if (read(a->go_rd, &cpu, sizeof cpu) != (ssize_t)sizeof cpu)
        _exit(0); /* not wanted */
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    struct {
        int go;
        char name[40];
    } w;
    int gp[2];
    if (sched_setaffinity(0, sizeof set, &set) != 0 || pipe(gp) < 0)
        goto out;
    w.go = gp[0];
    snprintf(w.name, sizeof(w.name), "bench1-%d", (int)getpid());
    pid_t wpid = spawn(shm_child, &w); /* inherits the one-CPU mask */
    fshm_config_t cfg;
    fshm_config_default(&cfg);
    cfg.name = w.name;
    cfg.ring_slots = 1024;
    cfg.payload_max = 4096;
    fshm_server_t *srv;
    if (fshm_server_open(&srv, &cfg) < 0 || write(gp[1], "g", 1) != 1) {
        kill(wpid, SIGKILL);
        goto out;
    }
    fshm_stats_t st;
    do {
        fshm_server_wait(srv, 100);
        fshm_server_stats(srv, &st);
    } while (st.workers_live == 0);
    char *msg = malloc(msg_bytes);
    memset(msg, 'x', msg_bytes);
    size_t it;
    ring_rtt(srv, msg, 0.2, &it);
    res = ring_rtt(srv, msg, phase_s, &it);
    fshm_server_close(srv);
    waitpid(wpid, NULL, 0);
    free(msg);
out:
    if (write(a->res_wr, &res, sizeof res) != (ssize_t)sizeof res)
        _exit(1);
    _exit(0);
}

/* ---- main ---- */


static void unix_poll_child(void *arg)
{
    int *sv = arg;
    close(sv[0]);
    /* Sleep in a blocking read until our phase starts, so this child does
     * not spin (and steal a CPU) while the other phases run. */
    char c;
    if (read(sv[1], &c, 1) != 1 || write(sv[1], &c, 1) != 1)
        _exit(0);
    unix_poll = 1;
    unix_echo(sv[1]);
}

static void unix_child(void *arg)
{
    int *sv = arg;
    close(sv[0]); /* else the parent's close never reaches EOF here */
    unix_echo(sv[1]);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: bench_shm_ring [--bytes N] [--seconds S]   (defaults 64, 2)\n"
                   "Round trip and throughput of the shm ring (server + one echo worker\n"
                   "process) against Unix-domain sockets, and the ring round trip as a\n"
                   "multiple of the core-to-core round trip measured in the same run;\n"
                   "last, the ring round trip with server and worker on one CPU (as under\n"
                   "taskset -c N) against the one-CPU hand-off floor of the same run.\n");
            return 0;
        }
        if (strcmp(argv[i], "--bytes") == 0 && i + 1 < argc)
            msg_bytes = (size_t)atol(argv[++i]);
        else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
            phase_s = atof(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_shm_ring [--bytes N] [--seconds S]\n");
            return 2;
        }
    }
    if (msg_bytes == 0 || msg_bytes > 4096 || phase_s <= 0) {
        fprintf(stderr, "bench_shm_ring: --bytes 1..4096, --seconds > 0\n");
        return 2;
    }
    char *msg = malloc(msg_bytes);
    memset(msg, 'x', msg_bytes);

    /* Children first, while this process has no thread (fork safety). The
     * one-CPU child first of all, so it holds none of the others' fds (an
     * echo child must see EOF when we close our end). */
    int og[2], orr[2];
    if (pipe(og) < 0 || pipe(orr) < 0)
        die("pipe", errno);
    one_cpu_arg_t oa = {.go_rd = og[0], .res_wr = orr[1]};
    pid_t opid = spawn(one_cpu_child, &oa);
    close(og[0]);
    close(orr[1]);
    /* Children first, while this process has no thread (fork safety). */
    struct {
        int go;
        char name[40];
    } shm_arg;
    int gp[2];
    if (pipe(gp) < 0)
        die("pipe", errno);
    shm_arg.go = gp[0];
    snprintf(shm_arg.name, sizeof(shm_arg.name), "bench-%d", (int)getpid());
    pid_t wpid = spawn(shm_child, &shm_arg);
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
        die("socketpair", errno);
    pid_t upid = spawn(unix_child, sv);
    close(sv[1]);
    int pv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, pv) < 0)
        die("socketpair", errno);
    pid_t ppid = spawn(unix_poll_child, pv);
    close(pv[1]);

    /* The limit, before the server's helper thread exists (the children
     * already forked; they sleep until told to start). */
    bench_c2c_t c2c;
    int c2c_rc = bench_c2c_measure(&c2c);

    fshm_config_t cfg;
    fshm_config_default(&cfg);
    cfg.name = shm_arg.name;
    cfg.ring_slots = 1024;
    cfg.payload_max = 4096;
    fshm_server_t *srv;
    int rc = fshm_server_open(&srv, &cfg);
    if (rc < 0)
        die("server open", rc);
    if (write(gp[1], "g", 1) != 1)
        die("go", errno);
    fshm_stats_t st;
    do {
        fshm_server_wait(srv, 100);
        fshm_server_stats(srv, &st);
    } while (st.workers_live == 0);

    size_t it;
    ring_rtt(srv, msg, 0.2, &it); /* warm up both paths */
    unix_rtt(sv[0], msg, 0.2, &it);

    size_t ring_n, unix_n;
    double r_rtt = ring_rtt(srv, msg, phase_s, &ring_n);
    double u_rtt = unix_rtt(sv[0], msg, phase_s, &unix_n);
    size_t poll_n;
    char c = 's';
    if (write(pv[0], &c, 1) != 1 || read(pv[0], &c, 1) != 1)
        die("poll child start", errno);
    unix_poll = 1;
    unix_rtt(pv[0], msg, 0.2, &poll_n);
    double p_rtt = unix_rtt(pv[0], msg, phase_s, &poll_n);
    unix_poll = 0;
    close(pv[0]); /* the polling echo child sees EOF and exits */
    waitpid(ppid, NULL, 0);
    double r_tp = ring_throughput(srv, msg, phase_s);
    double u_tp = unix_throughput(sv[0], msg, phase_s);

    /* One CPU last, with the two-CPU phases done (its processes would
     * otherwise compete with them). */
    double floor_ns = 0, one_ns = -1;
    int floor_cpu = -1;
    int floor_rc = bench_c2c_yield_floor(&floor_ns, &floor_cpu);
    double pfloor_ns = 0;
    int pfloor_rc = floor_rc == 0 ? bench_c2c_yield_floor_procs(&pfloor_ns, floor_cpu) : floor_rc;
    if (floor_rc == 0 && write(og[1], &floor_cpu, sizeof floor_cpu) == (ssize_t)sizeof floor_cpu &&
        read(orr[0], &one_ns, sizeof one_ns) != (ssize_t)sizeof one_ns)
        one_ns = -1;
    close(og[1]);
    close(orr[0]);
    waitpid(opid, NULL, 0);

    printf("msg_bytes=%zu phase_s=%.1f cpus=%ld\n", msg_bytes, phase_s,
           sysconf(_SC_NPROCESSORS_ONLN));
    bench_c2c_print(&c2c, c2c_rc);
    double times = bench_c2c_times(&c2c, c2c_rc, r_rtt);
    if (times > 0)
        printf("rtt_ns ring=%.0f core_to_core=%.0f times=%.1fx (target <= 3x: %s)\n", r_rtt,
               c2c.median_ns, times, times <= 3.0 ? "MET" : "NOT MET");
    printf("rtt_ns ring=%.0f unix=%.0f ratio=%.1fx (iterations ring=%zu unix=%zu)\n", r_rtt,
           u_rtt, u_rtt / r_rtt, ring_n, unix_n);
    printf("rtt_ns ring=%.0f unix_busy_poll=%.0f ratio=%.1fx (both sides spinning, no sleep; "
           "target >= 10x: %s)\n",
           r_rtt, p_rtt, p_rtt / r_rtt, p_rtt / r_rtt >= 10.0 ? "MET" : "NOT MET");
    printf("throughput_msgs_per_s ring=%.0f unix=%.0f ratio=%.1fx (window %d)\n", r_tp, u_tp,
           r_tp / u_tp, WINDOW);
    if (floor_rc < 0)
        printf("one_cpu: floor not measured: %s\n", strerror(-floor_rc));
    else if (one_ns < 0)
        printf("one_cpu: ring phase failed\n");
    else
    {
        printf("one_cpu rtt_ns ring=%.0f handoff_floor=%.0f times=%.1fx (server and worker "
               "on CPU %d only, as under taskset -c %d; floor: 2 threads, sched_yield "
               "ping-pong, same CPU)\n",
               one_ns, floor_ns, one_ns / floor_ns, floor_cpu, floor_cpu);
        /* The ring joins two processes: every hand-off switches address
         * space, which two threads never do. */
        if (pfloor_rc == 0)
            printf("one_cpu rtt_ns ring=%.0f process_handoff_floor=%.0f times=%.1fx (the same "
                   "ping-pong between 2 processes: the least a server and its worker process "
                   "can take on one CPU; the threads' floor is out of reach for them: %.1fx it)\n",
                   one_ns, pfloor_ns, one_ns / pfloor_ns, pfloor_ns / floor_ns);
        else
            printf("one_cpu: process hand-off floor not measured: %s\n", strerror(-pfloor_rc));
    }

    fshm_server_close(srv); /* the worker sees -ESHUTDOWN and exits */
    close(sv[0]);           /* the echo child sees EOF */
    waitpid(wpid, NULL, 0);
    waitpid(upid, NULL, 0);
    free(msg);
    return 0;
}
