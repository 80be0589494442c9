/* GoLlama hub: the HTTP transport under the dispatcher. A job is one client
 * request; run() posts it to a spoke's /execute, and the answer comes back
 * to the client: whole, or relayed chunk by chunk for "stream": true.
 *
 * Failures are classified from the transport result and the spoke's status
 * code and JSON (never from text): unreachable spoke, 5xx and bad answers
 * count against the spoke and are retried elsewhere; a 503 {"busy": true}
 * (no free slot: the hub's view of the spoke was stale) goes back to the
 * head of the line without spending a retry, bounded by the deadline; other
 * 503s are retried without blame; other 4xx are the request's own fault and go back to the
 * client. Nothing is retried once a byte of a stream reached the client: the
 * stream then ends with an error event. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/net_json.h"
#include "hub.h"

#define EBUF_MAX (64 * 1024)  /* error body kept from a streaming upstream */

static void job_free(hjob_t *j) {
  free(j->exec);
  free(j->ebuf);
  free(j);
}

void hub_count_answer(hub_t *h, int status, uint64_t t0) {
  int k = status / 100 == 2 ? 0 : status == 400 ? 1 : status == 401 ? 2 : status == 503 ? 3
        : status == 504 ? 4 : 5;
  h->answered[k]++;
  static const double bounds[11] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
  double s = (double)(uv_now(h->loop) - t0) / 1000.0;
  int b = 0;
  while (b < 11 && s > bounds[b]) b++;
  h->latency_buckets[b]++;
  h->latency_sum += s;
  h->latency_count++;
}

/* The final answer to the client, success excepted. */
static void finish_error(hjob_t *j, int status, const char *msg) {
  hub_t *h = j->hub;
  fnet_req_t *req = j->req;
  j->req = NULL;
  if (!req) return;
  hub_count_answer(h, status, j->t0);
  if (j->streaming) {
    json_t *ev = json_pack("{s:{s:s,s:s,s:i}}", "error", "message", msg, "type", "upstream_error",
                           "code", status);
    char *s = ev ? json_dumps(ev, JSON_COMPACT) : NULL;
    json_decref(ev);
    if (s) {
      char buf[1024];
      int n = snprintf(buf, sizeof(buf), "data: %s\n\n", s);
      if (n > 0 && (size_t)n < sizeof(buf)) fnet_req_stream_write(req, buf, (size_t)n);
      free(s);
    }
    fnet_req_stream_end(req);
    return;
  }
  if (status == 503) fnet_req_add_header(req, "Retry-After", "1");
  fnet_req_respond_error(req, status, msg);
}

/* The message of a JSON error body: {"error":"..."} or {"error":{"message":"..."}}. */
static void error_text(const char *body, size_t len, char *out, size_t size, const char *fallback) {
  snprintf(out, size, "%s", fallback);
  json_t *v = body && len ? json_loadb(body, len, 0, NULL) : NULL;
  if (!v) return;
  json_t *e = json_object_get(v, "error");
  const char *m = json_string_value(e);
  if (!m) m = json_string_value(json_object_get(e, "message"));
  if (m && *m) snprintf(out, size, "%s", m);
  json_decref(v);
}

/* A spoke's "no free slot" answer: 503 with {"busy": true} (its other 503s,
 * e.g. llama.cpp not ready, are plain failures). */
static bool spoke_busy(const char *body, size_t len) {
  json_t *v = body && len ? json_loadb(body, len, 0, NULL) : NULL;
  bool busy = json_is_true(json_object_get(v, "busy"));
  json_decref(v);
  return busy;
}

/* /chat: the reply text of an OpenAI-style completion, or NULL. */
static json_t *chat_reply(const char *body, size_t len) {
  json_t *v = json_loadb(body, len, 0, NULL);
  if (!v) return NULL;
  json_t *c = json_array_get(json_object_get(v, "choices"), 0);
  json_t *content = json_object_get(json_object_get(c, "message"), "content");
  json_t *out = json_is_string(content) ? json_pack("{s:O}", "reply", content) : NULL;
  json_decref(v);
  return out;
}

static void fail_job(hjob_t *j, unsigned flags, int status, const char *msg) {
  hub_t *h = j->hub;
  if (j->streaming) flags &= ~(FDISP_F_RETRY | FDISP_F_BUSY);   /* bytes went out: never run twice */
  j->last_status = status;
  snprintf(j->last_error, sizeof(j->last_error), "%s", msg);
  fdisp_job_id_t id = j->id;
  /* may call run() again (retry) or gave_up() (answers and frees j) */
  fdisp_job_failed(h->disp, id, flags);
}

static int on_up_head(fnet_creq_t *up, int status, void *arg) {
  hjob_t *j = arg;
  j->up_status = status;
  return 0;
}

