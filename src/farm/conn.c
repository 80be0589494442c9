/* ferry farm: one authenticated peer connection on libuv. Reading feeds the
 * incremental decoder; until the handshake is done only handshake frames are
 * accepted, after it only sealed ones. Writing: every frame is one uv_write
 * of its own buffer; file streaming refills from the file only while fewer
 * than FFARM_CONN_WBUF bytes are queued, so a 1 GiB file costs the same
 * memory as a 1 KiB one. */
#include "farm_internal.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define HS_TIMEOUT_MS 10000

typedef struct out_file {
  struct out_file *next;     /* FIFO */
  uint8_t type;              /* meta frame type */
  char id[FFARM_ID_MAX + 1]; /* task id */
  char *meta;                /* meta JSON (owned) */
  int fd;                    /* source (owned) */
  uint64_t cookie;           /* for on_sent */
  bool meta_sent;            /* meta frame written */
  uint64_t sent;             /* file bytes framed so far */
  crypto_generichash_state h;/* running checksum */
} out_file_t;

typedef struct wreq {
  uv_write_t req;            /* libuv request */
  ffarm_conn_t *c;           /* owner */
  size_t len;                /* bytes in data */
  uint8_t data[];            /* the frame */
} wreq_t;

struct ffarm_conn {
  uv_tcp_t tcp;              /* the socket */
  uv_timer_t hs_timer;       /* handshake deadline */
  uv_loop_t *loop;           /* loop */
  ffarm_conn_cbs_t cbs;      /* callbacks */
  void *arg;                 /* their argument */
  ffarm_hs_t hs;             /* handshake state */
  ffarm_sess_t sess;         /* session keys once ready */
  bool ready;                /* handshake done */
  bool closing;              /* ffarm_conn_close() called */
  int close_err;             /* error given to on_close */
  int handles_open;          /* tcp + timer not yet closed */
  ffarm_dec_t dec;           /* incoming frames */
  size_t wpending;           /* bytes queued in uv_write */
  out_file_t *oq_head, *oq_tail; /* outgoing files */
  bool in_file;              /* an incoming file is in progress */
  int in_fd;                 /* where it goes (-1 discard) */
  bool in_bad;               /* a write to in_fd failed */
  char in_id[FFARM_ID_MAX + 1]; /* its id */
  uint64_t in_size;          /* bytes so far */
  crypto_generichash_state in_h; /* its running checksum */
  bool want_file;            /* set by recv_file() inside on_msg */
  int want_fd;               /* the fd it gave */
  uint64_t bytes_in, bytes_out; /* wire counters */
  char peer[64];             /* peer address text */
  uint8_t rbuf[FFARM_CHUNK * 4]; /* read buffer */
  bool in_alloc;             /* rbuf lent to libuv */
  uint8_t fbuf[FFARM_CHUNK]; /* file read buffer for sending */
};

static void pump(ffarm_conn_t *c);

int ffarm_conn_init(ffarm_conn_t **out, uv_loop_t *loop, bool server, const ffarm_key_t *key,
                    const ffarm_conn_cbs_t *cbs, void *arg) {
  if (ffarm_crypto_init() < 0) return -EIO;
  ffarm_conn_t *c = calloc(1, sizeof(*c));
  if (!c) return -ENOMEM;
  if (ffarm_dec_init(&c->dec) < 0) {
    free(c);
    return -ENOMEM;
  }
  c->loop = loop;
  c->cbs = *cbs;
  c->arg = arg;
  c->in_fd = -1;
  c->hs.server = server;
  c->hs.key = *key;
  uv_tcp_init(loop, &c->tcp);
  uv_timer_init(loop, &c->hs_timer);
  c->tcp.data = c;
  c->hs_timer.data = c;
  c->handles_open = 2;
  *out = c;
  return 0;
}

