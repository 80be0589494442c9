/* Kolosal server: HTTP front end handing JSON jobs to worker processes
 * through shared memory (see docs/kolosal.md). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "kolosal.h"
#include "log.h"

static void on_flush(uv_timer_t *t) { ksrv_log_flush(); }

/* 127.0.0.0/8 or ::1: only this machine can connect. */
static bool is_loopback(const char *host) {
  struct in_addr a4;
  struct in6_addr a6;
  if (inet_pton(AF_INET, host, &a4) == 1) return ntohl(a4.s_addr) >> 24 == 127;
  if (inet_pton(AF_INET6, host, &a6) == 1) return IN6_IS_ADDR_LOOPBACK(&a6);
  return false;
}

static int start_http(ksrv_t *s) {
  const ksrv_config_t *cfg = s->cfg;
  fnet_http_config_t hc;
  fnet_http_config_default(&hc);
  hc.max_body_bytes = cfg->payload_max;
  hc.max_connections = cfg->max_connections;
  int rc = fnet_http_server_init(&s->http, s->loop, &hc);
  if (rc < 0) {
    fprintf(stderr, "server: cannot create the HTTP server: %s\n", strerror(-rc));
    return rc;
  }
  /* The net layer lowers a cap the open-file limit cannot hold. */
  uint32_t maxc = fnet_http_server_max_connections(s->http);
  if (maxc < cfg->max_connections) {
    struct rlimit rl;
    unsigned long long nofile = getrlimit(RLIMIT_NOFILE, &rl) == 0 ? (unsigned long long)rl.rlim_cur : 0;
    fprintf(stderr, "server: warning: --max-connections %u is more than the open-file limit "
                    "(ulimit -n %llu) allows; serving at most %u connections (raise ulimit -n "
                    "to allow more)\n", cfg->max_connections, nofile, maxc);
    ksrv_log("event warning max_connections=%u clamped_to=%u nofile=%llu", cfg->max_connections,
             maxc, nofile);
  }
  if ((rc = ksrv_routes(s)) < 0) {
    fprintf(stderr, "server: cannot register routes: %s\n", strerror(-rc));
    return rc;
  }
  rc = fnet_http_listen(s->http, cfg->host, cfg->port);
  if (rc == -EADDRINUSE)
    fprintf(stderr, "server: port %d on %s is already in use (another server running?); "
                    "choose another with --port or FERRY_PORT\n", cfg->port, cfg->host);
  else if (rc == -EINVAL)
    fprintf(stderr, "server: '%s' is not a valid IPv4/IPv6 address for --host\n", cfg->host);
  else if (rc < 0)
    fprintf(stderr, "server: cannot listen on %s:%d: %s\n", cfg->host, cfg->port, uv_strerror(rc));
  return rc;
}

static int start_shm(ksrv_t *s) {
  const ksrv_config_t *cfg = s->cfg;
  fshm_config_t sc;
  fshm_config_default(&sc);
  sc.name = cfg->name;
  sc.ring_slots = cfg->ring_slots;
  sc.payload_max = cfg->payload_max + KSRV_REPLY_RESERVE; /* see config.h */
  sc.max_workers = cfg->max_workers;
  sc.max_attempts = cfg->max_attempts;
  sc.heartbeat_ms = cfg->heartbeat_ms;
  int rc = fshm_server_open(&s->shm, &sc);
  if (rc == 0 && fshm_last_error()[0]) {
    /* A stale segment replaced, or a name another user took avoided. */
    ksrv_log("event shm-note %s", fshm_last_error());
  } else if (rc == -ENOSPC) {
    fprintf(stderr, "server: /dev/shm is too small for the shared-memory segment '%s': %s. "
                    "Lower --ring-slots (now %u) or --payload-max (now %u), or enlarge /dev/shm "
                    "(docker run --shm-size=...)\n", cfg->name, fshm_last_error(), cfg->ring_slots,
            cfg->payload_max);
  } else if (rc == -EEXIST) {
    char seg[128] = "";
    fshm_segment_name(cfg->name, seg, sizeof(seg));
    fprintf(stderr, "server: a live server already owns the shared-memory segment '%s' (%s); "
                    "stop it or use another --name\n", cfg->name, seg);
  } else if (rc < 0) {
    const char *d = fshm_last_error();
    fprintf(stderr, "server: cannot open shared-memory segment '%s': %s%s%s\n", cfg->name,
            fshm_strerror(rc), d[0] ? ": " : "", d);
  }
  return rc;
}

