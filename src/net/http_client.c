/* ferry net: HTTP client on libcurl's multi interface and a libuv loop.
 *
 * libcurl tells us which sockets to watch (socket callback -> uv_poll) and
 * when to call it back (timer callback -> uv_timer); we hand readiness to
 * curl_multi_socket_action() and collect finished transfers from
 * curl_multi_info_read(). libcurl forbids removing a handle from inside its
 * own callbacks, so an abort that happens there is deferred until
 * curl_multi_socket_action() has returned. */
#include "ferry/net_client.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define DEFAULT_TIMEOUT_MS 30000u
#define DEFAULT_CONNECT_MS 5000u
#define DEFAULT_MAX_BODY (8u << 20)
#define SPARE_EASY 32u   /* finished easy handles kept for the next requests */
#define URL_CACHE 16u    /* parsed URLs kept (a hub calls the same few spoke URLs) */

/* A URL parsed once and handed to libcurl as CURLOPT_CURLU, which saves
 * libcurl its parse on every request (libcurl copies the handle for each
 * transfer and only reads ours). Shared by the requests in flight that use
 * it: it is replaced only while none does. */
typedef struct urlent {
  char *url;                   /* the URL as given, NULL if the entry is free */
  CURLU *u;                    /* parsed */
  unsigned refs;               /* requests in flight using it */
} urlent_t;

/* One socket libcurl asked us to watch. A connection socket we opened
 * ourselves (CURLOPT_OPENSOCKETFUNCTION) keeps its csock and its epoll
 * registration while it sits idle in libcurl's connection cache, until
 * libcurl closes it through our CURLOPT_CLOSESOCKETFUNCTION: libcurl says
 * CURL_POLL_REMOVE after every transfer and asks for the same socket again
 * with the next one, and closing and re-creating the uv_poll each time cost
 * seven system calls per request (libuv's epoll probe, FIONBIO, ADD/DEL
 * pairs). Other sockets (a resolver's socketpair) are closed by libcurl
 * without telling us, so theirs are dropped at CURL_POLL_REMOVE as before. */
typedef struct csock {
  uv_poll_t poll;              /* readiness on fd */
  curl_socket_t fd;            /* the socket */
  int events;                  /* UV_READABLE|UV_WRITABLE being watched */
  bool idle;                   /* libcurl removed it (cached connection): its events are not libcurl's */
  fnet_client_t *cl;           /* owner */
  struct csock *prev, *next;   /* client's list (for close) */
} csock_t;

/* Sockets we opened for libcurl, by descriptor. */
typedef struct fdslot {
  csock_t *sock;               /* its watcher, NULL if none yet */
  bool ours;                   /* opened by open_socket, closed by close_socket */
} fdslot_t;

struct fnet_creq {
  fnet_client_t *cl;           /* owner */
  CURL *easy;                  /* the transfer */
  struct curl_slist *hdrs;     /* request headers */
  fnet_creq_t *prev, *next;    /* client's list of requests in flight */
  fnet_creq_t *dnext;          /* deferred-removal list */
  fnet_chead_fn on_head;       /* callbacks (see the header) */
  fnet_cdata_fn on_data;
  fnet_cdone_fn on_done;
  void *arg;
  char *buf;                   /* buffered body (+NUL) */
  size_t len, cap, max;        /* its length, allocation and limit */
  size_t received;             /* body bytes seen */
  int status;                  /* final status once the head is complete */
  bool head_done;              /* on_head delivered */
  bool aborted;                /* abort requested: no more callbacks */
  bool deferred;               /* on the deferred-removal list */
  bool stop;                   /* a callback asked to stop */
  bool toobig;                 /* buffered body over max */
  bool finished;               /* on_done running: abort is a no-op */
  bool added;                  /* handed to libcurl (else waiting on the pending list) */
  bool retried;                /* already sent again on a fresh connection */
  urlent_t *uent;              /* its parsed URL (CURLOPT_CURLU), NULL if CURLOPT_URL */
};

