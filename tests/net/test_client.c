#define _GNU_SOURCE
/* net client: libcurl multi on a libuv loop against our own server on the
 * same loop (one thread). Also covers the server's streamed answers. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ferry/net.h"
#include "ferry/net_client.h"

typedef struct done_rec {
  int calls;               /* on_done calls */
  int result;              /* last result */
  int status;              /* last status */
  char body[200000];       /* last body */
  size_t len;              /* its length */
  char streamed[4096];     /* on_data bytes */
  size_t slen;             /* their count */
  int head_status;         /* on_head status */
  int abort_after;         /* abort from on_data after this many calls (0: never) */
  int data_calls;          /* on_data calls */
  fnet_creq_t *req;        /* the request */
} done_rec_t;

static uv_loop_t loop;
static fnet_http_server_t *srv;
static fnet_client_t *cli;
static int port;
static int server_aborts;        /* abort callbacks on the server side */
static int slow_seen;            /* /slow requests received */
static fnet_req_t *held[64];     /* unanswered server requests */
static int nheld;
static uv_timer_t stream_timer;  /* drives /stream chunks */
static fnet_req_t *stream_req;
static int stream_step;
static uv_tcp_t klisten;         /* the closing server (dropped-connection test) */
static bool klisten_on;          /* it is open: teardown closes it */
static fnet_http_server_t *s2;   /* a second server (idle-close test): teardown closes it */

static void on_srv_abort(fnet_req_t *r, void *arg) { server_aborts++; }

static void h_hello(fnet_req_t *r, void *a) { fnet_req_respond(r, 200, "text/plain", "hello", 5); }
static void h_echo(fnet_req_t *r, void *a) {
  size_t n;
  const char *b = fnet_req_body(r, &n);
  fnet_req_respond(r, 200, "application/octet-stream", b, n);
}
static void h_slow(fnet_req_t *r, void *a) {
  slow_seen++;
  fnet_req_on_abort(r, on_srv_abort, NULL);
  held[nheld++] = r;
}
static void h_big(fnet_req_t *r, void *a) {
  static char big[100000];
  memset(big, 'x', sizeof(big));
  fnet_req_respond(r, 200, "text/plain", big, sizeof(big));
}
static void on_stream_tick(uv_timer_t *t) {
  char line[32];
  int n = snprintf(line, sizeof(line), "data: %d\n\n", ++stream_step);
  cr_assert_eq(fnet_req_stream_write(stream_req, line, (size_t)n), 0);
  if (stream_step == 3) {
    cr_assert_eq(fnet_req_stream_end(stream_req), 0);
    stream_req = NULL;
    uv_timer_stop(t);
  }
}
static void h_stream(fnet_req_t *r, void *a) {
  cr_assert_eq(fnet_req_stream_begin(r, 200, "text/event-stream"), 0);
  stream_req = r;
  stream_step = 0;
  uv_timer_start(&stream_timer, on_stream_tick, 10, 10);
}
/* one chunk, then silence until the client goes */
static void h_stream_hang(fnet_req_t *r, void *a) {
  fnet_req_on_abort(r, on_srv_abort, NULL);
  cr_assert_eq(fnet_req_stream_begin(r, 200, "text/event-stream"), 0);
  cr_assert_eq(fnet_req_stream_write(r, "data: 1\n\n", 9), 0);
  held[nheld++] = r;
}

static void setup(void) {
  memset(held, 0, sizeof(held));
  nheld = server_aborts = slow_seen = 0;
  cr_assert_eq(uv_loop_init(&loop), 0);
  /* The client tests abort requests and expect the server to see it at once,
   * as the hub's and spoke's servers do (eof_aborts). */
  fnet_http_config_t hc;
  fnet_http_config_default(&hc);
  hc.eof_aborts = true;
  cr_assert_eq(fnet_http_server_init(&srv, &loop, &hc), 0);
  fnet_http_route(srv, "GET", "/hello", h_hello, NULL);
  fnet_http_route(srv, "POST", "/echo", h_echo, NULL);
  fnet_http_route(srv, "GET", "/slow", h_slow, NULL);
  fnet_http_route(srv, "GET", "/big", h_big, NULL);
  fnet_http_route(srv, "GET", "/stream", h_stream, NULL);
  fnet_http_route(srv, "GET", "/stream_hang", h_stream_hang, NULL);
  cr_assert_eq(fnet_http_listen(srv, "127.0.0.1", 0), 0);
  port = fnet_http_server_port(srv);
  cr_assert_eq(fnet_client_init(&cli, &loop), 0);
  uv_timer_init(&loop, &stream_timer);
}

