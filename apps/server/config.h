/* Kolosal server: configuration from flags and environment. */
#ifndef KSRV_CONFIG_H
#define KSRV_CONFIG_H

#include <stdint.h>

typedef struct ksrv_config {
  char host[64];             /* address to bind (--host, FERRY_HOST) */
  int port;                  /* TCP port (--port, FERRY_PORT) */
  char name[64];             /* shm segment name (--name, FERRY_NAME) */
  char log_path[512];        /* log file, "" = stderr (--log, FERRY_LOG) */
  uint32_t ring_slots;       /* shm ring slots (--ring-slots, FERRY_RING_SLOTS) */
  uint32_t payload_max;      /* max request/response bytes (--payload-max, FERRY_PAYLOAD_MAX) */
  uint32_t max_workers;      /* worker table size (--max-workers, FERRY_MAX_WORKERS) */
  uint32_t max_attempts;     /* dispatches per task when workers die (--max-attempts) */
  uint32_t heartbeat_ms;     /* worker heartbeat period (--heartbeat-ms) */
  uint32_t deadline_ms;      /* per-request deadline, then 504 (--deadline-ms) */
  uint32_t shutdown_ms;      /* grace for in-flight requests on SIGTERM (--shutdown-ms) */
  uint32_t max_connections;  /* open HTTP connections (--max-connections) */
} ksrv_config_t;

/* Fills cfg from defaults, then the environment, then argv.
 * Returns 0 to run, 1 if --help was printed, or -EINVAL after printing the
 * reason to stderr. */
int ksrv_config_load(ksrv_config_t *cfg, int argc, char **argv);

#endif
