/* GoLlama spoke (build/spoke): sits in front of one llama.cpp server and
 * runs the hub's jobs on it.
 *
 *   POST /execute  {"endpoint": "/v1/chat/completions", "body": {...}}, or
 *                  the body alone with the endpoint in the path
 *                  (POST /execute/v1/chat/completions, or
 *                  /execute/stream/v1/chat/completions for a stream: what
 *                  the hub sends) or in X-Execute-Endpoint, proxied to
 *                  llama.cpp; "stream": true is relayed chunk by
 *                  chunk; at most as many at once as llama.cpp has slots
 *                  (beyond that: 503 at once, the hub tries elsewhere).
 *   GET  /health   llama.cpp's own /health, plus slot counts.
 *   GET  /connect  registers with the hub now.
 *
 * It registers with the hub on start and again every -register-ms, so a
 * restarted hub learns it back within one period. Slot counts come from
 * llama.cpp's /slots, polled every -slots-ms: the slots busy beyond our own
 * requests ("busy_other", clients talking to llama.cpp directly; slots.c
 * says which are ours) are sent to the hub at once when they change, so it
 * routes by real free capacity. Our own requests never need a poll: the hub
 * counts them itself and frees their slot the moment they end. While others
 * hold slots, the spoke polls every -busy-poll-ms, so their slots come back
 * to the hub soon after they free.
 * The hub authenticates to it with the shared secret. */
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/net.h"
#include "ferry/net_client.h"
#include "ferry/net_json.h"
#include "gollama.h"
#include "slots.h"

typedef struct spoke_config {
  uint32_t port;              /* -port, 9001 */
  uint32_t llama_port;        /* -llama-port, 8080 */
  char llama_url[256];        /* -llama-url (default http://127.0.0.1:<llama-port>) */
  char hub_url[256];          /* -hub-url, GOLLAMA_HUB_URL (http://127.0.0.1:9000) */
  char advertise[256];        /* URL the hub calls us at (http://127.0.0.1:<port>) */
  char host[64];              /* bind address */
  char secret[GL_KEY_MAX];    /* shared secret */
  char secret_file[512];      /* or from this file */
  uint32_t register_ms;       /* re-registration period */
  uint32_t slots_ms;          /* llama.cpp /slots poll period */
  uint32_t busy_poll_ms;      /* its period while others hold slots */
  uint32_t slow_polls;        /* /slots timeouts in a row before llama.cpp counts as not ready */
  uint32_t timeout_ms;        /* one job at most */
  uint32_t default_slots;     /* if llama.cpp's /slots is disabled */
  uint32_t max_body;          /* request body limit */
  char log_level[8];          /* info | quiet */
} spoke_config_t;

typedef struct spoke {
  uv_loop_t *loop;            /* the loop */
  spoke_config_t cfg;         /* configuration */
  fnet_http_server_t *http;   /* the hub-facing server */
  fnet_client_t *client;      /* requests to llama.cpp and the hub */
  uv_timer_t reg_timer;       /* re-registration */
  uv_timer_t slots_timer;     /* /slots poll */
  uv_signal_t sigint, sigterm;/* stop */
  fnet_creq_t *reg_req;       /* registration in flight */
  fnet_creq_t *slots_req;     /* /slots poll in flight */
  fnet_creq_t *model_req;     /* /v1/models in flight */
  fnet_req_t *connect_waiters[16]; /* GET /connect answered when the registration ends */
  int nwaiters;               /* their count */
  uint32_t slots_total;       /* llama.cpp slots (0 = unknown) */
  uint32_t slots_busy;        /* llama.cpp slots processing (last poll) */
  spoke_slots_t sl;           /* our requests in flight; slots busy with others' (busy_other) */
  bool llama_ok;              /* last poll reached llama.cpp */
  int last_reg;               /* last registration outcome (status or -errno), for logging changes */
  char model[128];            /* llama.cpp model id */
  bool stopping;              /* shutting down */
} spoke_t;