static void teardown(void) {
  /* answer what the server still holds (ends a stream), so handles are freed */
  for (int i = 0; i < nheld; i++) fnet_req_respond(held[i], 200, "text/plain", "late", 4);
  fnet_client_close(cli);
  fnet_http_server_close(srv, NULL, NULL);
  if (s2) fnet_http_server_close(s2, NULL, NULL);
  s2 = NULL;
  uv_close((uv_handle_t *)&stream_timer, NULL);
  if (klisten_on) uv_close((uv_handle_t *)&klisten, NULL);
  klisten_on = false;
  cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
  cr_assert_eq(uv_loop_close(&loop), 0, "handles left on the loop");
}


/* Runs the loop until *flag >= want (or a 10 s guard, which fails the test). */
static void run_until(int *flag, int want) {
  uint64_t start = uv_now(&loop);
  while (*flag < want) {
    uv_run(&loop, UV_RUN_ONCE);
    uv_update_time(&loop);
    cr_assert_lt(uv_now(&loop) - start, 10000, "guard: nothing happened in 10 s");
  }
}

static void on_done(fnet_creq_t *r, int result, int status, const char *body, size_t len, void *arg) {
  done_rec_t *d = arg;
  d->calls++;
  d->result = result;
  d->status = status;
  cr_assert_lt(len, sizeof(d->body));
  memcpy(d->body, body, len);
  d->body[len] = 0;
  d->len = len;
}
static int on_head(fnet_creq_t *r, int status, void *arg) {
  done_rec_t *d = arg;
  d->head_status = status;
  return 0;
}
static int on_data(fnet_creq_t *r, const char *data, size_t len, void *arg) {
  done_rec_t *d = arg;
  cr_assert_lt(d->slen + len, sizeof(d->streamed));
  memcpy(d->streamed + d->slen, data, len);
  d->slen += len;
  d->streamed[d->slen] = 0;
  d->data_calls++;
  if (d->abort_after && d->data_calls == d->abort_after) fnet_creq_abort(r);
  return 0;
}

static void start(done_rec_t *d, const char *method, const char *path, const char *body,
                  uint32_t timeout, bool stream) {
  char url[128];
  snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
  fnet_creq_opts_t o = {.method = method, .url = url, .body = body, .body_len = body ? strlen(body) : 0,
                        .timeout_ms = timeout, .on_done = on_done, .on_head = on_head,
                        .on_data = stream ? on_data : NULL, .arg = d};
  cr_assert_eq(fnet_client_request(cli, &o, &d->req), 0);
}

Test(client, get_and_post, .init = setup, .fini = teardown, .timeout = 20) {
  static done_rec_t a, b, c;
  memset(&a, 0, sizeof(a)); memset(&b, 0, sizeof(b)); memset(&c, 0, sizeof(c));
  start(&a, "GET", "/hello", NULL, 0, false);
  start(&b, "POST", "/echo", "{\"x\":1}", 0, false);
  start(&c, "GET", "/nothing-here", NULL, 0, false);
  cr_assert_eq(a.calls, 0, "never called back from inside the request call");
  run_until(&a.calls, 1);
  run_until(&b.calls, 1);
  run_until(&c.calls, 1);
  cr_assert_eq(a.result, 0);
  cr_assert_eq(a.status, 200);
  cr_assert_str_eq(a.body, "hello");
  cr_assert_eq(a.head_status, 200);
  cr_assert_str_eq(b.body, "{\"x\":1}");
  cr_assert_eq(c.result, 0, "an HTTP error status is a complete response");
  cr_assert_eq(c.status, 404);
  cr_assert_eq(fnet_client_active(cli), 0);
}

