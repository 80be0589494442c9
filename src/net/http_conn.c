/* ferry net: one HTTP connection: reading, parsing into requests, the
 * pipeline cap, timeouts, lingering close and teardown.
 *
 * Reads land in the server's shared buffer and are parsed at once; whatever
 * a request keeps is copied into the request (bounded by the header and body
 * limits). When too many requests wait on one connection the parser pauses,
 * at most FNET__PEND_MAX unparsed bytes are kept, and reading stops until
 * responses have been written.
 */
#include "net_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

static void conn_arm(fnet_conn_t *c);
static void conn_fail(fnet_conn_t *c, int status, const char *msg);
static void on_timer(uv_timer_t *t);

static void timer_set(fnet_conn_t *c, enum fnet_timer_mode m, uint64_t ms) {
  c->tmode = m;
  if (m == FNET_TM_NONE)
    uv_timer_stop(&c->timer);
  else
    uv_timer_start(&c->timer, on_timer, ms, 0);
}

/* ---- parser callbacks ---------------------------------------------------- */

static int fail_cb(fnet_conn_t *c, int status, const char *msg) {
  c->lib_error = status;
  c->lib_msg = msg;
  return -1;
}

/* A whole-request deadline, from the first byte of anything (blank lines
 * before the request line included) to the complete request, and never reset
 * by more bytes: a slow sender cannot hold a connection longer than that. */
static void deadline_start(fnet_conn_t *c) {
  if (c->tmode != FNET_TM_READ) timer_set(c, FNET_TM_READ, c->srv->cfg.read_timeout_ms);
}

static int on_message_begin(http_parser *p) {
  fnet_conn_t *c = p->data;
  c->cur = fnet__req_new(c);
  if (!c->cur) return fail_cb(c, 503, "out of memory");
  deadline_start(c);
  return 0;
}

static int on_url(http_parser *p, const char *at, size_t len) {
  fnet_conn_t *c = p->data;
  if (fnet__req_head_append(c->cur, at, len, c->srv->cfg.max_header_bytes) < 0)
    return fail_cb(c, 414, "request URI too long");
  return 0;
}

/* RFC 9110 tchar: http-parser built without strictness lets spaces through
 * ("Bad Name: x", "Host : x"), which proxies may read differently. */
static bool is_token(const char *at, size_t len) {
  static const char extra[] = "!#$%&'*+-.^_`|~";
  for (size_t i = 0; i < len; i++) {
    unsigned char ch = (unsigned char)at[i];
    if (!((ch >= '0' && ch <= '9') || ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'z') ||
          (ch && strchr(extra, ch))))
      return false;
  }
  return true;
}

/* Trailer fields (after a chunked body) are counted against the header limit
 * and dropped: the head is already complete and routed on. */
static int trailer_bytes(fnet_conn_t *c, size_t len) {
  fnet_req_t *r = c->cur;
  if (len > c->srv->cfg.max_header_bytes - r->head_bytes)
    return fail_cb(c, 431, "request header too large");
  r->head_bytes += len;
  return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len) {
  fnet_conn_t *c = p->data;
  fnet_req_t *r = c->cur;
  if (!is_token(at, len)) return fail_cb(c, 400, "invalid header name");
  if (r->phase == FNET_HP_DONE) return trailer_bytes(c, len);
  if (r->phase != FNET_HP_FIELD) {
    /* A new header starts: close the URL or the previous value. */
    if (r->nhdr == FNET__MAX_HEADERS) return fail_cb(c, 431, "too many request headers");
    if (fnet__req_head_term(r) < 0) return fail_cb(c, 503, "out of memory");
    r->hdr_name[r->nhdr] = (uint32_t)r->hlen;
    r->phase = FNET_HP_FIELD;
  }
  if (fnet__req_head_append(r, at, len, c->srv->cfg.max_header_bytes) < 0)
    return fail_cb(c, 431, "request header too large");
  return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len) {
  fnet_conn_t *c = p->data;
  fnet_req_t *r = c->cur;
  if (r->phase == FNET_HP_DONE) return trailer_bytes(c, len);
  if (r->phase != FNET_HP_VALUE) {
    if (fnet__req_head_term(r) < 0) return fail_cb(c, 503, "out of memory");
    r->hdr_val[r->nhdr++] = (uint32_t)r->hlen;
    r->phase = FNET_HP_VALUE;
  }
  if (fnet__req_head_append(r, at, len, c->srv->cfg.max_header_bytes) < 0)
    return fail_cb(c, 431, "request header too large");
  return 0;
}

