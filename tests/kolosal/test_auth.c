/* The server's API key module (apps/server/auth.c): where the key comes from,
 * which keys are refused, and how Authorization headers are judged. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth.h"

#define KEY "0123456789abcdef-key"

/* Writes text to a fresh 0600 file; returns its path (static buffer). */
static const char *key_file(const char *text) {
  static char path[64];
  snprintf(path, sizeof(path), "/tmp/ferry-auth-test-%d", (int)getpid());
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f);
  fputs(text, f);
  fclose(f);
  chmod(path, 0600);
  return path;
}

Test(auth, no_key_allows_everything) {
  ksrv_auth_t a;
  cr_assert_eq(ksrv_auth_init(&a, NULL, NULL), 0);
  cr_expect(!a.on);
  cr_expect_eq(ksrv_auth_init(&a, "", ""), 0);
  cr_expect(!a.on);
  cr_expect_eq(ksrv_auth_check(&a, NULL), 0);
  cr_expect_eq(ksrv_auth_check(&a, "Bearer whatever"), 0);
}

Test(auth, env_key_checks_headers) {
  ksrv_auth_t a;
  cr_assert_eq(ksrv_auth_init(&a, NULL, KEY), 0);
  cr_assert(a.on);
  cr_expect_eq(ksrv_auth_check(&a, "Bearer " KEY), 0);
  cr_expect_eq(ksrv_auth_check(&a, "bearer " KEY), 0, "scheme is case-insensitive");
  cr_expect_eq(ksrv_auth_check(&a, "BEARER\t " KEY " \t"), 0, "blanks around the token");
  cr_expect_eq(ksrv_auth_check(&a, NULL), -ENOKEY);
  cr_expect_eq(ksrv_auth_check(&a, ""), -ENOKEY);
  cr_expect_eq(ksrv_auth_check(&a, "Bearer"), -ENOKEY);
  cr_expect_eq(ksrv_auth_check(&a, "Bearer   "), -ENOKEY);
  cr_expect_eq(ksrv_auth_check(&a, "Basic " KEY), -ENOKEY);
  cr_expect_eq(ksrv_auth_check(&a, "Bearer" KEY), -ENOKEY, "no blank after the scheme");
  cr_expect_eq(ksrv_auth_check(&a, "Bearer 0123456789abcdef-ke"), -EACCES, "prefix");
  cr_expect_eq(ksrv_auth_check(&a, "Bearer " KEY "y"), -EACCES, "longer");
  cr_expect_eq(ksrv_auth_check(&a, "Bearer 1123456789abcdef-key"), -EACCES, "one byte off");
  cr_expect_eq(ksrv_auth_check(&a, "Bearer " KEY " x"), -EACCES, "two tokens");
}

Test(auth, file_wins_and_trailing_newline_is_not_key) {
  ksrv_auth_t a;
  const char *path = key_file(KEY "\r\n");
  cr_assert_eq(ksrv_auth_init(&a, path, "another-key-0123456789"), 0);
  cr_expect_eq(ksrv_auth_check(&a, "Bearer " KEY), 0);
  cr_expect_eq(ksrv_auth_check(&a, "Bearer another-key-0123456789"), -EACCES);
  path = key_file(KEY);
  cr_assert_eq(ksrv_auth_init(&a, path, NULL), 0, "no newline at all");
  cr_expect_eq(ksrv_auth_check(&a, "Bearer " KEY), 0);
  unlink(path);
}

Test(auth, bad_keys_are_refused) {
  ksrv_auth_t a;
  cr_expect_eq(ksrv_auth_init(&a, NULL, "short"), -EINVAL);
  cr_expect(!a.on);
  cr_expect_eq(ksrv_auth_init(&a, NULL, "0123456789 abcdef"), -EINVAL, "space");
  cr_expect_eq(ksrv_auth_init(&a, NULL, "0123456789abcdef\x01"), -EINVAL, "control byte");
  cr_expect_eq(ksrv_auth_init(&a, NULL, "0123456789abcdef\xc3\xa9"), -EINVAL, "not ASCII");
  char big[KSRV_API_KEY_MAX + 2];
  memset(big, 'k', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  cr_expect_eq(ksrv_auth_init(&a, NULL, big), -EINVAL, "one too long");
  big[KSRV_API_KEY_MAX] = '\0';
  cr_expect_eq(ksrv_auth_init(&a, NULL, big), 0, "longest allowed");
  big[KSRV_API_KEY_MIN - 1] = '\0';
  cr_expect_eq(ksrv_auth_init(&a, NULL, big), -EINVAL, "one too short");
  big[KSRV_API_KEY_MIN - 1] = 'k';
  big[KSRV_API_KEY_MIN] = '\0';
  cr_expect_eq(ksrv_auth_init(&a, NULL, big), 0, "shortest allowed");
  cr_expect_eq(ksrv_auth_init(&a, "/nonexistent/ferry-key", KEY), -EINVAL, "missing file, even with env");
  cr_expect(!a.on);
  const char *path = key_file(KEY "\n\n");
  cr_expect_eq(ksrv_auth_init(&a, path, NULL), -EINVAL, "second line");
  unlink(path);
}
