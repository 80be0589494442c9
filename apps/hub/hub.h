/* GoLlama hub: takes chat requests and routes them over HTTP to spokes,
 * each in front of a llama.cpp server (see docs/gollama.md). The scheduling
 * is ferry's dispatcher (fdisp_); this program is its HTTP transport. */
#ifndef FERRY_HUB_H
#define FERRY_HUB_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "ferry/dispatch.h"
#include "ferry/net.h"
#include "ferry/net_client.h"
#include "gollama.h"

typedef struct hub_config {
  uint32_t port;              /* GOLLAMA_PORT, 9000 */
  char host[64];              /* bind address (0.0.0.0; --no-auth: 127.0.0.1) */
  uint32_t queue_size;        /* GOLLAMA_QUEUE_SIZE, 5000 */
  uint32_t concurrent;        /* GOLLAMA_CONCURRENT_WORKERS: jobs in flight hub-wide, 0 = spoke slots only */
  uint32_t max_retries;       /* GOLLAMA_MAX_RETRIES, 3 */
  uint32_t max_tokens;        /* GOLLAMA_DEFAULT_MAX_TOKENS, 100 */
  uint32_t deadline_ms;       /* per request, then 504 (60000) */
  uint32_t max_body;          /* request body limit (1 MiB) */
  uint32_t health_ms;         /* spoke health poll period (2000) */
  uint32_t eject_after;       /* consecutive spoke faults before a cool-down (3) */
  uint32_t cooldown_ms;       /* first cool-down (2000) */
  char policy[16];            /* least-loaded | round-robin */
  char keys_file[512];        /* API keys, one per line */
  char secret[GL_KEY_MAX];    /* spoke shared secret */
  char secret_file[512];      /* or read it from here */
  bool no_auth;               /* no API keys; bind 127.0.0.1 unless --host given */
  char log_level[8];          /* "info", "quiet" or "debug" (info plus a line per job) */
} hub_config_t;

/* One registered spoke. */
typedef struct hub_spoke {
  struct hub_spoke *next;     /* hub's list */
  struct hub *hub;            /* owner */
  fdisp_worker_id_t wid;      /* dispatcher worker */
  char url[256];              /* base URL, e.g. http://10.0.0.2:9001 */
  char model[128];            /* model id it reported, "" if none */
  fnet_creq_t *health;        /* health poll in flight */
  uint32_t health_fails;      /* consecutive failed polls */
  uint64_t registered_ms;     /* last registration (loop time) */
} hub_spoke_t;

enum hjob_kind { HJOB_CHAT = 0, HJOB_COMPLETIONS };

/* One client request on its way to a spoke. */
typedef struct hjob {
  struct hub *hub;            /* owner */
  fnet_req_t *req;            /* client request, NULL once answered */
  enum hjob_kind kind;        /* /chat or /v1/chat/completions */
  bool stream;                /* "stream": true: relayed as server-sent events */
  fdisp_job_id_t id;          /* dispatcher job, 0 once over */
  char *exec;                 /* body for the spoke's /execute */
  size_t exec_len;            /* its length */
  fnet_creq_t *up;            /* request to the spoke in flight */
  hub_spoke_t *spoke;         /* the spoke it runs on */
  int up_status;              /* spoke's HTTP status */
  bool streaming;             /* the client stream has begun (bytes went out) */
  char *ebuf;                 /* error body from a streaming upstream */
  size_t elen;                /* its length */
  int last_status;            /* status of the last failed attempt (for the final answer) */
  char last_error[200];       /* its message */
  uint64_t t0;                /* loop time at arrival */
  uint32_t timeout_ms;        /* its deadline, from t0 */
} hjob_t;

typedef struct hub {
  uv_loop_t *loop;            /* the loop */
  hub_config_t cfg;           /* configuration */
  gl_keys_t keys;             /* API keys (unless no_auth) */
  fnet_http_server_t *http;   /* client + spoke facing server */
  fnet_client_t *client;      /* requests to spokes */
  fdisp_t *disp;              /* the scheduler */
  hub_spoke_t *spokes;        /* registered spokes */
  char secret_hdr[GL_KEY_MAX + 32]; /* "X-Spoke-Secret: <secret>", "" without a secret */
  uv_timer_t tick;            /* dispatcher deadlines and cool-downs */
  uv_prepare_t rearm;         /* re-arms tick before every poll */
  uv_timer_t health;          /* spoke health polls */
  uv_signal_t sigint, sigterm;/* graceful stop */
  bool stopping;              /* shutting down */
  uint64_t started_ms;        /* loop time at start */
  /* counters for /metrics */
  uint64_t http_requests[4];  /* chat, completions, models, other */
  uint64_t answered[6];       /* 2xx, 400, 401, 503, 504, other 5xx */
  uint64_t latency_buckets[12]; /* request latency histogram (cumulative on output) */
  double latency_sum;         /* seconds */
  uint64_t latency_count;     /* requests in the histogram */
  uint64_t streams;           /* streamed answers */
  uint64_t client_gone;       /* clients that went away before their answer */
  uint64_t spoke_refused;     /* registrations refused (bad secret) */
} hub_t;

/* config.c */
int hub_config_load(hub_config_t *cfg, int argc, char **argv);

/* routes.c */
int hub_routes(hub_t *h);

/* jobs.c */
extern const fdisp_ops_t hub_disp_ops;
/* Queues a job for req (takes exec). Answers req itself on failure. */
void hub_job_submit(hub_t *h, fnet_req_t *req, enum hjob_kind kind, bool stream, char *exec,
                    size_t exec_len, uint32_t timeout_ms);
/* Counts an answer in the metrics. */
void hub_count_answer(hub_t *h, int status, uint64_t t0);

/* spokes.c */
/* Adds or refreshes a spoke. ERRORS: -EINVAL; -ENOMEM. */
int hub_spoke_register(hub_t *h, const char *url, uint32_t slots, bool ready, const char *model,
                       hub_spoke_t **out);
void hub_spokes_start(hub_t *h);
void hub_spokes_free(hub_t *h);

#endif
