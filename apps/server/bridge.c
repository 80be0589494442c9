/* Kolosal server: requests handed to workers through shm and answered when
 * their result arrives, their deadline passes, their client leaves, or the
 * server shuts down. Every path answers (or discards) the request once and
 * removes it from the pending table. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/net_json.h"
#include "kolosal.h"
#include "log.h"

static void on_abort(fnet_req_t *req, void *arg);

static void arm_deadline(ksrv_t *s) {
  if (!s->pend.head || uv_is_active((uv_handle_t *)&s->deadline_timer)) return;
  uint64_t now = uv_now(s->loop), due = s->pend.head->deadline_ms;
  uv_timer_start(&s->deadline_timer, ksrv_on_deadline, due > now ? due - now : 0, 0);
}

/* Takes p off the table and gives back its request. */
static fnet_req_t *take(ksrv_t *s, kpend_t *p) {
  fnet_req_t *req = p->req;
  kpend_remove(&s->pend, p);
  free(p);
  return req;
}

static bool workers_live(ksrv_t *s) {
  fshm_stats_t st;
  fshm_server_stats(s->shm, &st);
  return st.workers_live > 0;
}

int ksrv_submit(ksrv_t *s, fnet_req_t *req, const char *body, size_t len) {
  char msg[160];
  kpend_t *p = calloc(1, sizeof(*p));
  if (!p) return fnet_req_respond_error(req, 503, "out of memory");
  uint64_t id;
  int rc = fshm_server_submit(s->shm, body, len, &id);
  if (rc < 0) {
    free(p);
    if (rc == -EAGAIN) {
      /* Back-pressure: say so at once rather than queue without bound. */
      s->n.queue_full++;
      fnet_req_add_header(req, "Retry-After", "1");
      if (!workers_live(s))
        return fnet_req_respond_error(req, 503, "no worker attached: every ring slot holds a "
                                                "request waiting for one, retry later");
      return fnet_req_respond_error(req, 503, "queue full: every ring slot is busy, retry later");
    }
    if (rc == -EMSGSIZE) {
      snprintf(msg, sizeof(msg), "request body larger than the payload limit (%u bytes)", s->cfg->payload_max);
      return fnet_req_respond_error(req, 413, msg);
    }
    snprintf(msg, sizeof(msg), "cannot queue the request: %s", fshm_strerror(rc));
    return fnet_req_respond_error(req, 500, msg);
  }
  p->task_id = id;
  p->req = req;
  p->deadline_ms = uv_now(s->loop) + s->cfg->deadline_ms;
  if (kpend_add(&s->pend, p) < 0) {
    fshm_server_cancel(s->shm, id);
    free(p);
    return fnet_req_respond_error(req, 503, "out of memory");
  }
  s->n.submitted++;
  fnet_req_set_tag(req, id);
  fnet_req_on_abort(req, on_abort, s);
  arm_deadline(s);
  return 0;
}

/* The client went away: the worker's answer is no longer wanted. */
static void on_abort(fnet_req_t *req, void *arg) {
  ksrv_t *s = arg;
  uint64_t id = fnet_req_tag(req);
  kpend_t *p = kpend_find(&s->pend, id);
  if (!p) return;
  fshm_server_cancel(s->shm, id);
  s->n.cancelled++;
  s->n.client_gone++;
  ksrv_log("event client-gone task=%" PRIu64 " peer=%s", id, fnet_req_peer(req));
  fnet_req_respond(take(s, p), 499, "text/plain", "", 0);
}

/* A worker's error text: the "error" member of a JSON object, or the text. */
static void worker_error(char *buf, size_t size, const void *resp, size_t len) {
  json_t *v = len ? json_loadb(resp, len, JSON_ALLOW_NUL, NULL) : NULL;
  const char *e = v ? json_string_value(json_object_get(v, "error")) : NULL;
  if (e)
    snprintf(buf, size, "%s", e);
  else if (len)
    snprintf(buf, size, "%.*s", (int)(len < size ? len : size - 1), (const char *)resp);
  else
    snprintf(buf, size, "worker rejected the input");
  json_decref(v);
}

