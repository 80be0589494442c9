/* Kolosal server: the optional API key that POST /process and GET /status
 * require as "Authorization: Bearer <key>". */
#ifndef KSRV_AUTH_H
#define KSRV_AUTH_H

#include <stdbool.h>

/* Key length bounds: shorter keys are guessable, longer ones are a mistake. */
#define KSRV_API_KEY_MIN 16
#define KSRV_API_KEY_MAX 256

typedef struct ksrv_auth {
  bool on;                      /* a key is configured: requests must carry it */
  unsigned char hash[32];       /* BLAKE2b-256 of the key (the key itself is not kept) */
} ksrv_auth_t;

/* Takes the key from key_file if it is non-empty (its content, one trailing
 * newline allowed), else from env_key if non-NULL and non-empty; neither:
 * auth->on is false. The key must be KSRV_API_KEY_MIN..KSRV_API_KEY_MAX
 * printable ASCII characters without spaces (a bearer token).
 * Returns 0, or -EINVAL after printing the reason to stderr (auth->on false). */
int ksrv_auth_init(ksrv_auth_t *auth, const char *key_file, const char *env_key);

/* Checks an Authorization header value (NULL: none sent) in time that does
 * not depend on how much of the key matched.
 * Returns 0 (allowed, or no key configured), -ENOKEY (no "Bearer" credential)
 * or -EACCES (wrong key). */
int ksrv_auth_check(const ksrv_auth_t *auth, const char *authorization);

#endif
