/* Kolosal server: the HTTP front end bridged to shm workers. */
#ifndef KSRV_KOLOSAL_H
#define KSRV_KOLOSAL_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "ferry/net.h"
#include "ferry/shm.h"
#include "pending.h"

/* Counters shown by GET /status. The task counters are kept here, where
 * every request enters and leaves the pending table exactly once, so that
 * submitted == completed + failed + cancelled + pending holds in every
 * snapshot (the shm layer's own counts include slots still held by
 * cancelled tasks). */
typedef struct ksrv_counters {
  uint64_t submitted;      /* requests handed to the shm ring and awaited */
  uint64_t completed;      /* answered 200 with a worker's result */
  uint64_t failed;         /* answered with an error from the worker path (422, 502, 503) */
  uint64_t cancelled;      /* given up by the server: 504, client gone, shutdown grace over */
  uint64_t requests;       /* responses sent (all routes, all statuses) */
  uint64_t status_2xx;     /* successful */
  uint64_t status_4xx;     /* client errors (400, 413, 422, ...) */
  uint64_t status_5xx;     /* server errors (502, 503, 504, ...) */
  uint64_t timeouts;       /* 504: no answer within the deadline */
  uint64_t queue_full;     /* 503: ring full */
  uint64_t client_gone;    /* client left before its answer */
  uint64_t unauthorized;   /* 401: API key missing or wrong */
} ksrv_counters_t;

typedef struct ksrv {
  uv_loop_t *loop;               /* the loop */
  const ksrv_config_t *cfg;      /* configuration */
  fnet_http_server_t *http;      /* HTTP server */
  fshm_server_t *shm;            /* shm segment (server side) */
  uv_poll_t shm_poll;            /* readable: completions pending */
  uv_timer_t deadline_timer;     /* earliest request deadline */
  uv_timer_t check_timer;        /* dead-worker check, every heartbeat */
  uv_timer_t flush_timer;        /* log flush */
  uv_timer_t grace_timer;        /* shutdown grace, then backstop */
  uv_signal_t sigint, sigterm;   /* shutdown requests */
  kpend_table_t pend;            /* requests waiting for a worker */
  ksrv_counters_t n;             /* counters */
  uint64_t started_ms;           /* uv_now() at start */
  uint32_t workers_seen;         /* workers_live at the last check (to log changes) */
  bool shutting_down;            /* a signal arrived */
  bool grace_over;               /* in-flight requests were answered 503 */
  bool stopped;                  /* handles closed; loop is ending */
} ksrv_t;

/* Listens, opens the segment, routes, timers, signals. On failure prints a
 * clear reason to stderr, leaves nothing open and returns -errno. */
int ksrv_start(ksrv_t *s, uv_loop_t *loop, const ksrv_config_t *cfg);
/* After uv_run returned: closes the segment. */
void ksrv_cleanup(ksrv_t *s);

/* handlers.c */
int ksrv_routes(ksrv_t *s);
void ksrv_on_log(const fnet_req_t *req, int status, size_t body_len, void *arg);

/* bridge.c: shm completions, deadlines, aborts, shutdown */
int ksrv_submit(ksrv_t *s, fnet_req_t *req, const char *body, size_t len);
void ksrv_on_shm_event(uv_poll_t *h, int status, int events);
void ksrv_on_deadline(uv_timer_t *t);
void ksrv_on_check(uv_timer_t *t);
void ksrv_on_signal(uv_signal_t *h, int signum);

#endif
