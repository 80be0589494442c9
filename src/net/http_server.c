/* ferry net: the HTTP server object: configuration, routes, listener,
 * connection cap, graceful shutdown and hard close. */
#include "net_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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

int fnet_http_server_init(fnet_http_server_t **out, uv_loop_t *loop, const fnet_http_config_t *cfg) {
  if (!out || !loop) return -EINVAL;
  /* Header offsets are stored as uint32_t. */
  if (cfg && cfg->max_header_bytes > (1u << 30)) return -EINVAL;
  fnet_http_server_t *srv = calloc(1, sizeof(*srv));
  if (!srv) return -ENOMEM;
  srv->loop = loop;
  fill_defaults(&srv->cfg, cfg);
  srv->port = -1;
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

static void on_connection(uv_stream_t *listener, int status) {
  fnet_http_server_t *srv = listener->data;
  if (status < 0 || srv->state != FNET_SRV_RUNNING) return;
  /* A failed accept (EMFILE, ENOMEM) leaves the client in the backlog;
   * libuv retries on the next readiness event. */
  (void)fnet__conn_start(srv, listener);
}

static void on_listener_closed(uv_handle_t *h) {
  fnet_http_server_t *srv = h->data;
  free(h);
  fnet__handle_gone(srv);
}

int fnet_http_listen(fnet_http_server_t *srv, const char *host, int port) {
  if (!srv || !host || port < 0 || port > 65535) return -EINVAL;
  if (srv->listener || srv->state != FNET_SRV_RUNNING) return -EALREADY;
  struct sockaddr_storage ss;
  int rc;
  if (strchr(host, ':'))
    rc = uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss);
  else
    rc = uv_ip4_addr(host, port, (struct sockaddr_in *)&ss);
  if (rc < 0) return -EINVAL;
  uv_tcp_t *l = malloc(sizeof(*l));
  if (!l) return -ENOMEM;
  rc = uv_tcp_init(srv->loop, l);
  if (rc < 0) {
    free(l);
    return rc;
  }
  l->data = srv;
  srv->handles++;
  rc = uv_tcp_bind(l, (const struct sockaddr *)&ss, 0);
  if (rc == 0) rc = uv_listen((uv_stream_t *)l, srv->cfg.backlog, on_connection);
  int bound = -1;
  if (rc == 0) {
    struct sockaddr_storage name;
    int nlen = sizeof(name);
    rc = uv_tcp_getsockname(l, (struct sockaddr *)&name, &nlen);
    if (rc == 0)
      bound = ntohs(name.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&name)->sin6_port
                                               : ((struct sockaddr_in *)&name)->sin_port);
  }
  if (rc < 0) {
    /* The handle is released asynchronously and stays counted until then,
     * so a close() right after still waits for it. */
    uv_close((uv_handle_t *)l, on_listener_closed);
    return rc;
  }
  srv->listener = l;
  srv->port = bound;
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
  if (!srv->listener) return;
  uv_close((uv_handle_t *)srv->listener, on_listener_closed);
  srv->listener = NULL;
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
