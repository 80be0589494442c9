/* chaostest (build/chaostest): the GoLlama spec's chaos test, in C. Starts
 * spokes (build/spoke) in front of running llama.cpp servers, kills and
 * restarts them at random while sending /chat requests to a running hub,
 * then prints the spec's results block plus what ours must guarantee: no
 * hung request, and every failure a clear HTTP status.
 *
 * One libuv loop: spokes are child processes (uv_spawn, killed with
 * SIGKILL), requests go out through ferry's libcurl-multi client. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ferry/net_client.h"
#include "gollama.h"

#define MAX_SPOKES 32

typedef struct cspoke {
  uv_process_t proc;          /* the child */
  bool running;               /* started and not yet reaped */
  bool closing;               /* handle being closed */
  uint32_t port;              /* its port */
  uint32_t llama_port;        /* its llama.cpp */
} cspoke_t;

typedef struct chaos {
  uv_loop_t *loop;            /* the loop */
  fnet_client_t *client;      /* requests to the hub */
  uv_timer_t req_timer;       /* next request */
  uv_timer_t chaos_timer;     /* next kill or spawn */
  uv_timer_t end_timer;       /* end of the run */
  uv_timer_t drain_timer;     /* bound on waiting for the last answers */
  cspoke_t spokes[MAX_SPOKES];/* spoke slots */
  uint32_t nspokes;           /* slots used */
  uint32_t llama_ports[16];   /* llama.cpp ports to put spokes in front of */
  uint32_t nllama;            /* their count */
  char spoke_bin[1024];       /* build/spoke */
  char url[256];              /* hub /chat URL */
  char hub_url[256];          /* hub base URL, for the spokes */
  char secret[GL_KEY_MAX];    /* spoke secret */
  char key[GL_KEY_MAX];       /* API key */
  char llama_list[256];       /* -llama-ports as given */
  uint32_t duration_ms, interval_ms, chaos_ms, initial, base_port, max_running, timeout_ms;
  bool sending;               /* still sending */
  uint64_t t0, t_end;         /* loop times */
  uint64_t total, ok, failed, hung, transport; /* results */
  uint64_t by_status[600];    /* failures by status */
  uint64_t spawned, killed;   /* spoke events */
  uint32_t inflight;          /* requests not yet answered */
  double lat_sum, lat_max;    /* successful latency, ms */
  unsigned seed;              /* rand_r state */
} chaos_t;

static chaos_t C;

static void on_proc_closed(uv_handle_t *h) { ((cspoke_t *)h->data)->closing = false; }

static void on_exit_cb(uv_process_t *p, int64_t status, int sig) {
  cspoke_t *s = p->data;
  s->running = false;
  s->closing = true;
  uv_close((uv_handle_t *)p, on_proc_closed);
}

static int running_count(void) {
  int n = 0;
  for (uint32_t i = 0; i < C.nspokes; i++) n += C.spokes[i].running;
  return n;
}

static int spawn_one(void) {
  for (uint32_t i = 0; i < C.nspokes; i++) {
    cspoke_t *s = &C.spokes[i];
    if (s->running || s->closing) continue;
    char port[16], lurl[64], reg[16];
    snprintf(port, sizeof(port), "%u", s->port);
    snprintf(lurl, sizeof(lurl), "http://127.0.0.1:%u", s->llama_port);
    snprintf(reg, sizeof(reg), "%u", 300u);
    char *args[] = {C.spoke_bin, "-port", port, "-host", "127.0.0.1", "-llama-url", lurl, "-hub-url",
                    C.hub_url, "-secret", C.secret, "-register-ms", reg, "-slots-ms", "200", "-log",
                    "quiet", NULL};
    uv_stdio_container_t stdio[3] = {{.flags = UV_IGNORE}, {.flags = UV_IGNORE}, {.flags = UV_INHERIT_FD, .data.fd = 2}};
    uv_process_options_t o = {.exit_cb = on_exit_cb, .file = C.spoke_bin, .args = args,
                              .stdio_count = 3, .stdio = stdio};
    memset(&s->proc, 0, sizeof(s->proc));
    s->proc.data = s;
    int rc = uv_spawn(C.loop, &s->proc, &o);
    if (rc < 0) {
      fprintf(stderr, "chaostest: cannot start %s: %s\n", C.spoke_bin, uv_strerror(rc));
      s->closing = true;
      uv_close((uv_handle_t *)&s->proc, on_proc_closed);
      return rc;
    }
    s->running = true;
    C.spawned++;
    fprintf(stderr, "chaostest: started spoke on port %u (llama.cpp %u)\n", s->port, s->llama_port);
    return 0;
  }
  return -EBUSY;
}