/* One /execute in progress. */
typedef struct sjob {
  spoke_t *sp;                /* owner */
  fnet_req_t *req;            /* the hub's request, NULL once answered */
  fnet_creq_t *up;            /* request to llama.cpp */
  bool stream;                /* relay as a stream */
  bool streaming;             /* our stream to the hub began */
  int status;                 /* llama.cpp's status */
  char *ebuf;                 /* error body of a stream request */
  size_t elen;                /* its length */
} sjob_t;

static void info(spoke_t *s, const char *fmt, const char *a, int b) {
  if (s->cfg.log_level[0] != 'i') return;
  fprintf(stderr, "spoke: ");
  fprintf(stderr, fmt, a, b);
  fputc('\n', stderr);
}

/* ---- registration with the hub -------------------------------------------- */

static void answer_waiters(spoke_t *s, int status, const char *msg) {
  for (int i = 0; i < s->nwaiters; i++) {
    if (status == 200)
      fnet_req_respond_json(s->connect_waiters[i], 200, json_pack("{s:s,s:s}", "status", "ok", "hub", s->cfg.hub_url));
    else
      fnet_req_respond_error(s->connect_waiters[i], status, msg);
  }
  s->nwaiters = 0;
}

static void on_registered(fnet_creq_t *r, int result, int status, const char *body, size_t len,
                          void *arg) {
  spoke_t *s = arg;
  s->reg_req = NULL;
  int outcome = result < 0 ? result : status;
  if (outcome != s->last_reg) {
    if (result < 0)
      info(s, "hub %s unreachable (%d); will retry", s->cfg.hub_url, result);
    else if (status == 200)
      info(s, "registered with hub %s (%d slots)", s->cfg.hub_url, (int)s->slots_total);
    else if (status == 401)
      info(s, "hub %s refused us: wrong or missing shared secret (%d)", s->cfg.hub_url, status);
    else
      info(s, "hub %s answered %d to our registration", s->cfg.hub_url, status);
    s->last_reg = outcome;
  }
  if (result < 0)
    answer_waiters(s, 502, "hub unreachable");
  else if (status == 200)
    answer_waiters(s, 200, NULL);
  else
    answer_waiters(s, status == 401 ? 401 : 502, status == 401 ? "hub refused the shared secret" : "hub refused");
}

static void do_register(spoke_t *s) {
  if (s->reg_req || s->stopping) return;
  bool ready = s->llama_ok && s->slots_total > 0;
  json_t *b = json_pack("{s:s,s:i,s:b,s:s,s:i}", "url", s->cfg.advertise, "slots",
                        (int)(s->slots_total ? s->slots_total : s->cfg.default_slots), "ready", ready,
                        "model", s->model, "busy_other", (int)s->sl.busy_other);
  char *body = b ? json_dumps(b, JSON_COMPACT) : NULL;
  json_decref(b);
  if (!body) return;
  char url[300], sec[GL_KEY_MAX + 32];
  snprintf(url, sizeof(url), "%s/connectWorker", s->cfg.hub_url);
  snprintf(sec, sizeof(sec), "X-Spoke-Secret: %s", s->cfg.secret);
  const char *hdrs[] = {"Content-Type: application/json", s->cfg.secret[0] ? sec : NULL, NULL};
  fnet_creq_opts_t o = {.method = "POST", .url = url, .headers = hdrs, .body = body,
                        .body_len = strlen(body), .timeout_ms = 3000, .max_body = 64 * 1024,
                        .on_done = on_registered, .arg = s};
  if (fnet_client_request(s->client, &o, &s->reg_req) < 0) s->reg_req = NULL;
  free(body);
}

static void on_reg_timer(uv_timer_t *t) { do_register(t->data); }

/* ---- llama.cpp slots --------------------------------------------------------- */

static void on_model(fnet_creq_t *r, int result, int status, const char *body, size_t len, void *arg) {
  spoke_t *s = arg;
  s->model_req = NULL;
  if (result < 0 || status != 200) return;
  json_t *v = json_loadb(body, len, 0, NULL);
  const char *id = json_string_value(json_object_get(json_array_get(json_object_get(v, "data"), 0), "id"));
  if (id) snprintf(s->model, sizeof(s->model), "%s", id);
  json_decref(v);
}

