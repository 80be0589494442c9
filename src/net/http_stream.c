/* ferry net: streamed answers. The request stays at its place in the
 * connection's response queue; its chunks collect in r->out and are written
 * whenever it is at the head, each write owning its bytes, so later answers
 * on the same connection wait until the stream has ended. */
#include "net_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One chunk write in flight: owns the bytes it writes. */
typedef struct fnet_swrite {
  uv_write_t w;        /* libuv request */
  fnet_conn_t *c;      /* connection */
  char *buf;           /* bytes being written */
} fnet_swrite_t;

static void on_swrite(uv_write_t *w, int status) {
  fnet_swrite_t *sw = w->data;
  fnet_conn_t *c = sw->c;
  free(sw->buf);
  free(sw);
  c->writes--;
  if (c->closing) return;
  if (status < 0) {
    fnet__conn_close(c);
    return;
  }
  fnet__conn_progress(c);
}

void fnet__stream_flush(fnet_conn_t *c, fnet_req_t *r) {
  char *buf = r->out;
  size_t len = r->outlen;
  r->out = NULL;
  r->outlen = 0;
  uv_buf_t b = uv_buf_init(buf, (unsigned)len);
  int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
  if (n == (int)len) {
    free(buf);
    return;
  }
  if (n < 0 && n != UV_EAGAIN) {
    free(buf);
    fnet__conn_break(c);
    return;
  }
  if (n < 0) n = 0;
  fnet_swrite_t *sw = malloc(sizeof(*sw));
  if (!sw) {
    free(buf);
    fnet__conn_break(c);
    return;
  }
  sw->c = c;
  sw->buf = buf;
  sw->w.data = sw;
  b = uv_buf_init(buf + n, (unsigned)(len - (size_t)n));
  c->writes++;
  if (uv_write(&sw->w, (uv_stream_t *)&c->tcp, &b, 1, on_swrite) < 0) {
    c->writes--;
    free(buf);
    free(sw);
    fnet__conn_break(c);
  }
}

/* Appends to r->out (the unsent bytes). */
static int out_append(fnet_req_t *r, const char *a, size_t alen, const void *b, size_t blen,
                      const char *z, size_t zlen) {
  char *o = realloc(r->out, r->outlen + alen + blen + zlen + 1);
  if (!o) return -ENOMEM;
  memcpy(o + r->outlen, a, alen);
  if (blen) memcpy(o + r->outlen + alen, b, blen);
  memcpy(o + r->outlen + alen + blen, z, zlen);
  r->out = o;
  r->outlen += alen + blen + zlen;
  return 0;
}

static bool gone(const fnet_req_t *r) { return !r->conn || r->conn->closing || r->conn->broken; }

int fnet_req_stream_begin(fnet_req_t *r, int status, const char *ctype) {
  if (!r || r->streaming || r->responded || status < 200 || status > 999) return -EINVAL;
  if (gone(r)) return -ECONNABORTED;
  fnet_conn_t *c = r->conn;
  if (!ctype) ctype = "application/octet-stream";
  bool close = !r->keep_alive || r->last || c->srv->state != FNET_SRV_RUNNING;
  char head[512];
  int n = snprintf(head, sizeof(head),
                   "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nTransfer-Encoding: chunked\r\n"
                   "Cache-Control: no-cache\r\nConnection: %s\r\n",
                   status, fnet_status_text(status), ctype, close ? "close" : "keep-alive");
  if (n < 0 || (size_t)n >= sizeof(head)) return -EINVAL;
  if (out_append(r, head, (size_t)n, r->xh, r->xhlen, "\r\n", 2) < 0) return -ENOMEM;
  r->streaming = true;
  if (close) {
    r->last = true;
    c->close_after = true;
  }
  if (c->srv->log_fn) c->srv->log_fn(r, status, 0, c->srv->log_arg);
  fnet__conn_flush(c);
  return 0;
}

int fnet_req_stream_write(fnet_req_t *r, const void *data, size_t len) {
  if (!r || !r->streaming || (len && !data)) return -EINVAL;
  if (gone(r)) return -ECONNABORTED;
  if (!len) return 0;
  fnet_conn_t *c = r->conn;
  size_t queued = uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) + r->outlen;
  if (queued + len > FNET__STREAM_PEND_MAX) return -ENOBUFS;
  char pre[24];
  int n = snprintf(pre, sizeof(pre), "%zx\r\n", len);
  if (out_append(r, pre, (size_t)n, data, len, "\r\n", 2) < 0) return -ENOMEM;
  fnet__conn_flush(c);
  return 0;
}

int fnet_req_stream_end(fnet_req_t *r) {
  if (!r) return -EINVAL;
  if (!r->streaming) {
    fnet_req_respond_error(r, 500, "stream not started");
    return -EINVAL;
  }
  fnet_conn_t *c = r->conn;
  if (!c) {
    fnet__req_free(r);
    return -ECONNABORTED;
  }
  r->streaming = false;   /* from here on it is an ordinary answered request */
  r->responded = true;
  c->unanswered--;
  if (c->closing || c->broken) return -ECONNABORTED;  /* the connection frees r */
  if (out_append(r, "0\r\n\r\n", 5, NULL, 0, "", 0) < 0) {
    fnet__conn_break(c);
    return -ENOMEM;
  }
  fnet__conn_flush(c);
  fnet__conn_progress(c);
  return 0;
}