/* Stores the URL's path (no query, no fragment) after the headers. */
static int store_path(fnet_req_t *r) {
  const char *url = r->hbuf + r->url_off;
  size_t ulen = strlen(url), off = 0, plen = 0;
  if (url[0] == '/') {
    plen = strcspn(url, "?#");
  } else {
    struct http_parser_url u;
    http_parser_url_init(&u);
    if (http_parser_parse_url(url, ulen, 0, &u) != 0) return -EINVAL;
    if (u.field_set & (1 << UF_PATH)) {
      off = u.field_data[UF_PATH].off;
      plen = u.field_data[UF_PATH].len;
    }
  }
  size_t at = r->hlen;
  if (plen == 0) {
    if (fnet__req_head_append(r, "/", 1, SIZE_MAX) < 0) return -ENOMEM;
  } else {
    /* hbuf may move while growing: copy from an offset, not a pointer. */
    size_t src = r->url_off + off;
    if (fnet__req_head_append(r, "", 0, SIZE_MAX) < 0) return -ENOMEM;
    for (size_t i = 0; i < plen; i++)
      if (fnet__req_head_append(r, r->hbuf + src + i, 1, SIZE_MAX) < 0) return -ENOMEM;
  }
  if (fnet__req_head_term(r) < 0) return -ENOMEM;
  r->path_off = at;
  return 0;
}

static void send_continue(fnet_conn_t *c) {
  static const char msg[] = "HTTP/1.1 100 Continue\r\n\r\n";
  uv_buf_t b = uv_buf_init((char *)msg, sizeof(msg) - 1);
  /* Only when nothing else is being written, so it cannot overtake a response. */
  if (c->qlen || c->writes) return;
  if (uv_try_write((uv_stream_t *)&c->tcp, &b, 1) != (int)b.len) fnet__conn_close(c);
}

/* Transfer-Encoding, all fields in order (RFC 9112 6.1, 6.3): chunked must be
 * the final coding, exactly once (else 400: the body length is unknown);
 * any other coding before it is one we do not decode (501), which would
 * otherwise reach the application still encoded. */
static int check_transfer_coding(fnet_conn_t *c, const fnet_req_t *r) {
  bool seen = false, chunked = false, other = false;
  for (uint32_t i = 0; i < r->nhdr; i++) {
    if (strcasecmp(r->hbuf + r->hdr_name[i], "Transfer-Encoding")) continue;
    seen = true;
    const char *v = r->hbuf + r->hdr_val[i];
    while (*v) {
      v += strspn(v, " \t,");
      size_t n = strcspn(v, ",");
      size_t t = n;
      while (t && (v[t - 1] == ' ' || v[t - 1] == '\t')) t--;
      if (t && chunked) return fail_cb(c, 400, "chunked must be the final transfer coding, once");
      if (t == 7 && !strncasecmp(v, "chunked", 7))
        chunked = true;
      else if (t)
        other = true;
      v += n;
    }
  }
  if (seen && !chunked) return fail_cb(c, 400, "chunked must be the final transfer coding, once");
  if (other) return fail_cb(c, 501, "transfer coding not implemented");
  return 0;
}

