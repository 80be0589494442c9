/* ferry farm: one authenticated peer connection on libuv. Reading feeds the
 * incremental decoder; until the handshake is done only handshake frames are
 * accepted, after it only sealed ones. Writing: every frame is one uv_write
 * of its own buffer; file streaming refills from the file only while fewer
 * than FFARM_CONN_WBUF bytes are queued, so a 1 GiB file costs the same
 * memory as a 1 KiB one.
 *
 * The bulk path copies each byte as few times as it can: the sender read()s
 * file bytes straight into a pooled frame buffer and seals them there; the
 * receiver, once a DATA frame's header is known, lets libuv read the body
 * straight into the decoder's buffer and checks it there; a big frame's
 * buffer then goes to the connection's writer thread, which pwrite()s it
 * while the decoder reads the next frame into another buffer (at most
 * WR_DEPTH in flight), so the page-cache copy runs beside the socket read
 * and the tag check instead of after them.
 *
 * Integrity: every frame carries its AEAD tag (a keyed checksum of that
 * chunk; DATA frames in clear-data mode are tagged, not encrypted) under a
 * per-direction counter, so the receiver gets exactly the
 * bytes the sender read, in order, none missing; END adds the size and the
 * file's BLAKE2b-256 as the sender states it, which the receiver compares
 * with the hash it expects (the task's identity) instead of hashing the
 * bytes again. The sender hashes while streaming only when its caller does
 * not know the hash; when it does (the employer hashed each chunk at scan
 * time), it checks instead that the file's size and mtime did not change
 * while it was read (else the END is spoiled and the receiver rejects the
 * file). So no byte is hashed twice, and a bulk chunk is hashed once in all. */
#include "farm_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define HS_TIMEOUT_MS 10000
/* Incoming DATA frames at least this big are written by the connection's
 * writer thread (writer.c) while the loop reads and checks the next ones;
 * smaller ones (small files, the tail of a file) directly. */
#define WR_ASYNC_MIN (256u << 10)
/* Writes in flight at most (each holds one FFARM_DEC_BUF buffer). */
#define WR_DEPTH 4

typedef struct out_file {
  struct out_file *next;     /* FIFO */
  uint8_t type;              /* meta frame type */
  char id[FFARM_ID_MAX + 1]; /* task id */
  char *meta;                /* meta JSON (owned) */
  int fd;                    /* source (owned) */
  uint64_t cookie;           /* for on_sent */
  bool meta_sent;            /* meta frame written */
  uint64_t sent;             /* file bytes framed so far */
  bool known;                /* hash given by the caller: no hashing while streaming */
  struct stat st0;           /* the file at the start (known hash: must not change) */
  uint8_t hash[FFARM_HASH_LEN]; /* that hash */
  crypto_generichash_state h;/* running checksum (when not known) */
} out_file_t;

typedef struct wreq {
  uv_write_t req;            /* libuv request */
  ffarm_conn_t *c;           /* owner */
  struct wreq *next;         /* free list of big buffers */
  size_t cap;                /* bytes data can hold */
  size_t len;                /* bytes in data */
  uint8_t data[];            /* the frame */
} wreq_t;

/* Big frame buffers (DATA frames) kept for reuse: FFARM_CONN_WBUF of them in
 * flight at most, a few idle. */
