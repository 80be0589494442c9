/* ferry net: an HTTP/1.1 server on a libuv loop (http-parser underneath).
 *
 * Workload: many small JSON requests over keep-alive connections, answered
 * either at once or later, when a job on another process finishes. Every byte
 * read from a socket goes into a bounded buffer; a client that exceeds a limit
 * gets a JSON error and the connection is closed.
 *
 * Conventions (every function in this header):
 *   - Functions return 0 (or a value) on success and a negative errno on
 *     failure. A function that fails changes nothing and never calls the
 *     callbacks it was given.
 *   - Everything runs on the loop's thread; nothing here is thread-safe.
 *   - Every error response the library writes has the body
 *     {"error":"<text>","status":<code>} and Content-Type application/json.
 *
 * Request lifetime: the library calls the route's handler once per complete
 * request with a request handle. The application answers exactly once with
 * one of the fnet_req_respond*() calls, at once or later; that call frees the
 * handle. If the client goes away first (the connection is reset or fails,
 * or the server closes hard), the abort callback set with
 * fnet_req_on_abort() is called; the handle stays valid, fnet_req_alive()
 * turns false, and the application must still answer it (the answer is
 * discarded) to free it. A client that half-closes (EOF) after complete
 * requests is not gone: they are answered, then the connection closes; EOF
 * in the middle of a request drops that request. Responses on one connection
 * go out in request order (HTTP pipelining), whatever order the application
 * answers in. HEAD on a path routed only for GET goes to the GET handler and
 * is answered without the body. Strictness and limits: docs/net.md.
 *
 * Re-entrancy: fnet_req_respond*() never calls a handler or an abort callback
 * (parsing further requests and closing after a write error are deferred to
 * the loop); only the logger runs inside it. fnet_http_server_close() calls
 * the abort callbacks of unanswered requests before it returns.
 */
#ifndef FERRY_NET_H
#define FERRY_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fnet_http_server fnet_http_server_t;
typedef struct fnet_req fnet_req_t;

/* Limits and timeouts. Zero in any field means "use the default". */
typedef struct fnet_http_config {
  size_t max_header_bytes;   /* request line + headers; over it: 431 (default 8 KiB) */
  size_t max_body_bytes;     /* body; over it: 413 and close (default 1 MiB) */
  uint32_t max_connections;  /* open connections; over it: 503 and close (default 1024);
                                lowered to what the open-file limit allows */
  uint32_t max_pipeline;     /* requests queued on one connection before reading pauses (default 32) */
  uint32_t read_timeout_ms;  /* first byte of anything (blank lines too) to complete request,
                                never reset by more bytes; over it: 408 and close (default 10000) */
  uint32_t idle_timeout_ms;  /* keep-alive connection with nothing to do is closed after this (default 5000) */
  int backlog;               /* listen(2) backlog (default 511) */
} fnet_http_config_t;

/* Fills *cfg with the defaults listed above. */
void fnet_http_config_default(fnet_http_config_t *cfg);

/* Called for each complete request routed to it. `arg` is the one given to
 * fnet_http_route(). The handler answers now or later (see above). */
typedef void (*fnet_handler_fn)(fnet_req_t *req, void *arg);

/* Called once when the client of a request still unanswered goes away
 * (connection closed or reset, or the server closed hard). */
typedef void (*fnet_abort_fn)(fnet_req_t *req, void *arg);

/* Called when fnet_http_server_shutdown() is done (srv valid) or when
 * fnet_http_server_close() has freed the server (srv is then NULL). */
typedef void (*fnet_done_fn)(fnet_http_server_t *srv, void *arg);

/* Creates a server on `loop` with the limits in `cfg` (NULL: defaults).
 * Nothing listens until fnet_http_listen().
 * ERRORS: -EINVAL bad argument; -ENOMEM. */
int fnet_http_server_init(fnet_http_server_t **out, uv_loop_t *loop, const fnet_http_config_t *cfg);

/* Routes requests with this exact method ("GET", "POST", ...) and path (the
 * URL without its query string) to `fn`. An unrouted path gets 404; a routed
 * path with another method gets 405 with an Allow header.
 * ERRORS: -EINVAL bad argument; -EEXIST already routed; -ENOMEM. */
int fnet_http_route(fnet_http_server_t *srv, const char *method, const char *path,
                    fnet_handler_fn fn, void *arg);

/* Binds `host` (IPv4 or IPv6 literal) and `port` (0: an ephemeral port) and
 * starts accepting. ERRORS: -EINVAL bad address; -EADDRINUSE; -EACCES;
 * -EALREADY already listening; other negative errnos from bind/listen. */
int fnet_http_listen(fnet_http_server_t *srv, const char *host, int port);

/* The port actually bound (useful after port 0), or -ENOTCONN. */
int fnet_http_server_port(const fnet_http_server_t *srv);

/* Called for every response queued for writing, the application's and the
 * library's own error responses alike (not for answers discarded because the
 * client had gone). `req` is valid only during the call. */
typedef void (*fnet_log_fn)(const fnet_req_t *req, int status, size_t body_len, void *arg);

/* Sets (or with fn NULL clears) the response logger. */
void fnet_http_set_logger(fnet_http_server_t *srv, fnet_log_fn fn, void *arg);

/* Number of open connections. */
uint32_t fnet_http_server_connections(const fnet_http_server_t *srv);

