/* ferry net: JSON helpers for HTTP handlers (jansson). Same conventions as
 * ferry/net.h. */
#ifndef FERRY_NET_JSON_H
#define FERRY_NET_JSON_H

#include <jansson.h>

#include "ferry/net.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Answers `req` with `body` serialised compactly as application/json and
 * frees the handle. Takes the caller's reference to `body` in every case.
 * Same results as fnet_req_respond(); -ENOMEM if serialising failed (the
 * request is then answered 500). */
int fnet_req_respond_json(fnet_req_t *req, int status, json_t *body);

/* Parses the request body as JSON. On success *out holds a new reference.
 * ERRORS: -ENODATA empty body; -EINVAL not valid JSON (a short reason,
 * e.g. "line 1 column 5: end of file expected", goes to err if given). */
int fnet_req_json(const fnet_req_t *req, json_t **out, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif /* FERRY_NET_JSON_H */
