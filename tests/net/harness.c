/* Test harness for the net layer (see harness.h). */
#define _GNU_SOURCE
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ferry/net_json.h"

atomic_int ts_aborts;
atomic_int ts_late_rc;
atomic_int ts_late_done;
atomic_int ts_delayed;
atomic_int ts_blocked;
atomic_int ts_unblock;

static void h_hello(fnet_req_t *req, void *arg) {
  fnet_req_respond(req, 200, "text/plain", "hello", 5);
}

static void h_echo(fnet_req_t *req, void *arg) {
  size_t len;
  const char *b = fnet_req_body(req, &len);
  fnet_req_respond_json(req, 200, json_pack("{s:i,s:s%}", "len", (int)len, "body", b, len));
}

typedef struct delayed {
  uv_timer_t timer;   /* fires when the answer is due */
  fnet_req_t *req;    /* request to answer (NULL once answered) */
} delayed_t;

static void on_delayed_closed(uv_handle_t *h) {
  delayed_t *d = h->data;
  if (d->req) fnet_req_respond(d->req, 503, "text/plain", "stopped", 7);
  free(d);
}

static void on_delay(uv_timer_t *t) {
  delayed_t *d = t->data;
  int rc = fnet_req_respond(d->req, 200, "text/plain", "delayed", 7);
  d->req = NULL;
  atomic_store(&ts_late_rc, rc);
  atomic_fetch_add(&ts_late_done, 1);
  uv_close((uv_handle_t *)t, on_delayed_closed);
}

static void on_abort(fnet_req_t *req, void *arg) {
  atomic_fetch_add(&ts_aborts, 1);
}

static void h_delay(fnet_req_t *req, void *arg) {
  th_server_t *t = arg;
  const char *q = strstr(fnet_req_url(req), "ms=");
  int ms = q ? atoi(q + 3) : 50;
  delayed_t *d = calloc(1, sizeof(*d));
  d->req = req;
  uv_timer_init(&t->loop, &d->timer);
  d->timer.data = d;
  fnet_req_on_abort(req, on_abort, NULL);
  uv_timer_start(&d->timer, on_delay, (uint64_t)ms, 0);
  atomic_fetch_add(&ts_delayed, 1);
}

static void on_shut_done(fnet_http_server_t *srv, void *arg);

/* Keeps the loop thread busy so that bytes sent meanwhile stay unread in the
 * kernel, then shuts the server down before they can be read. */
static void h_block(fnet_req_t *req, void *arg) {
  th_server_t *t = arg;
  atomic_fetch_add(&ts_blocked, 1);
  for (int i = 0; i < 2500 && !atomic_load(&ts_unblock); i++) usleep(2000);
  fnet_http_server_shutdown(t->srv, on_shut_done, t);
  fnet_req_respond(req, 200, "text/plain", "blocked", 7);
}

static void on_close_walk(uv_handle_t *h, void *arg) {
  if (!uv_is_closing(h)) uv_close(h, h->data == arg ? NULL : on_delayed_closed);
}

static void on_shut_done(fnet_http_server_t *srv, void *arg) {
  th_server_t *t = arg;
  atomic_store(&t->shut_done, 1);
}

static void on_wake(uv_async_t *a) {
  th_server_t *t = a->data;
  int cmd = atomic_exchange(&t->cmd, 0);
  if (cmd == 2) {
    fnet_http_server_shutdown(t->srv, on_shut_done, t);
  } else if (cmd == 1) {
    fnet_http_server_close(t->srv, NULL, NULL);
    t->srv = NULL;
    /* Close the wake handle and any delayed timers still pending. */
    uv_walk(&t->loop, on_close_walk, t);
  }
}

static void *loop_main(void *arg) {
  th_server_t *t = arg;
  uv_run(&t->loop, UV_RUN_DEFAULT);
  return NULL;
}

void ts_start(th_server_t *t, const fnet_http_config_t *cfg) {
  memset(t, 0, sizeof(*t));
  atomic_store(&ts_aborts, 0);
  atomic_store(&ts_late_rc, 1);
  atomic_store(&ts_late_done, 0);
  atomic_store(&ts_delayed, 0);
  atomic_store(&ts_blocked, 0);
  atomic_store(&ts_unblock, 0);
  if (uv_loop_init(&t->loop)) abort();
  if (fnet_http_server_init(&t->srv, &t->loop, cfg)) abort();
  if (fnet_http_route(t->srv, "GET", "/hello", h_hello, t)) abort();
  if (fnet_http_route(t->srv, "POST", "/echo", h_echo, t)) abort();
  if (fnet_http_route(t->srv, "GET", "/delay", h_delay, t)) abort();
  if (fnet_http_route(t->srv, "GET", "/block", h_block, t)) abort();
  if (fnet_http_listen(t->srv, "127.0.0.1", 0)) abort();
  t->port = fnet_http_server_port(t->srv);
  uv_async_init(&t->loop, &t->wake, on_wake);
  t->wake.data = t;
  pthread_create(&t->th, NULL, loop_main, t);
}

void ts_shutdown(th_server_t *t) {
  atomic_store(&t->cmd, 2);
  uv_async_send(&t->wake);
}

void ts_stop(th_server_t *t) {
  atomic_store(&t->cmd, 1);
  uv_async_send(&t->wake);
  pthread_join(t->th, NULL);
  if (uv_loop_close(&t->loop) != 0) {
    fprintf(stderr, "loop not empty at stop\n");
    abort();
  }
}