static int kill_random(void) {
  int idx[MAX_SPOKES], n = 0;
  for (uint32_t i = 0; i < C.nspokes; i++)
    if (C.spokes[i].running) idx[n++] = (int)i;
  if (!n) return -ENOENT;
  cspoke_t *s = &C.spokes[idx[rand_r(&C.seed) % (unsigned)n]];
  uv_process_kill(&s->proc, SIGKILL);
  C.killed++;
  fprintf(stderr, "chaostest: killed spoke on port %u (SIGKILL)\n", s->port);
  return 0;
}

static void on_chaos(uv_timer_t *t) {
  int running = running_count();
  if (running == 0)
    spawn_one();
  else if ((uint32_t)running >= C.max_running)
    kill_random();
  else if (rand_r(&C.seed) % 100 < 60)
    spawn_one();
  else
    kill_random();
}

static void maybe_finish(void);

static void on_answer(fnet_creq_t *r, int result, int status, const char *body, size_t len, void *arg) {
  uint64_t sent = (uint64_t)(uintptr_t)arg;
  C.inflight--;
  double ms = (double)(uv_now(C.loop) - sent);
  if (result == 0 && status == 200) {
    C.ok++;
    C.lat_sum += ms;
    if (ms > C.lat_max) C.lat_max = ms;
  } else {
    C.failed++;
    if (result == -ETIMEDOUT)
      C.hung++;        /* no answer within -timeout: what must never happen */
    else if (result < 0)
      C.transport++;   /* no HTTP status at all */
    else if (status > 0 && status < 600)
      C.by_status[status]++;
  }
  maybe_finish();
}

static void on_send(uv_timer_t *t) {
  if (!C.sending) return;
  char body[128], auth[GL_KEY_MAX + 32];
  int n = snprintf(body, sizeof(body), "{\"message\": \"Chaos test message #%lu\"}", (unsigned long)C.total + 1);
  snprintf(auth, sizeof(auth), "Authorization: Bearer %s", C.key);
  const char *hdrs[] = {"Content-Type: application/json", C.key[0] ? auth : NULL, NULL};
  fnet_creq_opts_t o = {.method = "POST", .url = C.url, .headers = hdrs, .body = body,
                        .body_len = (size_t)n, .timeout_ms = C.timeout_ms, .on_done = on_answer,
                        .arg = (void *)(uintptr_t)uv_now(C.loop)};
  if (fnet_client_request(C.client, &o, NULL) == 0) {
    C.total++;
    C.inflight++;
  }
}

static void print_results(void) {
  double secs = (double)(C.t_end - C.t0) / 1000.0;
  double tot = C.total ? (double)C.total : 1;
  printf("\n=== CHAOS TEST RESULTS ===\n");
  printf("Test Duration: %.1fs\n", secs);
  printf("Total Requests: %lu\n", (unsigned long)C.total);
  printf("Successful: %lu (%.1f%%)\n", (unsigned long)C.ok, 100.0 * (double)C.ok / tot);
  printf("Failed: %lu (%.1f%%)\n", (unsigned long)C.failed, 100.0 * (double)C.failed / tot);
  printf("Workers Spawned: %lu\n", (unsigned long)C.spawned);
  printf("Workers Killed: %lu\n", (unsigned long)C.killed);
  if (C.total && secs > 0) printf("Requests/sec: %.1f\n", (double)C.total / secs);
  printf("Hung (no answer within %.1fs): %lu\n", C.timeout_ms / 1000.0, (unsigned long)C.hung);
  printf("Failures without an HTTP status: %lu\n", (unsigned long)C.transport);
  printf("Failures by status:");
  bool any = false;
  for (int s = 0; s < 600; s++)
    if (C.by_status[s]) {
      printf(" %d=%lu", s, (unsigned long)C.by_status[s]);
      any = true;
    }
  printf("%s\n", any ? "" : " none");
  if (C.ok) printf("Latency of successes: avg %.1f ms, max %.1f ms\n", C.lat_sum / (double)C.ok, C.lat_max);
  fflush(stdout);
}

