/* worker: the Kolosal worker process. Attaches to the server's shared
 * segment, claims requests, runs a handler (built in, or a user's shared
 * library) and writes the result back. One line per event to its log.
 *
 * Exit status: 0 on SIGTERM/SIGINT or when the server closes cleanly; 1 when
 * it cannot start (no server, bad handler) or fails; 2 on bad usage; 3 when
 * the server died (crash, SIGKILL), so a supervisor restarts the worker.
 * With --reconnect it waits instead for a server (at start too) and attaches
 * again whenever its server goes, stopping only on a signal. */
#define _GNU_SOURCE
#include "handler.h"

#include <dlfcn.h>
#include <errno.h>
#include <ferry/shm.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct opts {
    const char *name;    /* segment name (--name, FERRY_NAME, "kolosal") */
    const char *handler; /* shared library path, NULL for the built-in handler */
    const char *log;     /* log file, NULL for stderr */
    int reconnect;       /* wait for a (new) server instead of exiting (--reconnect) */
} opts_t;

/* How long a --reconnect worker sleeps between attach attempts. */
#define WORKER_RECONNECT_MS 200

/* Exit status when the server died under us (without --reconnect). */
#define WORKER_EXIT_SERVER_DIED 3

static FILE *log_fp;
static fshm_worker_t *volatile g_worker; /* for the signal handler */
static volatile sig_atomic_t g_signal;   /* the signal that asked us to stop */

static void logf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logf_(const char *fmt, ...)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    localtime_r(&ts.tv_sec, &tm);
    char when[32];
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
    fprintf(log_fp, "%s.%03ld worker[%d] ", when, ts.tv_nsec / 1000000, (int)getpid());
    va_list ap;
    va_start(ap, fmt);
    vfprintf(log_fp, fmt, ap);
    va_end(ap);
    fputc('\n', log_fp);
}

static void on_signal(int sig)
{
    g_signal = sig;
    fshm_worker_t *w = g_worker;
    if (w)
        fshm_worker_interrupt(w); /* async-signal-safe */
}

static void usage(FILE *to)
{
    fprintf(to,
            "usage: worker [--name NAME] [--handler LIB.so] [--log FILE] [--reconnect] [--help]\n"
            "  --name NAME      server segment to attach to (env FERRY_NAME, as for the\n"
            "                   server; default kolosal). FERRY_SHM_NAME is deprecated\n"
            "  --handler LIB.so run ferry_handle() from this library instead of the built-in\n"
            "                   handler ({\"message\":\"abc\"} -> {\"result\":\"cba\",\"worker\":PID})\n"
            "  --log FILE       append one line per event to FILE (default stderr)\n"
            "  --reconnect      wait for the server if there is none (every %d ms), and\n"
            "                   attach again when it stops or dies; stop only on a signal\n"
            "Stops on SIGTERM/SIGINT or when the server closes (exit 0). Exits 1 if it\n"
            "cannot start, 2 on bad usage, 3 if the server died (so that a supervisor\n"
            "restarts it); --reconnect waits for the next server instead.\n",
            WORKER_RECONNECT_MS);
}

/* The segment name from the environment: FERRY_NAME, the server's variable
 * for the same setting. FERRY_SHM_NAME, which the worker alone used to read,
 * is still honoured (with a warning) so existing deployments keep working. */
static const char *env_name(void)
{
    const char *name = getenv("FERRY_NAME");
    const char *old = getenv("FERRY_SHM_NAME");
    if (old && *old) {
        if (name && *name) {
            if (strcmp(name, old) != 0)
                fprintf(stderr, "worker: warning: FERRY_SHM_NAME=%s ignored: FERRY_NAME=%s is set "
                                "(FERRY_SHM_NAME is deprecated)\n", old, name);
        } else {
            fprintf(stderr, "worker: warning: FERRY_SHM_NAME is deprecated; use FERRY_NAME, "
                            "the server's variable for the same name\n");
            name = old;
        }
    }
    return name && *name ? name : "kolosal";
}