static int on_headers_complete(http_parser *p) {
  fnet_conn_t *c = p->data;
  fnet_req_t *r = c->cur;
  if (fnet__req_head_term(r) < 0) return fail_cb(c, 503, "out of memory");
  /* HTTP/1.0 and 1.1 only (1.x: RFC 9112 says answer as 1.1). */
  if (p->http_major != 1) return fail_cb(c, 505, "HTTP version not supported");
  snprintf(r->method, sizeof(r->method), "%s", http_method_str((enum http_method)p->method));
  if (check_transfer_coding(c, r) < 0) return -1;
  int rc = store_path(r);
  if (rc == -EINVAL) return fail_cb(c, 400, "malformed request URL");
  if (rc < 0) return fail_cb(c, 503, "out of memory");
  r->phase = FNET_HP_DONE;
  size_t max = c->srv->cfg.max_body_bytes;
  bool chunked = (p->flags & F_CHUNKED) != 0;
  if (!chunked && p->content_length != ULLONG_MAX && p->content_length > 0) {
    /* Refuse before reading a byte of an oversized body. */
    if (p->content_length > max) return fail_cb(c, 413, "request body too large");
    r->bcap = (size_t)p->content_length;
    r->body = malloc(r->bcap + 1);
    if (!r->body) return fail_cb(c, 503, "out of memory");
  }
  if (chunked || (p->content_length != ULLONG_MAX && p->content_length > 0)) {
    const char *e = fnet_req_header(r, "Expect");
    if (e && !strcasecmp(e, "100-continue")) send_continue(c);
  }
  return 0;
}

static int on_body(http_parser *p, const char *at, size_t len) {
  fnet_conn_t *c = p->data;
  fnet_req_t *r = c->cur;
  size_t max = c->srv->cfg.max_body_bytes;
  if (len > max - r->blen) return fail_cb(c, 413, "request body too large");
  if (r->blen + len > r->bcap) {
    /* Chunked body: grow geometrically up to the limit. */
    size_t cap = r->bcap ? r->bcap : 1024;
    while (cap < r->blen + len) cap = cap > max / 2 ? max : cap * 2;
    char *b = realloc(r->body, cap + 1);
    if (!b) return fail_cb(c, 503, "out of memory");
    r->body = b;
    r->bcap = cap;
  }
  memcpy(r->body + r->blen, at, len);
  r->blen += len;
  return 0;
}

static void enqueue(fnet_conn_t *c, fnet_req_t *r) {
  r->dispatched = true;
  r->qnext = NULL;
  if (c->qtail)
    c->qtail->qnext = r;
  else
    c->qhead = r;
  c->qtail = r;
  c->qlen++;
  c->unanswered++;
}

static int on_message_complete(http_parser *p) {
  fnet_conn_t *c = p->data;
  fnet_req_t *r = c->cur;
  fnet_http_server_t *srv = c->srv;
  c->cur = NULL;
  timer_set(c, FNET_TM_NONE, 0);
  if (r->body) r->body[r->blen] = '\0';
  r->keep_alive = http_should_keep_alive(p) != 0;
  r->start_ms = uv_now(srv->loop);
  /* While draining, the one request read from an idle connection is its last. */
  if (!r->keep_alive || p->upgrade || srv->state != FNET_SRV_RUNNING) {
    r->last = true;
    c->close_after = true;
  }
  enqueue(c, r);
  char allow[128];
  const fnet_route_t *rt = fnet__route_find(srv, r->method, fnet_req_path(r), allow, sizeof(allow));
  if (!rt && !strcmp(r->method, "HEAD")) {
    /* HEAD is GET without the body (RFC 9110 9.3.2): the GET handler answers,
     * the response keeps its Content-Length and loses the body. */
    char allow_get[128];
    rt = fnet__route_find(srv, "GET", fnet_req_path(r), allow_get, sizeof(allow_get));
  }
  if (rt) {
    rt->fn(r, rt->arg);
  } else if (allow[0]) {
    fnet_req_add_header(r, "Allow", allow);
    fnet_req_respond_error(r, 405, "method not allowed");
  } else {
    fnet_req_respond_error(r, 404, "not found");
  }
  /* The handler may have closed the connection or the server; stop here.
   * Otherwise pause at this message boundary if the pipeline is full. */
  if (c->closing || c->close_after || c->qlen + c->writes >= srv->cfg.max_pipeline)
    http_parser_pause(p, 1);
  return 0;
}

