/* ferry net: the request handle: storage of the request head and body,
 * accessors, and answers serialised and written in request order. */
#include "net_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

fnet_req_t *fnet__req_new(fnet_conn_t *c) {
  fnet_req_t *r = calloc(1, sizeof(*r));
  if (!r) return NULL;
  r->conn = c;
  r->srv = c->srv;
  memcpy(r->peer, c->peer, sizeof(r->peer));
  return r;
}

void fnet__req_free(fnet_req_t *r) {
  if (!r) return;
  free(r->hbuf);
  free(r->body);
  free(r->out);
  free(r);
}

/* Room for `extra` more bytes plus a NUL. */
static int head_reserve(fnet_req_t *r, size_t extra) {
  size_t need = r->hlen + extra + 1;
  if (need <= r->hcap) return 0;
  size_t cap = r->hcap ? r->hcap : 512;
  while (cap < need) cap *= 2;
  char *b = realloc(r->hbuf, cap);
  if (!b) return -ENOMEM;
  r->hbuf = b;
  r->hcap = cap;
  return 0;
}

int fnet__req_head_append(fnet_req_t *r, const char *at, size_t len, size_t limit) {
  if (len > limit - r->head_bytes) return -ENOSPC;
  if (head_reserve(r, len) < 0) return -ENOMEM;
  memcpy(r->hbuf + r->hlen, at, len);
  r->hlen += len;
  if (limit != SIZE_MAX) r->head_bytes += len;
  return 0;
}

int fnet__req_head_term(fnet_req_t *r) {
  if (head_reserve(r, 1) < 0) return -ENOMEM;
  r->hbuf[r->hlen++] = '\0';
  return 0;
}

/* The head is only NUL-terminated and complete once the parser got past it. */
const char *fnet_req_method(const fnet_req_t *r) { return r->phase == FNET_HP_DONE ? r->method : "-"; }
const char *fnet_req_url(const fnet_req_t *r) { return r->phase == FNET_HP_DONE ? r->hbuf + r->url_off : "-"; }
const char *fnet_req_path(const fnet_req_t *r) { return r->phase == FNET_HP_DONE ? r->hbuf + r->path_off : "-"; }
void fnet_req_set_tag(fnet_req_t *r, uint64_t tag) { r->tag = tag; }
uint64_t fnet_req_tag(const fnet_req_t *r) { return r->tag; }
bool fnet_req_alive(const fnet_req_t *r) { return r->conn != NULL && !r->conn->closing; }
uint64_t fnet_req_start_ms(const fnet_req_t *r) { return r->start_ms; }
const char *fnet_req_peer(const fnet_req_t *r) { return r->peer[0] ? r->peer : "?"; }

const char *fnet_req_body(const fnet_req_t *r, size_t *len) {
  if (len) *len = r->blen;
  return r->body ? r->body : "";
}

const char *fnet_req_header(const fnet_req_t *r, const char *name) {
  if (r->phase != FNET_HP_DONE) return NULL;
  for (uint32_t i = 0; i < r->nhdr; i++)
    if (!strcasecmp(r->hbuf + r->hdr_name[i], name)) return r->hbuf + r->hdr_val[i];
  return NULL;
}

void fnet_req_on_abort(fnet_req_t *r, fnet_abort_fn fn, void *arg) {
  r->abort_fn = fn;
  r->abort_arg = arg;
}

int fnet_req_add_header(fnet_req_t *r, const char *name, const char *value) {
  if (!r || !name || !value || !name[0] || strpbrk(name, "\r\n:") || strpbrk(value, "\r\n"))
    return -EINVAL;
  if (r->nxh == FNET__XHDR_COUNT) return -ENOSPC;
  size_t need = strlen(name) + strlen(value) + 4;
  if (need > FNET__XHDR_MAX - r->xhlen) return -ENOSPC;
  r->xhlen += (size_t)snprintf(r->xh + r->xhlen, FNET__XHDR_MAX - r->xhlen, "%s: %s\r\n", name, value);
  r->nxh++;
  return 0;
}

static void on_write(uv_write_t *w, int status) {
  fnet_req_t *r = w->data;
  fnet_conn_t *c = r->conn;
  fnet__req_free(r);
  c->writes--;
  if (c->closing) return;
  if (status < 0) {
    fnet__conn_close(c);
    return;
  }
  fnet__conn_progress(c);
}

void fnet__conn_flush(fnet_conn_t *c) {
  while (c->qhead && !c->closing && !c->broken) {
    fnet_req_t *r = c->qhead;
    if (!r->responded) {
      /* A streamed answer goes out chunk by chunk while it is at the head. */
      if (r->streaming && r->outlen) fnet__stream_flush(c, r);
      return;
    }
    c->qhead = r->qnext;
    if (!c->qhead) c->qtail = NULL;
    c->qlen--;
    uv_buf_t b = uv_buf_init(r->out, (unsigned)r->outlen);
    /* Most responses fit the socket buffer: write them now. uv_write alone
     * would cost an epoll_ctl per response; uv_try_write refuses (EAGAIN)
     * while earlier writes are queued, so order is kept. */
    int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (n == (int)b.len) {
      fnet__req_free(r);
      continue;
    }
    if (n < 0 && n != UV_EAGAIN) {
      fnet__req_free(r);
      fnet__conn_break(c);
      return;
    }
    if (n > 0) b = uv_buf_init(r->out + n, (unsigned)(r->outlen - (size_t)n));
    r->wreq.data = r;
    c->writes++;
    int rc = uv_write(&r->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write);
    if (rc < 0) {
      c->writes--;
      fnet__req_free(r);
      fnet__conn_break(c);
      return;
    }
  }
}

