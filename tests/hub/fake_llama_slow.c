/* FAKE llama.cpp server for hub/spoke tests that must control timing
 * exactly (the real llama-server is used by the other tests). Speaks the
 * parts of llama-server's API the spoke uses: /health, /slots, /v1/models,
 * POST /v1/chat/completions (JSON or "stream": true as server-sent events,
 * one token every -token-ms). A client that goes away frees its slot, as in
 * llama.cpp. Not a model: the reply is "tok0 tok1 ...". Test controls:
 * POST /slots-delay N makes /slots answer N ms late (a loaded llama.cpp);
 * GET /served counts completions and /slots requests abandoned by their
 * client before the answer. */
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/net.h"
#include "ferry/net_json.h"

typedef struct gen {
  fnet_req_t *req;          /* the client */
  uv_timer_t timer;         /* next token */
  int left;                 /* tokens still to send */
  int sent;                 /* tokens sent */
  bool stream;              /* SSE */
  int slot;                 /* slot index */
} gen_t;

static uv_loop_t *loop;
static int np = 4, token_ms = 5, ctx_chars = 4000;
static bool busy[64];
static uint64_t served;
static int slots_delay_ms;        /* /slots answers this late (POST /slots-delay sets it) */
static uint64_t slots_abandoned;  /* /slots requests whose client left before the answer */

static int slot_take(void) {
  for (int i = 0; i < np; i++)
    if (!busy[i]) {
      busy[i] = true;
      return i;
    }
  return -1;
}

static void on_gen_closed(uv_handle_t *h) { free(h->data); }

static void gen_end(gen_t *g) {
  if (g->slot >= 0) busy[g->slot] = false;
  g->slot = -1;
  uv_timer_stop(&g->timer);
  uv_close((uv_handle_t *)&g->timer, on_gen_closed);
}

static void on_gone(fnet_req_t *req, void *arg) {
  gen_t *g = arg;
  g->req = NULL;
  if (g->stream)
    fnet_req_stream_end(req);
  else
    fnet_req_respond(req, 499, NULL, NULL, 0);
  gen_end(g);
}

static void chunk(gen_t *g, const char *json) {
  char buf[512];
  int n = snprintf(buf, sizeof(buf), "data: %s\n\n", json);
  fnet_req_stream_write(g->req, buf, (size_t)n);
}

static void on_token(uv_timer_t *t) {
  gen_t *g = t->data;
  if (g->stream) {
    char j[256];
    snprintf(j, sizeof(j), "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"tok%d \"},\"finish_reason\":null}],\"object\":\"chat.completion.chunk\"}", g->sent);
    chunk(g, j);
  }
  g->sent++;
  if (--g->left > 0) return;
  fnet_req_t *req = g->req;
  fnet_req_on_abort(req, NULL, NULL);
  served++;
  if (g->stream) {
    chunk(g, "{\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"length\"}],\"object\":\"chat.completion.chunk\",\"timings\":{}}");
    chunk(g, "[DONE]");
    g->req = NULL;
    fnet_req_stream_end(req);
  } else {
    g->req = NULL;
    char text[8192] = "";
    size_t off = 0;
    for (int i = 0; i < g->sent && off < sizeof(text) - 16; i++)
      off += (size_t)snprintf(text + off, sizeof(text) - off, "tok%d ", i);
    fnet_req_respond_json(req, 200, json_pack("{s:s,s:s,s:[{s:i,s:{s:s,s:s},s:s}],s:{s:i}}", "object", "chat.completion",
                                              "model", "fake-model", "choices", "index", 0, "message", "role", "assistant",
                                              "content", text, "finish_reason", "length", "usage", "completion_tokens", g->sent));
  }
  gen_end(g);
}

static void h_chat(fnet_req_t *req, void *arg) {
  json_t *v;
  char err[128];
  if (fnet_req_json(req, &v, err, sizeof(err)) < 0) {
    fnet_req_respond_error(req, 400, err);
    return;
  }
  json_t *msgs = json_object_get(v, "messages");
  size_t total = 0, i;
  json_t *m;
  json_array_foreach(msgs, i, m) total += json_string_length(json_object_get(m, "content"));
  if (!json_is_array(msgs) || total > (size_t)ctx_chars) {
    json_decref(v);
    fnet_req_respond_json(req, 400, json_pack("{s:{s:i,s:s,s:s}}", "error", "code", 400, "message",
                                              "the request exceeds the available context size", "type",
                                              "exceed_context_size_error"));
    return;
  }
  json_t *mt = json_object_get(v, "max_tokens");
  int n = json_is_integer(mt) ? (int)json_integer_value(mt) : 8;
  if (n < 1) n = 1;
  if (n > 100000) n = 100000;
  bool stream = json_is_true(json_object_get(v, "stream"));
  json_decref(v);
  int slot = slot_take();
  if (slot < 0) {
    /* llama.cpp would queue; the spoke never sends more than np */
    fnet_req_respond_json(req, 503, json_pack("{s:{s:i,s:s}}", "error", "code", 503, "message", "no slot"));
    return;
  }
  gen_t *g = calloc(1, sizeof(*g));
  g->req = req;
  g->left = n;
  g->stream = stream;
  g->slot = slot;
  uv_timer_init(loop, &g->timer);
  g->timer.data = g;
  fnet_req_on_abort(req, on_gone, g);
  if (stream) {
    fnet_req_stream_begin(req, 200, "text/event-stream");
    chunk(g, "{\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null},\"finish_reason\":null}],\"object\":\"chat.completion.chunk\"}");
  }
  uv_timer_start(&g->timer, on_token, (uint64_t)token_ms, (uint64_t)token_ms);
}