#define BIG_CAP FFARM_FRAME_MAX
#define BIG_KEEP 4

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
  bool in_expect;            /* the caller gave the hash the file must have */
  uint8_t in_hash[FFARM_HASH_LEN]; /* that hash */
  bool want_file;            /* set by recv_file() inside on_msg */
  int want_fd;               /* the fd it gave */
  const uint8_t *want_hash;  /* the hash it gave (NULL none) */
  uint64_t bytes_in, bytes_out; /* wire counters */
  char peer[64];             /* peer address text */
  ffarm_wr_t *wr;            /* writer thread for big incoming DATA frames (lazy) */
  uint8_t rbuf[65536];       /* read buffer for small frames and headers */
  wreq_t *big_free;          /* idle big frame buffers */
  unsigned big_nfree;        /* how many */
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
const char *ffarm_conn_mode(const ffarm_conn_t *c) {
  if (!c->ready) return "";
  if (c->sess.cipher == FFARM_CIPHER_AES)
    return c->sess.clear_data ? "aes-256-gcm, file data in clear" : "aes-256-gcm, file data encrypted";
  return c->sess.clear_data ? "chacha20-poly1305, file data in clear"
                            : "chacha20-poly1305, file data encrypted";
}
uint64_t ffarm_conn_bytes_out(const ffarm_conn_t *c) { return c->bytes_out; }
uint64_t ffarm_conn_bytes_in(const ffarm_conn_t *c) { return c->bytes_in; }
void *ffarm_conn_arg(const ffarm_conn_t *c) { return c->arg; }
void ffarm_conn_set_arg(ffarm_conn_t *c, void *arg) { c->arg = arg; }

static void free_out(out_file_t *o) {
  if (o->fd >= 0) close(o->fd);
  free(o->meta);
  free(o);
}

static wreq_t *big_get(ffarm_conn_t *c) {
  wreq_t *w = c->big_free;
  if (w) {
    c->big_free = w->next;
    c->big_nfree--;
    return w;
  }
  w = ffarm_big_alloc(sizeof(*w) + BIG_CAP);
  if (w) w->cap = BIG_CAP;
  return w;
}

static void wreq_free(ffarm_conn_t *c, wreq_t *w) {
  if (w->cap == BIG_CAP && c->big_nfree < BIG_KEEP && !c->closing) {
    w->next = c->big_free;
    c->big_free = w;
    c->big_nfree++;
    return;
  }
  if (w->cap == BIG_CAP) ffarm_big_free(w, sizeof(*w) + BIG_CAP);
  else free(w);
}

static void on_handle_closed(uv_handle_t *h) {
  ffarm_conn_t *c = h->data;
  if (--c->handles_open > 0) return;
  /* queued writes finish before on_close, where the caller may close the fd */
  ffarm_wr_destroy(c->wr);
  c->wr = NULL;
  while (c->big_free) {
    wreq_t *w = c->big_free;
    c->big_free = w->next;
    ffarm_big_free(w, sizeof(*w) + BIG_CAP);
  }
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
  wreq_free(c, w);
  if (c->closing) return;
  if (status < 0) {
    ffarm_conn_close(c, status);
    return;
  }
  pump(c);
}

/* Queues w (len bytes of frame) on the socket; frees w on failure. */
static int queue_write(ffarm_conn_t *c, wreq_t *w, size_t len) {
  w->c = c;
  w->len = len;
  uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)len);
  int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_written);
  if (rc < 0) {
    wreq_free(c, w);
    return rc;
  }
  c->wpending += len;
  c->bytes_out += (uint64_t)len;
  return 0;
}

/* Writes one frame; the payload is sealed when the handshake is done. */
static int write_frame(ffarm_conn_t *c, uint8_t type, const char *id, const void *p, size_t n) {
  size_t id_len = id ? strlen(id) : 0;
  size_t cap = ffarm_frame_size(id_len, n);
  wreq_t *w = malloc(sizeof(*w) + cap);
  if (!w) return -ENOMEM;
  w->cap = cap;
  ssize_t len = ffarm_frame_encode(type < 0x10 ? NULL : &c->sess, type, id, id_len, p, n, w->data,
                                   cap);
  if (len < 0) {
    free(w);
    return (int)len;
  }
  return queue_write(c, w, (size_t)len);
}

int ffarm_conn_send(ffarm_conn_t *c, uint8_t type, const char *id, const char *json, size_t len) {
  if (!c->ready || c->closing) return -ENOTCONN;
  if (len > FFARM_META_MAX) return -EMSGSIZE;
  return write_frame(c, type, id, json, len);
}