struct fnet_client {
  uv_loop_t *loop;             /* the loop */
  CURLM *multi;                /* libcurl multi handle */
  uv_timer_t timer;            /* libcurl's timeout */
  fnet_creq_t *reqs;           /* requests in flight */
  size_t active;               /* their count */
  fnet_creq_t *dead;           /* aborted inside libcurl callbacks, removal pending */
  fnet_creq_t *pend;           /* started inside libcurl callbacks, adding pending */
  csock_t *socks;              /* watched sockets */
  int in_curl;                 /* depth of curl_multi_socket_action calls */
  bool closing;                /* fnet_client_close called */
  int handles;                 /* uv handles not yet closed (timer + polls) */
  CURL *spare[SPARE_EASY];     /* reset easy handles for reuse: saves curl_easy_init's
                                  allocation and setup on every request */
  unsigned nspare;             /* their count */
  fdslot_t *fds;               /* sockets we opened, indexed by descriptor */
  size_t nfds;                 /* entries in fds */
  urlent_t urls[URL_CACHE];    /* parsed URLs */
  unsigned url_next;           /* next entry to replace */
};

static void process(fnet_client_t *cl, curl_socket_t fd, int ev);

/* ---- lifetime of requests --------------------------------------------------- */

static void req_unlink(fnet_creq_t *r) {
  fnet_client_t *cl = r->cl;
  if (r->prev)
    r->prev->next = r->next;
  else
    cl->reqs = r->next;
  if (r->next) r->next->prev = r->prev;
  cl->active--;
}

static void req_free(fnet_creq_t *r) {
  fnet_client_t *cl = r->cl;
  if (r->easy && !cl->closing && cl->nspare < SPARE_EASY) {
    /* detached from the multi handle already: back to the defaults, kept */
    curl_easy_reset(r->easy);
    cl->spare[cl->nspare++] = r->easy;
  } else {
    curl_easy_cleanup(r->easy);
  }
  if (r->uent) r->uent->refs--;   /* the easy handle no longer points at it */
  curl_slist_free_all(r->hdrs);
  free(r->buf);
  free(r);
}

/* Removes the transfer (a transfer removed before it completed takes its
 * connection down with it) and frees the request. Never inside libcurl. */
static void req_remove(fnet_creq_t *r) {
  req_unlink(r);
  if (r->added) curl_multi_remove_handle(r->cl->multi, r->easy);
  req_free(r);
}

/* Hands requests started inside libcurl callbacks to libcurl (it refuses
 * curl_multi_add_handle there). One that cannot be added ends with -EIO. */
static void add_pending(fnet_client_t *cl) {
  fnet_creq_t *r;
  while ((r = cl->pend) && !cl->closing) {
    cl->pend = r->dnext;
    r->dnext = NULL;
    if (curl_multi_add_handle(cl->multi, r->easy) == CURLM_OK) {
      r->added = true;
      continue;
    }
    req_unlink(r);
    r->finished = true;
    r->on_done(r, -EIO, 0, "", 0, r->arg);
    req_free(r);
  }
}

static void drain_dead(fnet_client_t *cl) {
  fnet_creq_t *r;
  while ((r = cl->dead)) {
    cl->dead = r->dnext;
    req_remove(r);
  }
}

static int map_result(const fnet_creq_t *r, CURLcode rc) {
  if (rc == CURLE_OK) return 0;
  if (r->toobig) return -EFBIG;
  if (r->stop) return -ECANCELED;
  switch (rc) {
  case CURLE_OPERATION_TIMEDOUT: return -ETIMEDOUT;
  case CURLE_COULDNT_CONNECT: return -ECONNREFUSED;
  case CURLE_COULDNT_RESOLVE_HOST:
  case CURLE_COULDNT_RESOLVE_PROXY: return -EHOSTUNREACH;
  case CURLE_GOT_NOTHING:
  case CURLE_RECV_ERROR:
  case CURLE_SEND_ERROR:
  case CURLE_PARTIAL_FILE: return -ECONNRESET;
  case CURLE_URL_MALFORMAT:
  case CURLE_UNSUPPORTED_PROTOCOL: return -EINVAL;
  default: return -EIO;
  }
}

/* Failed on a reused connection before any byte of an answer: the server
 * closed it while we were picking it (a send error, or nothing at all). */
