/* GoLlama hub: the HTTP endpoints. Parsing and validation only; jobs go to
 * jobs.c, spokes to spokes.c. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ferry/net_json.h"
#include "hub.h"

/* Client endpoints need an API key unless -no-auth. */
static bool authed(hub_t *h, fnet_req_t *req) {
  if (h->cfg.no_auth || gl_keys_check(&h->keys, fnet_req_header(req, "Authorization"))) return true;
  hub_count_answer(h, 401, uv_now(h->loop));
  fnet_req_add_header(req, "WWW-Authenticate", "Bearer");
  fnet_req_respond_error(req, 401, "missing or unknown API key");
  return false;
}

static void bad(hub_t *h, fnet_req_t *req, int status, const char *msg) {
  hub_count_answer(h, status, uv_now(h->loop));
  fnet_req_respond_error(req, status, msg);
}

/* Optional X-Request-Timeout-Ms lowers the deadline (never raises it). */
static uint32_t req_timeout(hub_t *h, fnet_req_t *req) {
  const char *v = fnet_req_header(req, "X-Request-Timeout-Ms");
  if (!v) return h->cfg.deadline_ms;
  char *end;
  unsigned long t = strtoul(v, &end, 10);
  if (*end || !t || t > h->cfg.deadline_ms) return h->cfg.deadline_ms;
  return (uint32_t)t;
}

/* The body for the spoke's /execute: the llama.cpp request as it goes to
 * llama.cpp (the endpoint travels in a header, see jobs.c), so the spoke
 * relays it without parsing or re-encoding it. Takes body. */
static char *exec_body(json_t *body, size_t *len) {
  char *s = json_dumps(body, JSON_COMPACT);
  json_decref(body);
  *len = s ? strlen(s) : 0;
  return s;
}

/* A copy of the client's own body (already parsed and checked as JSON). */
static char *raw_copy(fnet_req_t *req, size_t *len) {
  const char *b = fnet_req_body(req, len);
  char *s = malloc(*len + 1);
  if (!s) return NULL;
  memcpy(s, b ? b : "", *len);
  s[*len] = 0;
  return s;
}

static void h_chat(fnet_req_t *req, void *arg) {
  hub_t *h = arg;
  h->http_requests[0]++;
  if (!authed(h, req)) return;
  json_t *v;
  char err[160];
  int rc = fnet_req_json(req, &v, err, sizeof(err));
  if (rc < 0) {
    bad(h, req, 400, rc == -ENODATA ? "empty body: want {\"message\": \"...\"}" : err);
    return;
  }
  json_t *m = json_object_get(v, "message");
  if (!json_is_string(m) || !json_string_length(m)) {
    json_decref(v);
    bad(h, req, 400, "\"message\" must be a non-empty string");
    return;
  }
  json_t *body = json_pack("{s:[{s:s,s:O}],s:i}", "messages", "role", "user", "content", m,
                           "max_tokens", (json_int_t)h->cfg.max_tokens);
  json_decref(v);
  size_t len;
  char *exec = body ? exec_body(body, &len) : NULL;
  if (!exec) {
    bad(h, req, 503, "out of memory");
    return;
  }
  hub_job_submit(h, req, HJOB_CHAT, false, exec, len, req_timeout(h, req));
}

static void h_completions(fnet_req_t *req, void *arg) {
  hub_t *h = arg;
  h->http_requests[1]++;
  if (!authed(h, req)) return;
  json_t *v;
  char err[160];
  int rc = fnet_req_json(req, &v, err, sizeof(err));
  if (rc < 0) {
    bad(h, req, 400, rc == -ENODATA ? "empty body" : err);
    return;
  }
  json_t *msgs = json_object_get(v, "messages");
  if (!json_is_object(v) || !json_is_array(msgs) || !json_array_size(msgs)) {
    json_decref(v);
    bad(h, req, 400, "\"messages\" must be a non-empty array");
    return;
  }
  json_t *st = json_object_get(v, "stream");
  if (st && !json_is_boolean(st)) {
    json_decref(v);
    bad(h, req, 400, "\"stream\" must be a boolean");
    return;
  }
  bool stream = json_is_true(st);
  json_decref(v);
  size_t len;
  char *exec = raw_copy(req, &len);
  if (!exec) {
    bad(h, req, 503, "out of memory");
    return;
  }
  hub_job_submit(h, req, HJOB_COMPLETIONS, stream, exec, len, req_timeout(h, req));
}

