/* Kolosal server: the HTTP routes (/process, /health, /status) and the
 * per-response log line. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/net_json.h"
#include "kolosal.h"
#include "log.h"

void ksrv_on_log(const fnet_req_t *req, int status, size_t body_len, void *arg) {
  ksrv_t *s = arg;
  s->n.requests++;
  if (status >= 200 && status < 300)
    s->n.status_2xx++;
  else if (status >= 400 && status < 500)
    s->n.status_4xx++;
  else if (status >= 500)
    s->n.status_5xx++;
  uint64_t ms = uv_now(s->loop) - fnet_req_start_ms(req);
  ksrv_log("req %s %s %d %" PRIu64 "ms %zuB task=%" PRIu64 " peer=%s", fnet_req_method(req),
           fnet_req_path(req), status, ms, body_len, fnet_req_tag(req), fnet_req_peer(req));
}

/* With an API key configured: true if req carries it; otherwise answers 401
 * (before anything else is looked at) and returns false. */
static bool authorized(ksrv_t *s, fnet_req_t *req) {
  int rc = ksrv_auth_check(&s->cfg->auth, fnet_req_header(req, "Authorization"));
  if (rc == 0) return true;
  s->n.unauthorized++;
  if (rc == -ENOKEY) {
    fnet_req_add_header(req, "WWW-Authenticate", "Bearer realm=\"ferry\"");
    fnet_req_respond_error(req, 401, "missing API key: send Authorization: Bearer <key>");
  } else {
    fnet_req_add_header(req, "WWW-Authenticate", "Bearer realm=\"ferry\", error=\"invalid_token\"");
    fnet_req_respond_error(req, 401, "invalid API key");
  }
  return false;
}

/* POST /process: validate, then hand to a worker (answered by bridge.c). */
static void h_process(fnet_req_t *req, void *arg) {
  ksrv_t *s = arg;
  if (!authorized(s, req)) return;
  if (s->shutting_down) {
    fnet_req_respond_error(req, 503, "server shutting down");
    return;
  }
  size_t len;
  const char *body = fnet_req_body(req, &len);
  if (len == 0) {
    fnet_req_respond_error(req, 400, "empty body: expected a JSON object");
    return;
  }
  /* "\u0000" is valid JSON: accept it in strings (the worker does too). */
  json_error_t je;
  json_t *v = json_loadb(body, len, JSON_ALLOW_NUL, &je);
  if (!v) {
    char msg[224];
    snprintf(msg, sizeof(msg), "invalid JSON: line %d column %d: %s", je.line, je.column, je.text);
    fnet_req_respond_error(req, 400, msg);
    return;
  }
  bool obj = json_is_object(v);
  json_decref(v);
  if (!obj) {
    fnet_req_respond_error(req, 400, "body must be a JSON object");
    return;
  }
  ksrv_submit(s, req, body, len);
}

static void h_health(fnet_req_t *req, void *arg) {
  ksrv_t *s = arg;
  if (s->shutting_down) {
    fnet_req_respond_error(req, 503, "server shutting down");
    return;
  }
  fshm_stats_t st;
  fshm_server_stats(s->shm, &st);
  fnet_req_respond_json(req, 200,
                        json_pack("{s:s,s:i,s:I}", "status", "ok", "workers_live", (int)st.workers_live,
                                  "uptime_ms", (json_int_t)(uv_now(s->loop) - s->started_ms)));
}

static json_t *workers_json(ksrv_t *s) {
  json_t *arr = json_array();
  size_t max = s->cfg->max_workers;
  fshm_worker_info_t *w = calloc(max, sizeof(*w));
  if (!arr || !w) {
    free(w);
    return arr;
  }
  int n = fshm_server_workers(s->shm, w, max);
  for (int i = 0; i < n; i++)
    json_array_append_new(
        arr, json_pack("{s:i,s:i,s:s,s:I,s:I,s:I,s:I}", "pid", (int)w[i].pid, "index", (int)w[i].index,
                       "state", w[i].state, "tasks_done", (json_int_t)w[i].tasks_done, "tasks_failed",
                       (json_int_t)w[i].tasks_failed, "current_task", (json_int_t)w[i].current_task,
                       "heartbeat_age_ms", (json_int_t)w[i].heartbeat_age_ms));
  free(w);
  return arr;
}

static void h_status(fnet_req_t *req, void *arg) {
  ksrv_t *s = arg;
  if (!authorized(s, req)) return;
  fshm_stats_t st;
  fshm_server_stats(s->shm, &st);
  json_t *http = json_pack(
      "{s:i,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "connections", (int)fnet_http_server_connections(s->http),
      "pending", (json_int_t)s->pend.count, "responses", (json_int_t)s->n.requests, "status_2xx",
      (json_int_t)s->n.status_2xx, "status_4xx", (json_int_t)s->n.status_4xx, "status_5xx",
      (json_int_t)s->n.status_5xx, "timeouts_504", (json_int_t)s->n.timeouts, "queue_full_503",
      (json_int_t)s->n.queue_full, "client_gone", (json_int_t)s->n.client_gone, "unauthorized_401",
      (json_int_t)s->n.unauthorized);
  /* Task counters from the server's own books: they reconcile in every
   * snapshot (submitted = completed + failed + cancelled + in_flight).
   * slots_in_use is the ring's view: it also counts cancelled tasks a
   * worker still runs (their slots stay busy until it lets go). */
  json_t *o = json_pack("{s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:i,s:o,s:o}", "status",
                        s->shutting_down ? "shutting_down" : "ok", "name", s->cfg->name, "uptime_ms",
                        (json_int_t)(uv_now(s->loop) - s->started_ms), "queue_depth",
                        (json_int_t)st.queue_depth, "in_flight", (json_int_t)s->pend.count, "submitted",
                        (json_int_t)s->n.submitted, "completed", (json_int_t)s->n.completed, "failed",
                        (json_int_t)s->n.failed, "cancelled", (json_int_t)s->n.cancelled, "requeued",
                        (json_int_t)st.requeued, "slots_in_use",
                        (json_int_t)(st.in_flight + st.cancelled_held), "workers_live",
                        (int)st.workers_live, "http", http, "workers", workers_json(s));
  fnet_req_respond_json(req, 200, o);
}

int ksrv_routes(ksrv_t *s) {
  int rc;
  if ((rc = fnet_http_route(s->http, "POST", "/process", h_process, s)) < 0) return rc;
  if ((rc = fnet_http_route(s->http, "GET", "/health", h_health, s)) < 0) return rc;
  if ((rc = fnet_http_route(s->http, "GET", "/status", h_status, s)) < 0) return rc;
  fnet_http_set_logger(s->http, ksrv_on_log, s);
  return 0;
}