static void on_slots_timer(uv_timer_t *t);

static void on_slots(fnet_creq_t *r, int result, int status, const char *body, size_t len, void *arg) {
  spoke_t *s = arg;
  s->slots_req = NULL;
  bool was_ok = s->llama_ok && s->slots_total;
  uint32_t was_total = s->slots_total;
  uint32_t was_other = s->sl.busy_other;
  bool learnt = false;
  if (result == -ETIMEDOUT && spoke_slots_poll_timed_out(&s->sl, s->cfg.slow_polls)) {
    /* slow, not gone: llama.cpp answers /slots between two decode steps, so a
     * loaded machine delays it. Keep the last view (ready, busy_other) rather
     * than withdraw the spoke from the hub; only -slow-polls timeouts
     * in a row (or a refusal, a reset, a 5xx) make llama.cpp not ready. */
  } else {
    s->llama_ok = result == 0 && status == 200;
    if (s->llama_ok) {
      json_t *v = json_loadb(body, len, 0, NULL);
      if (json_is_array(v) && json_array_size(v) > 0 && json_array_size(v) <= 4096) {
        size_t i;
        json_t *e;
        uint32_t busy = 0;
        json_array_foreach(v, i, e) busy += json_is_true(json_object_get(e, "is_processing"));
        s->slots_total = (uint32_t)json_array_size(v);
        s->slots_busy = busy;
        /* busy beyond the requests that were ours during the snapshot:
         * clients talking to llama.cpp directly */
        spoke_slots_poll_result(&s->sl, busy);
        learnt = true;
      } else {
        s->slots_total = s->cfg.default_slots;
        s->sl.busy_other = 0;
      }
      json_decref(v);
    } else if (result == 0 && (status == 404 || status == 501)) {
      /* /slots disabled (--no-slots): llama.cpp answers, use the configured count */
      s->llama_ok = true;
      s->slots_total = s->cfg.default_slots;
      s->sl.busy_other = 0;
    }
    if (!learnt && result != -ETIMEDOUT) spoke_slots_poll_failed(&s->sl);
  }
  if (s->llama_ok && !s->model[0] && !s->model_req) {
    char url[300];
    snprintf(url, sizeof(url), "%s/v1/models", s->cfg.llama_url);
    fnet_creq_opts_t o = {.url = url, .timeout_ms = 2000, .on_done = on_model, .arg = s};
    if (fnet_client_request(s->client, &o, &s->model_req) < 0) s->model_req = NULL;
  }
  bool ok = s->llama_ok && s->slots_total;
  if (ok != was_ok || s->slots_total != was_total) {
    info(s, ok ? "llama.cpp at %s ready, %d slots" : "llama.cpp at %s not ready (%d)", s->cfg.llama_url,
         ok ? (int)s->slots_total : result < 0 ? result : status);
    do_register(s);  /* tell the hub at once */
  } else if (s->sl.busy_other != was_other) {
    info(s, "llama.cpp at %s: %d slots busy with other clients", s->cfg.llama_url, (int)s->sl.busy_other);
    do_register(s);  /* the free capacity changed: tell the hub at once (a small POST) */
  }
  /* the next poll: soon while others hold slots (their end frees capacity) */
  if (!s->stopping)
    uv_timer_start(&s->slots_timer, on_slots_timer, s->sl.busy_other ? s->cfg.busy_poll_ms : s->cfg.slots_ms, 0);
}

static void on_slots_timer(uv_timer_t *t) {
  spoke_t *s = t->data;
  if (s->slots_req) return;
  char url[300];
  snprintf(url, sizeof(url), "%s/slots", s->cfg.llama_url);
  fnet_creq_opts_t o = {.url = url, .timeout_ms = s->cfg.slots_ms > 500 ? s->cfg.slots_ms : 500,
                        .max_body = 4u << 20, .on_done = on_slots, .arg = s};
  if (fnet_client_request(s->client, &o, &s->slots_req) < 0) {
    s->slots_req = NULL;
    uv_timer_start(&s->slots_timer, on_slots_timer, s->cfg.slots_ms, 0);   /* try again later */
    return;
  }
  spoke_slots_poll_sent(&s->sl);
}