static void h_models(fnet_req_t *req, void *arg) {
  hub_t *h = arg;
  h->http_requests[2]++;
  if (!authed(h, req)) return;
  json_t *data = json_array();
  for (hub_spoke_t *s = h->spokes; s; s = s->next) {
    if (!s->model[0]) continue;
    bool dup = false;
    size_t i;
    json_t *e;
    json_array_foreach(data, i, e) dup |= !strcmp(json_string_value(json_object_get(e, "id")), s->model);
    if (!dup)
      json_array_append_new(data, json_pack("{s:s,s:s,s:i,s:s}", "id", s->model, "object", "model",
                                            "created", 0, "owned_by", "gollama"));
  }
  if (!json_array_size(data))
    json_array_append_new(data, json_pack("{s:s,s:s,s:i,s:s}", "id", "gollama", "object", "model",
                                          "created", 0, "owned_by", "gollama"));
  hub_count_answer(h, 200, uv_now(h->loop));
  fnet_req_respond_json(req, 200, json_pack("{s:s,s:o}", "object", "list", "data", data));
}

static bool loopback(const char *peer) {
  return !strcmp(peer, "127.0.0.1") || !strcmp(peer, "::1") || !strncmp(peer, "::ffff:127.", 11);
}

static void h_connect(fnet_req_t *req, void *arg) {
  hub_t *h = arg;
  h->http_requests[3]++;
  const char *sec = fnet_req_header(req, "X-Spoke-Secret");
  bool ok = h->cfg.secret[0] ? (sec && gl_secret_eq(sec, h->cfg.secret)) : loopback(fnet_req_peer(req));
  if (!ok) {
    h->spoke_refused++;
    if (h->cfg.log_level[0] != 'q')
      fprintf(stderr, "hub: refused a spoke registration from %s (bad secret)\n", fnet_req_peer(req));
    bad(h, req, 401, "spoke secret missing or wrong");
    return;
  }
  json_t *v;
  char err[160];
  if (fnet_req_json(req, &v, err, sizeof(err)) < 0) {
    bad(h, req, 400, "want {\"url\": \"http://host:port\", \"slots\": N}");
    return;
  }
  const char *url = json_string_value(json_object_get(v, "url"));
  json_t *sl = json_object_get(v, "slots");
  json_int_t slots = sl ? json_integer_value(sl) : 1;
  json_t *rd = json_object_get(v, "ready");
  bool ready = rd ? json_is_true(rd) : true;
  const char *model = json_string_value(json_object_get(v, "model"));
  /* llama.cpp slots busy with clients the hub does not see (talking to
   * llama.cpp directly): not offered to the hub's jobs */
  json_t *bo = json_object_get(v, "busy_other");
  json_int_t other = bo ? json_integer_value(bo) : 0;
  hub_spoke_t *s = NULL;
  int rc = (slots < 0 || slots > 4096 || (sl && !json_is_integer(sl)) || other < 0 || other > 4096 ||
            (bo && !json_is_integer(bo)))
               ? -EINVAL
               : hub_spoke_register(h, url, (uint32_t)slots, ready, model, &s);
  if (rc == 0) fdisp_worker_set_external(h->disp, s->wid, (uint32_t)other);
  json_decref(v);
  if (rc == -EINVAL) {
    bad(h, req, 400, "\"url\" must be http(s)://host:port without a trailing slash, \"slots\" and \"busy_other\" 0..4096");
    return;
  }
  if (rc < 0) {
    bad(h, req, 503, rc == -ENOSPC ? "too many spokes" : "out of memory");
    return;
  }
  hub_count_answer(h, 200, uv_now(h->loop));
  fnet_req_respond_json(req, 200, json_pack("{s:s,s:I}", "status", "ok", "id", (json_int_t)s->wid));
}

static void h_health(fnet_req_t *req, void *arg) {
  hub_t *h = arg;
  fdisp_stats_t st;
  fdisp_stats(h->disp, &st);
  fnet_req_respond_json(req, 200, json_pack("{s:s,s:i,s:i,s:i,s:i}", "status", "ok", "workers",
                                            (int)st.workers, "healthy", (int)st.workers_healthy,
                                            "queued", (int)st.queued, "running", (int)st.running));
}