int ffarm_conn_send_file(ffarm_conn_t *c, uint8_t type, const char *id, const char *json,
                         int fd, uint64_t cookie, const uint8_t *hash) {
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
  if (hash) {
    o->known = true;
    memcpy(o->hash, hash, FFARM_HASH_LEN);
    if (fstat(fd, &o->st0) < 0) memset(&o->st0, 0, sizeof(o->st0));
  } else {
    crypto_generichash_init(&o->h, NULL, 0, FFARM_HASH_LEN);
  }
  /* a big file: hint the kernel to read ahead (advice only) */
  posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
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
      /* read straight into the frame buffer, seal in place */
      size_t id_len = strlen(o->id);
      wreq_t *w = big_get(c);
      if (!w) {
        ffarm_conn_close(c, -ENOMEM);
        return;
      }
      uint8_t *body = w->data + FFARM_HDR_LEN + id_len;
      ssize_t n;
      do {
        n = read(o->fd, body, FFARM_CHUNK);
      } while (n < 0 && errno == EINTR);
      if (n < 0) {
        /* the receiver sees a short, mismatching END and rejects the file */
        rc = -errno;
        n = 0;
      }
      if (n > 0) {
        if (!o->known) crypto_generichash_update(&o->h, body, (size_t)n);
        o->sent += (uint64_t)n;
        ssize_t len = ffarm_frame_seal_inplace(&c->sess, FFARM_T_DATA, o->id, id_len, (size_t)n,
                                               w->data);
        if (len < 0) {
          wreq_free(c, w);
          rc = (int)len;
        } else {
          rc = queue_write(c, w, (size_t)len);
        }
      } else {
        wreq_free(c, w);
        uint8_t end[8 + FFARM_HASH_LEN];
        ffarm_put_u64(end, o->sent);
        if (o->known) {
          memcpy(end + 8, o->hash, FFARM_HASH_LEN);
          /* changed while we read it: the stated hash would lie */
          struct stat st1;
          if (fstat(o->fd, &st1) < 0 || st1.st_size != o->st0.st_size ||
              (uint64_t)st1.st_size != o->sent || st1.st_mtim.tv_sec != o->st0.st_mtim.tv_sec ||
              st1.st_mtim.tv_nsec != o->st0.st_mtim.tv_nsec)
            rc = rc < 0 ? rc : -ESTALE;
        } else {
          crypto_generichash_final(&o->h, end + 8, FFARM_HASH_LEN);
        }
        /* a read error or a changed file: a size the receiver cannot match */
        if (rc < 0) ffarm_put_u64(end, UINT64_MAX);
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

int ffarm_conn_recv_file(ffarm_conn_t *c, int fd, const uint8_t *hash) {
  c->want_file = true;
  c->want_fd = fd;
  c->want_hash = hash;
  return 0;
}

static void on_hs_timeout(uv_timer_t *t) {
  ffarm_conn_t *c = t->data;
  if (!c->ready) ffarm_conn_close(c, -ETIMEDOUT);
}

/* The writer thread, made at the first big incoming frame. Its direct I/O
 * (writer.c) is on unless FERRY_FARM_DIRECT_IO=0 (to compare, or for a file
 * system that accepts O_DIRECT but does it badly). */
static int wr_start(ffarm_conn_t *c) {
  int rc = ffarm_wr_init(&c->wr, WR_DEPTH);
  if (rc < 0) return rc;
  const char *e = getenv("FERRY_FARM_DIRECT_IO");
  if (e && strcmp(e, "0") == 0) ffarm_wr_set_direct(c->wr, false);
  return 0;
}

static void file_frame(ffarm_conn_t *c, const ffarm_frame_t *f) {
  if (!c->in_file || f->id_len != strlen(c->in_id) || memcmp(f->id, c->in_id, f->id_len) != 0) {
    ffarm_conn_close(c, -EPROTO);
    return;
  }
  if (f->type == FFARM_T_DATA) {
    uint64_t at = c->in_size;  /* explicit offsets: the writer thread and we share the fd */
    c->in_size += f->len;
    if (c->in_fd < 0 || c->in_bad) return;
    if (f->len >= WR_ASYNC_MIN && (c->wr || wr_start(c) == 0)) {
      /* the decoder continues in a fresh buffer, the thread writes this one */
      uint8_t *fresh = ffarm_wr_buf(c->wr);
      if (fresh) {
        uint8_t *full = ffarm_dec_swap(&c->dec, fresh);
        if (ffarm_wr_put(c->wr, full, c->in_fd, f->payload, f->len, at) < 0) c->in_bad = true;
        return;
      }
    }
    size_t off = 0;
    while (off < f->len) {
      ssize_t n = pwrite(c->in_fd, f->payload + off, f->len - off, (off_t)(at + off));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        c->in_bad = true;
        break;
      }
      off += (size_t)n;
    }
    return;
  }
  /* END: size + checksum, once every byte is on its way to the file */
  if (ffarm_wr_drain(c->wr) < 0) c->in_bad = true;
  int status = 0;
  if (f->len != 8 + FFARM_HASH_LEN || ffarm_get_u64(f->payload) != c->in_size ||
      (c->in_expect && sodium_memcmp(c->in_hash, f->payload + 8, FFARM_HASH_LEN) != 0))
    status = -EBADMSG;
  else if (c->in_bad)
    status = -EIO;
  /* the file ends where the sender's bytes end, whatever the caller
   * reserved beforehand (fallocate of a stated size) */
  struct stat st;
  if (status == 0 && c->in_fd >= 0 && fstat(c->in_fd, &st) == 0 && S_ISREG(st.st_mode) &&
      (uint64_t)st.st_size > c->in_size && ftruncate(c->in_fd, (off_t)c->in_size) < 0)
    status = -errno;
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
      w->cap = n;
      memcpy(w->data, out, n);
      if ((rc = queue_write(c, w, n)) < 0) {
        ffarm_conn_close(c, rc);
        return;
      }
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
  c->want_hash = NULL;
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
    c->in_expect = c->want_hash != NULL;
    if (c->want_hash) memcpy(c->in_hash, c->want_hash, FFARM_HASH_LEN);
    c->want_file = false;
  }
}

