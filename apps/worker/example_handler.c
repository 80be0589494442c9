/* Example handler plugin for `worker --handler`: upper-cases the "message"
 * of a JSON request: {"message":"abc"} -> {"result":"ABC","handler":"example"}.
 * Build it as a shared library exporting ferry_handle (see handler.h). */
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

int ferry_handle(const char *req, size_t len, char *out, size_t out_max, size_t *out_len);

static int error(char *out, size_t out_max, size_t *out_len, int err, const char *text)
{
    json_t *e = json_pack("{s:s}", "error", text);
    size_t n = e ? json_dumpb(e, out, out_max, JSON_COMPACT) : 0;
    json_decref(e);
    *out_len = n <= out_max ? n : 0;
    return err;
}

int ferry_handle(const char *req, size_t len, char *out, size_t out_max, size_t *out_len)
{
    json_t *root = json_loadb(req, len, JSON_ALLOW_NUL, NULL);
    const char *msg = root ? json_string_value(json_object_get(root, "message")) : NULL;
    if (!msg) {
        json_decref(root);
        return error(out, out_max, out_len, -EINVAL, "need {\"message\":\"...\"}");
    }
    size_t n = json_string_length(json_object_get(root, "message"));
    char *up = malloc(n + 1);
    if (!up) {
        json_decref(root);
        return error(out, out_max, out_len, -ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++) /* ASCII only: multi-byte UTF-8 passes through */
        up[i] = (char)toupper((unsigned char)msg[i]);
    json_t *res = json_pack("{s:s%,s:s}", "result", up, n, "handler", "example");
    free(up);
    json_decref(root);
    size_t need = res ? json_dumpb(res, out, out_max, JSON_COMPACT) : 0;
    json_decref(res);
    if (need == 0 || need > out_max)
        return error(out, out_max, out_len, -EMSGSIZE, "result too large");
    *out_len = need;
    return 0;
}
