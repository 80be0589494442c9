/* The worker's built-in handler: reverses the "message" string of a JSON
 * request. Something real and checkable end to end, with the same failure
 * modes a real handler has (bad JSON, missing field, result too large). */
#include "handler.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Writes {"error":"<text>"} to out and returns err. */
static int fail(char *out, size_t out_max, size_t *out_len, int err, const char *fmt, ...)
{
    char text[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    json_t *e = json_pack("{s:s}", "error", text);
    size_t n = e ? json_dumpb(e, out, out_max, JSON_COMPACT) : 0;
    json_decref(e);
    *out_len = n <= out_max ? n : 0;
    return err;
}

/* Reverses UTF-8 text by code point into dst (same length as src). The
 * input was validated by jansson, so every lead byte announces its length. */
static void reverse_utf8(const char *src, size_t n, char *dst)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)src[i];
        size_t k = c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
        if (i + k > n)
            k = n - i; /* cannot happen with valid UTF-8; stay in bounds anyway */
        memcpy(dst + (n - i - k), src + i, k);
        i += k;
    }
}

int ferry_default_handle(const char *req, size_t len, char *out, size_t out_max,
                         size_t *out_len)
{
    json_error_t jerr;
    json_t *root = json_loadb(req, len, JSON_ALLOW_NUL, &jerr);
    if (!root)
        return fail(out, out_max, out_len, -EINVAL, "invalid JSON: %s", jerr.text);
    json_t *m = json_object_get(root, "message");
    if (!json_is_object(root) || !m) {
        json_decref(root);
        return fail(out, out_max, out_len, -EINVAL, "missing \"message\"");
    }
    if (!json_is_string(m)) {
        json_decref(root);
        return fail(out, out_max, out_len, -EINVAL, "\"message\" must be a string");
    }
    size_t n = json_string_length(m);
    char *rev = malloc(n ? n : 1);
    if (!rev) {
        json_decref(root);
        return fail(out, out_max, out_len, -ENOMEM, "out of memory");
    }
    reverse_utf8(json_string_value(m), n, rev);
    json_t *res = json_pack("{s:s%,s:I}", "result", rev, n, "worker", (json_int_t)getpid());
    free(rev);
    json_decref(root);
    if (!res)
        return fail(out, out_max, out_len, -ENOMEM, "cannot build the result");
    size_t need = json_dumpb(res, out, out_max, JSON_COMPACT);
    json_decref(res);
    if (need == 0 || need > out_max)
        return fail(out, out_max, out_len, -EMSGSIZE, "result larger than the payload limit");
    *out_len = need;
    return 0;
}