int tc_open(tc_conn_t *c, int port) {
  c->len = 0;
  c->fd = socket(AF_INET, SOCK_STREAM, 0);
  if (c->fd < 0) return -errno;
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
    int e = -errno;
    close(c->fd);
    c->fd = -1;
    return e;
  }
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return 0;
}

int tc_send(tc_conn_t *c, const char *data, size_t len) {
  while (len) {
    ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    data += n;
    len -= (size_t)n;
  }
  return 0;
}

int tc_sends(tc_conn_t *c, const char *s) { return tc_send(c, s, strlen(s)); }

static long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* Reads more bytes within the deadline: >0 bytes, 0 EOF, <0 -errno. */
static ssize_t fill(tc_conn_t *c, long deadline) {
  if (c->len == sizeof(c->buf)) return -ENOBUFS;
  for (;;) {
    long left = deadline - now_ms();
    if (left <= 0) return -ETIMEDOUT;
    struct pollfd p = {.fd = c->fd, .events = POLLIN};
    int pr = poll(&p, 1, (int)left);
    if (pr < 0 && errno == EINTR) continue;
    if (pr <= 0) return pr < 0 ? -errno : -ETIMEDOUT;
    ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -errno;
    c->len += (size_t)n;
    return n;
  }
}

static int read_resp(tc_conn_t *c, tc_resp_t *r, int timeout_ms, int head_only);

int tc_read(tc_conn_t *c, tc_resp_t *r, int timeout_ms) { return read_resp(c, r, timeout_ms, 0); }

int tc_read_head(tc_conn_t *c, tc_resp_t *r, int timeout_ms) { return read_resp(c, r, timeout_ms, 1); }

static int read_resp(tc_conn_t *c, tc_resp_t *r, int timeout_ms, int head_only) {
  long deadline = now_ms() + timeout_ms;
  r->status = -1;
  char *end;
  for (;;) {
    end = c->len ? memmem(c->buf, c->len, "\r\n\r\n", 4) : NULL;
    if (end) break;
    ssize_t n = fill(c, deadline);
    if (n <= 0) return n == 0 ? -ECONNRESET : (int)n;
  }
  size_t hlen = (size_t)(end - c->buf) + 4;
  if (hlen >= sizeof(r->head)) return -ENOBUFS;
  memcpy(r->head, c->buf, hlen);
  r->head[hlen] = '\0';
  if (sscanf(r->head, "HTTP/1.%*d %d", &r->status) != 1) return -EPROTO;
  const char *cl = tc_header(r, "Content-Length");
  size_t blen = head_only ? 0 : (size_t)strtoul(cl, NULL, 10);
  if (blen >= sizeof(r->body)) return -ENOBUFS;
  while (c->len < hlen + blen) {
    ssize_t n = fill(c, deadline);
    if (n <= 0) return n == 0 ? -ECONNRESET : (int)n;
  }
  memcpy(r->body, c->buf + hlen, blen);
  r->body[blen] = '\0';
  r->body_len = blen;
  memmove(c->buf, c->buf + hlen + blen, c->len - hlen - blen);
  c->len -= hlen + blen;
  return 0;
}

int tc_wait_closed(tc_conn_t *c, int timeout_ms) {
  long deadline = now_ms() + timeout_ms;
  for (;;) {
    size_t before = c->len;
    ssize_t n = fill(c, deadline);
    if (n == 0 || n == -ECONNRESET) return c->len == before;
    if (n < 0) return 0;
  }
}

void tc_close(tc_conn_t *c) {
  if (c->fd >= 0) close(c->fd);
  c->fd = -1;
}

int tc_shutdown_wr(tc_conn_t *c) { return shutdown(c->fd, SHUT_WR) < 0 ? -errno : 0; }

void tc_reset(tc_conn_t *c) {
  struct linger lg = {.l_onoff = 1, .l_linger = 0};
  if (c->fd < 0) return;
  setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
  close(c->fd);
  c->fd = -1;
}

const char *tc_header(const tc_resp_t *r, const char *name) {
  static __thread char val[512];
  size_t nl = strlen(name);
  const char *p = strstr(r->head, "\r\n");
  val[0] = '\0';
  while (p && p[2] != '\r') {
    p += 2;
    if (!strncasecmp(p, name, nl) && p[nl] == ':') {
      const char *v = p + nl + 1;
      while (*v == ' ') v++;
      size_t l = strcspn(v, "\r");
      if (l >= sizeof(val)) l = sizeof(val) - 1;
      memcpy(val, v, l);
      val[l] = '\0';
      return val;
    }
    p = strstr(p, "\r\n");
  }
  return val;
}

int ts_wait_int(atomic_int *v, int want, int timeout_ms) {
  long deadline = now_ms() + timeout_ms;
  int x;
  while ((x = atomic_load(v)) != want && now_ms() < deadline) usleep(2000);
  return x;
}

/* ---- the shared fixture ------------------------------------------------ */

th_server_t tf_srv;
tc_conn_t tf_conn;
tc_resp_t tf_resp;

void tf_start_with(const fnet_http_config_t *cfg) {
  ts_start(&tf_srv, cfg);
  /* No Criterion here: the TSan pass's stand-in header defines its runner
   * in every file that includes it. A crash fails the test just the same. */
  int rc = tc_open(&tf_conn, tf_srv.port);
  if (rc != 0) {
    fprintf(stderr, "tf_start: cannot connect to the test server: %s\n", strerror(-rc));
    abort();
  }
}

void tf_start(void) { tf_start_with(NULL); }

void tf_stop(void) {
  tc_close(&tf_conn);
  ts_stop(&tf_srv);
}