Test(client, refused, .init = setup, .fini = teardown, .timeout = 20) {
  uv_tcp_t t;
  struct sockaddr_in a;
  uv_ip4_addr("127.0.0.1", 0, &a);
  uv_tcp_init(&loop, &t);
  uv_tcp_bind(&t, (struct sockaddr *)&a, 0);
  int len = sizeof(a);
  uv_tcp_getsockname(&t, (struct sockaddr *)&a, &len);
  int p = ntohs(a.sin_port);
  uv_close((uv_handle_t *)&t, NULL);   /* bound, never listening: refused */
  static done_rec_t d;
  memset(&d, 0, sizeof(d));
  char url[64];
  snprintf(url, sizeof(url), "http://127.0.0.1:%d/", p);
  fnet_creq_opts_t o = {.url = url, .on_done = on_done, .arg = &d};
  cr_assert_eq(fnet_client_request(cli, &o, NULL), 0);
  run_until(&d.calls, 1);
  cr_assert_eq(d.result, -ECONNREFUSED);
}

Test(client, deadline_closes_the_connection, .init = setup, .fini = teardown, .timeout = 20) {
  static done_rec_t d;
  memset(&d, 0, sizeof(d));
  start(&d, "GET", "/slow", NULL, 200, false);
  run_until(&d.calls, 1);
  cr_assert_eq(d.result, -ETIMEDOUT);
  run_until(&server_aborts, 1);   /* the server saw its client go */
}

Test(client, abort_closes_the_connection_without_callback, .init = setup, .fini = teardown, .timeout = 20) {
  static done_rec_t d;
  memset(&d, 0, sizeof(d));
  start(&d, "GET", "/slow", NULL, 0, false);
  run_until(&slow_seen, 1);
  fnet_creq_abort(d.req);
  cr_assert_eq(fnet_client_active(cli), 0);
  run_until(&server_aborts, 1);
  cr_assert_eq(d.calls, 0);
}

Test(client, streamed_answer_arrives_chunk_by_chunk, .init = setup, .fini = teardown, .timeout = 20) {
  static done_rec_t d;
  memset(&d, 0, sizeof(d));
  start(&d, "GET", "/stream", NULL, 0, true);
  run_until(&d.calls, 1);
  cr_assert_eq(d.result, 0);
  cr_assert_eq(d.status, 200);
  cr_assert_eq(d.head_status, 200);
  cr_assert_str_eq(d.streamed, "data: 1\n\ndata: 2\n\ndata: 3\n\n");
  cr_assert_geq(d.data_calls, 1);
  cr_assert_eq(d.len, 0, "nothing buffered in streaming mode");
}

Test(client, abort_mid_stream_from_the_data_callback, .init = setup, .fini = teardown, .timeout = 20) {
  static done_rec_t d;
  memset(&d, 0, sizeof(d));
  d.abort_after = 1;
  start(&d, "GET", "/stream_hang", NULL, 0, true);
  run_until(&server_aborts, 1);
  cr_assert_str_eq(d.streamed, "data: 1\n\n");
  cr_assert_eq(d.calls, 0);
  cr_assert_eq(fnet_client_active(cli), 0);
  /* the server's stream writes now report the client gone */
  cr_assert_eq(fnet_req_stream_write(held[0], "x", 1), -ECONNABORTED);
}

Test(client, body_limit, .init = setup, .fini = teardown, .timeout = 20) {
  static done_rec_t d;
  memset(&d, 0, sizeof(d));
  char url[64];
  snprintf(url, sizeof(url), "http://127.0.0.1:%d/big", port);
  fnet_creq_opts_t o = {.url = url, .on_done = on_done, .arg = &d, .max_body = 1000};
  cr_assert_eq(fnet_client_request(cli, &o, NULL), 0);
  run_until(&d.calls, 1);
  cr_assert_eq(d.result, -EFBIG);
  static done_rec_t e;
  memset(&e, 0, sizeof(e));
  start(&e, "GET", "/big", NULL, 0, false);
  run_until(&e.calls, 1);
  cr_assert_eq(e.len, 100000);
}