/* Decimal digits of v at p; returns their count (at most 20). */
static size_t put_uint(char *p, uint64_t v) {
  char t[20];
  size_t n = 0;
  do {
    t[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  for (size_t i = 0; i < n; i++) p[i] = t[n - 1 - i];
  return n;
}

#define PUT(p, lit) (memcpy((p), (lit), sizeof(lit) - 1), (p) += sizeof(lit) - 1)

/* Builds status line, headers and body into r->out. Written by hand, not
 * with snprintf: this runs for every answer, and glibc's snprintf was 5 %
 * of a proxied request's instructions in the hub (callgrind). */
static int serialize(fnet_req_t *r, int status, const char *ctype, const void *body, size_t len,
                     bool close) {
  bool head_only = r->phase == FNET_HP_DONE && !strcmp(r->method, "HEAD");
  if (status < 100 || status > 999) status = 500;   /* three digits on the wire, always */
  const char *text = fnet_status_text(status);
  size_t tlen = strlen(text), clen = strlen(ctype);
  size_t blen = head_only ? 0 : len;
  /* "HTTP/1.1 " 3 " " text CRLF "Content-Type: " ctype CRLF
   * "Content-Length: " <=20 CRLF "Connection: keep-alive" CRLF, xh, CRLF, body */
  size_t max = 9 + 3 + 1 + tlen + 2 + 14 + clen + 2 + 16 + 20 + 2 + 22 + 2 + r->xhlen + 2 + blen;
  char *out = malloc(max + 1);
  if (!out) return -ENOMEM;
  char *p = out;
  PUT(p, "HTTP/1.1 ");
  p += put_uint(p, (uint64_t)status);
  *p++ = ' ';
  memcpy(p, text, tlen);
  p += tlen;
  PUT(p, "\r\nContent-Type: ");
  memcpy(p, ctype, clen);
  p += clen;
  PUT(p, "\r\nContent-Length: ");
  p += put_uint(p, (uint64_t)len);
  if (close)
    PUT(p, "\r\nConnection: close\r\n");
  else
    PUT(p, "\r\nConnection: keep-alive\r\n");
  memcpy(p, r->xh, r->xhlen);
  p += r->xhlen;
  PUT(p, "\r\n");
  if (blen) memcpy(p, body, blen);
  p += blen;
  r->out = out;
  r->outlen = (size_t)(p - out);
  return 0;
}

int fnet_req_respond(fnet_req_t *r, int status, const char *content_type, const void *body,
                     size_t len) {
  fnet_conn_t *c = r->conn;
  if (r->streaming) {
    /* Already answered with a stream: end it (still frees the handle). */
    fnet_req_stream_end(r);
    return -EINVAL;
  }
  if (!c) {
    fnet__req_free(r);
    return -ECONNABORTED;
  }
  if (c->closing || c->broken) {
    /* Still on the queue of a connection being torn down: it frees r. */
    r->responded = true;
    return -ECONNABORTED;
  }
  int rc = 0;
  if (status < 100 || status > 999 || (len && !body)) {
    static const char e[] = "{\"error\":\"invalid response\",\"status\":500}";
    status = 500;
    content_type = "application/json";
    body = e;
    len = sizeof(e) - 1;
    rc = -EINVAL;
  }
  if (!content_type) content_type = "application/octet-stream";
  bool close = !r->keep_alive || r->last || c->srv->state != FNET_SRV_RUNNING;
  r->responded = true;
  c->unanswered--;
  int s = serialize(r, status, content_type, body, len, close);
  if (s < 0) {
    fnet__conn_break(c);
    return s;
  }
  if (c->srv->log_fn) c->srv->log_fn(r, status, len, c->srv->log_arg);
  if (close) {
    /* We told the client we close: read no further request. */
    r->last = true;
    c->close_after = true;
  }
  fnet__conn_flush(c);
  fnet__conn_progress(c);
  return rc;
}

int fnet_req_respond_error(fnet_req_t *r, int status, const char *msg) {
  char esc[512];
  char body[640];
  if (!msg) msg = fnet_status_text(status);
  size_t need = fnet__json_escape(esc, sizeof(esc), msg);
  (void)need; /* an over-long message is cut; the body stays valid JSON */
  int n = snprintf(body, sizeof(body), "{\"error\":\"%s\",\"status\":%d}", esc, status);
  return fnet_req_respond(r, status, "application/json", body, (size_t)n);
}