/* The connection cap in force. fnet_http_server_init() lowers
 * cfg.max_connections when the process's open-file limit (RLIMIT_NOFILE,
 * less the descriptors already open and a few spare) cannot hold that many
 * connections; compare with the value asked for to warn the operator. */
uint32_t fnet_http_server_max_connections(const fnet_http_server_t *srv);

/* Graceful stop: stops accepting; a connection with nothing queued first
 * reads what has already arrived (without waiting) and, if that holds a
 * complete request, dispatches it as its last, else closes at once; every
 * other connection closes as soon as its queued requests are answered and
 * written (their responses carry Connection: close); no further request is
 * read. A request only partly received is dropped. `cb` runs once no
 * connection remains.
 * ERRORS: -EINVAL; -EALREADY shutdown or close already started. */
int fnet_http_server_shutdown(fnet_http_server_t *srv, fnet_done_fn cb, void *arg);

/* Hard stop and free: closes the listener and every connection now (unwritten
 * responses are dropped, unanswered requests get their abort callback), then
 * frees the server once libuv has released its handles and calls `cb` (may be
 * NULL). Unanswered request handles remain valid until answered. Accepts NULL. */
void fnet_http_server_close(fnet_http_server_t *srv, fnet_done_fn cb, void *arg);

/* ---- the request handle ------------------------------------------------ */

/* For a request the library rejects before its head was complete (400, 408,
 * 431, ...), method, path and URL are "-". */
const char *fnet_req_method(const fnet_req_t *req);  /* "GET", "POST", ... */
const char *fnet_req_path(const fnet_req_t *req);    /* URL path, no query string */
const char *fnet_req_url(const fnet_req_t *req);     /* URL as sent */
/* The body (not NUL-terminated; a NUL is stored after it anyway) and its length. */
const char *fnet_req_body(const fnet_req_t *req, size_t *len);
/* First header named `name` (case-insensitive), or NULL. */
const char *fnet_req_header(const fnet_req_t *req, const char *name);
/* False once the client has gone away. */
bool fnet_req_alive(const fnet_req_t *req);
/* Monotonic time (uv_now, ms) at which the request was complete. */
uint64_t fnet_req_start_ms(const fnet_req_t *req);
/* Peer address as text ("127.0.0.1"), or "?" if unknown. */
const char *fnet_req_peer(const fnet_req_t *req);

/* A number the application attaches to a request (e.g. a job id), 0 if none. */
void fnet_req_set_tag(fnet_req_t *req, uint64_t tag);
uint64_t fnet_req_tag(const fnet_req_t *req);

/* Registers the callback for "the client went away" (replaces any earlier one). */
void fnet_req_on_abort(fnet_req_t *req, fnet_abort_fn fn, void *arg);

/* Adds a response header (e.g. "Retry-After", "1") to the coming answer.
 * Name and value must not contain CR or LF.
 * ERRORS: -EINVAL; -ENOSPC too many headers (16) or too long (1 KiB total); -ENOMEM. */
int fnet_req_add_header(fnet_req_t *req, const char *name, const char *value);

/* Answers `req` with `status`, a Content-Type and a body (copied), and frees
 * the handle; `req` must not be used afterwards, whatever the result.
 * Returns 0 if the response was queued for writing, -ECONNABORTED if the
 * client had gone away (the answer was discarded), -EINVAL for a bad status
 * (the request is then answered 500), -ENOMEM (the connection is closed). */
int fnet_req_respond(fnet_req_t *req, int status, const char *content_type,
                     const void *body, size_t len);

/* Answers with {"error":"<msg>","status":<status>} (msg JSON-escaped).
 * Same result and ownership rules as fnet_req_respond(). */
int fnet_req_respond_error(fnet_req_t *req, int status, const char *msg);

/* ---- streamed answers (chunked transfer encoding, e.g. server-sent events) */

/* Starts the answer to `req` with `status` and `content_type`, the headers
 * added so far, Transfer-Encoding: chunked and Cache-Control: no-cache; the
 * body follows with fnet_req_stream_write() and ends with
 * fnet_req_stream_end(), which alone frees the handle (fnet_req_respond*()
 * on a streaming request ends the stream and returns -EINVAL). Chunks go
 * out as soon as every earlier answer on the connection has been written.
 * If the client goes away the abort callback runs as usual; writes then
 * return -ECONNABORTED and the application still ends the stream.
 * ERRORS: -EINVAL bad status or already answered/streaming; -ECONNABORTED
 * client gone (the handle stays valid: end it); -ENOMEM. */
int fnet_req_stream_begin(fnet_req_t *req, int status, const char *content_type);

/* Sends `len` bytes as one chunk (len 0 does nothing).
 * ERRORS: -EINVAL not streaming; -ECONNABORTED client gone; -ENOBUFS more
 * than 1 MiB unwritten (a client not reading: end the stream); -ENOMEM. */
int fnet_req_stream_write(fnet_req_t *req, const void *data, size_t len);

/* Ends the stream (the final empty chunk) and frees the handle. Returns 0,
 * or -ECONNABORTED if the client had gone. Accepts a non-streaming request
 * only as a programming error: -EINVAL, the request is answered 500. */
int fnet_req_stream_end(fnet_req_t *req);

/* Standard reason phrase for `status` ("Not Found"), "Unknown" if none. */
const char *fnet_status_text(int status);

#ifdef __cplusplus
}
#endif
#endif /* FERRY_NET_H */