static int many_done;
static void on_many(fnet_creq_t *r, int result, int status, const char *b, size_t n, void *arg) {
  cr_assert_eq(result, 0);
  cr_assert_eq(status, 200);
  many_done++;
}

Test(client, many_in_flight_on_one_loop, .init = setup, .fini = teardown, .timeout = 20) {
  char url[64];
  snprintf(url, sizeof(url), "http://127.0.0.1:%d/hello", port);
  many_done = 0;
  for (int i = 0; i < 200; i++) {
    fnet_creq_opts_t o = {.url = url, .on_done = on_many};
    cr_assert_eq(fnet_client_request(cli, &o, NULL), 0);
  }
  run_until(&many_done, 200);
}

Test(client, close_with_requests_in_flight, .init = setup, .fini = teardown, .timeout = 20) {
  static done_rec_t d;
  memset(&d, 0, sizeof(d));
  start(&d, "GET", "/slow", NULL, 0, false);
  run_until(&slow_seen, 1);
  fnet_client_close(cli);
  cli = NULL;
  run_until(&server_aborts, 1);
  cr_assert_eq(d.calls, 0);
}

Test(client, bad_arguments, .init = setup, .fini = teardown, .timeout = 20) {
  fnet_creq_opts_t o = {0};
  cr_assert_eq(fnet_client_request(cli, &o, NULL), -EINVAL);
  o.url = "http://127.0.0.1:1/";
  cr_assert_eq(fnet_client_request(cli, &o, NULL), -EINVAL, "no on_done");
}

/* Server side: a streamed answer keeps its place in the pipeline; the answer
 * to the next request on the same connection follows the stream's end. */
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

Test(client, streamed_answer_keeps_pipeline_order, .init = setup, .fini = teardown, .timeout = 20) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(0x7f000001);
  cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
  const char *reqs = "GET /stream HTTP/1.1\r\nHost: x\r\n\r\nGET /hello HTTP/1.1\r\nHost: x\r\n\r\n";
  cr_assert_eq(write(fd, reqs, strlen(reqs)), (ssize_t)strlen(reqs));
  static char got[8192];
  size_t len = 0;
  uint64_t start = uv_now(&loop);
  while (!strstr(got, "\r\n\r\nhello")) {
    uv_run(&loop, UV_RUN_NOWAIT);
    ssize_t n = recv(fd, got + len, sizeof(got) - 1 - len, MSG_DONTWAIT);
    if (n > 0) {
      len += (size_t)n;
      got[len] = 0;
    }
    usleep(1000);
    uv_update_time(&loop);
    cr_assert_lt(uv_now(&loop) - start, 10000, "guard: got only %s", got);
  }
  char *stream_end = strstr(got, "data: 3\n\n\r\n0\r\n\r\n");
  char *hello = strstr(got, "HTTP/1.1 200 OK\r\nContent-Type: text/plain");
  cr_assert(stream_end && hello, "%s", got);
  cr_assert(hello > stream_end, "the second answer overtook the stream");
  cr_assert(strstr(got, "Transfer-Encoding: chunked\r\n"));
  close(fd);
}

/* ---- a server that closes kept-alive connections (like llama-server after
 * a streamed answer): the 1st request on a connection gets an answer with
 * keep-alive headers, the 2nd one is read and the connection reset without
 * a byte of answer. */
typedef struct kconn {
  uv_tcp_t tcp;            /* the connection */
  int requests;            /* requests seen on it */
  char buf[8192];          /* read buffer */
  size_t len;              /* bytes in it */
} kconn_t;

static int kresets;        /* connections reset on their 2nd request */
static int kconns;         /* connections accepted */

