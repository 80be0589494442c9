/* distributed_channels: one kcoro channel shared by three processes.
 *
 *   distributed_channels [--debug] [--messages N] [--socket PATH]
 *       starts a server, a producer and a consumer (separate processes: this
 *       program run again with a role), waits for them and prints
 *       "Example Complete" when the consumer got every message in order.
 *   distributed_channels server PATH        serve channel 1 until SIGTERM
 *   distributed_channels producer PATH N    send N messages, then close it
 *   distributed_channels consumer PATH      receive until the channel is closed
 *
 * The server owns a buffered channel (capacity 4) and exports it as id 1;
 * producer and consumer open it by id over the Unix socket. --debug (or
 * KCORO_DEBUG=1) turns on kcoro's debug log on stderr ("kcoro[pid]: ...").
 * Exit status: 0 success, 1 failure, 2 usage. */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kcoro/kcoro.h"

#define CHAN_ID 1
#define OP_TIMEOUT_MS 10000   /* bound on every channel operation of the roles */

/* The element that travels: fixed size, as every channel element. */
struct dc_msg {
    uint32_t seq;             /* 0, 1, 2, ... in send order              */
    char text[60];            /* a human-readable payload                */
};

static void usage(FILE *to)
{
    fputs("usage: distributed_channels [--debug] [--messages N] [--socket PATH]\n"
          "       distributed_channels server PATH | producer PATH N | consumer PATH\n"
          "Runs a channel server, a producer and a consumer as three processes sharing\n"
          "one kcoro channel over a Unix socket; prints \"Example Complete\" at the end.\n"
          "  --debug       kcoro debug log on stderr (same as KCORO_DEBUG=1)\n"
          "  --messages N  messages the producer sends (default 10)\n"
          "  --socket PATH socket path (default /tmp/kcoro-dc-<uid>-<pid>.sock)\n",
          to);
}

/* ---- roles ----------------------------------------------------------------- */

static int run_server(const char *path)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* before any thread starts: all inherit it */
    signal(SIGPIPE, SIG_IGN); /* a reader of our stdout that went away is no reason to die */
    kc_chan_t *ch;
    int r = kc_chan_make(&ch, KC_BUFFERED, sizeof(struct dc_msg), 4);
    if (r < 0) {
        fprintf(stderr, "server: kc_chan_make: %s\n", kc_strerror(r));
        return 1;
    }
    kc_chan_set_name(ch, "distributed");
    kc_ipc_server_t *s;
    r = kc_ipc_serve(&s, path);
    if (r == 0)
        r = kc_ipc_export(s, CHAN_ID, ch);
    if (r < 0) {
        fprintf(stderr, "server: serving %s: %s\n", path, kc_strerror(r));
        kc_chan_destroy(ch);
        return 1;
    }
    printf("server: serving channel %d on %s\n", CHAN_ID, path);
    fflush(stdout);
    int sig = 0;
    sigwait(&set, &sig);
    printf("server: stopping (signal %d)\n", sig);
    kc_ipc_server_destroy(s);
    kc_chan_close(ch);
    kc_chan_destroy(ch);
    kc_sched_stop();
    return 0;
}

/* Opens the channel, retrying while the server is still starting. */
static int open_chan(const char *who, const char *path, kc_ipc_chan_t **c)
{
    int r = -ECONNREFUSED;
    for (int i = 0; i < 200; i++) {
        r = kc_ipc_chan_open(c, path, CHAN_ID, OP_TIMEOUT_MS);
        if (r != -ENOENT && r != -ECONNREFUSED)
            break;
        kc_sleep_ms(20); /* the server has not bound its socket yet */
    }
    if (r < 0)
        fprintf(stderr, "%s: opening channel %d on %s: %s\n", who, CHAN_ID, path,
                kc_strerror(r));
    return r;
}

static int run_producer(const char *path, long n)
{
    kc_ipc_chan_t *c;
    if (open_chan("producer", path, &c) < 0)
        return 1;
    for (long i = 0; i < n; i++) {
        struct dc_msg m = {.seq = (uint32_t)i};
        snprintf(m.text, sizeof m.text, "message %ld from producer %d", i, (int)getpid());
        int r = kc_ipc_send(c, &m, OP_TIMEOUT_MS);
        if (r < 0) {
            fprintf(stderr, "producer: send %ld: %s\n", i, kc_strerror(r));
            kc_ipc_chan_release(c);
            return 1;
        }
        printf("producer: sent %ld\n", i);
    }
    int r = kc_ipc_close(c);
    printf("producer: closed the channel (%s)\n", kc_strerror(r));
    kc_ipc_chan_release(c);
    return r < 0 ? 1 : 0;
}

/* The consumer runs its loop in a coroutine: its waits park the coroutine
 * through the netpoller, not the thread. */