static bool stale_reuse(const fnet_creq_t *r, CURLcode rc) {
  if (r->retried || r->aborted || r->stop || r->head_done || r->received) return false;
  if (rc != CURLE_SEND_ERROR && rc != CURLE_RECV_ERROR && rc != CURLE_GOT_NOTHING) return false;
  long fresh = 1, hbytes = 1;
  if (curl_easy_getinfo(r->easy, CURLINFO_NUM_CONNECTS, &fresh) != CURLE_OK ||
      curl_easy_getinfo(r->easy, CURLINFO_HEADER_SIZE, &hbytes) != CURLE_OK)
    return false;
  return fresh == 0 && hbytes == 0;  /* no new connection for this transfer: it was a reused one */
}

static void check_done(fnet_client_t *cl) {
  CURLMsg *m;
  int left;
  while ((m = curl_multi_info_read(cl->multi, &left))) {
    if (m->msg != CURLMSG_DONE) continue;
    fnet_creq_t *r = NULL;
    curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
    CURLcode rc = m->data.result;
    if (r->deferred) continue;  /* aborted: drain_dead frees it */
    long code = 0;
    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &code);
    curl_multi_remove_handle(cl->multi, r->easy);
    if (stale_reuse(r, rc)) {
      /* A kept-alive connection the server had closed (llama-server closes
       * after every streamed answer despite its Keep-Alive header, see
       * docs/llama.md): nothing of an answer arrived, so sending again on a
       * fresh connection is safe. Once only. */
      r->retried = true;
      curl_easy_setopt(r->easy, CURLOPT_FRESH_CONNECT, 1L);
      if (curl_multi_add_handle(cl->multi, r->easy) == CURLM_OK) continue;
    }
    req_unlink(r);
    int res = map_result(r, rc);
    r->finished = true;
    if (!r->aborted)
      r->on_done(r, res, (int)code, r->buf ? r->buf : "", r->buf ? r->len : 0, r->arg);
    req_free(r);
    if (cl->closing) return;
  }
}

/* ---- libcurl callbacks ------------------------------------------------------ */

static size_t on_header(char *p, size_t size, size_t n, void *ud) {
  fnet_creq_t *r = ud;
  size_t len = size * n;
  if (r->aborted) return 0;
  if ((len == 2 && p[0] == '\r') || (len == 1 && p[0] == '\n')) {
    long code = 0;
    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &code);
    if (code >= 200 && !r->head_done) {
      r->head_done = true;
      r->status = (int)code;
      if (r->on_head && r->on_head(r, (int)code, r->arg)) {
        r->stop = true;
        return 0;
      }
      if (r->aborted) return 0;
    }
  }
  return len;
}

static size_t on_write(char *p, size_t size, size_t n, void *ud) {
  fnet_creq_t *r = ud;
  size_t len = size * n;
  if (r->aborted) return 0;
  r->received += len;
  if (r->on_data) {
    if (r->on_data(r, p, len, r->arg)) {
      r->stop = true;
      return 0;
    }
    return r->aborted ? 0 : len;
  }
  if (len > r->max - r->len) {
    r->toobig = true;
    return 0;
  }
  if (r->len + len + 1 > r->cap) {
    size_t cap = r->cap ? r->cap : 4096;
    while (cap < r->len + len + 1) cap *= 2;
    char *b = realloc(r->buf, cap);
    if (!b) return 0;
    r->buf = b;
    r->cap = cap;
  }
  memcpy(r->buf + r->len, p, len);
  r->len += len;
  r->buf[r->len] = '\0';
  return len;
}

static void on_poll_closed(uv_handle_t *h) {
  csock_t *s = h->data;
  fnet_client_t *cl = s->cl;
  free(s);
  if (--cl->handles == 0 && cl->closing) free(cl);
}

static fdslot_t *fd_slot(fnet_client_t *cl, curl_socket_t fd) {
  return fd >= 0 && (size_t)fd < cl->nfds ? &cl->fds[fd] : NULL;
}

static void sock_close(csock_t *s) {
  fnet_client_t *cl = s->cl;
  fdslot_t *fs = fd_slot(cl, s->fd);
  if (fs && fs->sock == s) fs->sock = NULL;
  if (s->prev)
    s->prev->next = s->next;
  else
    cl->socks = s->next;
  if (s->next) s->next->prev = s->prev;
  uv_poll_stop(&s->poll);
  uv_close((uv_handle_t *)&s->poll, on_poll_closed);
}

