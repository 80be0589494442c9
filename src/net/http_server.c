/* ferry net: the HTTP server object: configuration, routes, listener,
 * connection cap, graceful shutdown and hard close.
 *
 * The listener accepts with accept4(2) itself rather than through libuv, so
 * that running out of descriptors (EMFILE) still gets the client a 503: a
 * spare descriptor is held, freed for that one accept, and taken again
 * (libuv's own fallback closes such clients without a word). */
#define _GNU_SOURCE /* accept4 */
#include "net_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

void fnet_http_config_default(fnet_http_config_t *cfg) {
  memset(cfg, 0, sizeof(*cfg));
  cfg->max_header_bytes = 8 * 1024;
  cfg->max_body_bytes = 1024 * 1024;
  cfg->max_connections = 1024;
  cfg->max_pipeline = 32;
  cfg->read_timeout_ms = 10000;
  cfg->idle_timeout_ms = 5000;
  cfg->backlog = 511;
}

static void fill_defaults(fnet_http_config_t *cfg, const fnet_http_config_t *in) {
  fnet_http_config_t d;
  fnet_http_config_default(&d);
  *cfg = in ? *in : d;
  if (!cfg->max_header_bytes) cfg->max_header_bytes = d.max_header_bytes;
  if (!cfg->max_body_bytes) cfg->max_body_bytes = d.max_body_bytes;
  if (!cfg->max_connections) cfg->max_connections = d.max_connections;
  if (!cfg->max_pipeline) cfg->max_pipeline = d.max_pipeline;
  if (!cfg->read_timeout_ms) cfg->read_timeout_ms = d.read_timeout_ms;
  if (!cfg->idle_timeout_ms) cfg->idle_timeout_ms = d.idle_timeout_ms;
  if (!cfg->backlog) cfg->backlog = d.backlog;
}

/* Descriptors open in this process, or -1 if /proc cannot tell. */
static long open_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  if (!d) return -1;
  long n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (e->d_name[0] != '.') n++;
  closedir(d);
  return n - 1; /* the directory's own descriptor */
}

/* A connection costs one descriptor: a cap the open-file limit cannot hold
 * would end in accept(2) failing. Keep the descriptors already open and a
 * few spare (listener, reserve, the application's own) out of the cap. */
static uint32_t clamp_to_fd_limit(uint32_t want) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY) return want;
  long used = open_fds();
  if (used < 0) used = FNET__FD_SPARE;
  rlim_t taken = (rlim_t)used + FNET__FD_SPARE;
  rlim_t room = rl.rlim_cur > taken ? rl.rlim_cur - taken : 1;
  return (rlim_t)want > room ? (uint32_t)room : want;
}

int fnet_http_server_init(fnet_http_server_t **out, uv_loop_t *loop, const fnet_http_config_t *cfg) {
  if (!out || !loop) return -EINVAL;
  /* Header offsets are stored as uint32_t. */
  if (cfg && cfg->max_header_bytes > (1u << 30)) return -EINVAL;
  fnet_http_server_t *srv = calloc(1, sizeof(*srv));
  if (!srv) return -ENOMEM;
  srv->loop = loop;
  fill_defaults(&srv->cfg, cfg);
  srv->cfg.max_connections = clamp_to_fd_limit(srv->cfg.max_connections);
  srv->port = -1;
  srv->lfd = -1;
  srv->reserve_fd = -1;
  int rc = uv_timer_init(loop, &srv->reaper);
  if (rc < 0) {
    free(srv);
    return rc;
  }
  srv->reaper.data = srv;
  srv->handles = 1;
  *out = srv;
  return 0;
}

int fnet_http_route(fnet_http_server_t *srv, const char *method, const char *path,
                    fnet_handler_fn fn, void *arg) {
  if (!srv || !method || !path || !fn || path[0] != '/') return -EINVAL;
  if (strlen(method) >= sizeof(srv->routes[0].method)) return -EINVAL;
  for (size_t i = 0; i < srv->nroutes; i++)
    if (!strcmp(srv->routes[i].method, method) && !strcmp(srv->routes[i].path, path))
      return -EEXIST;
  if (srv->nroutes == srv->route_cap) {
    size_t cap = srv->route_cap ? srv->route_cap * 2 : 8;
    fnet_route_t *r = realloc(srv->routes, cap * sizeof(*r));
    if (!r) return -ENOMEM;
    srv->routes = r;
    srv->route_cap = cap;
  }
  char *p = strdup(path);
  if (!p) return -ENOMEM;
  fnet_route_t *r = &srv->routes[srv->nroutes++];
  strcpy(r->method, method);
  r->path = p;
  r->fn = fn;
  r->arg = arg;
  return 0;
}