static void on_alloc(uv_handle_t *h, size_t sz, uv_buf_t *buf) {
  ffarm_conn_t *c = h->data;
  uint8_t *p;
  size_t room = ffarm_dec_space(&c->dec, &p);
  /* a big body: straight into the decoder (no copy); else the small buffer,
   * which may hold several small frames per read */
  if (room >= sizeof(c->rbuf)) *buf = uv_buf_init((char *)p, (unsigned)room);
  else *buf = uv_buf_init((char *)c->rbuf, sizeof(c->rbuf));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  ffarm_conn_t *c = s->data;
  if (c->closing) return;
  if (nread < 0) {
    ffarm_conn_close(c, nread == UV_EOF ? -EPIPE : (int)nread);
    return;
  }
  c->bytes_in += (uint64_t)nread;
  if (nread > 0 && buf->base != (char *)c->rbuf) {  /* read into the decoder */
    ffarm_frame_t f;
    int rc = ffarm_dec_commit(&c->dec, (size_t)nread, &f);
    if (rc < 0) ffarm_conn_close(c, rc);
    else if (rc == 1) handle_frame(c, &f);
    return;
  }
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
  /* room for a few big frames in flight each way (the kernel caps these at
   * net.core.[rw]mem_max; autotuning may go beyond on its own) */
  int sb = 4 << 20;
  uv_send_buffer_size((uv_handle_t *)&c->tcp, &sb);
  sb = 4 << 20;
  uv_recv_buffer_size((uv_handle_t *)&c->tcp, &sb);
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
  w->cap = n;
  memcpy(w->data, out, n);
  return queue_write(c, w, n);
}