static const http_parser_settings parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ---- reading ------------------------------------------------------------- */

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  fnet_conn_t *c = h->data;
  fnet_http_server_t *srv = c->srv;
  /* libuv reads one stream at a time and hands the data to on_read at once,
   * so a single buffer per server is enough. */
  if (srv->rbuf_busy) {
    *buf = uv_buf_init(NULL, 0);
    return;
  }
  srv->rbuf_busy = true;
  *buf = uv_buf_init(srv->rbuf, sizeof(srv->rbuf));
}

static void read_start(fnet_conn_t *c) {
  if (c->reading || c->closing || c->peer_eof) return;
  if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0) c->reading = true;
}

static void read_stop(fnet_conn_t *c) {
  if (!c->reading) return;
  uv_read_stop((uv_stream_t *)&c->tcp);
  c->reading = false;
}

static int pend_append(fnet_conn_t *c, const char *data, size_t len) {
  char *p = realloc(c->pend, c->pend_len + len);
  if (!p) return -ENOMEM;
  memcpy(p + c->pend_len, data, len);
  c->pend = p;
  c->pend_len += len;
  if (c->pend_len >= FNET__PEND_MAX) read_stop(c);
  return 0;
}

static int parse_status(fnet_conn_t *c, enum http_errno e, const char **msg) {
  if (c->lib_error) {
    *msg = c->lib_msg;
    return c->lib_error;
  }
  if (e == HPE_HEADER_OVERFLOW) {
    *msg = "request header too large";
    return 431;
  }
  *msg = "malformed HTTP request";
  return 400;
}

static void conn_feed(fnet_conn_t *c, const char *data, size_t len) {
  c->in_parse = true;
  size_t n = http_parser_execute(&c->parser, &parser_settings, data, len);
  c->in_parse = false;
  if (c->closing) return;
  enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
  if (e == HPE_PAUSED) {
    /* Paused at a message boundary: keep the rest for later, unless no
     * further request will be read on this connection. */
    if (!c->close_after && n < len && pend_append(c, data + n, len - n) < 0)
      fnet__conn_close(c);
    return;
  }
  if (e != HPE_OK) {
    const char *msg;
    int status = parse_status(c, e, &msg);
    conn_fail(c, status, msg);
  }
}

/* The client sent its last byte and everything it sent has been parsed:
 * the complete requests are answered, a request still incomplete is
 * abandoned (never answered), and the connection closes once the answers
 * are written. */
static void conn_eof_settle(fnet_conn_t *c) {
  if (c->cur) {
    fnet__req_free(c->cur);
    c->cur = NULL;
  }
  if (c->tmode == FNET_TM_READ) timer_set(c, FNET_TM_NONE, 0);
  c->close_after = true;
  /* The last answer still to be serialised says Connection: close. */
  if (c->qtail && !c->qtail->responded) c->qtail->last = true;
  free(c->pend);
  c->pend = NULL;
  c->pend_len = 0;
  if (!c->qlen && !c->writes) {
    fnet__conn_close(c);
    return;
  }
  fnet__conn_progress(c);
}

