/* GoLlama hub: configuration. Defaults < environment (the spec's GOLLAMA_*)
 * < flags (-name or --name). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "hub.h"

int hub_config_load(hub_config_t *c, int argc, char **argv) {
  memset(c, 0, sizeof(*c));
  c->port = 9000;
  c->queue_size = 5000;
  c->concurrent = 0;
  c->max_retries = 3;
  c->max_tokens = 100;
  c->deadline_ms = 60000;
  c->max_body = 1u << 20;
  c->health_ms = 2000;
  c->eject_after = 3;
  c->cooldown_ms = 2000;
  strcpy(c->policy, "least-loaded");
  strcpy(c->log_level, "info");
#define S(f) &c->f, sizeof(c->f)
  const gl_opt_t opts[] = {
      {"port", "GOLLAMA_PORT", 'u', S(port), 0, 65535, "TCP port (default 9000; 0 = any free port)"},
      {"host", "GOLLAMA_HOST", 's', S(host), 0, 0, "bind address (default 0.0.0.0; 127.0.0.1 with -no-auth)"},
      {"queue-size", "GOLLAMA_QUEUE_SIZE", 'u', S(queue_size), 1, 10000000, "queued jobs at most; full = 503 (default 5000)"},
      {"concurrent-workers", "GOLLAMA_CONCURRENT_WORKERS", 'u', S(concurrent), 0, 1000000, "jobs in flight hub-wide (default 0 = the spokes' slots)"},
      {"max-retries", "GOLLAMA_MAX_RETRIES", 'u', S(max_retries), 0, FDISP_MAX_TRIES - 1, "retries on other spokes (default 3)"},
      {"default-max-tokens", "GOLLAMA_DEFAULT_MAX_TOKENS", 'u', S(max_tokens), 1, 1000000, "max_tokens for /chat (default 100)"},
      {"deadline-ms", "GOLLAMA_DEADLINE_MS", 'u', S(deadline_ms), 1, 86400000, "per-request deadline, then 504 (default 60000)"},
      {"max-body", "GOLLAMA_MAX_BODY", 'u', S(max_body), 1024, 64u << 20, "request body limit in bytes (default 1 MiB)"},
      {"health-ms", "GOLLAMA_HEALTH_MS", 'u', S(health_ms), 50, 3600000, "spoke health poll period (default 2000)"},
      {"eject-after", "GOLLAMA_EJECT_AFTER", 'u', S(eject_after), 1, 1000, "consecutive spoke faults before a cool-down (default 3)"},
      {"cooldown-ms", "GOLLAMA_COOLDOWN_MS", 'u', S(cooldown_ms), 1, 3600000, "first cool-down; doubles up to 30 s (default 2000)"},
      {"policy", "GOLLAMA_POLICY", 's', S(policy), 0, 0, "least-loaded (default) or round-robin"},
      {"api-keys", "GOLLAMA_API_KEYS", 's', S(keys_file), 0, 0, "file of client API keys, one per line"},
      {"secret", "GOLLAMA_SECRET", 's', S(secret), 0, 0, "shared secret spokes register with"},
      {"secret-file", "GOLLAMA_SECRET_FILE", 's', S(secret_file), 0, 0, "read the shared secret from this file"},
      {"no-auth", NULL, 'b', S(no_auth), 0, 0, "no API keys (local use): binds 127.0.0.1 unless -host"},
      {"log", "GOLLAMA_LOG", 's', S(log_level), 0, 0, "info (default), quiet, or debug (adds one line per job: its queue wait)"},
  };
#undef S
  int rc = gl_opts_parse("hub", "GoLlama hub: POST /chat, POST /v1/chat/completions, GET /v1/models,\n"
                                "POST /connectWorker, GET /health, GET /stats, GET /metrics.",
                         opts, sizeof(opts) / sizeof(opts[0]), argc, argv);
  if (rc) return rc;
  if (strcmp(c->policy, "least-loaded") && strcmp(c->policy, "round-robin")) {
    fprintf(stderr, "hub: -policy must be least-loaded or round-robin, got '%s'\n", c->policy);
    return -EINVAL;
  }
  if (strcmp(c->log_level, "info") && strcmp(c->log_level, "quiet") && strcmp(c->log_level, "debug")) {
    fprintf(stderr, "hub: -log must be info, quiet or debug, got '%s'\n", c->log_level);
    return -EINVAL;
  }
  if (c->secret_file[0]) {
    int e = gl_read_secret(c->secret_file, c->secret, sizeof(c->secret));
    if (e < 0) {
      fprintf(stderr, "hub: cannot read the secret from %s: %s\n", c->secret_file,
              e == -EINVAL ? "empty or too long" : strerror(-e));
      return -EINVAL;
    }
  }
  if (!c->no_auth) {
    if (!c->keys_file[0]) {
      fprintf(stderr, "hub: clients need API keys: give -api-keys FILE (or -no-auth for local use)\n");
      return -EINVAL;
    }
    if (!c->secret[0]) {
      fprintf(stderr, "hub: spokes need a shared secret: give -secret or -secret-file (or -no-auth)\n");
      return -EINVAL;
    }
  }
  if (!c->host[0]) strcpy(c->host, c->no_auth ? "127.0.0.1" : "0.0.0.0");
  return 0;
}
