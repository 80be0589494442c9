/* Test harness for the net layer: a server on its own loop thread, and a
 * blocking client with exact response parsing. */
#ifndef FERRY_TESTS_NET_HARNESS_H
#define FERRY_TESTS_NET_HARNESS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>

#include "ferry/net.h"

typedef struct th_server {
  uv_loop_t loop;              /* the server's loop (run by th) */
  fnet_http_server_t *srv;     /* the server */
  pthread_t th;                /* loop thread */
  uv_async_t wake;             /* asks the loop thread to run a command */
  atomic_int cmd;              /* 1 = hard close, 2 = graceful shutdown */
  atomic_int shut_done;        /* graceful shutdown callback ran */
  int port;                    /* bound port */
} th_server_t;

/* Observations made on the loop thread, read by the test thread. */
extern atomic_int ts_aborts;        /* abort callbacks called */
extern atomic_int ts_late_rc;       /* result of the last delayed respond */
extern atomic_int ts_late_done;     /* delayed responds completed */
extern atomic_int ts_delayed;       /* /delay requests received */
extern atomic_int ts_blocked;       /* /block handlers entered */
extern atomic_int ts_unblock;       /* set by the test: /block may go on */

/* Starts a server on 127.0.0.1:0 with the test routes:
 *   GET  /hello            200 text/plain "hello"
 *   POST /echo             200 application/json {"len":N,"body":"..."}
 *   GET  /delay?ms=N       200 text/plain "delayed" after N ms (async)
 *   GET  /block            holds the loop thread until ts_unblock is set (5 s
 *                          at most), then starts a graceful shutdown and
 *                          answers 200 text/plain "blocked"               */
void ts_start(th_server_t *t, const fnet_http_config_t *cfg);
void ts_shutdown(th_server_t *t);   /* graceful; returns at once */
void ts_stop(th_server_t *t);       /* hard close, join, check the loop is empty */

typedef struct tc_conn {
  int fd;             /* socket */
  char buf[1 << 17];  /* bytes received and not consumed */
  size_t len;         /* their count */
} tc_conn_t;

typedef struct tc_resp {
  int status;          /* status code, -1 on failure */
  char head[4096];     /* status line and headers */
  char body[1 << 16];  /* body, NUL-terminated */
  size_t body_len;     /* body bytes */
} tc_resp_t;

int tc_open(tc_conn_t *c, int port);                  /* 0 or -errno */
int tc_send(tc_conn_t *c, const char *data, size_t len);
int tc_sends(tc_conn_t *c, const char *s);
/* Reads one response (Content-Length framed) within timeout_ms; 0 or -errno. */
int tc_read(tc_conn_t *c, tc_resp_t *r, int timeout_ms);
/* Reads the head of a response to HEAD: Content-Length is not followed by a body. */
int tc_read_head(tc_conn_t *c, tc_resp_t *r, int timeout_ms);
/* True if the peer closes (EOF or reset) within timeout_ms with no more data. */
int tc_wait_closed(tc_conn_t *c, int timeout_ms);
void tc_close(tc_conn_t *c);
/* Half-close: no more data from us, the read side stays open. */
int tc_shutdown_wr(tc_conn_t *c);
/* Closes with a reset (SO_LINGER 0): the server sees ECONNRESET, not EOF. */
void tc_reset(tc_conn_t *c);
/* Header value from a response head ("" if absent; static buffer). */
const char *tc_header(const tc_resp_t *r, const char *name);
/* Polls `v` until it equals `want` or timeout_ms passes; returns the last value. */
int ts_wait_int(atomic_int *v, int want, int timeout_ms);

/* The fixture test_http.c and test_hardening.c share: one server and one
 * client connection per test, made by .init (or by the test itself when it
 * needs its own config) and torn down by .fini. */
extern th_server_t tf_srv;  /* the test's server */
extern tc_conn_t tf_conn;   /* a connection to it */
extern tc_resp_t tf_resp;   /* the last response read */
/* Starts tf_srv with cfg (NULL: defaults) and connects tf_conn; aborts on failure. */
void tf_start_with(const fnet_http_config_t *cfg);
void tf_start(void);  /* .init: the default config */
void tf_stop(void);   /* .fini: closes tf_conn, stops tf_srv */
/* Starts with the default config and one limit changed: the shape every
 * limit test opens with. */
#define TF_START_SET(field, value)        \
  do {                                    \
    fnet_http_config_t tf_cfg_;           \
    fnet_http_config_default(&tf_cfg_);   \
    tf_cfg_.field = (value);              \
    tf_start_with(&tf_cfg_);              \
  } while (0)

#define TF_GET_HELLO "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"

#endif