static void on_poll(uv_poll_t *p, int status, int events) {
  csock_t *s = p->data;
  if (s->idle) {
    /* a cached connection became readable: the server closed it (or sent
     * something unasked). libcurl finds out when it next picks the
     * connection; stop watching so the event does not repeat. */
    uv_poll_stop(&s->poll);
    s->events = 0;
    return;
  }
  int ev = 0;
  if (status < 0)
    ev = CURL_CSELECT_ERR;
  else {
    if (events & UV_READABLE) ev |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE) ev |= CURL_CSELECT_OUT;
  }
  process(s->cl, s->fd, ev);
}

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp) {
  fnet_client_t *cl = userp;
  csock_t *s = socketp;
  fdslot_t *fs = fd_slot(cl, fd);
  if (!s && fs) s = fs->sock;
  if (what == CURL_POLL_REMOVE) {
    if (!s) return 0;
    curl_multi_assign(cl->multi, fd, NULL);
    if (fs && fs->ours && !cl->closing) {
      /* kept for the connection's next transfer; a read watch stays armed
       * (an idle keep-alive socket is silent), a write watch would fire */
      s->idle = true;
      if (s->events & UV_WRITABLE) {
        uv_poll_stop(&s->poll);
        s->events = 0;
      }
      return 0;
    }
    sock_close(s);
    return 0;
  }
  if (cl->closing) return 0;
  if (s) {
    s->idle = false;
    if (!socketp) curl_multi_assign(cl->multi, fd, s);
  } else {
    s = calloc(1, sizeof(*s));
    if (!s) return -1;
    if (uv_poll_init_socket(cl->loop, &s->poll, fd) < 0) {
      free(s);
      return -1;
    }
    s->fd = fd;
    s->cl = cl;
    s->poll.data = s;
    s->next = cl->socks;
    if (cl->socks) cl->socks->prev = s;
    cl->socks = s;
    cl->handles++;
    if (fs && fs->ours) fs->sock = s;
    curl_multi_assign(cl->multi, fd, s);
  }
  int ev = 0;
  if (what & CURL_POLL_IN) ev |= UV_READABLE;
  if (what & CURL_POLL_OUT) ev |= UV_WRITABLE;
  /* uv_poll_start re-registers with epoll even for the same events */
  if (ev == s->events) return 0;
  s->events = ev;
  uv_poll_start(&s->poll, ev, on_poll);
  return 0;
}

/* CURLOPT_OPENSOCKETFUNCTION: the socket libcurl would open, remembered as
 * ours so its watcher can outlive a transfer (see csock_t). */
static curl_socket_t open_socket(void *clientp, curlsocktype purpose, struct curl_sockaddr *a) {
  fnet_client_t *cl = clientp;
  if (purpose != CURLSOCKTYPE_IPCXN) return CURL_SOCKET_BAD;
  int fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
  if (fd < 0) return CURL_SOCKET_BAD;
  if ((size_t)fd >= cl->nfds) {
    size_t n = cl->nfds ? cl->nfds : 64;
    while (n <= (size_t)fd) n *= 2;
    fdslot_t *t = realloc(cl->fds, n * sizeof(*t));
    if (!t) return fd;   /* works, only without the kept watcher */
    memset(t + cl->nfds, 0, (n - cl->nfds) * sizeof(*t));
    cl->fds = t;
    cl->nfds = n;
  }
  cl->fds[fd].ours = true;
  cl->fds[fd].sock = NULL;
  return fd;
}

/* CURLOPT_CLOSESOCKETFUNCTION: the watcher goes before the descriptor, so a
 * new socket that gets the same number never meets a stale one. */
static int close_socket(void *clientp, curl_socket_t fd) {
  fnet_client_t *cl = clientp;
  fdslot_t *fs = fd_slot(cl, fd);
  if (fs) {
    if (fs->sock) sock_close(fs->sock);
    fs->sock = NULL;
    fs->ours = false;
  }
  return close(fd);
}

static void on_timer(uv_timer_t *t) { process(t->data, CURL_SOCKET_TIMEOUT, 0); }

static int on_curl_timer(CURLM *m, long ms, void *userp) {
  fnet_client_t *cl = userp;
  if (ms < 0)
    uv_timer_stop(&cl->timer);
  else
    uv_timer_start(&cl->timer, on_timer, (uint64_t)ms, 0);
  return 0;
}