/* ---- the hub's requests ------------------------------------------------------ */

static bool hub_authed(spoke_t *s, fnet_req_t *req) {
  const char *sec = fnet_req_header(req, "X-Spoke-Secret");
  if (s->cfg.secret[0] ? (sec && gl_secret_eq(sec, s->cfg.secret))
                       : (!strcmp(fnet_req_peer(req), "127.0.0.1") || !strcmp(fnet_req_peer(req), "::1")))
    return true;
  fnet_req_respond_error(req, 401, "shared secret missing or wrong");
  return false;
}

/* aborted: we cut the llama.cpp request before its end (its slot drains) */
static void sjob_end(sjob_t *j, bool aborted) {
  spoke_slots_end(&j->sp->sl, aborted);
  free(j->ebuf);
  free(j);
}

static int on_up_head(fnet_creq_t *up, int status, void *arg) {
  ((sjob_t *)arg)->status = status;
  return 0;
}

static int on_up_data(fnet_creq_t *up, const char *data, size_t len, void *arg) {
  sjob_t *j = arg;
  if (j->status != 200) {
    if (j->elen + len > 65536) return 0;
    char *b = realloc(j->ebuf, j->elen + len + 1);
    if (!b) return 0;
    memcpy(b + j->elen, data, len);
    j->ebuf = b;
    j->elen += len;
    b[j->elen] = 0;
    return 0;
  }
  if (!j->req) return 1;
  if (!j->streaming) {
    const char *ct = fnet_creq_content_type(up);
    if (fnet_req_stream_begin(j->req, 200, ct ? ct : "text/event-stream") < 0) return 1;
    j->streaming = true;
  }
  return fnet_req_stream_write(j->req, data, len) < 0 ? 1 : 0;
}

static void on_up_done(fnet_creq_t *up, int result, int status, const char *body, size_t len,
                       void *arg) {
  sjob_t *j = arg;
  j->up = NULL;
  fnet_req_t *req = j->req;
  j->req = NULL;
  if (!req) {
    sjob_end(j, result < 0);
    return;
  }
  if (j->streaming) {
    if (result < 0) {
      /* cut mid-stream: say so in the stream itself */
      static const char ev[] = "data: {\"error\":{\"message\":\"llama.cpp stream broke\",\"code\":502}}\n\n";
      fnet_req_stream_write(req, ev, sizeof(ev) - 1);
    }
    fnet_req_stream_end(req);
  } else if (result < 0) {
    char m[400];
    snprintf(m, sizeof(m), "llama.cpp at %s: %s", j->sp->cfg.llama_url,
             result == -ETIMEDOUT ? "timed out" : strerror(-result));
    fnet_req_respond_error(req, result == -ETIMEDOUT ? 504 : 502, m);
  } else if (j->stream) {
    fnet_req_respond(req, status, fnet_creq_content_type(up) ? fnet_creq_content_type(up) : "application/json",
                     j->ebuf ? j->ebuf : "", j->elen);
  } else {
    const char *ct = fnet_creq_content_type(up);
    fnet_req_respond(req, status, ct ? ct : "application/json", body, len);
  }
  sjob_end(j, result < 0);   /* a cut transfer may hold its slot a little longer */
}

static void on_hub_gone(fnet_req_t *req, void *arg) {
  sjob_t *j = arg;
  bool cut = j->up != NULL;
  if (j->up) {
    fnet_creq_abort(j->up);   /* closes the connection: llama.cpp frees the slot */
    j->up = NULL;
  }
  j->req = NULL;
  if (j->streaming)
    fnet_req_stream_end(req);
  else
    fnet_req_respond_error(req, 503, "gone");
  sjob_end(j, cut);
}

static const char *const allowed[] = {"/v1/chat/completions", "/v1/completions", "/completion",
                                     "/v1/embeddings", NULL};

static bool endpoint_ok(const char *e) {
  for (int i = 0; allowed[i]; i++)
    if (!strcmp(e, allowed[i])) return true;
  return false;
}