static void h_health(fnet_req_t *req, void *arg) { fnet_req_respond_json(req, 200, json_pack("{s:s}", "status", "ok")); }

static void slots_answer(fnet_req_t *req) {
  json_t *a = json_array();
  for (int i = 0; i < np; i++) json_array_append_new(a, json_pack("{s:i,s:b}", "id", i, "is_processing", busy[i]));
  fnet_req_respond_json(req, 200, a);
}

/* A /slots answer held back (llama.cpp answers /slots between two decode
 * steps: a loaded server answers late). */
typedef struct late {
  fnet_req_t *req;          /* the client, NULL once gone */
  uv_timer_t timer;         /* the answer's moment */
} late_t;

static void on_late_closed(uv_handle_t *h) { free(h->data); }

static void on_late(uv_timer_t *t) {
  late_t *l = t->data;
  fnet_req_on_abort(l->req, NULL, NULL);
  slots_answer(l->req);
  uv_close((uv_handle_t *)&l->timer, on_late_closed);
}

static void on_late_gone(fnet_req_t *req, void *arg) {
  late_t *l = arg;
  slots_abandoned++;
  fnet_req_respond(req, 499, NULL, NULL, 0);
  uv_timer_stop(&l->timer);
  uv_close((uv_handle_t *)&l->timer, on_late_closed);
}

static void h_slots(fnet_req_t *req, void *arg) {
  late_t *l = slots_delay_ms > 0 ? calloc(1, sizeof(*l)) : NULL;
  if (!l) {
    slots_answer(req);
    return;
  }
  l->req = req;
  uv_timer_init(loop, &l->timer);
  l->timer.data = l;
  fnet_req_on_abort(req, on_late_gone, l);
  uv_timer_start(&l->timer, on_late, (uint64_t)slots_delay_ms, 0);
}

/* POST /slots-delay  N (ms; 0 = answer at once) */
static void h_slots_delay(fnet_req_t *req, void *arg) {
  size_t len;
  const char *b = fnet_req_body(req, &len);
  char num[16] = {0};
  if (!b || !len || len >= sizeof(num)) {
    fnet_req_respond(req, 400, NULL, NULL, 0);
    return;
  }
  memcpy(num, b, len);
  slots_delay_ms = atoi(num);
  fnet_req_respond_json(req, 200, json_pack("{s:i}", "slots_delay_ms", slots_delay_ms));
}

static void h_models(fnet_req_t *req, void *arg) {
  fnet_req_respond_json(req, 200, json_pack("{s:s,s:[{s:s,s:s}]}", "object", "list", "data", "id", "fake-model", "object", "model"));
}

static void h_served(fnet_req_t *req, void *arg) {
  fnet_req_respond_json(req, 200, json_pack("{s:I,s:I}", "served", (json_int_t)served, "slots_abandoned",
                                            (json_int_t)slots_abandoned));
}

static void on_sig(uv_signal_t *s, int n) { uv_stop(loop); }

int main(int argc, char **argv) {
  int port = 8080;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--help")) {
      printf("usage: fake_llama_slow [--port N] [--np N] [--token-ms N] [--ctx-chars N]\n"
             "A FAKE llama.cpp server for tests (not a model).\n");
      return 0;
    }
    if (i + 1 >= argc) return 2;
    if (!strcmp(argv[i], "--port")) port = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--np")) np = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--token-ms")) token_ms = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--ctx-chars")) ctx_chars = atoi(argv[++i]);
    else return 2;
  }
  if (np < 1 || np > 64 || token_ms < 1) return 2;
  signal(SIGPIPE, SIG_IGN);
  loop = uv_default_loop();
  fnet_http_server_t *srv;
  /* llama.cpp frees a slot as soon as its client closes, streaming or not:
   * an EOF aborts the request here too (the server's default answers a
   * half-closed client instead, and a non-streamed generation would hold
   * its slot to the end) */
  fnet_http_config_t hc;
  fnet_http_config_default(&hc);
  hc.eof_aborts = true;
  fnet_http_server_init(&srv, loop, &hc);
  fnet_http_route(srv, "POST", "/v1/chat/completions", h_chat, NULL);
  fnet_http_route(srv, "GET", "/health", h_health, NULL);
  fnet_http_route(srv, "GET", "/slots", h_slots, NULL);
  fnet_http_route(srv, "GET", "/v1/models", h_models, NULL);
  fnet_http_route(srv, "GET", "/served", h_served, NULL);
  fnet_http_route(srv, "POST", "/slots-delay", h_slots_delay, NULL);
  if (fnet_http_listen(srv, "127.0.0.1", port) < 0) {
    fprintf(stderr, "fake_llama_slow: cannot listen on %d\n", port);
    return 1;
  }
  uv_signal_t si, st;
  uv_signal_init(loop, &si);
  uv_signal_init(loop, &st);
  uv_signal_start(&si, on_sig, SIGINT);
  uv_signal_start(&st, on_sig, SIGTERM);
  printf("listening on 127.0.0.1:%d\n", fnet_http_server_port(srv));
  fflush(stdout);
  uv_run(loop, UV_RUN_DEFAULT);
  return 0;
}