struct consumer {
    const char *path;         /* server socket                           */
    long got;                 /* messages received                        */
    int rc;                   /* 0: ended by close, in order; else 1      */
};

static void consumer_coro(void *arg)
{
    struct consumer *k = arg;
    kc_ipc_chan_t *c;
    k->rc = 1;
    if (open_chan("consumer", k->path, &c) < 0)
        return;
    for (;;) {
        struct dc_msg m;
        int r = kc_ipc_recv(c, &m, OP_TIMEOUT_MS);
        if (r == -EPIPE) {
            printf("consumer: channel closed after %ld messages\n", k->got);
            k->rc = 0;
            break;
        }
        if (r < 0) {
            fprintf(stderr, "consumer: recv: %s\n", kc_strerror(r));
            break;
        }
        m.text[sizeof m.text - 1] = '\0';
        if (m.seq != (uint32_t)k->got) {
            fprintf(stderr, "consumer: got message %u, expected %ld\n", m.seq, k->got);
            break;
        }
        printf("consumer: got %u: %s\n", m.seq, m.text);
        k->got++;
    }
    kc_ipc_chan_release(c);
}

static int run_consumer(const char *path)
{
    struct consumer k = {.path = path};
    kc_coro_t *co;
    int r = kc_spawn(&co, consumer_coro, &k, NULL);
    if (r < 0) {
        fprintf(stderr, "consumer: kc_spawn: %s\n", kc_strerror(r));
        return 1;
    }
    kc_coro_join(co);
    kc_sched_stop();
    return k.rc;
}

/* ---- the orchestrating parent --------------------------------------------- */

static pid_t spawn_role(char *const argv[])
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        execv("/proc/self/exe", argv);
        perror("distributed_channels: exec");
        _exit(127);
    }
    if (pid < 0)
        perror("distributed_channels: fork");
    return pid;
}

static int wait_for(pid_t pid, const char *who)
{
    int st;
    while (waitpid(pid, &st, 0) < 0) {
        if (errno != EINTR) {
            perror("waitpid");
            return 1;
        }
    }
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
        return 0;
    fprintf(stderr, "distributed_channels: %s failed (%s %d)\n", who,
            WIFEXITED(st) ? "exit" : "signal", WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
    return 1;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"debug", no_argument, NULL, 'd'},
                                         {"messages", required_argument, NULL, 'n'},
                                         {"socket", required_argument, NULL, 's'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    long n = 10;
    char path[108];
    snprintf(path, sizeof path, "/tmp/kcoro-dc-%d-%d.sock", (int)getuid(), (int)getpid());
    int o;
    while ((o = getopt_long(argc, argv, "+dn:s:h", opts, NULL)) != -1) {
        switch (o) {
        case 'd':
            setenv("KCORO_DEBUG", "1", 1); /* inherited by the role processes */
            break;
        case 'n': {
            char *end;
            n = strtol(optarg, &end, 10);
            if (*end || n < 0 || n > 100000000) {
                fprintf(stderr, "distributed_channels: bad --messages %s\n", optarg);
                return 2;
            }
            break;
        }
        case 's':
            if (strlen(optarg) >= sizeof path) {
                fprintf(stderr, "distributed_channels: socket path too long (max %zu bytes)\n",
                        sizeof path - 1);
                return 2;
            }
            snprintf(path, sizeof path, "%s", optarg);
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    int rest = argc - optind;
    char **ra = argv + optind;
    if (rest >= 2 && strcmp(ra[0], "server") == 0)
        return run_server(ra[1]);
    if (rest >= 3 && strcmp(ra[0], "producer") == 0) {
        char *end;
        long k = strtol(ra[2], &end, 10);
        if (*end || k < 0) {
            fprintf(stderr, "producer: bad count %s\n", ra[2]);
            return 2;
        }
        return run_producer(ra[1], k);
    }
    if (rest >= 2 && strcmp(ra[0], "consumer") == 0)
        return run_consumer(ra[1]);
    if (rest != 0) {
        usage(stderr);
        return 2;
    }

    char count[32];
    snprintf(count, sizeof count, "%ld", n);
    printf("distributed_channels: socket %s, %ld messages\n", path, n);
    pid_t srv = spawn_role((char *[]){argv[0], "server", path, NULL});
    if (srv < 0)
        return 1;
    pid_t con = spawn_role((char *[]){argv[0], "consumer", path, NULL});
    pid_t pro = spawn_role((char *[]){argv[0], "producer", path, count, NULL});
    int fail = 0;
    if (pro > 0)
        fail |= wait_for(pro, "producer");
    else
        fail = 1;
    if (con > 0)
        fail |= wait_for(con, "consumer");
    else
        fail = 1;
    kill(srv, SIGTERM);
    fail |= wait_for(srv, "server");
    if (fail) {
        fprintf(stderr, "distributed_channels: FAILED\n");
        return 1;
    }
    printf("Example Complete\n");
    return 0;
}