static void k_alloc(uv_handle_t *h, size_t s, uv_buf_t *b) {
  kconn_t *c = h->data;
  *b = uv_buf_init(c->buf + c->len, (unsigned)(sizeof(c->buf) - c->len));
}
static void k_closed(uv_handle_t *h) { free(h->data); }
static void k_written(uv_write_t *w, int st) { free(w); }
static void k_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  kconn_t *c = s->data;
  if (n < 0) {
    uv_close((uv_handle_t *)s, k_closed);
    return;
  }
  c->len += (size_t)n;
  /* a whole request: head + the 2-byte body every test request carries */
  char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
  if (!end || (size_t)(end + 4 - c->buf) + 2 > c->len) return;
  c->len = 0;
  if (++c->requests > 1) {
    kresets++;
    uv_read_stop(s);
    uv_tcp_close_reset(&c->tcp, k_closed);
    return;
  }
  static const char ans[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n"
                            "Connection: keep-alive\r\nKeep-Alive: timeout=5, max=100\r\n\r\nok";
  uv_write_t *w = malloc(sizeof(*w));
  uv_buf_t wb = uv_buf_init((char *)ans, sizeof(ans) - 1);
  uv_write(w, s, &wb, 1, k_written);
}
static void k_conn(uv_stream_t *l, int st) {
  kconn_t *c = calloc(1, sizeof(*c));
  uv_tcp_init(&loop, &c->tcp);
  c->tcp.data = c;
  cr_assert_eq(uv_accept(l, (uv_stream_t *)&c->tcp), 0);
  kconns++;
  uv_read_start((uv_stream_t *)&c->tcp, k_alloc, k_read);
}

/* The next request on a kept-alive connection the server has dropped is sent
 * again on a fresh connection (nothing of an answer had arrived), so the
 * caller sees 200, not a send/receive error. */
Test(client, dropped_keepalive_connection_is_retried_fresh, .init = setup, .fini = teardown, .timeout = 20) {
  kresets = kconns = 0;
  struct sockaddr_in a;
  uv_ip4_addr("127.0.0.1", 0, &a);
  uv_tcp_init(&loop, &klisten);
  klisten_on = true;
  cr_assert_eq(uv_tcp_bind(&klisten, (const struct sockaddr *)&a, 0), 0);
  cr_assert_eq(uv_listen((uv_stream_t *)&klisten, 16, k_conn), 0);
  struct sockaddr_storage ss;
  int sl = sizeof(ss);
  uv_tcp_getsockname(&klisten, (struct sockaddr *)&ss, &sl);
  int kport = ntohs(((struct sockaddr_in *)&ss)->sin_port);
  char url[128];
  snprintf(url, sizeof(url), "http://127.0.0.1:%d/x", kport);
  for (int i = 0; i < 3; i++) {
    static done_rec_t d;
    memset(&d, 0, sizeof(d));
    fnet_creq_opts_t o = {.method = "POST", .url = url, .body = "{}", .body_len = 2, .timeout_ms = 5000,
                          .on_done = on_done, .arg = &d};
    cr_assert_eq(fnet_client_request(cli, &o, NULL), 0);
    run_until(&d.calls, 1);
    cr_assert_eq(d.result, 0, "request %d: result %d", i, d.result);
    cr_assert_eq(d.status, 200);
    cr_assert_str_eq(d.body, "ok");
  }
  cr_assert_eq(kresets, 2, "the server dropped the 2nd and 3rd requests' reused connections");
  cr_assert_eq(kconns, 3, "each retry on a fresh connection");
}

/* ---- kept socket watchers ----------------------------------------------------
 * A keep-alive connection keeps its uv_poll between transfers (libcurl says
 * CURL_POLL_REMOVE after each one); it goes only when libcurl closes the
 * socket. Closing and re-creating it per request cost seven system calls. */

static void count_polls(uv_handle_t *h, void *arg) {
  if (h->type == UV_POLL && !uv_is_closing(h)) (*(int *)arg)++;
}
/* the client's live watchers: those beyond the server's own (its listening
 * socket is a uv_poll too), counted before the first request */
