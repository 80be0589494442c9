/* The handler interface of the Kolosal worker: the built-in one and the one
 * a user's shared library exports (`--handler lib.so`). */
#ifndef FERRY_WORKER_HANDLER_H
#define FERRY_WORKER_HANDLER_H

#include <stddef.h>

/* Handles one request. Writes at most out_max bytes to out and their count
 * to *out_len. Returns 0 (out is the JSON result) or a negative errno (out
 * is an error text, ideally {"error":"..."}): -EINVAL for bad input, which
 * the server answers with 422; anything else becomes a 502.
 * A shared library exports it as `ferry_handle`. */
typedef int (*ferry_handle_fn)(const char *req, size_t len, char *out, size_t out_max,
                               size_t *out_len);

/* Built-in handler: {"message":"abc"} -> {"result":"cba","worker":<pid>}
 * (reversed by code point, so UTF-8 stays valid). */
int ferry_default_handle(const char *req, size_t len, char *out, size_t out_max,
                         size_t *out_len);

#endif