/* True while bytes already received wait unparsed behind the pipeline cap. */
static bool conn_has_unparsed(const fnet_conn_t *c) {
  return HTTP_PARSER_ERRNO(&c->parser) == HPE_PAUSED && c->pend_len && !c->close_after;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  fnet_conn_t *c = s->data;
  if (buf->base == c->srv->rbuf) c->srv->rbuf_busy = false;
  if (n == 0 || c->closing) return;
  if (n < 0) {
    if (n == UV_ENOBUFS) return;
    /* A reset or an error: the client is gone, unanswered requests abort.
     * EOF alone is a half-close (shutdown(SHUT_WR) after the last request)
     * unless a request is still incomplete: answer what arrived complete. */
    if (n != UV_EOF || c->lingering || c->broken) {
      fnet__conn_close(c);
      return;
    }
    read_stop(c);
    c->peer_eof = true;
    if (!conn_has_unparsed(c)) conn_eof_settle(c); /* else conn_resume settles */
    return;
  }
  if (c->lingering || c->close_after || c->broken) return; /* no further request: discard */
  if (HTTP_PARSER_ERRNO(&c->parser) == HPE_PAUSED) {
    if (pend_append(c, buf->base, (size_t)n) < 0) fnet__conn_close(c);
    return;
  }
  deadline_start(c);
  conn_feed(c, buf->base, (size_t)n);
  if (!c->closing) conn_arm(c);
}

/* Parses what was kept while paused, once the pipeline has room again. */
static void conn_resume(fnet_conn_t *c) {
  if (c->closing || c->close_after || c->in_parse || c->lingering || c->broken) return;
  if (HTTP_PARSER_ERRNO(&c->parser) != HPE_PAUSED) return;
  if (c->qlen + c->writes >= c->srv->cfg.max_pipeline) return;
  http_parser_pause(&c->parser, 0);
  char *buf = c->pend;
  size_t len = c->pend_len;
  c->pend = NULL;
  c->pend_len = 0;
  if (len) conn_feed(c, buf, len);
  free(buf);
  if (c->closing) return;
  if (c->peer_eof) {
    if (!conn_has_unparsed(c)) conn_eof_settle(c);
    return;
  }
  if (c->pend_len < FNET__PEND_MAX) read_start(c);
}

/* ---- timers and closing ------------------------------------------------- */

/* Idle deadline from the last activity, unless the application owes an
 * answer (its own deadlines apply) or a request or linger deadline runs. */
static void conn_arm(fnet_conn_t *c) {
  if (c->closing || c->tmode == FNET_TM_LINGER || c->tmode == FNET_TM_READ) return;
  if (c->unanswered)
    timer_set(c, FNET_TM_NONE, 0);
  else
    timer_set(c, FNET_TM_IDLE, c->srv->cfg.idle_timeout_ms);
}

static void on_timer(uv_timer_t *t) {
  fnet_conn_t *c = t->data;
  switch (c->tmode) {
  case FNET_TM_READ:
    c->tmode = FNET_TM_NONE;
    conn_fail(c, 408, "request timeout");
    break;
  case FNET_TM_IDLE:   /* nothing to do, or a client not reading its responses */
  case FNET_TM_LINGER:
    fnet__conn_close(c);
    break;
  case FNET_TM_NONE:
    break;
  }
}

static void on_conn_handle_closed(uv_handle_t *h) {
  fnet_conn_t *c = h->data;
  if (--c->open_handles) return;
  fnet_http_server_t *srv = c->srv;
  free(c);
  fnet__conn_gone(srv);
}

static void on_kick(uv_idle_t *h) {
  fnet_conn_t *c = h->data;
  uv_idle_stop(h);
  if (c->broken) {
    fnet__conn_close(c);
    return;
  }
  conn_resume(c);
  if (!c->closing) conn_arm(c);
}

void fnet__conn_break(fnet_conn_t *c) {
  if (c->closing || c->broken) return;
  c->broken = true;
  read_stop(c);
  uv_idle_start(&c->kick, on_kick);
}

