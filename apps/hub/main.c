/* GoLlama hub (build/hub): see hub.h and docs/gollama.md. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "hub.h"

static uint64_t loop_clock(void *arg) { return uv_now(arg); }

static void on_tick(uv_timer_t *t) {
  hub_t *h = t->data;
  fdisp_tick(h->disp);
}

/* Before every poll: wake up exactly when the dispatcher next has work. */
static void on_rearm(uv_prepare_t *p) {
  hub_t *h = p->data;
  int64_t ms = fdisp_next_timeout(h->disp);
  if (ms < 0)
    uv_timer_stop(&h->tick);
  else
    uv_timer_start(&h->tick, on_tick, (uint64_t)ms, 0);
}

static void on_http_done(fnet_http_server_t *srv, void *arg) {
  hub_t *h = arg;
  fnet_http_server_close(h->http, NULL, NULL);
  h->http = NULL;
  fnet_client_close(h->client);
  h->client = NULL;
  uv_close((uv_handle_t *)&h->tick, NULL);
  uv_close((uv_handle_t *)&h->health, NULL);
  uv_close((uv_handle_t *)&h->sigint, NULL);
  uv_close((uv_handle_t *)&h->sigterm, NULL);
}

static void on_signal(uv_signal_t *s, int sig) {
  hub_t *h = s->data;
  if (h->stopping) return;
  h->stopping = true;
  if (h->cfg.log_level[0] != 'q') fprintf(stderr, "hub: stopping\n");
  uv_prepare_stop(&h->rearm);
  uv_close((uv_handle_t *)&h->rearm, NULL);
  uv_timer_stop(&h->health);
  uv_timer_stop(&h->tick);
  for (hub_spoke_t *sp = h->spokes; sp; sp = sp->next)
    if (sp->health) {
      fnet_creq_abort(sp->health);
      sp->health = NULL;
    }
  fdisp_shutdown(h->disp);   /* every job still here is answered 503 */
  if (fnet_http_server_shutdown(h->http, on_http_done, h) < 0) on_http_done(h->http, h);
}

int main(int argc, char **argv) {
  static hub_t hub;
  hub_t *h = &hub;
  int rc = hub_config_load(&h->cfg, argc, argv);
  if (rc == 1) return 0;
  if (rc < 0) return 2;
  if (h->cfg.secret[0]) {
    /* built once: every request to a spoke carries it */
    static const char name[] = "X-Spoke-Secret: ";
    size_t sl = strnlen(h->cfg.secret, sizeof(h->cfg.secret) - 1);
    memcpy(h->secret_hdr, name, sizeof(name) - 1);
    memcpy(h->secret_hdr + sizeof(name) - 1, h->cfg.secret, sl);
    h->secret_hdr[sizeof(name) - 1 + sl] = 0;
  }
  signal(SIGPIPE, SIG_IGN);
  if (!h->cfg.no_auth) {
    rc = gl_keys_load(&h->keys, h->cfg.keys_file);
    if (rc < 0) {
      fprintf(stderr, "hub: cannot load API keys from %s: %s\n", h->cfg.keys_file,
              rc == -EINVAL ? "no key, or a line that is not a key" : strerror(-rc));
      return 2;
    }
  }
  h->loop = uv_default_loop();
  fdisp_config_t dc;
  fdisp_config_default(&dc);
  dc.queue_size = h->cfg.queue_size;
  dc.max_retries = h->cfg.max_retries ? (int32_t)h->cfg.max_retries : -1;
  dc.policy = strcmp(h->cfg.policy, "round-robin") ? FDISP_LEAST_LOADED : FDISP_ROUND_ROBIN;
  dc.eject_after = h->cfg.eject_after;
  dc.cooldown_ms = h->cfg.cooldown_ms;
  dc.default_deadline_ms = h->cfg.deadline_ms;
  dc.max_running = h->cfg.concurrent;
  if ((rc = fdisp_init(&h->disp, &dc, &hub_disp_ops, h, loop_clock, h->loop)) < 0 ||
      (rc = fnet_client_init(&h->client, h->loop)) < 0) {
    fprintf(stderr, "hub: cannot start: %s\n", strerror(-rc));
    return 1;
  }
  fnet_http_config_t hc;
  fnet_http_config_default(&hc);
  hc.max_body_bytes = h->cfg.max_body;
  /* every client connection may need one to a spoke too: keep half the
   * descriptors for those (raising the soft limit as far as allowed) */
  struct rlimit rl;
  uint32_t maxc = 4096;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    if (rl.rlim_cur < rl.rlim_max) {
      rl.rlim_cur = rl.rlim_max > 65536 ? 65536 : rl.rlim_max;
      setrlimit(RLIMIT_NOFILE, &rl);
      getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur / 2 - 32 < maxc) maxc = (uint32_t)(rl.rlim_cur / 2 - 32);
  }
  hc.max_connections = maxc;
  hc.idle_timeout_ms = 30000;
  hc.eof_aborts = true; /* a client that closed frees its llama.cpp slot at once */
  if ((rc = fnet_http_server_init(&h->http, h->loop, &hc)) < 0 || (rc = hub_routes(h)) < 0) {
    fprintf(stderr, "hub: cannot start the HTTP server: %s\n", strerror(-rc));
    return 1;
  }
  rc = fnet_http_listen(h->http, h->cfg.host, (int)h->cfg.port);
  if (rc < 0) {
    if (rc == -EADDRINUSE)
      fprintf(stderr, "hub: port %u on %s is already in use; choose another with -port or GOLLAMA_PORT\n",
              h->cfg.port, h->cfg.host);
    else
      fprintf(stderr, "hub: cannot listen on %s:%u: %s\n", h->cfg.host, h->cfg.port, uv_strerror(rc));
    return 1;
  }
  uv_timer_init(h->loop, &h->tick);
  h->tick.data = h;
  uv_prepare_init(h->loop, &h->rearm);
  h->rearm.data = h;
  uv_prepare_start(&h->rearm, on_rearm);
  uv_signal_init(h->loop, &h->sigint);
  uv_signal_init(h->loop, &h->sigterm);
  h->sigint.data = h->sigterm.data = h;
  uv_signal_start(&h->sigint, on_signal, SIGINT);
  uv_signal_start(&h->sigterm, on_signal, SIGTERM);
  hub_spokes_start(h);
  h->started_ms = uv_now(h->loop);
  printf("listening on %s:%d\n", h->cfg.host, fnet_http_server_port(h->http));
  fflush(stdout);
  uv_run(h->loop, UV_RUN_DEFAULT);
  hub_spokes_free(h);
  fdisp_destroy(h->disp);
  gl_keys_free(&h->keys);
  uv_loop_close(h->loop);
  return 0;
}