/* Starts the llama.cpp request for the hub's /execute (body given). */
static void execute(spoke_t *s, fnet_req_t *req, const char *ep, const char *b, size_t blen,
                    bool stream) {
  uint32_t slots = s->slots_total ? s->slots_total : s->cfg.default_slots;
  if (!s->llama_ok || (uint64_t)s->sl.inflight + s->sl.busy_other >= slots) {
    fnet_req_add_header(req, "Retry-After", "1");
    if (s->llama_ok)   /* "busy": the hub puts the job back at the head of its line, no retry spent */
      fnet_req_respond_json(req, 503, json_pack("{s:s,s:i,s:b}", "error", "no free slot", "status", 503, "busy", 1));
    else
      fnet_req_respond_error(req, 503, "llama.cpp not ready");
    return;
  }
  char url[300];
  snprintf(url, sizeof(url), "%s%s", s->cfg.llama_url, ep);
  sjob_t *j = calloc(1, sizeof(*j));
  if (!j) {
    fnet_req_respond_error(req, 503, "out of memory");
    return;
  }
  j->sp = s;
  j->req = req;
  j->stream = stream;
  const char *hdrs[] = {"Content-Type: application/json", NULL};
  fnet_creq_opts_t o = {.method = "POST", .url = url, .headers = hdrs, .body = b, .body_len = blen,
                        .timeout_ms = s->cfg.timeout_ms, .connect_timeout_ms = 2000,
                        .max_body = 16u << 20, .on_head = on_up_head,
                        .on_data = stream ? on_up_data : NULL, .on_done = on_up_done, .arg = j};
  if (fnet_client_request(s->client, &o, &j->up) < 0) {
    free(j);
    fnet_req_respond_error(req, 502, "cannot reach llama.cpp");
    return;
  }
  spoke_slots_start(&s->sl);
  fnet_req_on_abort(req, on_hub_gone, j);
}

/* POST /execute, three forms:
 *  - the hub's: POST /execute<endpoint> or /execute/stream<endpoint> (no
 *    extra headers and no query string: libcurl formats each of those on
 *    every request), the body is llama.cpp's request, relayed as it came
 *    (llama.cpp checks it; nothing is parsed or re-encoded here);
 *  - the same with headers X-Execute-Endpoint and X-Execute-Stream: 1
 *    (the hub of the previous release);
 *  - the spec's envelope {"endpoint": "...", "body": {...}}. */
static void h_execute(fnet_req_t *req, void *arg) {
  spoke_t *s = arg;
  if (!hub_authed(s, req)) return;
  const char *path = fnet_req_path(req);
  const char *hep = NULL, *st = NULL;
  if (!strncmp(path, "/execute/stream/", 16)) {
    hep = path + 15;   /* routed: an allowed endpoint */
    st = "1";
  } else if (!strncmp(path, "/execute/", 9)) {
    hep = path + 8;
  } else if ((hep = fnet_req_header(req, "X-Execute-Endpoint"))) {
    st = fnet_req_header(req, "X-Execute-Stream");
  }
  if (hep) {
    if (!endpoint_ok(hep)) {
      fnet_req_respond_error(req, 400, "the endpoint must be a llama.cpp completion endpoint");
      return;
    }
    size_t blen;
    const char *b = fnet_req_body(req, &blen);
    if (!b || !blen) {
      fnet_req_respond_error(req, 400, "empty body");
      return;
    }
    execute(s, req, hep, b, blen, st && !strcmp(st, "1"));
    return;
  }
  json_t *v;
  char err[160];
  if (fnet_req_json(req, &v, err, sizeof(err)) < 0) {
    fnet_req_respond_error(req, 400, "want {\"endpoint\": \"/v1/chat/completions\", \"body\": {...}}");
    return;
  }
  const char *ep = json_string_value(json_object_get(v, "endpoint"));
  json_t *body = json_object_get(v, "body");
  if (!ep || !endpoint_ok(ep) || !json_is_object(body)) {
    json_decref(v);
    fnet_req_respond_error(req, 400, "\"endpoint\" must be a llama.cpp completion endpoint and \"body\" an object");
    return;
  }
  char *b = json_dumps(body, JSON_COMPACT);
  bool stream = json_is_true(json_object_get(body, "stream"));
  if (!b) {
    json_decref(v);
    fnet_req_respond_error(req, 503, "out of memory");
    return;
  }
  execute(s, req, ep, b, strlen(b), stream);   /* the client copies the body */
  json_decref(v);
  free(b);
}