static void process(fnet_client_t *cl, curl_socket_t fd, int ev) {
  int running;
  cl->in_curl++;
  curl_multi_socket_action(cl->multi, fd, ev, &running);
  cl->in_curl--;
  if (cl->in_curl) return;
  drain_dead(cl);
  add_pending(cl);
  check_done(cl);
}

/* The parsed form of url from the cache (parsed and cached now if need
 * be), with a reference taken; NULL if it cannot be parsed or every entry
 * is in use (the caller then passes the URL as text). */
static urlent_t *url_get(fnet_client_t *cl, const char *url) {
  for (unsigned i = 0; i < URL_CACHE; i++)
    if (cl->urls[i].url && !strcmp(cl->urls[i].url, url)) {
      cl->urls[i].refs++;
      return &cl->urls[i];
    }
  urlent_t *e = NULL;
  for (unsigned k = 0; k < URL_CACHE && !e; k++) {
    urlent_t *c = &cl->urls[(cl->url_next + k) % URL_CACHE];
    if (!c->refs) e = c;
  }
  if (!e) return NULL;
  CURLU *u = curl_url();
  char *copy = strdup(url);
  if (!u || !copy || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK) {
    curl_url_cleanup(u);
    free(copy);
    return NULL;
  }
  cl->url_next = (unsigned)(e - cl->urls + 1) % URL_CACHE;
  curl_url_cleanup(e->u);
  free(e->url);
  e->url = copy;
  e->u = u;
  e->refs = 1;
  return e;
}

static void urls_free(fnet_client_t *cl) {
  for (unsigned i = 0; i < URL_CACHE; i++) {
    curl_url_cleanup(cl->urls[i].u);
    free(cl->urls[i].url);
    cl->urls[i] = (urlent_t){0};
  }
}

/* ---- public ------------------------------------------------------------------ */

