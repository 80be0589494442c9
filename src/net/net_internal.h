/* ferry net internals shared by the server, connection and request files. */
#ifndef FERRY_NET_INTERNAL_H
#define FERRY_NET_INTERNAL_H

#include "ferry/net.h"

#include <http_parser.h>

#define FNET__MAX_HEADERS 64         /* request headers kept; more: 431 */
#define FNET__XHDR_MAX 1024          /* bytes of extra response headers */
#define FNET__XHDR_COUNT 16          /* extra response headers */
#define FNET__READ_BUF (64 * 1024)   /* one shared read buffer per server */
#define FNET__PEND_MAX (64 * 1024)   /* unparsed bytes kept while parsing is paused */
#define FNET__LINGER_MS 1000         /* discard reads this long after the final response */
#define FNET__PEER_MAX 46            /* INET6_ADDRSTRLEN */
#define FNET__DRAIN_READ (16 * 1024) /* read size when a graceful stop reads what arrived */
#define FNET__FD_SPARE 16            /* descriptors kept out of the connection cap */
#define FNET__ACCEPT_BATCH 64        /* accepts per listener wake-up (fairness) */
#define FNET__ACCEPT_BACKOFF_MS 100  /* pause after EMFILE with no reserve descriptor */

typedef struct fnet_conn fnet_conn_t;

/* One route: exact method and path. */
typedef struct fnet_route {
  char method[16];       /* "GET", "POST", ... */
  char *path;            /* owned copy */
  fnet_handler_fn fn;    /* handler */
  void *arg;             /* handler argument */
} fnet_route_t;

enum fnet_srv_state {
  FNET_SRV_RUNNING = 0,  /* accepting (or not yet listening) */
  FNET_SRV_DRAINING,     /* graceful shutdown in progress */
  FNET_SRV_CLOSING,      /* hard close in progress; freed when handles == 0 */
};

struct fnet_http_server {
  uv_loop_t *loop;             /* the loop everything runs on */
  fnet_http_config_t cfg;      /* limits, defaults filled in */
  uv_poll_t *listener;         /* watches the listening socket, NULL when not listening */
  int lfd;                     /* listening socket (we accept(2) ourselves), or -1 */
  int reserve_fd;              /* spare descriptor freed to answer 503 on EMFILE, or -1 */
  int port;                    /* bound port, or -1 */
  uv_timer_t reaper;           /* accept back-off; closing it makes close() always async */
  fnet_route_t *routes;        /* route table */
  size_t nroutes;              /* used entries */
  size_t route_cap;            /* allocated entries */
  fnet_conn_t *conns;          /* open connections (doubly linked, intrusive) */
  uint32_t nconns;             /* connections counted against max_connections */
  uint32_t handles;            /* handles not yet closed: listener, reaper, conns */
  enum fnet_srv_state state;   /* running, draining or closing */
  bool done_called;            /* shutdown callback already delivered */
  fnet_done_fn done_cb;        /* shutdown/close callback */
  void *done_arg;              /* its argument */
  fnet_log_fn log_fn;          /* response logger, or NULL */
  void *log_arg;               /* its argument */
  bool rbuf_busy;              /* read buffer lent to libuv between alloc and read cb */
  char rbuf[FNET__READ_BUF];   /* shared read buffer (reads are copied out at once) */
};

enum fnet_hdr_phase {
  FNET_HP_URL = 0,   /* receiving the URL */
  FNET_HP_FIELD,     /* receiving a header name */
  FNET_HP_VALUE,     /* receiving a header value */
  FNET_HP_DONE,      /* headers complete */
};

struct fnet_req {
  fnet_conn_t *conn;           /* owning connection; NULL once the client went away */
  fnet_req_t *qnext;           /* next request on the connection's response queue */
  fnet_http_server_t *srv;     /* server (valid while conn != NULL) */
  bool dispatched;             /* handed to the application (it must answer) */
  bool responded;              /* answer serialised into out */
  bool keep_alive;             /* client allows the connection to stay open */
  bool last;                   /* the connection closes after this response */
  bool streaming;              /* answered with fnet_req_stream_begin(): out holds unsent chunks */
  char method[16];             /* method name */
  enum fnet_hdr_phase phase;   /* which part of the head is arriving */
  char *hbuf;                  /* URL, path and headers, NUL-separated */
  size_t hlen;                 /* bytes used in hbuf */
  size_t hcap;                 /* bytes allocated in hbuf */
  size_t head_bytes;           /* bytes of head data counted against the limit */
  size_t url_off;              /* URL offset in hbuf */
  size_t path_off;             /* path offset in hbuf (set when headers complete) */
  uint32_t nhdr;               /* headers stored */
  uint32_t hdr_name[FNET__MAX_HEADERS];  /* name offsets in hbuf */
  uint32_t hdr_val[FNET__MAX_HEADERS];   /* value offsets in hbuf */
  char *body;                  /* body bytes (+ NUL), or NULL */
  size_t blen;                 /* body bytes received */
  size_t bcap;                 /* body bytes allocated (without the NUL) */
  uint64_t start_ms;           /* uv_now() when complete */
  uint64_t tag;                /* application's number for this request */
  char peer[FNET__PEER_MAX];   /* client address */
  fnet_abort_fn abort_fn;      /* client-gone callback */
  void *abort_arg;             /* its argument */
  char xh[FNET__XHDR_MAX];     /* extra response headers, "Name: value\r\n"... */
  size_t xhlen;                /* bytes used in xh */
  uint32_t nxh;                /* extra headers added */
  char *out;                   /* serialised response */
  size_t outlen;               /* its length */
  uv_write_t wreq;             /* write of out */
};