/* /health: llama.cpp's own /health, asked now. */
typedef struct hcheck {
  spoke_t *sp;                /* owner */
  fnet_req_t *req;            /* the caller, NULL if gone */
  struct hcheck *prev, *next; /* spoke's list (freed at stop) */
} hcheck_t;

static hcheck_t *hchecks;     /* checks in flight */

static void hc_free(hcheck_t *c) {
  if (c->prev)
    c->prev->next = c->next;
  else
    hchecks = c->next;
  if (c->next) c->next->prev = c->prev;
  free(c);
}

static void on_hc_gone(fnet_req_t *req, void *arg) { ((hcheck_t *)arg)->req = NULL; fnet_req_respond(req, 503, NULL, NULL, 0); }

static void on_llama_health(fnet_creq_t *r, int result, int status, const char *body, size_t len,
                            void *arg) {
  hcheck_t *c = arg;
  spoke_t *s = c->sp;
  if (c->req) {
    fnet_req_on_abort(c->req, NULL, NULL);
    if (result == 0 && status == 200)
      fnet_req_respond_json(c->req, 200, json_pack("{s:s,s:s,s:i,s:i,s:i,s:i}", "status", "ok", "llama", "ok",
                                                   "slots", (int)s->slots_total, "busy", (int)s->slots_busy,
                                                   "inflight", (int)s->sl.inflight, "busy_other", (int)s->sl.busy_other));
    else
      fnet_req_respond_json(c->req, 503, json_pack("{s:s,s:s,s:i}", "status", "error", "llama",
                                                   result < 0 ? "unreachable" : "not ready", "llama_status", status));
  }
  hc_free(c);
}

static void h_health(fnet_req_t *req, void *arg) {
  spoke_t *s = arg;
  hcheck_t *c = calloc(1, sizeof(*c));
  char url[300];
  snprintf(url, sizeof(url), "%s/health", s->cfg.llama_url);
  fnet_creq_opts_t o = {.url = url, .timeout_ms = 2000, .max_body = 64 * 1024,
                        .on_done = on_llama_health, .arg = c};
  if (!c || fnet_client_request(s->client, &o, NULL) < 0) {
    free(c);
    fnet_req_respond_error(req, 503, "cannot check llama.cpp");
    return;
  }
  c->sp = s;
  c->req = req;
  c->next = hchecks;
  if (hchecks) hchecks->prev = c;
  hchecks = c;
  fnet_req_on_abort(req, on_hc_gone, c);
}

static void h_connect(fnet_req_t *req, void *arg) {
  spoke_t *s = arg;
  if (s->nwaiters == (int)(sizeof(s->connect_waiters) / sizeof(s->connect_waiters[0]))) {
    fnet_req_respond_error(req, 503, "registration already requested");
    return;
  }
  s->connect_waiters[s->nwaiters++] = req;
  if (!s->reg_req) do_register(s);
  if (!s->reg_req) answer_waiters(s, 503, "cannot start the registration");
}

/* ---- main ---------------------------------------------------------------------- */

/* POST /execute<endpoint> and /execute/stream<endpoint>, one route each. */
static int route_execute(spoke_t *s) {
  for (int i = 0; allowed[i]; i++) {
    char p[96];
    int rc;
    snprintf(p, sizeof(p), "/execute%s", allowed[i]);
    if ((rc = fnet_http_route(s->http, "POST", p, h_execute, s)) < 0) return rc;
    snprintf(p, sizeof(p), "/execute/stream%s", allowed[i]);
    if ((rc = fnet_http_route(s->http, "POST", p, h_execute, s)) < 0) return rc;
  }
  return 0;
}

