/* Kolosal server: API key check. The key is kept only as a BLAKE2b hash and
 * a presented token is hashed the same way, so the comparison is of two
 * fixed-size digests with sodium_memcmp (constant time): neither the key's
 * length nor how many of its bytes a guess got right shows in the timing. */
#include "auth.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

static void hash(unsigned char out[32], const char *s, size_t len) {
  crypto_generichash(out, 32, (const unsigned char *)s, len, NULL, 0);
}

/* Reads at most KSRV_API_KEY_MAX + 2 bytes of path into buf (NUL-ended).
 * Returns the length or -errno. Warns if others may read the file. */
static long read_key_file(const char *path, char *buf, size_t size) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  struct stat st;
  if (fstat(fd, &st) == 0 && (st.st_mode & 077))
    fprintf(stderr, "server: warning: API key file '%s' is readable by other users (chmod 600 it)\n",
            path);
  size_t n = 0;
  while (n < size - 1) {
    ssize_t r = read(fd, buf + n, size - 1 - n);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      int e = errno;
      close(fd);
      return -e;
    }
    if (r == 0) break;
    n += (size_t)r;
  }
  close(fd);
  buf[n] = '\0';
  return (long)n;
}

int ksrv_auth_init(ksrv_auth_t *auth, const char *key_file, const char *env_key) {
  memset(auth, 0, sizeof(*auth));
  char buf[KSRV_API_KEY_MAX + 3];
  const char *from;
  size_t len;
  if (key_file && key_file[0]) {
    long n = read_key_file(key_file, buf, sizeof(buf));
    if (n < 0) {
      fprintf(stderr, "server: cannot read API key file '%s': %s\n", key_file, strerror((int)-n));
      return -EINVAL;
    }
    len = (size_t)n;
    if (len && buf[len - 1] == '\n') len--;
    if (len && buf[len - 1] == '\r') len--;
    from = "--api-key-file";
  } else if (env_key && env_key[0]) {
    len = strlen(env_key);
    if (len > KSRV_API_KEY_MAX) len = KSRV_API_KEY_MAX + 1; /* too long: refused below */
    memcpy(buf, env_key, len);
    from = "FERRY_API_KEY";
  } else {
    return 0;
  }
  int rc = 0;
  if (sodium_init() < 0) {
    fprintf(stderr, "server: cannot initialise libsodium for the API key check\n");
    rc = -EINVAL;
  }
  if (rc == 0 && (len < KSRV_API_KEY_MIN || len > KSRV_API_KEY_MAX)) {
    fprintf(stderr, "server: %s: the API key must have at least %d and at most %d characters\n", from,
            KSRV_API_KEY_MIN, KSRV_API_KEY_MAX);
    rc = -EINVAL;
  }
  for (size_t i = 0; rc == 0 && i < len; i++) {
    if (buf[i] <= ' ' || buf[i] > '~') {
      fprintf(stderr, "server: %s: the API key may hold only printable ASCII without spaces\n", from);
      rc = -EINVAL;
    }
  }
  if (rc == 0) {
    hash(auth->hash, buf, len);
    auth->on = true;
  }
  sodium_memzero(buf, sizeof(buf));
  return rc;
}

int ksrv_auth_check(const ksrv_auth_t *auth, const char *h) {
  if (!auth->on) return 0;
  if (!h) return -ENOKEY;
  while (*h == ' ' || *h == '\t') h++;
  if (strncasecmp(h, "Bearer", 6) != 0 || (h[6] != ' ' && h[6] != '\t')) return -ENOKEY;
  h += 6;
  while (*h == ' ' || *h == '\t') h++;
  size_t len = strlen(h);
  while (len && (h[len - 1] == ' ' || h[len - 1] == '\t')) len--;
  if (len == 0) return -ENOKEY;
  unsigned char got[32];
  hash(got, h, len);
  return sodium_memcmp(got, auth->hash, sizeof(got)) == 0 ? 0 : -EACCES;
}