enum fnet_timer_mode {
  FNET_TM_NONE = 0,   /* timer stopped: waiting on the application */
  FNET_TM_IDLE,       /* idle keep-alive connection */
  FNET_TM_READ,       /* a request is arriving: whole-request deadline */
  FNET_TM_LINGER,     /* final response sent; discarding until EOF */
};

struct fnet_conn {
  uv_tcp_t tcp;                /* the socket */
  uv_timer_t timer;            /* idle/read/linger deadline */
  uv_shutdown_t shut;          /* write-side shutdown before lingering */
  uv_idle_t kick;              /* runs deferred work (resume, close) outside app calls */
  fnet_http_server_t *srv;     /* server */
  fnet_conn_t *prev, *next;    /* server's connection list */
  http_parser parser;          /* request parser state */
  fnet_req_t *cur;             /* request being parsed, not yet queued */
  fnet_req_t *qhead, *qtail;   /* requests awaiting their response, in order */
  uint32_t qlen;               /* requests in the queue */
  uint32_t unanswered;         /* queued requests the application still owes */
  uint32_t writes;             /* uv_write calls not yet completed */
  char *pend;                  /* bytes read but not parsed (parser paused) */
  size_t pend_len;             /* their count */
  bool reading;                /* uv_read_start active */
  bool in_parse;               /* inside http_parser_execute */
  bool close_after;            /* no more requests: close once the queue is written */
  bool lingering;              /* write side shut; discarding input until EOF */
  bool peer_eof;               /* client shut its side; close once written */
  bool closing;                /* uv_close called */
  bool broken;                 /* write failed inside an app call: close from the kick */
  int lib_error;               /* status chosen by a parser callback that failed */
  const char *lib_msg;         /* its message */
  enum fnet_timer_mode tmode;  /* what the timer is counting */
  int open_handles;            /* tcp + timer + kick not yet closed */
  char peer[FNET__PEER_MAX];   /* client address */
};

/* http_server.c */
void fnet__conn_gone(fnet_http_server_t *srv);  /* a connection finished closing */
void fnet__handle_gone(fnet_http_server_t *srv); /* one counted handle closed */
void fnet__maybe_drained(fnet_http_server_t *srv);
const fnet_route_t *fnet__route_find(const fnet_http_server_t *srv, const char *method,
                                     const char *path, char *allow, size_t allow_len);

/* http_conn.c */
int fnet__conn_start(fnet_http_server_t *srv, int fd); /* takes fd (serves or rejects it) */
void fnet__reject_fd(int fd);                   /* 503 "too many connections", close */
void fnet__conn_close(fnet_conn_t *c);          /* hard close; aborts unanswered requests */
void fnet__conn_drain(fnet_conn_t *c);          /* graceful: finish the queue, then close */
void fnet__conn_progress(fnet_conn_t *c);      /* after a respond or write: finish, resume, timers */
void fnet__conn_break(fnet_conn_t *c);         /* close soon, never inside the caller's call */

/* http_req.c */
fnet_req_t *fnet__req_new(fnet_conn_t *c);
void fnet__req_free(fnet_req_t *r);
int fnet__req_head_append(fnet_req_t *r, const char *at, size_t len, size_t limit);
int fnet__req_head_term(fnet_req_t *r);
void fnet__conn_flush(fnet_conn_t *c);         /* write answered requests at the queue head */

/* http_stream.c */
#define FNET__STREAM_PEND_MAX (1024 * 1024)  /* unwritten bytes of one streamed answer */
void fnet__stream_flush(fnet_conn_t *c, fnet_req_t *r); /* write r's pending chunks (r at queue head) */

/* http_json.c */
/* Writes s JSON-escaped (no quotes) into buf; returns the length it needs. */
size_t fnet__json_escape(char *buf, size_t size, const char *s);

#endif /* FERRY_NET_INTERNAL_H */