static int parse(int argc, char **argv, opts_t *o)
{
    static const struct option longopts[] = {
        {"name", required_argument, NULL, 'n'},
        {"handler", required_argument, NULL, 'H'},
        {"log", required_argument, NULL, 'l'},
        {"reconnect", no_argument, NULL, 'r'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    o->name = env_name();
    o->handler = NULL;
    o->log = NULL;
    o->reconnect = 0;
    int c;
    while ((c = getopt_long(argc, argv, "n:H:l:rh", longopts, NULL)) != -1) {
        switch (c) {
        case 'n': o->name = optarg; break;
        case 'H': o->handler = optarg; break;
        case 'l': o->log = optarg; break;
        case 'r': o->reconnect = 1; break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); return -EINVAL;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "worker: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return -EINVAL;
    }
    return 0;
}

static ferry_handle_fn load_handler(const char *path)
{
    if (!path)
        return ferry_default_handle;
    void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        logf_("error handler-load path=%s reason=\"%s\"", path, dlerror());
        return NULL;
    }
    ferry_handle_fn fn;
    /* POSIX allows this conversion for dlsym results. */
    *(void **)&fn = dlsym(lib, "ferry_handle");
    if (!fn) {
        logf_("error handler-symbol path=%s reason=\"no ferry_handle\"", path);
        dlclose(lib);
        return NULL;
    }
    return fn; /* stays loaded for the process's life */
}

/* Attach failures a --reconnect worker waits out: no server yet, the
 * segment of one that died and is not yet replaced, a full table. */
static int attach_transient(int rc)
{
    return rc == -ENOENT || rc == -ESHUTDOWN || rc == -ENOSPC;
}

/* Sleeps ms milliseconds unless a stop signal is (or comes) in. */
static void pause_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    if (!g_signal)
        nanosleep(&ts, NULL); /* a signal cuts it short (EINTR) */
}

/* Takes an entry in the server's worker table. With --reconnect a transient
 * failure is waited out. Returns 0, -EINTR (a signal came while waiting) or
 * the attach error (logged). */
static int attach(const opts_t *o, fshm_worker_t **w)
{
    int rc = fshm_worker_attach(w, o->name);
    if (rc < 0 && o->reconnect && attach_transient(rc)) {
        /* Wait for a server: one line when the wait starts, not one per try. */
        logf_("waiting for the server name=%s reason=\"%s: %s\" retry_ms=%d", o->name,
              fshm_strerror(rc), fshm_last_error(), WORKER_RECONNECT_MS);
        fflush(log_fp);
        while (rc < 0 && attach_transient(rc) && !g_signal) {
            pause_ms(WORKER_RECONNECT_MS);
            if (!g_signal)
                rc = fshm_worker_attach(w, o->name);
        }
        if (g_signal && rc == 0) {
            fshm_worker_detach(*w);
            *w = NULL;
        }
        if (g_signal)
            return -EINTR;
    }
    if (rc < 0) {
        logf_("error attach name=%s reason=\"%s: %s\"", o->name, fshm_strerror(rc),
              fshm_last_error());
        return rc;
    }
    logf_("attach name=%s index=%u payload_max=%u", o->name, fshm_worker_index(*w),
          fshm_worker_payload_max(*w));
    return 0;
}

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Runs the handler on one task and answers it. */
static void run_task(fshm_worker_t *w, ferry_handle_fn handle, char *out, size_t out_max,
                     uint64_t id, const void *req, size_t len)
{
    uint64_t t0 = now_us();
    size_t out_len = 0;
    int status = handle(req, len, out, out_max, &out_len);
    if (status > 0 || out_len > out_max) {
        /* A plugin broke its contract: fail the task, not the worker. */
        logf_("error handler-contract task=%llu status=%d out_len=%zu",
              (unsigned long long)id, status, out_len);
        status = -EIO;
        out_len = (size_t)snprintf(out, out_max, "{\"error\":\"handler broke its contract\"}");
        if (out_len > out_max)
            out_len = 0;
    }
    int rc = fshm_worker_reply(w, id, status, out, out_len);
    logf_("task id=%llu bytes_in=%zu bytes_out=%zu status=%d us=%llu%s%s",
          (unsigned long long)id, len, out_len, status, (unsigned long long)(now_us() - t0),
          rc < 0 ? " reply_error=" : "", rc < 0 ? fshm_strerror(rc) : "");
}