void fnet__conn_close(fnet_conn_t *c) {
  if (c->closing) return;
  c->closing = true;
  fnet_http_server_t *srv = c->srv;
  if (c->prev)
    c->prev->next = c->next;
  else
    srv->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  c->prev = c->next = NULL;
  uv_timer_stop(&c->timer);
  uv_idle_stop(&c->kick);
  uv_close((uv_handle_t *)&c->kick, on_conn_handle_closed);
  uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
  uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
  free(c->pend);
  c->pend = NULL;
  c->pend_len = 0;
  if (c->cur) {
    fnet__req_free(c->cur);
    c->cur = NULL;
  }
  /* Detach before calling back: an abort callback may answer (and free) its
   * own request or answer another one still queued (marked, freed here). */
  fnet_req_t *r;
  while ((r = c->qhead)) {
    c->qhead = r->qnext;
    c->qlen--;
    if (r->responded) {
      fnet__req_free(r);
      continue;
    }
    r->conn = NULL;
    r->srv = NULL;
    r->qnext = NULL;
    c->unanswered--;
    if (r->abort_fn) r->abort_fn(r, r->abort_arg);
  }
  c->qtail = NULL;
  fnet__maybe_drained(srv);
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  fnet_conn_t *c = req->handle->data;
  if (status < 0) fnet__conn_close(c);
}

/* Everything is written and no further request will be read: shut the write
 * side and discard input until the client closes (bounded by a timer), so
 * unread input does not turn our last response into a reset. */
static void conn_finish(fnet_conn_t *c) {
  if (c->lingering || c->closing) return;
  if (c->peer_eof) {
    fnet__conn_close(c);
    return;
  }
  c->lingering = true;
  free(c->pend);
  c->pend = NULL;
  c->pend_len = 0;
  timer_set(c, FNET_TM_LINGER, FNET__LINGER_MS);
  if (uv_shutdown(&c->shut, (uv_stream_t *)&c->tcp, on_shutdown) < 0) {
    fnet__conn_close(c);
    return;
  }
  read_start(c);
}

/* Answers the request being parsed (or a new one) with an error and closes
 * the connection once everything before it has been written. */
static void conn_fail(fnet_conn_t *c, int status, const char *msg) {
  fnet_req_t *r = c->cur;
  c->cur = NULL;
  if (!r) r = fnet__req_new(c);
  if (!r) {
    fnet__conn_close(c);
    return;
  }
  if (c->tmode == FNET_TM_READ) timer_set(c, FNET_TM_NONE, 0);
  r->last = true;
  r->keep_alive = false;
  r->start_ms = uv_now(c->srv->loop);
  c->close_after = true;
  enqueue(c, r);
  fnet_req_respond_error(r, status, msg);
}

/* Called from inside application calls (respond) too, so anything that may
 * call back into the application (parsing more requests) is deferred to the
 * kick handle. */
void fnet__conn_progress(fnet_conn_t *c) {
  if (c->closing || c->broken) return;
  if (c->close_after && !c->qlen && !c->writes) {
    conn_finish(c);
    return;
  }
  if (HTTP_PARSER_ERRNO(&c->parser) == HPE_PAUSED && !c->close_after &&
      c->qlen + c->writes < c->srv->cfg.max_pipeline)
    uv_idle_start(&c->kick, on_kick);
  conn_arm(c);
}

/* Graceful stop on a connection with nothing queued: a request may have
 * arrived complete in the socket buffer without being read yet (the client
 * sent it as the stop began). Read what is there now, without waiting, and
 * dispatch the first complete request (its answer is the connection's last);
 * a request still incomplete is dropped by the caller. */
