/* Kolosal server: configuration from flags and environment. */
#ifndef KSRV_CONFIG_H
#define KSRV_CONFIG_H

#include <stdint.h>

#include "auth.h"

/* Room the shm segment keeps beyond --payload-max for a worker's reply: a
 * handler wraps a result as large as the request in an envelope
 * ({"result":...,"worker":PID}), so a request the server accepted must not
 * fail because its answer is a few bytes longer. Request bodies stay limited
 * to --payload-max by the HTTP layer. */
#define KSRV_REPLY_RESERVE 256u
/* The shm layer's payload limit (16 MiB) less that room. */
#define KSRV_PAYLOAD_MAX_LIMIT ((16u << 20) - KSRV_REPLY_RESERVE)

typedef struct ksrv_config {
  char host[64];             /* address to bind (--host, FERRY_HOST; default 127.0.0.1) */
  int port;                  /* TCP port (--port, FERRY_PORT) */
  char name[64];             /* shm segment name (--name, FERRY_NAME) */
  char log_path[512];        /* log file, "" = stderr (--log, FERRY_LOG) */
  uint32_t ring_slots;       /* shm ring slots (--ring-slots, FERRY_RING_SLOTS) */
  uint32_t payload_max;      /* max request body bytes (--payload-max, FERRY_PAYLOAD_MAX) */
  uint32_t max_workers;      /* worker table size (--max-workers, FERRY_MAX_WORKERS) */
  uint32_t max_attempts;     /* dispatches per task when workers die (--max-attempts) */
  uint32_t heartbeat_ms;     /* worker heartbeat period (--heartbeat-ms) */
  uint32_t deadline_ms;      /* per-request deadline, then 504 (--deadline-ms) */
  uint32_t shutdown_ms;      /* grace for in-flight requests on SIGTERM (--shutdown-ms) */
  uint32_t max_connections;  /* open HTTP connections (--max-connections) */
  char api_key_file[512];    /* file holding the API key (--api-key-file, FERRY_API_KEY_FILE) */
  ksrv_auth_t auth;          /* the key (from that file, else FERRY_API_KEY), hashed */
} ksrv_config_t;

/* Fills cfg from defaults, then the environment, then argv.
 * Returns 0 to run, 1 if --help was printed, or -EINVAL after printing the
 * reason to stderr. */
int ksrv_config_load(ksrv_config_t *cfg, int argc, char **argv);

#endif
