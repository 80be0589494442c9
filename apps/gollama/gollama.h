/* GoLlama face: helpers shared by the hub and the spoke (options from
 * environment and flags, secrets and API keys). */
#ifndef FERRY_GOLLAMA_H
#define FERRY_GOLLAMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One option: a flag (accepted as -name or --name), an environment variable
 * (may be NULL) and where its value goes. */
typedef struct gl_opt {
  const char *flag;      /* option name */
  const char *env;       /* environment variable, or NULL */
  char kind;             /* 's' string, 'u' uint32, 'b' switch (no value) */
  void *ptr;             /* char[size], uint32_t or bool */
  size_t size;           /* string buffer size */
  uint32_t min, max;     /* range for numbers */
  const char *help;      /* --help line */
} gl_opt_t;

/* Defaults (already in *ptr) < environment < flags. Returns 0, 1 when --help
 * was printed, -EINVAL after printing the reason. */
int gl_opts_parse(const char *prog, const char *about, const gl_opt_t *opts, size_t n, int argc,
                  char **argv);

/* Constant-time comparison of two NUL-terminated secrets (bounded length). */
bool gl_secret_eq(const char *a, const char *b);

/* Reads the first line of a file (a secret) into buf. -errno on failure,
 * -EINVAL if empty or too long. */
int gl_read_secret(const char *path, char *buf, size_t size);

/* API keys: one per line in a file, blank lines and # comments ignored. */
#define GL_MAX_KEYS 1024
#define GL_KEY_MAX 256
typedef struct gl_keys {
  char (*keys)[GL_KEY_MAX];  /* the keys */
  size_t n;                  /* their count */
} gl_keys_t;
int gl_keys_load(gl_keys_t *k, const char *path);   /* -errno; -EINVAL: no key or a bad line */
void gl_keys_free(gl_keys_t *k);
/* True if the "Authorization: Bearer <key>" header value carries a known key. */
bool gl_keys_check(const gl_keys_t *k, const char *authorization);

#endif