uv_tcp_t *ffarm_conn_tcp(ffarm_conn_t *c) { return &c->tcp; }
bool ffarm_conn_ready(const ffarm_conn_t *c) { return c->ready && !c->closing; }
const char *ffarm_conn_peer(const ffarm_conn_t *c) { return c->peer; }
uint64_t ffarm_conn_bytes_out(const ffarm_conn_t *c) { return c->bytes_out; }
uint64_t ffarm_conn_bytes_in(const ffarm_conn_t *c) { return c->bytes_in; }
void *ffarm_conn_arg(const ffarm_conn_t *c) { return c->arg; }
void ffarm_conn_set_arg(ffarm_conn_t *c, void *arg) { c->arg = arg; }

static void free_out(out_file_t *o) {
  if (o->fd >= 0) close(o->fd);
  free(o->meta);
  free(o);
}

static void on_handle_closed(uv_handle_t *h) {
  ffarm_conn_t *c = h->data;
  if (--c->handles_open > 0) return;
  if (c->cbs.on_close) c->cbs.on_close(c, c->close_err, c->arg);
  while (c->oq_head) {
    out_file_t *o = c->oq_head;
    c->oq_head = o->next;
    free_out(o);
  }
  ffarm_dec_destroy(&c->dec);
  free(c);
}

void ffarm_conn_close(ffarm_conn_t *c, int err) {
  if (!c || c->closing) return;
  c->closing = true;
  c->close_err = err;
  uv_close((uv_handle_t *)&c->hs_timer, on_handle_closed);
  uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
}

static void on_written(uv_write_t *req, int status) {
  wreq_t *w = (wreq_t *)req;
  ffarm_conn_t *c = w->c;
  c->wpending -= w->len;
  free(w);
  if (c->closing) return;
  if (status < 0) {
    ffarm_conn_close(c, status);
    return;
  }
  pump(c);
}

/* Writes one frame; the payload is sealed when the handshake is done. */
static int write_frame(ffarm_conn_t *c, uint8_t type, const char *id, const void *p, size_t n) {
  size_t id_len = id ? strlen(id) : 0;
  size_t cap = ffarm_frame_size(id_len, n);
  wreq_t *w = malloc(sizeof(*w) + cap);
  if (!w) return -ENOMEM;
  ssize_t len = ffarm_frame_encode(type < 0x10 ? NULL : &c->sess, type, id, id_len, p, n, w->data,
                                   cap);
  if (len < 0) {
    free(w);
    return (int)len;
  }
  w->c = c;
  w->len = (size_t)len;
  uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)len);
  int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_written);
  if (rc < 0) {
    free(w);
    return rc;
  }
  c->wpending += (size_t)len;
  c->bytes_out += (uint64_t)len;
  return 0;
}

int ffarm_conn_send(ffarm_conn_t *c, uint8_t type, const char *id, const char *json, size_t len) {
  if (!c->ready || c->closing) return -ENOTCONN;
  if (len > FFARM_META_MAX) return -EMSGSIZE;
  return write_frame(c, type, id, json, len);
}

int ffarm_conn_send_file(ffarm_conn_t *c, uint8_t type, const char *id, const char *json,
                         int fd, uint64_t cookie) {
  if (!c->ready || c->closing) return -ENOTCONN;
  size_t mlen = json ? strlen(json) : 0;
  if (mlen > FFARM_META_MAX || strlen(id) > FFARM_ID_MAX) return -EMSGSIZE;
  out_file_t *o = calloc(1, sizeof(*o));
  if (!o) return -ENOMEM;
  o->meta = strdup(json ? json : "");
  if (!o->meta) {
    free(o);
    return -ENOMEM;
  }
  o->type = type;
  snprintf(o->id, sizeof(o->id), "%s", id);
  o->fd = fd;
  o->cookie = cookie;
  crypto_generichash_init(&o->h, NULL, 0, FFARM_HASH_LEN);
  if (c->oq_tail) c->oq_tail->next = o;
  else c->oq_head = o;
  c->oq_tail = o;
  pump(c);
  return 0;
}