int fnet_client_init(fnet_client_t **out, uv_loop_t *loop) {
  if (!out || !loop) return -EINVAL;
  static bool global_done;
  if (!global_done) {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) return -EIO;
    global_done = true;
  }
  fnet_client_t *cl = calloc(1, sizeof(*cl));
  if (!cl) return -ENOMEM;
  cl->multi = curl_multi_init();
  if (!cl->multi) {
    free(cl);
    return -EIO;
  }
  cl->loop = loop;
  uv_timer_init(loop, &cl->timer);
  cl->timer.data = cl;
  cl->handles = 1;
  curl_multi_setopt(cl->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
  curl_multi_setopt(cl->multi, CURLMOPT_SOCKETDATA, cl);
  curl_multi_setopt(cl->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
  curl_multi_setopt(cl->multi, CURLMOPT_TIMERDATA, cl);
  /* keep-alive connections per host: plenty for a hub's few spokes */
  curl_multi_setopt(cl->multi, CURLMOPT_MAXCONNECTS, 256L);
  *out = cl;
  return 0;
}

static void on_timer_closed(uv_handle_t *h) {
  fnet_client_t *cl = h->data;
  if (--cl->handles == 0) free(cl);
}

void fnet_client_close(fnet_client_t *cl) {
  if (!cl || cl->closing) return;
  cl->closing = true;
  drain_dead(cl);
  cl->pend = NULL;   /* those are on cl->reqs too */
  while (cl->reqs) req_remove(cl->reqs);
  while (cl->socks) {
    curl_multi_assign(cl->multi, cl->socks->fd, NULL);
    sock_close(cl->socks);
  }
  curl_multi_cleanup(cl->multi);   /* closes the cached connections (close_socket) */
  cl->multi = NULL;
  free(cl->fds);
  cl->fds = NULL;
  cl->nfds = 0;
  while (cl->nspare) curl_easy_cleanup(cl->spare[--cl->nspare]);
  urls_free(cl);   /* no easy handle points at them any more */
  uv_timer_stop(&cl->timer);
  uv_close((uv_handle_t *)&cl->timer, on_timer_closed);
}

int fnet_client_request(fnet_client_t *cl, const fnet_creq_opts_t *o, fnet_creq_t **out) {
  if (!cl || !o || !o->url || !o->on_done || cl->closing || (o->body_len && !o->body))
    return -EINVAL;
  fnet_creq_t *r = calloc(1, sizeof(*r));
  if (!r) return -ENOMEM;
  r->cl = cl;
  r->on_head = o->on_head;
  r->on_data = o->on_data;
  r->on_done = o->on_done;
  r->arg = o->arg;
  r->max = o->max_body ? o->max_body : DEFAULT_MAX_BODY;
  r->easy = cl->nspare ? cl->spare[--cl->nspare] : curl_easy_init();
  if (!r->easy) {
    free(r);
    return -ENOMEM;
  }
  uint32_t to = o->timeout_ms ? o->timeout_ms : DEFAULT_TIMEOUT_MS;
  uint32_t cto = o->connect_timeout_ms ? o->connect_timeout_ms : DEFAULT_CONNECT_MS;
  if (cto > to) cto = to;
  CURL *e = r->easy;
  const char *method = o->method ? o->method : "GET";
  int bad = 0;
  r->uent = url_get(cl, o->url);
  if (r->uent)
    bad |= curl_easy_setopt(e, CURLOPT_CURLU, r->uent->u);
  else
    bad |= curl_easy_setopt(e, CURLOPT_URL, o->url);
  curl_easy_setopt(e, CURLOPT_PRIVATE, r);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_NOPROXY, "*");   /* spokes are reached directly */
  curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)to);
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)cto);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
  curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, open_socket);
  curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, cl);
  curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, close_socket);
  curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, cl);
  if (!strcmp(method, "GET")) {
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
  } else {
    if (strcmp(method, "POST")) curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)o->body_len);
    bad |= curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, o->body_len ? (const char *)o->body : "");
  }
  /* No "Expect: 100-continue" round trip: libcurl 7.88 asks for one only
   * above 1 MiB (EXPECT_100_THRESHOLD), so the header that turns it off is
   * sent only then. Every custom header costs libcurl a formatted line and
   * a dozen name comparisons per request, so none is added needlessly. */
  bool nomem = false;
  if (o->body_len > (1u << 20) && !(r->hdrs = curl_slist_append(NULL, "Expect:"))) nomem = true;
  for (const char *const *h = o->headers; h && *h && !nomem; h++) {
    struct curl_slist *n = curl_slist_append(r->hdrs, *h);
    if (!n) nomem = true;
    else r->hdrs = n;
  }
  if (nomem || bad) {
    req_free(r);
    return bad ? -EINVAL : -ENOMEM;
  }
  if (r->hdrs) curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->hdrs);
  if (cl->in_curl) {
    /* inside a libcurl callback: added once curl_multi_socket_action returns */
    fnet_creq_t **pp = &cl->pend;
    while (*pp) pp = &(*pp)->dnext;
    *pp = r;
  } else if (curl_multi_add_handle(cl->multi, e) != CURLM_OK) {
    req_free(r);
    return -EIO;
  } else {
    r->added = true;
  }
  r->next = cl->reqs;
  if (cl->reqs) cl->reqs->prev = r;
  cl->reqs = r;
  cl->active++;
  if (out) *out = r;
  return 0;
}

void fnet_creq_abort(fnet_creq_t *r) {
  if (!r || r->aborted || r->finished) return;
  r->aborted = true;
  fnet_client_t *cl = r->cl;
  if (!r->added) {
    /* still on the pending list: unlink it there */
    fnet_creq_t **pp = &cl->pend;
    while (*pp && *pp != r) pp = &(*pp)->dnext;
    if (*pp) *pp = r->dnext;
    req_unlink(r);
    req_free(r);
    return;
  }
  if (cl->in_curl) {
    r->deferred = true;
    r->dnext = cl->dead;
    cl->dead = r;
    return;
  }
  req_remove(r);
}

size_t fnet_creq_received(const fnet_creq_t *r) { return r->received; }

const char *fnet_creq_content_type(fnet_creq_t *r) {
  char *ct = NULL;
  if (curl_easy_getinfo(r->easy, CURLINFO_CONTENT_TYPE, &ct) != CURLE_OK) return NULL;
  return ct;
}

size_t fnet_client_active(const fnet_client_t *cl) { return cl->active; }