const fnet_route_t *fnet__route_find(const fnet_http_server_t *srv, const char *method,
                                     const char *path, char *allow, size_t allow_len) {
  size_t used = 0;
  allow[0] = '\0';
  for (size_t i = 0; i < srv->nroutes; i++) {
    const fnet_route_t *r = &srv->routes[i];
    if (strcmp(r->path, path)) continue;
    if (!strcmp(r->method, method)) return r;
    size_t m = strlen(r->method);
    if (used + m + 3 < allow_len) {
      if (used) {
        memcpy(allow + used, ", ", 2);
        used += 2;
      }
      memcpy(allow + used, r->method, m + 1);
      used += m;
    }
  }
  return NULL;
}

static int open_reserve(void) { return open("/dev/null", O_RDONLY | O_CLOEXEC); }

static void on_listen_io(uv_poll_t *h, int status, int events);

static void on_accept_backoff(uv_timer_t *t) {
  fnet_http_server_t *srv = t->data;
  if (srv->listener && srv->state == FNET_SRV_RUNNING)
    uv_poll_start(srv->listener, UV_READABLE, on_listen_io);
}

/* Out of descriptors: free the reserve for one accept, answer 503, take the
 * reserve again. Without a reserve, stop watching the listener for a moment
 * (it stays readable: watching it would spin) and return false. */
static bool accept_emfile(fnet_http_server_t *srv) {
  if (srv->reserve_fd < 0) srv->reserve_fd = open_reserve();
  if (srv->reserve_fd < 0) {
    uv_poll_stop(srv->listener);
    uv_timer_start(&srv->reaper, on_accept_backoff, FNET__ACCEPT_BACKOFF_MS, 0);
    return false;
  }
  close(srv->reserve_fd);
  int fd = accept4(srv->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd >= 0) fnet__reject_fd(fd);
  srv->reserve_fd = open_reserve();
  return fd >= 0;
}

static void on_listen_io(uv_poll_t *h, int status, int events) {
  fnet_http_server_t *srv = h->data;
  if (status < 0 || srv->state != FNET_SRV_RUNNING) return;
  for (int i = 0; i < FNET__ACCEPT_BATCH && srv->listener; i++) {
    int fd = accept4(srv->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if ((errno == EMFILE || errno == ENFILE) && accept_emfile(srv)) continue;
      return; /* EAGAIN: nothing more; ENOMEM, ENOBUFS: retried on the next wake-up */
    }
    /* Takes fd whatever happens: serves it or answers 503 and closes it. */
    (void)fnet__conn_start(srv, fd);
  }
}

static void on_listener_closed(uv_handle_t *h) {
  fnet_http_server_t *srv = h->data;
  free(h);
  fnet__handle_gone(srv);
}

static socklen_t addr_len(const struct sockaddr_storage *ss) {
  return ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
}

/* A listening, non-blocking socket on ss: the descriptor or a negative errno. */
static int listen_socket(const struct sockaddr_storage *ss, int backlog, int *port) {
  int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  int one = 1;
  struct sockaddr_storage name;
  socklen_t nlen = sizeof(name);
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
      bind(fd, (const struct sockaddr *)ss, addr_len(ss)) < 0 || listen(fd, backlog) < 0 ||
      getsockname(fd, (struct sockaddr *)&name, &nlen) < 0) {
    int e = -errno;
    close(fd);
    return e;
  }
  *port = ntohs(name.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&name)->sin6_port
                                           : ((struct sockaddr_in *)&name)->sin_port);
  return fd;
}