static int base_polls;
static int live_polls(void) {
  int n = 0;
  uv_walk(&loop, count_polls, &n);
  return n - base_polls;
}
static void count_base(void) {
  base_polls = 0;
  base_polls = live_polls();
}

/* Runs the loop for about ms milliseconds. */
static void on_nap(uv_timer_t *t) { (*(int *)t->data)++; }
static void nap(uint64_t ms) {
  static uv_timer_t t;
  int fired = 0;
  uv_timer_init(&loop, &t);
  t.data = &fired;
  uv_timer_start(&t, on_nap, ms, 0);
  run_until(&fired, 1);
  uv_close((uv_handle_t *)&t, NULL);
  uv_run(&loop, UV_RUN_NOWAIT);
}

Test(client, keepalive_connection_keeps_its_watcher, .init = setup, .fini = teardown, .timeout = 20) {
  static done_rec_t d;
  count_base();
  for (int i = 0; i < 5; i++) {
    memset(&d, 0, sizeof(d));
    start(&d, "GET", "/hello", NULL, 0, false);
    run_until(&d.calls, 1);
    cr_assert_eq(d.result, 0);
    cr_assert_str_eq(d.body, "hello");
    uv_run(&loop, UV_RUN_NOWAIT);
    /* fails on the client that closed the watcher at CURL_POLL_REMOVE (0) */
    cr_assert_eq(live_polls(), 1, "request %d: the idle connection's watcher is kept", i);
  }
  /* an aborted transfer takes its connection, and its watcher, with it */
  memset(&d, 0, sizeof(d));
  start(&d, "GET", "/slow", NULL, 0, false);
  run_until(&slow_seen, 1);
  fnet_creq_abort(d.req);
  uv_run(&loop, UV_RUN_NOWAIT);
  cr_assert_eq(live_polls(), 0, "the aborted connection's watcher is gone");
  cr_assert_eq(d.calls, 0);
  memset(&d, 0, sizeof(d));
  start(&d, "GET", "/hello", NULL, 0, false);
  run_until(&d.calls, 1);
  cr_assert_eq(d.result, 0, "a fresh connection after the abort");
}

Test(client, server_closing_idle_connections_between_requests, .init = setup, .fini = teardown,
     .timeout = 30) {
  /* a second server that drops keep-alive connections after 20 ms idle: the
   * kept watcher sees the EOF while libcurl does not watch the socket, and
   * the next request's socket usually gets the same descriptor number */
  fnet_http_config_t hc;
  fnet_http_config_default(&hc);
  hc.idle_timeout_ms = 20;
  cr_assert_eq(fnet_http_server_init(&s2, &loop, &hc), 0);
  fnet_http_route(s2, "GET", "/hello", h_hello, NULL);
  cr_assert_eq(fnet_http_listen(s2, "127.0.0.1", 0), 0);
  char url[128];
  snprintf(url, sizeof(url), "http://127.0.0.1:%d/hello", fnet_http_server_port(s2));
  count_base();
  static done_rec_t d, e;
  for (int i = 0; i < 8; i++) {
    memset(&d, 0, sizeof(d));
    fnet_creq_opts_t o = {.url = url, .timeout_ms = 5000, .on_done = on_done, .arg = &d};
    cr_assert_eq(fnet_client_request(cli, &o, &d.req), 0);
    if (i % 2) {   /* and one to the other server at the same time */
      memset(&e, 0, sizeof(e));
      start(&e, "GET", "/hello", NULL, 0, false);
      run_until(&e.calls, 1);
      cr_assert_eq(e.result, 0);
    }
    run_until(&d.calls, 1);
    cr_assert_eq(d.result, 0, "request %d: %d", i, d.result);
    cr_assert_eq(d.status, 200);
    cr_assert_str_eq(d.body, "hello");
    nap(80);   /* the server closes the idle connection meanwhile */
    cr_assert_leq(live_polls(), 2, "request %d: no watcher piles up", i);
  }
  fnet_http_server_close(s2, NULL, NULL);
  s2 = NULL;
}