int ksrv_start(ksrv_t *s, uv_loop_t *loop, const ksrv_config_t *cfg) {
  memset(s, 0, sizeof(*s));
  s->loop = loop;
  s->cfg = cfg;
  int rc = kpend_init(&s->pend, cfg->ring_slots);
  if (rc < 0) {
    fprintf(stderr, "server: out of memory\n");
    return rc;
  }
  if ((rc = start_http(s)) < 0) goto fail_http;
  if ((rc = start_shm(s)) < 0) goto fail_http;
  rc = uv_poll_init(loop, &s->shm_poll, fshm_server_event_fd(s->shm));
  if (rc < 0) {
    fprintf(stderr, "server: cannot watch the shm event fd: %s\n", uv_strerror(rc));
    goto fail_shm;
  }
  s->shm_poll.data = s;
  uv_poll_start(&s->shm_poll, UV_READABLE, ksrv_on_shm_event);
  uv_timer_init(loop, &s->deadline_timer);
  uv_timer_init(loop, &s->check_timer);
  uv_timer_init(loop, &s->flush_timer);
  uv_timer_init(loop, &s->grace_timer);
  uv_signal_init(loop, &s->sigint);
  uv_signal_init(loop, &s->sigterm);
  s->deadline_timer.data = s->check_timer.data = s->flush_timer.data = s->grace_timer.data = s;
  s->sigint.data = s->sigterm.data = s;
  uv_timer_start(&s->check_timer, ksrv_on_check, cfg->heartbeat_ms, cfg->heartbeat_ms);
  uv_timer_start(&s->flush_timer, on_flush, 500, 500);
  uv_signal_start(&s->sigint, ksrv_on_signal, SIGINT);
  uv_signal_start(&s->sigterm, ksrv_on_signal, SIGTERM);
  s->started_ms = uv_now(loop);
  return 0;

fail_shm:
  fshm_server_close(s->shm);
  s->shm = NULL;
fail_http:
  /* Let libuv release what the HTTP server opened before returning. */
  fnet_http_server_close(s->http, NULL, NULL);
  s->http = NULL;
  uv_run(loop, UV_RUN_DEFAULT);
  kpend_destroy(&s->pend);
  return rc;
}

void ksrv_cleanup(ksrv_t *s) {
  fshm_server_close(s->shm);
  s->shm = NULL;
  kpend_destroy(&s->pend);
}

int main(int argc, char **argv) {
  ksrv_config_t cfg;
  int rc = ksrv_config_load(&cfg, argc, argv);
  if (rc == 1) return 0;
  if (rc < 0) return 2;
  /* A client that vanishes mid-write must not kill the server. */
  signal(SIGPIPE, SIG_IGN);
  if ((rc = ksrv_log_open(cfg.log_path)) < 0) {
    fprintf(stderr, "server: cannot open log file '%s': %s\n", cfg.log_path, strerror(-rc));
    return 1;
  }
  uv_loop_t loop;
  if ((rc = uv_loop_init(&loop)) < 0) {
    fprintf(stderr, "server: cannot create the event loop: %s\n", uv_strerror(rc));
    return 1;
  }
  ksrv_t s;
  if (ksrv_start(&s, &loop, &cfg) < 0) {
    uv_loop_close(&loop);
    ksrv_log_close();
    return 1;
  }
  ksrv_log("event start port=%d host=%s name=%s ring_slots=%u payload_max=%u max_workers=%u "
           "deadline_ms=%u pid=%d",
           fnet_http_server_port(s.http), cfg.host, cfg.name, cfg.ring_slots, cfg.payload_max,
           cfg.max_workers, cfg.deadline_ms, (int)getpid());
  ksrv_log("event auth %s", cfg.auth.on ? "api-key" : "none");
  ksrv_log_flush();
  if (!cfg.auth.on && !is_loopback(cfg.host))
    fprintf(stderr, "server: warning: listening on %s without an API key: anyone who can reach port %d "
                    "can run jobs (set --api-key-file or FERRY_API_KEY)\n", cfg.host,
            fnet_http_server_port(s.http));
  /* Tests and scripts read the port from stdout when --port 0 was asked for. */
  printf("listening on %s:%d\n", cfg.host, fnet_http_server_port(s.http));
  fflush(stdout);
  uv_run(&loop, UV_RUN_DEFAULT);
  ksrv_cleanup(&s);
  rc = uv_loop_close(&loop);
  ksrv_log("event stop%s", rc < 0 ? " (loop not empty)" : "");
  ksrv_log_close();
  return 0;
}