/* Streams the head file while the write queue has room. */
static void pump(ffarm_conn_t *c) {
  while (!c->closing && c->ready && c->oq_head && c->wpending < FFARM_CONN_WBUF) {
    out_file_t *o = c->oq_head;
    int rc = 0;
    if (!o->meta_sent) {
      rc = write_frame(c, o->type, o->id, o->meta, strlen(o->meta));
      o->meta_sent = true;
    } else {
      ssize_t n;
      do {
        n = read(o->fd, c->fbuf, sizeof(c->fbuf));
      } while (n < 0 && errno == EINTR);
      if (n < 0) {
        /* the receiver sees a short, mismatching END and rejects the file */
        rc = -errno;
        n = 0;
      }
      if (n > 0) {
        crypto_generichash_update(&o->h, c->fbuf, (size_t)n);
        o->sent += (uint64_t)n;
        rc = write_frame(c, FFARM_T_DATA, o->id, c->fbuf, (size_t)n);
      } else {
        uint8_t end[8 + FFARM_HASH_LEN];
        ffarm_put_u64(end, o->sent);
        crypto_generichash_final(&o->h, end + 8, FFARM_HASH_LEN);
        if (rc < 0) end[8] ^= 0xff;
        int wrc = write_frame(c, FFARM_T_END, o->id, end, sizeof(end));
        c->oq_head = o->next;
        if (!c->oq_head) c->oq_tail = NULL;
        uint64_t cookie = o->cookie;
        free_out(o);
        if (wrc < 0) {
          ffarm_conn_close(c, wrc);
          return;
        }
        if (c->cbs.on_sent) c->cbs.on_sent(c, cookie, rc, c->arg);
        continue;
      }
    }
    if (rc < 0) {
      ffarm_conn_close(c, rc);
      return;
    }
  }
}

int ffarm_conn_recv_file(ffarm_conn_t *c, int fd) {
  c->want_file = true;
  c->want_fd = fd;
  return 0;
}

static void on_hs_timeout(uv_timer_t *t) {
  ffarm_conn_t *c = t->data;
  if (!c->ready) ffarm_conn_close(c, -ETIMEDOUT);
}

static void file_frame(ffarm_conn_t *c, const ffarm_frame_t *f) {
  if (!c->in_file || f->id_len != strlen(c->in_id) || memcmp(f->id, c->in_id, f->id_len) != 0) {
    ffarm_conn_close(c, -EPROTO);
    return;
  }
  if (f->type == FFARM_T_DATA) {
    crypto_generichash_update(&c->in_h, f->payload, f->len);
    c->in_size += f->len;
    if (c->in_fd >= 0 && !c->in_bad) {
      size_t off = 0;
      while (off < f->len) {
        ssize_t n = write(c->in_fd, f->payload + off, f->len - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
          c->in_bad = true;
          break;
        }
        off += (size_t)n;
      }
    }
    return;
  }
  /* END: size + checksum */
  int status = 0;
  uint8_t h[FFARM_HASH_LEN];
  crypto_generichash_final(&c->in_h, h, sizeof(h));
  if (f->len != 8 + FFARM_HASH_LEN || ffarm_get_u64(f->payload) != c->in_size ||
      sodium_memcmp(h, f->payload + 8, FFARM_HASH_LEN) != 0)
    status = -EBADMSG;
  else if (c->in_bad)
    status = -EIO;
  c->in_file = false;
  c->in_fd = -1;
  char id[FFARM_ID_MAX + 1];
  memcpy(id, c->in_id, sizeof(id));
  if (c->cbs.on_file) c->cbs.on_file(c, id, status, c->arg);
}

