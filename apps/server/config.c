/* Kolosal server: configuration. Precedence: defaults < environment < flags. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One option: its flag, its environment variable, and where it goes. */
typedef struct opt {
  const char *flag;      /* long option name */
  const char *env;       /* environment variable */
  char kind;             /* 's' string, 'u' uint32, 'p' port */
  size_t off;            /* field offset in ksrv_config_t */
  size_t size;           /* field size for strings */
  uint32_t min, max;     /* range for numbers */
  const char *help;      /* --help line */
} opt_t;

#define F(field) offsetof(ksrv_config_t, field), sizeof(((ksrv_config_t *)0)->field)
static const opt_t opts[] = {
    {"port", "FERRY_PORT", 'p', F(port), 0, 65535, "TCP port (default 8000; 0 = any free port)"},
    {"host", "FERRY_HOST", 's', F(host), 0, 0, "address to bind (default 127.0.0.1; 0.0.0.0: every interface)"},
    {"name", "FERRY_NAME", 's', F(name), 0, 0, "shared-memory segment name; workers take the same (default kolosal)"},
    {"log", "FERRY_LOG", 's', F(log_path), 0, 0, "log file (default stderr)"},
    {"ring-slots", "FERRY_RING_SLOTS", 'u', F(ring_slots), 2, 65536, "ring slots = requests in flight, power of two (default 256)"},
    {"payload-max", "FERRY_PAYLOAD_MAX", 'u', F(payload_max), 1, KSRV_PAYLOAD_MAX_LIMIT, "max request body bytes; replies get 256 more (default 65536)"},
    {"max-workers", "FERRY_MAX_WORKERS", 'u', F(max_workers), 1, 4096, "worker table size (default 64)"},
    {"max-attempts", "FERRY_MAX_ATTEMPTS", 'u', F(max_attempts), 1, 100, "tries per request when workers die (default 3)"},
    {"heartbeat-ms", "FERRY_HEARTBEAT_MS", 'u', F(heartbeat_ms), 10, 60000, "worker heartbeat period (default 500)"},
    {"deadline-ms", "FERRY_DEADLINE_MS", 'u', F(deadline_ms), 1, 3600000, "request deadline, then 504 (default 10000)"},
    {"shutdown-ms", "FERRY_SHUTDOWN_MS", 'u', F(shutdown_ms), 0, 600000, "grace for in-flight requests at shutdown (default 5000)"},
    {"max-connections", "FERRY_MAX_CONNECTIONS", 'u', F(max_connections), 1, 1000000, "open HTTP connections (default 1024)"},
    {"api-key-file", "FERRY_API_KEY_FILE", 's', F(api_key_file), 0, 0, "file with the API key /process and /status require"},
};
#define NOPTS (sizeof(opts) / sizeof(opts[0]))

static void usage(FILE *f) {
  fprintf(f, "usage: server [options]\n"
             "Kolosal HTTP front end: POST /process hands the JSON body to a worker\n"
             "(build/worker) through shared memory; GET /health, GET /status.\n\n");
  for (size_t i = 0; i < NOPTS; i++)
    fprintf(f, "  --%-16s %-22s %s\n", opts[i].flag, opts[i].env, opts[i].help);
  fprintf(f, "  %-18s %-22s %s\n", "", "FERRY_API_KEY", "the API key itself, if no key file is given");
  fprintf(f, "  --%-16s %-22s %s\n", "help", "", "this text");
  fprintf(f, "\nWith an API key, POST /process and GET /status need the header\n"
             "'Authorization: Bearer <key>' (401 otherwise); GET /health stays open.\n"
             "Without one, anyone who can reach the port can run jobs: keep the\n"
             "default host 127.0.0.1 or set a key before using --host 0.0.0.0.\n");
}

static int set(ksrv_config_t *cfg, const opt_t *o, const char *val, const char *from) {
  char *base = (char *)cfg + o->off;
  if (o->kind == 's') {
    if (strlen(val) >= o->size || (!val[0] && strcmp(o->flag, "log"))) {
      fprintf(stderr, "server: %s: bad value '%s' for %s\n", from, val, o->flag);
      return -EINVAL;
    }
    strcpy(base, val);
    return 0;
  }
  char *end;
  errno = 0;
  unsigned long v = strtoul(val, &end, 10);
  if (errno || end == val || *end || val[0] == '-' || v < o->min || v > o->max) {
    fprintf(stderr, "server: %s: %s must be a number in %u..%u, got '%s'\n", from, o->flag, o->min,
            o->max, val);
    return -EINVAL;
  }
  if (o->kind == 'p')
    *(int *)base = (int)v;
  else
    *(uint32_t *)base = (uint32_t)v;
  return 0;
}

int ksrv_config_load(ksrv_config_t *cfg, int argc, char **argv) {
  memset(cfg, 0, sizeof(*cfg));
  strcpy(cfg->host, "127.0.0.1");
  strcpy(cfg->name, "kolosal");
  cfg->port = 8000;
  cfg->ring_slots = 256;
  cfg->payload_max = 64 * 1024;
  cfg->max_workers = 64;
  cfg->max_attempts = 3;
  cfg->heartbeat_ms = 500;
  cfg->deadline_ms = 10000;
  cfg->shutdown_ms = 5000;
  cfg->max_connections = 1024;
  for (size_t i = 0; i < NOPTS; i++) {
    const char *v = getenv(opts[i].env);
    if (v && *v && set(cfg, &opts[i], v, opts[i].env) < 0) return -EINVAL;
  }
  struct option lo[NOPTS + 2];
  for (size_t i = 0; i < NOPTS; i++)
    lo[i] = (struct option){opts[i].flag, required_argument, NULL, (int)i};
  lo[NOPTS] = (struct option){"help", no_argument, NULL, 'h'};
  lo[NOPTS + 1] = (struct option){0, 0, 0, 0};
  optind = 1;
  int c;
  while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
    if (c == 'h') {
      usage(stdout);
      return 1;
    }
    if (c < 0 || (size_t)c >= NOPTS) {
      usage(stderr);
      return -EINVAL;
    }
    char from[64];
    snprintf(from, sizeof(from), "--%s", opts[c].flag);
    if (set(cfg, &opts[c], optarg, from) < 0) return -EINVAL;
  }
  if (optind < argc) {
    fprintf(stderr, "server: unexpected argument '%s'\n", argv[optind]);
    usage(stderr);
    return -EINVAL;
  }
  if (ksrv_auth_init(&cfg->auth, cfg->api_key_file, getenv("FERRY_API_KEY")) < 0) return -EINVAL;
  if (cfg->ring_slots & (cfg->ring_slots - 1)) {
    fprintf(stderr, "server: --ring-slots must be a power of two, got %u\n", cfg->ring_slots);
    return -EINVAL;
  }
  return 0;
}