static int on_up_data(fnet_creq_t *up, const char *data, size_t len, void *arg) {
  hjob_t *j = arg;
  if (j->up_status != 200) {
    /* an error answer to a stream request: keep it to read its message */
    if (j->elen + len > EBUF_MAX) return 0;
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
    if (fnet_req_stream_begin(j->req, 200, "text/event-stream") < 0) return 1;
    j->streaming = true;
    j->hub->streams++;
  }
  return fnet_req_stream_write(j->req, data, len) < 0 ? 1 : 0;
}

static void on_up_done(fnet_creq_t *up, int result, int status, const char *body, size_t len,
                       void *arg) {
  hjob_t *j = arg;
  hub_t *h = j->hub;
  j->up = NULL;
  if (result == 0 && status / 100 == 2) {
    fnet_req_t *req = j->req;
    json_t *reply = NULL;
    if (j->kind == HJOB_CHAT && !j->stream) {
      reply = chat_reply(body, len);
      if (!reply) {
        fail_job(j, FDISP_F_RETRY | FDISP_F_WORKER_FAULT, 502, "spoke sent no chat completion");
        return;
      }
    }
    j->req = NULL;
    fdisp_job_done(h->disp, j->id);
    j->id = 0;
    hub_count_answer(h, 200, j->t0);
    if (reply)
      fnet_req_respond_json(req, 200, reply);
    else if (j->streaming)
      fnet_req_stream_end(req);
    else if (j->stream && fnet_req_stream_begin(req, 200, "text/event-stream") == 0)
      fnet_req_stream_end(req);  /* an empty stream */
    else
      fnet_req_respond(req, 200, "application/json", body, len);
    job_free(j);
    return;
  }
  char msg[200];
  if (result < 0) {
    switch (result) {
    case -ECANCELED:
      /* we stopped it: the client stopped reading its stream */
      fail_job(j, 0, 502, "client too slow: stream stopped");
      return;
    case -ETIMEDOUT:
      fail_job(j, FDISP_F_RETRY | FDISP_F_WORKER_FAULT, 504, "spoke timed out");
      return;
    case -ECONNREFUSED:
      /* nobody listens there: down at once (its health poll brings it back) */
      fdisp_worker_set_up(h->disp, j->spoke->wid, false);
      fail_job(j, FDISP_F_RETRY | FDISP_F_WORKER_FAULT, 502, "spoke unreachable: connection refused");
      return;
    default:
      snprintf(msg, sizeof(msg), "spoke unreachable: %s", strerror(-result));
      fail_job(j, FDISP_F_RETRY | FDISP_F_WORKER_FAULT, 502, msg);
      return;
    }
  }
  const char *eb = j->stream ? j->ebuf : body;
  size_t el = j->stream ? j->elen : len;
  char fb[64];
  snprintf(fb, sizeof(fb), "spoke answered %d", status);
  error_text(eb, el, msg, sizeof(msg), fb);
  if (status == 503 && !j->streaming && spoke_busy(eb, el))
    fail_job(j, FDISP_F_BUSY, 503, msg);    /* no free slot: back to the head of the line, no retry spent */
  else if (status == 503)
    fail_job(j, FDISP_F_RETRY, 503, msg);                          /* not ready: not its fault */
  else if (status >= 500 || status == 401 || status == 403 || status == 404 || status < 200)
    fail_job(j, FDISP_F_RETRY | FDISP_F_WORKER_FAULT, 502, msg);  /* broken spoke */
  else
    fail_job(j, 0, status, msg);                                   /* the request's own fault */
}

static void disp_run(fdisp_t *d, fdisp_job_id_t id, void *jdata, fdisp_worker_id_t w, void *wdata,
                     void *arg) {
  hjob_t *j = jdata;
  hub_t *h = j->hub;
  hub_spoke_t *sp = wdata;
  j->spoke = sp;
  if (h->cfg.log_level[0] == 'd') {
    /* the time it waited for a slot since it arrived (retries included) */
    fdisp_worker_stats_t ws;
    fdisp_worker_stat(d, w, &ws);
    fprintf(stderr, "hub: job %llu waited %llu ms in the queue, runs on %s (busy %u, busy_other %u, slots %u)\n",
            (unsigned long long)id, (unsigned long long)(uv_now(h->loop) - j->t0), sp->url, ws.busy,
            ws.external, ws.capacity);
  }
  j->up_status = 0;
  free(j->ebuf);
  j->ebuf = NULL;
  j->elen = 0;
  char url[320];
  snprintf(url, sizeof(url), "%s/execute%s/v1/chat/completions", sp->url, j->stream ? "/stream" : "");
  /* the body is llama.cpp's request as is; the endpoint and the stream flag
   * ride in the path, so the spoke neither parses nor re-encodes it (the
   * spec's {"endpoint", "body"} envelope is still accepted by the spoke).
   * Two headers only and no query string: libcurl formats every one of
   * those anew on each request (a query alone cost 7 k instructions). */
  const char *hdrs[] = {"Content-Type: application/json", h->secret_hdr[0] ? h->secret_hdr : NULL, NULL};
  /* the dispatcher's deadline answers first; this only bounds the socket */
  uint64_t spent = uv_now(h->loop) - j->t0;
  uint64_t left = j->timeout_ms > spent ? j->timeout_ms - spent : 1;
  fnet_creq_opts_t o = {
      .method = "POST", .url = url, .headers = hdrs, .body = j->exec, .body_len = j->exec_len,
      .timeout_ms = (uint32_t)(left + 1000), .connect_timeout_ms = 2000, .max_body = 16u << 20,
      .on_head = on_up_head, .on_data = j->stream ? on_up_data : NULL, .on_done = on_up_done,
      .arg = j};
  int rc = fnet_client_request(h->client, &o, &j->up);
  if (rc < 0) {
    j->up = NULL;
    fail_job(j, FDISP_F_RETRY | FDISP_F_WORKER_FAULT, 502, "cannot reach the spoke");
  }
}