static void conn_read_arrived(fnet_conn_t *c) {
  if (c->qlen || c->writes || c->lingering || c->close_after || c->broken || c->in_parse ||
      c->peer_eof || HTTP_PARSER_ERRNO(&c->parser) != HPE_OK)
    return;
  int fd;
  if (uv_fileno((uv_handle_t *)&c->tcp, &fd) < 0) return;
  /* Not the shared read buffer: a handler may start the stop while a read
   * from that buffer is still being parsed. */
  char *buf = malloc(FNET__DRAIN_READ);
  if (!buf) return;
  size_t total = 0;
  while (!c->closing && !c->close_after && total < c->srv->cfg.max_header_bytes + c->srv->cfg.max_body_bytes) {
    ssize_t n = recv(fd, buf, FNET__DRAIN_READ, MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    total += (size_t)n;
    conn_feed(c, buf, (size_t)n);
  }
  free(buf);
}

void fnet__conn_drain(fnet_conn_t *c) {
  if (c->closing) return;
  conn_read_arrived(c);
  if (c->closing) return;
  c->close_after = true;
  if (c->cur) {
    fnet__req_free(c->cur);
    c->cur = NULL;
  }
  if (c->tmode == FNET_TM_READ) timer_set(c, FNET_TM_NONE, 0);
  if (!c->qlen && !c->writes && !c->lingering) {
    fnet__conn_close(c);
    return;
  }
  fnet__conn_progress(c);
}

/* Answers 503 on a socket we will not serve and closes it. Nothing waits:
 * what the socket takes now is all the client gets. Input that has already
 * arrived is read first, so that the close does not become a reset that
 * destroys the answer in flight. */
void fnet__reject_fd(int fd) {
  static const char body[] = "{\"error\":\"too many connections\",\"status\":503}";
  char msg[256];
  int n = snprintf(msg, sizeof(msg),
                   "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                   "Content-Length: %zu\r\nConnection: close\r\nRetry-After: 1\r\n\r\n%s",
                   sizeof(body) - 1, body);
  char sink[1024];
  (void)send(fd, msg, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);
  (void)shutdown(fd, SHUT_WR);
  for (int i = 0; i < 16 && recv(fd, sink, sizeof(sink), MSG_DONTWAIT) > 0; i++) {
  }
  close(fd);
}

static void on_early_closed(uv_handle_t *h) {
  fnet_conn_t *c = h->data;
  fnet_http_server_t *srv = c->srv;
  free(c);
  fnet__handle_gone(srv);
}

static void peer_name(fnet_conn_t *c) {
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  strcpy(c->peer, "?");
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) < 0) return;
  if (ss.ss_family == AF_INET)
    uv_ip4_name((struct sockaddr_in *)&ss, c->peer, sizeof(c->peer));
  else if (ss.ss_family == AF_INET6)
    uv_ip6_name((struct sockaddr_in6 *)&ss, c->peer, sizeof(c->peer));
}

int fnet__conn_start(fnet_http_server_t *srv, int fd) {
  if (srv->nconns >= srv->cfg.max_connections) {
    fnet__reject_fd(fd);
    return -EMFILE;
  }
  fnet_conn_t *c = calloc(1, sizeof(*c));
  if (!c) {
    fnet__reject_fd(fd);
    return -ENOMEM;
  }
  c->srv = srv;
  int rc = uv_tcp_init(srv->loop, &c->tcp);
  if (rc < 0) {
    free(c);
    fnet__reject_fd(fd);
    return rc;
  }
  c->tcp.data = c;
  srv->handles++;
  rc = uv_tcp_open(&c->tcp, fd);
  if (rc < 0) {
    fnet__reject_fd(fd); /* not adopted by the handle: still ours */
    uv_close((uv_handle_t *)&c->tcp, on_early_closed);
    return rc;
  }
  /* Neither can fail on Linux (they only link the handle into the loop). */
  uv_timer_init(srv->loop, &c->timer);
  uv_idle_init(srv->loop, &c->kick);
  c->timer.data = c;
  c->kick.data = c;
  c->open_handles = 3;
  uv_tcp_nodelay(&c->tcp, 1);
  peer_name(c);
  http_parser_init(&c->parser, HTTP_REQUEST);
  c->parser.data = c;
  c->next = srv->conns;
  if (srv->conns) srv->conns->prev = c;
  srv->conns = c;
  srv->nconns++;
  read_start(c);
  if (!c->reading) {
    fnet__conn_close(c);
    return -EIO;
  }
  conn_arm(c);
  return 0;
}