static void shutdown_all(void) {
  uv_timer_stop(&C.drain_timer);
  for (uint32_t i = 0; i < C.nspokes; i++)
    if (C.spokes[i].running) uv_process_kill(&C.spokes[i].proc, SIGKILL);
  fnet_client_close(C.client);
  C.client = NULL;
  uv_close((uv_handle_t *)&C.req_timer, NULL);
  uv_close((uv_handle_t *)&C.chaos_timer, NULL);
  uv_close((uv_handle_t *)&C.end_timer, NULL);
  uv_close((uv_handle_t *)&C.drain_timer, NULL);
}

static bool finished;

static void maybe_finish(void) {
  if (C.sending || C.inflight || finished) return;
  finished = true;
  print_results();
  shutdown_all();
}

static void on_drain_timeout(uv_timer_t *t) {
  /* the client's own timeout should have fired: count what is left as hung */
  C.hung += C.inflight;
  C.failed += C.inflight;
  C.inflight = 0;
  maybe_finish();
}

static void on_end(uv_timer_t *t) {
  C.sending = false;
  C.t_end = uv_now(C.loop);
  uv_timer_stop(&C.req_timer);
  uv_timer_stop(&C.chaos_timer);
  uv_timer_start(&C.drain_timer, on_drain_timeout, (uint64_t)C.timeout_ms + 5000, 0);
  maybe_finish();
}

/* "60s", "500ms", "2m" or plain milliseconds. */
static int parse_dur(const char *s, uint32_t *out) {
  char *end;
  double v = strtod(s, &end);
  if (end == s || v < 0) return -EINVAL;
  double ms = !strcmp(end, "ms") || !*end ? v : !strcmp(end, "s") ? v * 1000 : !strcmp(end, "m") ? v * 60000 : -1;
  if (ms < 0 || ms > 86400000.0) return -EINVAL;
  *out = (uint32_t)ms;
  return 0;
}