static void disp_gave_up(fdisp_t *d, fdisp_job_id_t id, void *jdata, fdisp_worker_id_t w,
                         fdisp_reason_t why, void *arg) {
  hjob_t *j = jdata;
  j->id = 0;
  if (j->up) {
    fnet_creq_abort(j->up);   /* closes the connection: the spoke frees its slot */
    j->up = NULL;
  }
  switch (why) {
  case FDISP_R_DEADLINE: finish_error(j, 504, "deadline exceeded"); break;
  case FDISP_R_SHUTDOWN: finish_error(j, 503, "hub shutting down"); break;
  case FDISP_R_FAILED:
    finish_error(j, j->last_status ? j->last_status : 502, j->last_error[0] ? j->last_error : "failed");
    break;
  case FDISP_R_RETRIES:
  case FDISP_R_NO_WORKER: {
    char m[260];
    snprintf(m, sizeof(m), "no spoke could answer (%s); last error: %s", fdisp_reason_name(why),
             j->last_error[0] ? j->last_error : "none");
    int st = j->last_status == 503 ? 503 : j->last_status == 504 ? 504 : 502;
    finish_error(j, st, m);
    break;
  }
  }
  job_free(j);
}

const fdisp_ops_t hub_disp_ops = {disp_run, disp_gave_up};

static void on_client_gone(fnet_req_t *req, void *arg) {
  hjob_t *j = arg;
  hub_t *h = j->hub;
  h->client_gone++;
  if (j->up) {
    fnet_creq_abort(j->up);   /* the spoke sees its client go and aborts llama.cpp's request */
    j->up = NULL;
  }
  fnet_req_t *r = j->req;
  j->req = NULL;
  if (j->id) {
    fdisp_job_id_t id = j->id;
    j->id = 0;
    fdisp_job_cancel(h->disp, id);
  }
  /* free the handle (the answer is discarded) */
  if (r) {
    if (j->streaming)
      fnet_req_stream_end(r);
    else
      fnet_req_respond_error(r, 503, "client gone");
  }
  job_free(j);
}

void hub_job_submit(hub_t *h, fnet_req_t *req, enum hjob_kind kind, bool stream, char *exec,
                    size_t exec_len, uint32_t timeout_ms) {
  uint64_t t0 = uv_now(h->loop);
  if (!h->spokes) {
    free(exec);
    hub_count_answer(h, 503, t0);
    fnet_req_add_header(req, "Retry-After", "1");
    fnet_req_respond_error(req, 503, "no spoke registered");
    return;
  }
  hjob_t *j = calloc(1, sizeof(*j));
  if (!j) {
    free(exec);
    hub_count_answer(h, 503, t0);
    fnet_req_respond_error(req, 503, "out of memory");
    return;
  }
  j->hub = h;
  j->req = req;
  j->kind = kind;
  j->stream = stream;
  j->exec = exec;
  j->exec_len = exec_len;
  j->t0 = t0;
  j->timeout_ms = timeout_ms ? timeout_ms : h->cfg.deadline_ms;
  fnet_req_on_abort(req, on_client_gone, j);
  /* j->id is set before run() can be called; after a successful submit j
   * may already be answered and freed (a synchronous failure), so it is not
   * touched again here. */
  int rc = fdisp_submit(h->disp, j, j->timeout_ms, &j->id);
  if (rc == 0) return;
  fnet_req_on_abort(req, NULL, NULL);
  j->req = NULL;
  hub_count_answer(h, 503, t0);
  fnet_req_add_header(req, "Retry-After", "1");
  fnet_req_respond_error(req, 503, rc == -EAGAIN ? "queue full" : rc == -ESHUTDOWN ? "hub shutting down"
                                                                                : "cannot queue");
  job_free(j);
}
