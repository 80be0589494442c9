/* ferry net: JSON bodies: escaping for error bodies and jansson helpers. */
#include "ferry/net_json.h"
#include "net_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Escapes s for a JSON string. Output is cut at a character boundary (never
 * inside an escape or a UTF-8 sequence) and always NUL-terminated. Returns
 * the number of bytes written (without the NUL). */
size_t fnet__json_escape(char *buf, size_t size, const char *s) {
  size_t o = 0;
  if (size == 0) return 0;
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    char tmp[8];
    size_t n;
    unsigned char ch = *p;
    if (ch == '"' || ch == '\\') {
      tmp[0] = '\\';
      tmp[1] = (char)ch;
      n = 2;
    } else if (ch == '\n') {
      memcpy(tmp, "\\n", 2);
      n = 2;
    } else if (ch == '\r') {
      memcpy(tmp, "\\r", 2);
      n = 2;
    } else if (ch == '\t') {
      memcpy(tmp, "\\t", 2);
      n = 2;
    } else if (ch < 0x20 || ch == 0x7f) {
      n = (size_t)snprintf(tmp, sizeof(tmp), "\\u%04x", ch);
    } else if (ch >= 0x80) {
      /* Copy a whole UTF-8 sequence or stop; invalid bytes become '?'. */
      size_t len = ch >= 0xf0 ? 4 : ch >= 0xe0 ? 3 : ch >= 0xc0 ? 2 : 0;
      size_t k = 1;
      while (len && k < len && (p[k] & 0xc0) == 0x80) k++;
      if (!len || k != len) {
        tmp[0] = '?';
        n = 1;
      } else {
        memcpy(tmp, p, len);
        n = len;
        p += len - 1;
      }
    } else {
      tmp[0] = (char)ch;
      n = 1;
    }
    if (o + n >= size) break;
    memcpy(buf + o, tmp, n);
    o += n;
  }
  buf[o] = '\0';
  return o;
}

int fnet_req_respond_json(fnet_req_t *req, int status, json_t *body) {
  char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
  json_decref(body);
  if (!text) {
    int rc = fnet_req_respond_error(req, 500, "cannot serialise response");
    return rc == 0 ? -ENOMEM : rc;
  }
  int rc = fnet_req_respond(req, status, "application/json", text, strlen(text));
  free(text);
  return rc;
}

int fnet_req_json(const fnet_req_t *req, json_t **out, char *err, size_t errlen) {
  size_t len;
  const char *body = fnet_req_body(req, &len);
  if (len == 0) {
    if (err && errlen) snprintf(err, errlen, "empty body");
    return -ENODATA;
  }
  json_error_t je;
  json_t *v = json_loadb(body, len, 0, &je);
  if (!v) {
    if (err && errlen) snprintf(err, errlen, "line %d column %d: %s", je.line, je.column, je.text);
    return -EINVAL;
  }
  *out = v;
  return 0;
}