int main(int argc, char **argv) {
  char duration[32] = "60s", interval[32] = "2s", chaos[32] = "5s", timeout[32] = "90s";
  uint32_t initial = 2, base_port = 9001, max_running = 4, max_spokes = 6, seed = 0;
  strcpy(C.url, "http://localhost:9000/chat");
  strcpy(C.llama_list, "8080,8081,8082");
  /* build/spoke next to this program */
  char self[900];
  ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  self[n > 0 ? n : 0] = 0;
  char *slash = strrchr(self, '/');
  if (slash) slash[1] = 0;
  snprintf(C.spoke_bin, sizeof(C.spoke_bin), "%sspoke", slash ? self : "./");
#define S(f) f, sizeof(f)
#define U(f) &f, sizeof(f)
  const gl_opt_t opts[] = {
      {"duration", NULL, 's', S(duration), 0, 0, "length of the run (default 60s)"},
      {"url", NULL, 's', S(C.url), 0, 0, "hub chat endpoint (default http://localhost:9000/chat)"},
      {"interval", NULL, 's', S(interval), 0, 0, "time between requests (default 2s)"},
      {"initial", NULL, 'u', U(initial), 0, MAX_SPOKES, "spokes started first (default 2)"},
      {"chaos-interval", NULL, 's', S(chaos), 0, 0, "time between kills/spawns (default 5s)"},
      {"timeout", NULL, 's', S(timeout), 0, 0, "a request unanswered this long counts as hung (default 90s)"},
      {"llama-ports", NULL, 's', S(C.llama_list), 0, 0, "llama.cpp ports, comma-separated (default 8080,8081,8082)"},
      {"base-port", NULL, 'u', U(base_port), 1, 65000, "first spoke port (default 9001)"},
      {"max-spokes", NULL, 'u', U(max_spokes), 1, MAX_SPOKES, "spoke slots (default 6)"},
      {"max-running", NULL, 'u', U(max_running), 1, MAX_SPOKES, "kill when this many run (default 4)"},
      {"spoke", NULL, 's', S(C.spoke_bin), 0, 0, "spoke program (default: next to chaostest)"},
      {"hub-url", NULL, 's', S(C.hub_url), 0, 0, "hub base URL for the spokes (default: from -url)"},
      {"secret", "GOLLAMA_SECRET", 's', S(C.secret), 0, 0, "spoke shared secret"},
      {"api-key", "GOLLAMA_API_KEY", 's', S(C.key), 0, 0, "client API key"},
      {"seed", NULL, 'u', U(seed), 0, 0xffffffffu, "random seed (default: time)"},
  };
#undef S
#undef U
  int rc = gl_opts_parse("chaostest",
                         "Kills and restarts spokes at random while sending /chat requests to a hub;\n"
                         "prints the results. Exit 0 only if no request hung and every failure\n"
                         "had an HTTP status. Needs a running hub and llama.cpp servers.",
                         opts, sizeof(opts) / sizeof(opts[0]), argc, argv);
  if (rc == 1) return 0;
  if (rc < 0) return 2;
  if (parse_dur(duration, &C.duration_ms) || parse_dur(interval, &C.interval_ms) ||
      parse_dur(chaos, &C.chaos_ms) || parse_dur(timeout, &C.timeout_ms) || !C.interval_ms ||
      !C.chaos_ms || !C.timeout_ms) {
    fprintf(stderr, "chaostest: durations look like 60s, 500ms or 2m (and must not be 0)\n");
    return 2;
  }
  for (char *tok = strtok(C.llama_list, ","); tok && C.nllama < 16; tok = strtok(NULL, ",")) {
    long p = strtol(tok, NULL, 10);
    if (p <= 0 || p > 65535) {
      fprintf(stderr, "chaostest: bad llama port '%s'\n", tok);
      return 2;
    }
    C.llama_ports[C.nllama++] = (uint32_t)p;
  }
  if (!C.nllama) return 2;
  if (!C.hub_url[0]) {
    snprintf(C.hub_url, sizeof(C.hub_url), "%s", C.url);
    char *p = strstr(C.hub_url + 8, "/");
    if (p) *p = 0;
  }
  if (access(C.spoke_bin, X_OK) != 0) {
    fprintf(stderr, "chaostest: spoke program %s not found (give -spoke)\n", C.spoke_bin);
    return 2;
  }
  C.seed = seed ? seed : (unsigned)time(NULL);
  C.initial = initial;
  C.max_running = max_running;
  C.nspokes = max_spokes;
  for (uint32_t i = 0; i < C.nspokes; i++) {
    C.spokes[i].port = base_port + i;
    C.spokes[i].llama_port = C.llama_ports[i % C.nllama];
  }
  signal(SIGPIPE, SIG_IGN);
  C.loop = uv_default_loop();
  if (fnet_client_init(&C.client, C.loop) < 0) return 1;
  uv_timer_init(C.loop, &C.req_timer);
  uv_timer_init(C.loop, &C.chaos_timer);
  uv_timer_init(C.loop, &C.end_timer);
  uv_timer_init(C.loop, &C.drain_timer);
  fprintf(stderr, "chaostest: %s for %.0fs, a request every %ums, chaos every %ums, seed %u\n", C.url,
          C.duration_ms / 1000.0, C.interval_ms, C.chaos_ms, C.seed);
  for (uint32_t i = 0; i < initial; i++) spawn_one();
  /* give the first spokes a moment to register before the clock starts */
  uv_run(C.loop, UV_RUN_NOWAIT);
  usleep(1500 * 1000);
  uv_update_time(C.loop);
  C.sending = true;
  C.t0 = uv_now(C.loop);
  uv_timer_start(&C.req_timer, on_send, 0, C.interval_ms);
  uv_timer_start(&C.chaos_timer, on_chaos, C.chaos_ms, C.chaos_ms);
  uv_timer_start(&C.end_timer, on_end, C.duration_ms, 0);
  uv_run(C.loop, UV_RUN_DEFAULT);
  uv_loop_close(C.loop);
  return (C.hung == 0 && C.transport == 0) ? 0 : 1;
}
