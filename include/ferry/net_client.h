/* ferry net: an HTTP client on libcurl's multi interface, driven by a libuv
 * loop (curl_multi_socket_action + uv_poll + uv_timer: no thread, no
 * blocking call, any number of requests in flight on one loop).
 *
 * Workload: a hub talking to a few spokes over keep-alive connections, many
 * small JSON requests and some long streamed answers (server-sent events).
 * Every request has a deadline; a request can be aborted at any time, and an
 * aborted request's connection is closed, so the server sees the client go
 * (llama.cpp then frees the slot it was generating on).
 *
 * Conventions as in ferry/net.h: 0 or a negative errno; a failed call
 * changes nothing and calls no callback; loop thread only.
 */
#ifndef FERRY_NET_CLIENT_H
#define FERRY_NET_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fnet_client fnet_client_t;
typedef struct fnet_creq fnet_creq_t;

/* The response head is complete (final status, not 1xx). Return 0 to go on,
 * non-zero to stop: the request then ends with -ECANCELED. */
typedef int (*fnet_chead_fn)(fnet_creq_t *req, int status, void *arg);

/* A piece of the response body (streaming mode). Return 0 to go on,
 * non-zero to stop (-ECANCELED). */
typedef int (*fnet_cdata_fn)(fnet_creq_t *req, const char *data, size_t len, void *arg);

/* The request is over. `result` is 0 when a complete response arrived
 * (whatever its status), else: -ETIMEDOUT deadline passed; -ECONNREFUSED
 * nobody listens; -EHOSTUNREACH name or route failure; -ECONNRESET the
 * connection broke or closed early; -EFBIG buffered body over its limit;
 * -ECANCELED a callback asked to stop; -EIO anything else. `body` is the
 * buffered body (NUL-terminated; empty in streaming mode), valid only during
 * the call. The handle is freed after the call. */
typedef void (*fnet_cdone_fn)(fnet_creq_t *req, int result, int status, const char *body,
                              size_t len, void *arg);

typedef struct fnet_creq_opts {
  const char *method;            /* "GET" (default), "POST", ... */
  const char *url;               /* absolute http:// URL (required) */
  const char *const *headers;    /* NULL-terminated "Name: value" lines, or NULL */
  const void *body;              /* request body (copied), or NULL */
  size_t body_len;               /* its length */
  uint32_t timeout_ms;           /* whole-request deadline (default 30000) */
  uint32_t connect_timeout_ms;   /* connect deadline (default min(timeout, 5000)) */
  size_t max_body;               /* buffered-mode body limit (default 8 MiB) */
  fnet_chead_fn on_head;         /* optional */
  fnet_cdata_fn on_data;         /* optional: set = streaming mode, nothing buffered */
  fnet_cdone_fn on_done;         /* required */
  void *arg;                     /* for the callbacks */
} fnet_creq_opts_t;

/* ERRORS: -EINVAL; -ENOMEM; -EIO libcurl could not start. */
int fnet_client_init(fnet_client_t **out, uv_loop_t *loop);

/* Aborts every request still in flight (no callbacks), closes the
 * connections and frees the client once libuv released its handles.
 * Accepts NULL. */
void fnet_client_close(fnet_client_t *c);

/* Starts a request; callbacks run later from the loop, never inside this call.
 * *out (may be NULL) identifies it for fnet_creq_abort().
 * ERRORS: -EINVAL (no url, no on_done); -ENOMEM; -EIO. */
int fnet_client_request(fnet_client_t *c, const fnet_creq_opts_t *o, fnet_creq_t **out);

/* Stops the request now: no further callback, its connection is closed (not
 * reused). Safe from inside its own or another request's callback. */
void fnet_creq_abort(fnet_creq_t *req);

/* Body bytes received so far (for "did anything reach the client yet"). */
size_t fnet_creq_received(const fnet_creq_t *req);
/* The response's Content-Type (from on_head on), or NULL. */
const char *fnet_creq_content_type(fnet_creq_t *req);

/* Requests in flight. */
size_t fnet_client_active(const fnet_client_t *c);

#ifdef __cplusplus
}
#endif
#endif /* FERRY_NET_CLIENT_H */