static int config_load(spoke_config_t *c, int argc, char **argv) {
  memset(c, 0, sizeof(*c));
  c->port = 9001;
  c->llama_port = 8080;
  strcpy(c->hub_url, "http://127.0.0.1:9000");
  strcpy(c->host, "0.0.0.0");
  c->register_ms = 2000;
  c->slots_ms = 1000;
  c->busy_poll_ms = 20;
  c->slow_polls = SPOKE_SLOW_POLLS;
  c->timeout_ms = 600000;
  c->default_slots = 1;
  c->max_body = 1u << 20;
  strcpy(c->log_level, "info");
#define S(f) &c->f, sizeof(c->f)
  const gl_opt_t opts[] = {
      {"port", "SPOKE_PORT", 'u', S(port), 0, 65535, "TCP port (default 9001; 0 = any free port)"},
      {"llama-port", "SPOKE_LLAMA_PORT", 'u', S(llama_port), 1, 65535, "llama.cpp port on 127.0.0.1 (default 8080)"},
      {"llama-url", "SPOKE_LLAMA_URL", 's', S(llama_url), 0, 0, "llama.cpp base URL (overrides -llama-port)"},
      {"hub-url", "GOLLAMA_HUB_URL", 's', S(hub_url), 0, 0, "hub base URL (default http://127.0.0.1:9000)"},
      {"advertise-url", "SPOKE_ADVERTISE_URL", 's', S(advertise), 0, 0, "URL the hub reaches us at (default http://127.0.0.1:<port>)"},
      {"host", "SPOKE_HOST", 's', S(host), 0, 0, "bind address (default 0.0.0.0)"},
      {"secret", "GOLLAMA_SECRET", 's', S(secret), 0, 0, "shared secret with the hub"},
      {"secret-file", "GOLLAMA_SECRET_FILE", 's', S(secret_file), 0, 0, "read the shared secret from this file"},
      {"register-ms", "SPOKE_REGISTER_MS", 'u', S(register_ms), 50, 3600000, "re-registration period (default 2000)"},
      {"slots-ms", "SPOKE_SLOTS_MS", 'u', S(slots_ms), 50, 3600000, "llama.cpp /slots poll period (default 1000)"},
      {"busy-poll-ms", "SPOKE_BUSY_POLL_MS", 'u', S(busy_poll_ms), 5, 3600000, "its period while other clients hold slots (default 20)"},
      {"slow-polls", "SPOKE_SLOW_POLLS", 'u', S(slow_polls), 1, 1000000, "/slots polls in a row that may time out (a loaded llama.cpp answers late) before llama.cpp counts as not ready (default 5)"},
      {"timeout-ms", "SPOKE_TIMEOUT_MS", 'u', S(timeout_ms), 100, 86400000, "one job at most (default 600000)"},
      {"slots", "SPOKE_SLOTS", 'u', S(default_slots), 1, 4096, "slots if llama.cpp's /slots is disabled (default 1)"},
      {"log", "SPOKE_LOG", 's', S(log_level), 0, 0, "info (default) or quiet"},
  };
#undef S
  int rc = gl_opts_parse("spoke", "GoLlama spoke: POST /execute (proxied to llama.cpp), GET /health, GET /connect.",
                         opts, sizeof(opts) / sizeof(opts[0]), argc, argv);
  if (rc) return rc;
  if (c->secret_file[0]) {
    int e = gl_read_secret(c->secret_file, c->secret, sizeof(c->secret));
    if (e < 0) {
      fprintf(stderr, "spoke: cannot read the secret from %s: %s\n", c->secret_file,
              e == -EINVAL ? "empty or too long" : strerror(-e));
      return -EINVAL;
    }
  }
  if (!c->llama_url[0]) snprintf(c->llama_url, sizeof(c->llama_url), "http://127.0.0.1:%u", c->llama_port);
  size_t n = strlen(c->llama_url);
  if (n && c->llama_url[n - 1] == '/') c->llama_url[n - 1] = 0;
  n = strlen(c->hub_url);
  if (n && c->hub_url[n - 1] == '/') c->hub_url[n - 1] = 0;
  if (strncmp(c->llama_url, "http://", 7) || strncmp(c->hub_url, "http", 4)) {
    fprintf(stderr, "spoke: -llama-url and -hub-url must be http:// URLs\n");
    return -EINVAL;
  }
  return 0;
}