/* Why serve() returned. */
typedef enum {
    END_SIGNAL,   /* SIGTERM/SIGINT */
    END_CLOSED,   /* the server closed the segment */
    END_DIED,     /* the server died without closing it */
    END_REATTACH, /* declared dead (we were stalled): our entry is gone */
    END_ERROR,    /* anything else: logged */
} end_t;

/* Claims and answers tasks until the server goes or a signal comes. */
static end_t serve(fshm_worker_t *w, ferry_handle_fn handle, char *out, size_t out_max)
{
    while (!g_signal) {
        uint64_t id;
        const void *req;
        size_t len;
        int rc = fshm_worker_next(w, &id, &req, &len, 0);
        if (rc == -ETIME) {
            fflush(log_fp); /* about to sleep */
            rc = fshm_worker_next(w, &id, &req, &len, -1);
        }
        if (rc == 0) {
            run_task(w, handle, out, out_max, id, req, len);
            continue;
        }
        if (rc == -EINTR || rc == -ETIME)
            continue; /* the loop condition looks at the signal */
        if (rc == -EPROTO) {
            /* The server wrote an impossible request; that task was failed. */
            logf_("error task reason=\"bad request in segment\"");
            continue;
        }
        if (rc == -ESHUTDOWN) {
            if (fshm_worker_server_died(w)) {
                logf_("stop reason=server-died");
                return END_DIED;
            }
            logf_("stop reason=server-closed");
            return END_CLOSED;
        }
        if (rc == -ENOLINK) {
            logf_("reattach reason=entry-reclaimed");
            return END_REATTACH;
        }
        logf_("error next reason=\"%s\"", fshm_strerror(rc));
        return END_ERROR;
    }
    return END_SIGNAL;
}

/* Attaches and serves, again after a reclaimed entry and, with --reconnect,
 * whenever the server goes. Returns the exit status. */
static int run(const opts_t *o, ferry_handle_fn handle)
{
    for (;;) {
        fshm_worker_t *w;
        int rc = attach(o, &w);
        if (rc == -EINTR)
            return 0; /* a signal while waiting for a server */
        if (rc < 0)
            return 1;
        logf_("start handler=%s", o->handler ? o->handler : "builtin-reverse");
        /* Each server may have its own payload limit. */
        size_t out_max = fshm_worker_payload_max(w);
        char *out = malloc(out_max ? out_max : 1);
        if (!out) {
            logf_("error out-of-memory bytes=%zu", out_max);
            fshm_worker_detach(w);
            return 1;
        }
        g_worker = w;
        if (g_signal) /* came in before g_worker was set: nobody interrupted us */
            fshm_worker_interrupt(w);
        end_t end = serve(w, handle, out, out_max);
        g_worker = NULL;
        fshm_worker_detach(w);
        free(out);
        switch (end) {
        case END_SIGNAL: return 0;
        case END_ERROR: return 1;
        case END_REATTACH: continue;
        case END_CLOSED:
            if (!o->reconnect)
                return 0;
            continue;
        case END_DIED:
            if (!o->reconnect)
                return WORKER_EXIT_SERVER_DIED;
            continue;
        }
    }
}

int main(int argc, char **argv)
{
    opts_t o;
    log_fp = stderr;
    if (parse(argc, argv, &o) < 0)
        return 2;
    if (o.log) {
        FILE *f = fopen(o.log, "a");
        if (!f) {
            fprintf(stderr, "worker: cannot open log %s: %s\n", o.log, strerror(errno));
            return 1;
        }
        log_fp = f;
    }
    /* Full buffering: no write per task under load; flushed whenever the
     * worker is about to sleep, so the log is current when idle. */
    static char logbuf[1 << 16];
    setvbuf(log_fp, logbuf, _IOFBF, sizeof(logbuf));

    ferry_handle_fn handle = load_handler(o.handler);
    if (!handle) {
        fflush(log_fp);
        return 1;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    int exit_code = run(&o, handle);
    if (g_signal)
        logf_("stop reason=signal sig=%d", (int)g_signal);
    logf_("exit code=%d", exit_code);
    fflush(log_fp);
    if (log_fp != stderr)
        fclose(log_fp);
    return exit_code;
}