static void on_done(void *arg, uint64_t task_id, int status, const void *resp, size_t len) {
  ksrv_t *s = arg;
  kpend_t *p = kpend_find(&s->pend, task_id);
  if (!p) return; /* answered already (deadline, client gone) */
  fnet_req_t *req = take(s, p);
  char msg[320];
  if (status == 0) {
    /* Never pass on a 200 whose body is not JSON ("\u0000" in it is JSON). */
    json_t *v = json_loadb(resp, len, JSON_ALLOW_NUL, NULL);
    bool ok = v != NULL;
    json_decref(v);
    if (ok) {
      s->n.completed++;
      fnet_req_respond(req, 200, "application/json", resp, len);
    } else {
      s->n.failed++;
      fnet_req_respond_error(req, 502, "worker returned a result that is not JSON");
    }
    return;
  }
  s->n.failed++;
  switch (status) {
  case -EINVAL:
    worker_error(msg, sizeof(msg), resp, len);
    fnet_req_respond_error(req, 422, msg);
    break;
  case -EOWNERDEAD:
    snprintf(msg, sizeof(msg), "worker died while processing the request (%u attempts); not retried",
             s->cfg->max_attempts);
    fnet_req_respond_error(req, 502, msg);
    break;
  case -ESHUTDOWN:
    fnet_req_respond_error(req, 503, "server shutting down");
    break;
  case -EMSGSIZE:
    /* The reply room covers an envelope, not a handler that inflates. */
    snprintf(msg, sizeof(msg), "worker result larger than the reply limit (%u bytes)",
             s->cfg->payload_max + KSRV_REPLY_RESERVE);
    fnet_req_respond_error(req, 502, msg);
    break;
  default:
    snprintf(msg, sizeof(msg), "worker failed: %s", fshm_strerror(status));
    fnet_req_respond_error(req, 502, msg);
    break;
  }
}

void ksrv_on_shm_event(uv_poll_t *h, int status, int events) {
  ksrv_t *s = h->data;
  if (status < 0) {
    ksrv_log("event shm-poll-error %s", uv_strerror(status));
    return;
  }
  fshm_server_poll(s->shm, on_done, s);
}

void ksrv_on_deadline(uv_timer_t *t) {
  ksrv_t *s = t->data;
  uint64_t now = uv_now(s->loop);
  char msg[96];
  bool none = s->pend.head && s->pend.head->deadline_ms <= now && !workers_live(s);
  while (s->pend.head && s->pend.head->deadline_ms <= now) {
    kpend_t *p = s->pend.head;
    fshm_server_cancel(s->shm, p->task_id);
    s->n.cancelled++;
    s->n.timeouts++;
    snprintf(msg, sizeof(msg), "no worker answered within %u ms%s", s->cfg->deadline_ms,
             none ? " (no worker attached)" : "");
    fnet_req_respond_error(take(s, p), 504, msg);
  }
  arm_deadline(s);
}

void ksrv_on_check(uv_timer_t *t) {
  ksrv_t *s = t->data;
  int n = fshm_server_check_workers(s->shm);
  if (n > 0) ksrv_log("event workers-reaped count=%d", n);
  fshm_stats_t st;
  fshm_server_stats(s->shm, &st);
  if (st.workers_live != s->workers_seen) {
    ksrv_log("event workers-live count=%u", st.workers_live);
    s->workers_seen = st.workers_live;
  }
  /* A reaped worker's failed tasks are delivered by the next poll. */
  if (n > 0) fshm_server_poll(s->shm, on_done, s);
}

/* ---- shutdown ---------------------------------------------------------- */

static void on_closed(uv_handle_t *h) { (void)h; }

static void stop_all(ksrv_t *s) {
  if (s->stopped) return;
  s->stopped = true;
  fnet_http_server_close(s->http, NULL, NULL);
  s->http = NULL;
  uv_poll_stop(&s->shm_poll);
  uv_close((uv_handle_t *)&s->shm_poll, on_closed);
  uv_close((uv_handle_t *)&s->deadline_timer, on_closed);
  uv_close((uv_handle_t *)&s->check_timer, on_closed);
  uv_close((uv_handle_t *)&s->flush_timer, on_closed);
  uv_close((uv_handle_t *)&s->grace_timer, on_closed);
  uv_close((uv_handle_t *)&s->sigint, on_closed);
  uv_close((uv_handle_t *)&s->sigterm, on_closed);
}

static void on_drained(fnet_http_server_t *srv, void *arg) {
  ksrv_t *s = arg;
  ksrv_log("event shutdown-drained pending=%zu", s->pend.count);
  stop_all(s);
}

/* Grace over: answer whatever is still waiting, then give connections a
 * bounded time to flush before closing them hard. */
static void on_grace(uv_timer_t *t) {
  ksrv_t *s = t->data;
  if (s->grace_over) {
    ksrv_log("event shutdown-forced connections=%u", fnet_http_server_connections(s->http));
    stop_all(s);
    return;
  }
  s->grace_over = true;
  ksrv_log("event shutdown-grace-over pending=%zu", s->pend.count);
  while (s->pend.head) {
    kpend_t *p = s->pend.head;
    fshm_server_cancel(s->shm, p->task_id);
    s->n.cancelled++;
    fnet_req_respond_error(take(s, p), 503, "server shutting down");
  }
  uv_timer_start(&s->grace_timer, on_grace, 2000, 0);
}

void ksrv_on_signal(uv_signal_t *h, int signum) {
  ksrv_t *s = h->data;
  if (s->shutting_down) {
    ksrv_log("event signal=%d again: stopping now", signum);
    stop_all(s);
    return;
  }
  s->shutting_down = true;
  ksrv_log("event shutdown signal=%d pending=%zu", signum, s->pend.count);
  uv_timer_start(&s->grace_timer, on_grace, s->cfg->shutdown_ms, 0);
  fnet_http_server_shutdown(s->http, on_drained, s);
}
