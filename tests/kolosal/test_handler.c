/* Worker handler plugin for the Kolosal integration tests (`worker --handler`).
 * {"message":"crash"}  the worker process dies (SIGKILL) mid-task
 * {"message":"slow"}   answers after 1 s
 * {"message":"big"}    a result larger than out_max: -EMSGSIZE
 * {"message":"x"}      {"result":"x"}
 * Signature: see apps/worker/handler.h (ferry_handle). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

int ferry_handle(const char *req, size_t len, char *out, size_t out_max, size_t *out_len);

int ferry_handle(const char *req, size_t len, char *out, size_t out_max, size_t *out_len) {
  json_t *root = json_loadb(req, len, JSON_ALLOW_NUL, NULL);
  const char *msg = root ? json_string_value(json_object_get(root, "message")) : NULL;
  int n;
  if (!msg) {
    n = snprintf(out, out_max, "{\"error\":\"need a message\"}");
    json_decref(root);
    *out_len = (size_t)n < out_max ? (size_t)n : 0;
    return -EINVAL;
  }
  if (!strcmp(msg, "crash")) raise(SIGKILL);
  if (!strcmp(msg, "slow")) sleep(1);
  if (!strcmp(msg, "big")) {
    n = snprintf(out, out_max, "{\"error\":\"result of %zu bytes\"}", 2 * out_max);
    json_decref(root);
    *out_len = (size_t)n < out_max ? (size_t)n : 0;
    return -EMSGSIZE;
  }
  json_t *res = json_pack("{s:s}", "result", msg);
  *out_len = res ? json_dumpb(res, out, out_max, JSON_COMPACT) : 0;
  json_decref(res);
  json_decref(root);
  return *out_len && *out_len <= out_max ? 0 : -EIO;
}