int fnet_http_listen(fnet_http_server_t *srv, const char *host, int port) {
  if (!srv || !host || port < 0 || port > 65535) return -EINVAL;
  if (srv->listener || srv->state != FNET_SRV_RUNNING) return -EALREADY;
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof(ss));
  int rc;
  if (strchr(host, ':'))
    rc = uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss);
  else
    rc = uv_ip4_addr(host, port, (struct sockaddr_in *)&ss);
  if (rc < 0) return -EINVAL;
  uv_poll_t *l = malloc(sizeof(*l));
  if (!l) return -ENOMEM;
  int bound = -1;
  int fd = listen_socket(&ss, srv->cfg.backlog, &bound);
  if (fd < 0) {
    free(l);
    return fd;
  }
  rc = uv_poll_init_socket(srv->loop, l, fd);
  if (rc < 0) {
    free(l);
    close(fd);
    return rc;
  }
  l->data = srv;
  srv->handles++;
  rc = uv_poll_start(l, UV_READABLE, on_listen_io);
  if (rc < 0) {
    /* The handle is released asynchronously and stays counted until then,
     * so a close() right after still waits for it. */
    uv_close((uv_handle_t *)l, on_listener_closed);
    close(fd);
    return rc;
  }
  srv->listener = l;
  srv->lfd = fd;
  srv->port = bound;
  srv->reserve_fd = open_reserve(); /* -1 is survivable: see accept_emfile() */
  return 0;
}

int fnet_http_server_port(const fnet_http_server_t *srv) {
  return srv && srv->port >= 0 ? srv->port : -ENOTCONN;
}

void fnet_http_set_logger(fnet_http_server_t *srv, fnet_log_fn fn, void *arg) {
  srv->log_fn = fn;
  srv->log_arg = arg;
}

uint32_t fnet_http_server_connections(const fnet_http_server_t *srv) {
  return srv ? srv->nconns : 0;
}

uint32_t fnet_http_server_max_connections(const fnet_http_server_t *srv) {
  return srv ? srv->cfg.max_connections : 0;
}

static void server_free(fnet_http_server_t *srv) {
  fnet_done_fn cb = srv->done_cb;
  void *arg = srv->done_arg;
  for (size_t i = 0; i < srv->nroutes; i++) free(srv->routes[i].path);
  free(srv->routes);
  free(srv);
  if (cb) cb(NULL, arg);
}

void fnet__handle_gone(fnet_http_server_t *srv) {
  if (--srv->handles == 0 && srv->state == FNET_SRV_CLOSING) server_free(srv);
}

static void on_handle_closed(uv_handle_t *h) {
  fnet__handle_gone(h->data);
}

static void close_listener(fnet_http_server_t *srv) {
  uv_timer_stop(&srv->reaper);
  if (srv->reserve_fd >= 0) close(srv->reserve_fd);
  srv->reserve_fd = -1;
  if (!srv->listener) return;
  /* uv_close stops the poll at once: the descriptor may go now. */
  uv_close((uv_handle_t *)srv->listener, on_listener_closed);
  close(srv->lfd);
  srv->listener = NULL;
  srv->lfd = -1;
}

void fnet__maybe_drained(fnet_http_server_t *srv) {
  if (srv->state != FNET_SRV_DRAINING || srv->done_called || srv->conns) return;
  srv->done_called = true;
  if (srv->done_cb) srv->done_cb(srv, srv->done_arg);
}

void fnet__conn_gone(fnet_http_server_t *srv) {
  srv->nconns--;
  fnet__maybe_drained(srv);
  fnet__handle_gone(srv);
}

int fnet_http_server_shutdown(fnet_http_server_t *srv, fnet_done_fn cb, void *arg) {
  if (!srv) return -EINVAL;
  if (srv->state != FNET_SRV_RUNNING) return -EALREADY;
  srv->state = FNET_SRV_DRAINING;
  srv->done_cb = cb;
  srv->done_arg = arg;
  close_listener(srv);
  /* fnet__conn_drain may unlink (close) the connection: take next first. */
  for (fnet_conn_t *c = srv->conns, *n; c; c = n) {
    n = c->next;
    fnet__conn_drain(c);
  }
  fnet__maybe_drained(srv);
  return 0;
}

void fnet_http_server_close(fnet_http_server_t *srv, fnet_done_fn cb, void *arg) {
  if (!srv || srv->state == FNET_SRV_CLOSING) return;
  srv->state = FNET_SRV_CLOSING;
  srv->done_cb = cb;
  srv->done_arg = arg;
  close_listener(srv);
  for (fnet_conn_t *c = srv->conns, *n; c; c = n) {
    n = c->next;
    fnet__conn_close(c);
  }
  uv_close((uv_handle_t *)&srv->reaper, on_handle_closed);
}