static void on_signal(uv_signal_t *sig, int signum) {
  spoke_t *s = sig->data;
  if (s->stopping) return;
  s->stopping = true;
  uv_timer_stop(&s->reg_timer);
  uv_timer_stop(&s->slots_timer);
  fnet_http_server_close(s->http, NULL, NULL);
  answer_waiters(s, 503, "stopping");
  fnet_client_close(s->client);   /* no callback from here on */
  while (hchecks) {
    if (hchecks->req) fnet_req_respond_error(hchecks->req, 503, "stopping");
    hc_free(hchecks);
  }
  uv_close((uv_handle_t *)&s->reg_timer, NULL);
  uv_close((uv_handle_t *)&s->slots_timer, NULL);
  uv_close((uv_handle_t *)&s->sigint, NULL);
  uv_close((uv_handle_t *)&s->sigterm, NULL);
}

int main(int argc, char **argv) {
  static spoke_t sp;
  spoke_t *s = &sp;
  int rc = config_load(&s->cfg, argc, argv);
  if (rc == 1) return 0;
  if (rc < 0) return 2;
  signal(SIGPIPE, SIG_IGN);
  s->loop = uv_default_loop();
  s->last_reg = 1;
  if ((rc = fnet_client_init(&s->client, s->loop)) < 0) {
    fprintf(stderr, "spoke: cannot start the HTTP client: %s\n", strerror(-rc));
    return 1;
  }
  fnet_http_config_t hc;
  fnet_http_config_default(&hc);
  hc.max_body_bytes = s->cfg.max_body;
  hc.eof_aborts = true; /* the hub went away: abort the llama.cpp request at once */
  hc.idle_timeout_ms = 60000;
  if ((rc = fnet_http_server_init(&s->http, s->loop, &hc)) < 0 ||
      (rc = fnet_http_route(s->http, "POST", "/execute", h_execute, s)) < 0 ||
      (rc = route_execute(s)) < 0 ||
      (rc = fnet_http_route(s->http, "GET", "/health", h_health, s)) < 0 ||
      (rc = fnet_http_route(s->http, "GET", "/connect", h_connect, s)) < 0) {
    fprintf(stderr, "spoke: cannot start the HTTP server: %s\n", strerror(-rc));
    return 1;
  }
  rc = fnet_http_listen(s->http, s->cfg.host, (int)s->cfg.port);
  if (rc < 0) {
    fprintf(stderr, "spoke: cannot listen on %s:%u: %s\n", s->cfg.host, s->cfg.port, uv_strerror(rc));
    return 1;
  }
  int port = fnet_http_server_port(s->http);
  if (!s->cfg.advertise[0]) snprintf(s->cfg.advertise, sizeof(s->cfg.advertise), "http://127.0.0.1:%d", port);
  uv_timer_init(s->loop, &s->reg_timer);
  uv_timer_init(s->loop, &s->slots_timer);
  s->reg_timer.data = s->slots_timer.data = s;
  uv_signal_init(s->loop, &s->sigint);
  uv_signal_init(s->loop, &s->sigterm);
  s->sigint.data = s->sigterm.data = s;
  uv_signal_start(&s->sigint, on_signal, SIGINT);
  uv_signal_start(&s->sigterm, on_signal, SIGTERM);
  /* poll llama.cpp at once (registration follows as soon as it is ready),
   * and register every period whatever happens (a restarted hub) */
  spoke_slots_init(&s->sl);
  uv_timer_start(&s->slots_timer, on_slots_timer, 0, 0);   /* re-armed by each answer */
  uv_timer_start(&s->reg_timer, on_reg_timer, s->cfg.register_ms, s->cfg.register_ms);
  printf("listening on %s:%d\n", s->cfg.host, port);
  fflush(stdout);
  uv_run(s->loop, UV_RUN_DEFAULT);
  uv_loop_close(s->loop);
  return 0;
}