static void iso_time(hub_t *h, uint64_t loop_ms, char *buf, size_t size) {
  if (!loop_ms) {
    snprintf(buf, size, "never");
    return;
  }
  time_t t = time(NULL) - (time_t)((uv_now(h->loop) - loop_ms) / 1000);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void h_stats(fnet_req_t *req, void *arg) {
  hub_t *h = arg;
  if (!authed(h, req)) return;
  fdisp_stats_t st;
  fdisp_stats(h->disp, &st);
  fdisp_worker_stats_t ws[256];
  size_t n = fdisp_worker_stats(h->disp, ws, 256);
  if (n > 256) n = 256;
  json_t *workers = json_array();
  for (size_t i = 0; i < n; i++) {
    hub_spoke_t *s = ws[i].wdata;
    char last[32];
    iso_time(h, ws[i].last_active_ms, last, sizeof(last));
    double avg = ws[i].completed ? (double)ws[i].total_ms / (double)ws[i].completed : 0;
    json_array_append_new(
        workers,
        json_pack("{s:I,s:s,s:I,s:I,s:f,s:I,s:s,s:b,s:s,s:i,s:i,s:i,s:i,s:i,s:I}", "id", (json_int_t)ws[i].id,
                  "url", s ? s->url : "", "jobs_completed", (json_int_t)ws[i].completed,
                  "jobs_failed", (json_int_t)ws[i].failed, "avg_response_ms", avg, "requests",
                  (json_int_t)ws[i].requests, "last_active", last, "healthy",
                  ws[i].state == FDISP_W_HEALTHY, "state", fdisp_wstate_name(ws[i].state),
                  "slots_busy", (int)ws[i].busy, "slots_total", (int)ws[i].capacity,
                  "slots_busy_other", (int)ws[i].external, "ejections",
                  (int)ws[i].ejections, "consecutive_failures", (int)ws[i].consecutive_faults,
                  "busy_refusals", (json_int_t)ws[i].busy_refusals));
  }
  json_t *gu = json_object();
  for (int r = FDISP_R_DEADLINE; r <= FDISP_R_SHUTDOWN; r++)
    json_object_set_new(gu, fdisp_reason_name(r), json_integer((json_int_t)st.gave_up[r]));
  json_t *out = json_pack(
      "{s:o,s:i,s:i,s:{s:i,s:i,s:i,s:I},s:{s:I,s:I,s:I,s:I,s:I,s:o,s:i},s:I,s:I}", "workers", workers,
      "total_workers", (int)st.workers, "healthy_workers", (int)st.workers_healthy, "queue", "length",
      (int)st.queued, "capacity", (int)h->cfg.queue_size, "peak", (int)st.queue_peak, "rejected",
      (json_int_t)st.rejected_full, "jobs", "submitted", (json_int_t)st.submitted, "completed",
      (json_int_t)st.completed, "retries", (json_int_t)st.retries, "requeued_busy",
      (json_int_t)st.requeued_busy, "cancelled",
      (json_int_t)st.cancelled, "gave_up", gu, "running", (int)st.running, "uptime_s",
      (json_int_t)((uv_now(h->loop) - h->started_ms) / 1000), "spokes_refused",
      (json_int_t)h->spoke_refused);
  fnet_req_respond_json(req, 200, out);
}

/* Prometheus text exposition format 0.0.4. */
static void h_metrics(fnet_req_t *req, void *arg) {
  hub_t *h = arg;
  if (!authed(h, req)) return;
  size_t cap = 16384, len = 0;
  char *b = malloc(cap);
  if (!b) {
    fnet_req_respond_error(req, 503, "out of memory");
    return;
  }
#define P(...)                                                                 \
  do {                                                                         \
    int n_ = snprintf(b + len, cap - len, __VA_ARGS__);                        \
    if (n_ > 0 && (size_t)n_ >= cap - len) {                                   \
      char *nb = realloc(b, cap * 2 + (size_t)n_);                             \
      if (!nb) break;                                                          \
      b = nb;                                                                  \
      cap = cap * 2 + (size_t)n_;                                              \
      n_ = snprintf(b + len, cap - len, __VA_ARGS__);                          \
    }                                                                          \
    if (n_ > 0) len += (size_t)n_;                                             \
  } while (0)
  fdisp_stats_t st;
  fdisp_stats(h->disp, &st);
  static const char *ep[4] = {"chat", "chat_completions", "models", "connect_worker"};
  P("# HELP gollama_http_requests_total Requests received, by endpoint.\n# TYPE gollama_http_requests_total counter\n");
  for (int i = 0; i < 4; i++) P("gollama_http_requests_total{endpoint=\"%s\"} %lu\n", ep[i], (unsigned long)h->http_requests[i]);
  static const char *cls[6] = {"2xx", "400", "401", "503", "504", "5xx_other"};
  P("# HELP gollama_responses_total Answers sent, by status class.\n# TYPE gollama_responses_total counter\n");
  for (int i = 0; i < 6; i++) P("gollama_responses_total{code=\"%s\"} %lu\n", cls[i], (unsigned long)h->answered[i]);
  static const char *le[12] = {"0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"};
  P("# HELP gollama_request_duration_seconds Time from request to answer.\n# TYPE gollama_request_duration_seconds histogram\n");
  uint64_t cum = 0;
  for (int i = 0; i < 12; i++) {
    cum += h->latency_buckets[i];
    P("gollama_request_duration_seconds_bucket{le=\"%s\"} %lu\n", le[i], (unsigned long)cum);
  }
  P("gollama_request_duration_seconds_sum %.6f\ngollama_request_duration_seconds_count %lu\n", h->latency_sum,
    (unsigned long)h->latency_count);
  P("# TYPE gollama_jobs_submitted_total counter\ngollama_jobs_submitted_total %lu\n", (unsigned long)st.submitted);
  P("# TYPE gollama_jobs_completed_total counter\ngollama_jobs_completed_total %lu\n", (unsigned long)st.completed);
  P("# TYPE gollama_job_retries_total counter\ngollama_job_retries_total %lu\n", (unsigned long)st.retries);
  P("# HELP gollama_jobs_requeued_busy_total Jobs a spoke refused for lack of a slot, put back at the head (no retry spent).\n"
    "# TYPE gollama_jobs_requeued_busy_total counter\ngollama_jobs_requeued_busy_total %lu\n", (unsigned long)st.requeued_busy);
  P("# TYPE gollama_jobs_cancelled_total counter\ngollama_jobs_cancelled_total %lu\n", (unsigned long)st.cancelled);
  P("# HELP gollama_jobs_gave_up_total Jobs that ended without success, by reason.\n# TYPE gollama_jobs_gave_up_total counter\n");
  for (int r = FDISP_R_DEADLINE; r <= FDISP_R_SHUTDOWN; r++)
    P("gollama_jobs_gave_up_total{reason=\"%s\"} %lu\n", fdisp_reason_name(r), (unsigned long)st.gave_up[r]);
  P("# TYPE gollama_queue_rejected_total counter\ngollama_queue_rejected_total %lu\n", (unsigned long)st.rejected_full);
  P("# TYPE gollama_queue_length gauge\ngollama_queue_length %u\n", st.queued);
  P("# TYPE gollama_queue_capacity gauge\ngollama_queue_capacity %u\n", h->cfg.queue_size);
  P("# TYPE gollama_jobs_running gauge\ngollama_jobs_running %u\n", st.running);
  P("# TYPE gollama_streams_total counter\ngollama_streams_total %lu\n", (unsigned long)h->streams);
  P("# TYPE gollama_clients_gone_total counter\ngollama_clients_gone_total %lu\n", (unsigned long)h->client_gone);
  P("# TYPE gollama_spokes_refused_total counter\ngollama_spokes_refused_total %lu\n", (unsigned long)h->spoke_refused);
  P("# TYPE gollama_workers gauge\ngollama_workers %u\n# TYPE gollama_workers_healthy gauge\ngollama_workers_healthy %u\n",
    st.workers, st.workers_healthy);
  fdisp_worker_stats_t ws[256];
  size_t n = fdisp_worker_stats(h->disp, ws, 256);
  if (n > 256) n = 256;
  static const char *wm[5] = {"gollama_worker_slots_busy", "gollama_worker_slots_total", "gollama_worker_jobs_completed_total",
                              "gollama_worker_jobs_failed_total", "gollama_worker_up"};
  static const char *wt[5] = {"gauge", "gauge", "counter", "counter", "gauge"};
  for (int m = 0; m < 5; m++) {
    P("# TYPE %s %s\n", wm[m], wt[m]);
    for (size_t i = 0; i < n; i++) {
      hub_spoke_t *s = ws[i].wdata;
      uint64_t v = m == 0 ? ws[i].busy : m == 1 ? ws[i].capacity : m == 2 ? ws[i].completed
                 : m == 3 ? ws[i].failed : ws[i].state == FDISP_W_HEALTHY;
      /* URLs were validated at registration: no quote, backslash or newline */
      P("%s{worker=\"%s\"} %lu\n", wm[m], s ? s->url : "?", (unsigned long)v);
    }
  }
#undef P
  fnet_req_respond(req, 200, "text/plain; version=0.0.4", b, len);
  free(b);
}

int hub_routes(hub_t *h) {
  struct {
    const char *m, *p;
    fnet_handler_fn fn;
  } r[] = {
      {"POST", "/chat", h_chat},
      {"POST", "/v1/chat/completions", h_completions},
      {"GET", "/v1/models", h_models},
      {"POST", "/connectWorker", h_connect},
      {"GET", "/health", h_health},
      {"GET", "/stats", h_stats},
      {"GET", "/metrics", h_metrics},
  };
  for (size_t i = 0; i < sizeof(r) / sizeof(r[0]); i++) {
    int rc = fnet_http_route(h->http, r[i].m, r[i].p, r[i].fn, h);
    if (rc < 0) return rc;
  }
  return 0;
}