static void handle_frame(ffarm_conn_t *c, ffarm_frame_t *f) {
  if (!c->ready) {
    uint8_t out[256];
    size_t n = 0;
    int rc = ffarm_hs_step(&c->hs, f, out, &n);
    if (rc < 0) {
      ffarm_conn_close(c, rc);
      return;
    }
    if (n > 0) {
      /* handshake frames are in clear: write the bytes as they are */
      wreq_t *w = malloc(sizeof(*w) + n);
      if (!w) {
        ffarm_conn_close(c, -ENOMEM);
        return;
      }
      memcpy(w->data, out, n);
      w->c = c;
      w->len = n;
      uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)n);
      if ((rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_written)) < 0) {
        free(w);
        ffarm_conn_close(c, rc);
        return;
      }
      c->wpending += n;
      c->bytes_out += n;
    }
    if (c->hs.state == FFARM_HS_DONE) {
      ffarm_hs_session(&c->hs, &c->sess);
      sodium_memzero(&c->hs.key, sizeof(c->hs.key));
      c->ready = true;
      uv_timer_stop(&c->hs_timer);
      if (c->cbs.on_ready) c->cbs.on_ready(c, c->arg);
      if (!c->closing) pump(c);
    }
    return;
  }
  int rc = ffarm_frame_open(&c->sess, f);
  if (rc < 0) {
    ffarm_conn_close(c, rc);
    return;
  }
  if (f->id_len > 0 && !ffarm_id_valid(f->id, f->id_len)) {
    ffarm_conn_close(c, -EPROTO);
    return;
  }
  if (f->type == FFARM_T_DATA || f->type == FFARM_T_END) {
    file_frame(c, f);
    return;
  }
  if (f->len > FFARM_META_MAX) {
    ffarm_conn_close(c, -EMSGSIZE);
    return;
  }
  char id[FFARM_ID_MAX + 1];
  memcpy(id, f->id, f->id_len);
  id[f->id_len] = '\0';
  /* the tag's bytes follow the plaintext: room for the NUL is there */
  f->payload[f->len] = '\0';
  c->want_file = false;
  if (c->cbs.on_msg) c->cbs.on_msg(c, f->type, id, (const char *)f->payload, f->len, c->arg);
  if (c->closing) return;
  if (c->want_file) {
    if (c->in_file) {  /* a file inside a file */
      ffarm_conn_close(c, -EPROTO);
      return;
    }
    c->in_file = true;
    c->in_fd = c->want_fd;
    c->in_bad = false;
    c->in_size = 0;
    memcpy(c->in_id, id, sizeof(id));
    crypto_generichash_init(&c->in_h, NULL, 0, FFARM_HASH_LEN);
    c->want_file = false;
  }
}

static void on_alloc(uv_handle_t *h, size_t sz, uv_buf_t *buf) {
  ffarm_conn_t *c = h->data;
  *buf = uv_buf_init((char *)c->rbuf, sizeof(c->rbuf));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  ffarm_conn_t *c = s->data;
  if (c->closing) return;
  if (nread < 0) {
    ffarm_conn_close(c, nread == UV_EOF ? -EPIPE : (int)nread);
    return;
  }
  c->bytes_in += (uint64_t)nread;
  size_t off = 0;
  while (off < (size_t)nread && !c->closing) {
    size_t used = 0;
    ffarm_frame_t f;
    int rc = ffarm_dec_feed(&c->dec, (const uint8_t *)buf->base + off, (size_t)nread - off, &used,
                            &f);
    off += used;
    if (rc < 0) {
      ffarm_conn_close(c, rc);
      return;
    }
    if (rc == 0) break;
    handle_frame(c, &f);
  }
}

int ffarm_conn_start(ffarm_conn_t *c) {
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
    if (ss.ss_family == AF_INET)
      uv_ip4_name((struct sockaddr_in *)&ss, c->peer, sizeof(c->peer));
    else if (ss.ss_family == AF_INET6)
      uv_ip6_name((struct sockaddr_in6 *)&ss, c->peer, sizeof(c->peer));
  }
  uv_tcp_nodelay(&c->tcp, 1);
  uv_tcp_keepalive(&c->tcp, 1, 10);
  int rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  if (rc < 0) return rc;
  uv_timer_start(&c->hs_timer, on_hs_timeout, HS_TIMEOUT_MS, 0);
  if (c->hs.server) {
    ffarm_key_t k = c->hs.key;
    ffarm_hs_server(&c->hs, &k);
    sodium_memzero(&k, sizeof(k));
    return 0;
  }
  uint8_t out[256];
  size_t n = 0;
  ffarm_key_t k = c->hs.key;
  ffarm_hs_client(&c->hs, &k, out, &n);
  sodium_memzero(&k, sizeof(k));
  wreq_t *w = malloc(sizeof(*w) + n);
  if (!w) return -ENOMEM;
  memcpy(w->data, out, n);
  w->c = c;
  w->len = n;
  uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)n);
  rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_written);
  if (rc < 0) {
    free(w);
    return rc;
  }
  c->wpending += n;
  c->bytes_out += n;
  return 0;
}
