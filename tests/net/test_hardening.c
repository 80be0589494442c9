/* net layer: regression tests for issue 6, items 6-10 (half-close, trailers,
 * slow senders, strictness, answers during graceful shutdown), over real
 * sockets on 127.0.0.1. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "harness.h"

/* ---- item 6: half-close after a complete request ----------------------- */

Test(half_close, complete_request_is_answered, .init = tf_start, .fini = tf_stop) {
  /* The answer comes later (async): the EOF arrives while it is owed. */
  cr_assert_eq(tc_sends(&tf_conn, "GET /delay?ms=50 HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
  cr_assert_eq(tc_shutdown_wr(&tf_conn), 0);
  cr_assert_eq(tc_read(&tf_conn, &tf_resp, 5000), 0);
  cr_assert_eq(tf_resp.status, 200);
  cr_assert_str_eq(tf_resp.body, "delayed");
  cr_assert_str_eq(tc_header(&tf_resp, "Connection"), "close");
  cr_assert(tc_wait_closed(&tf_conn, 5000));
  cr_assert_eq(ts_wait_int(&ts_late_done, 1, 5000), 1);
  cr_assert_eq(atomic_load(&ts_late_rc), 0);
  cr_assert_eq(atomic_load(&ts_aborts), 0);
}

Test(half_close, pipelined_beyond_cap_all_answered, .fini = tf_stop) {
  TF_START_SET(max_pipeline, 2);
  /* Most of these wait unparsed (pipeline cap) when the EOF arrives. */
  char burst[64 * 12];
  burst[0] = '\0';
  for (int i = 0; i < 10; i++) strcat(burst, "GET /delay?ms=5 HTTP/1.1\r\n\r\n");
  strcat(burst, TF_GET_HELLO);
  cr_assert_eq(tc_sends(&tf_conn, burst), 0);
  cr_assert_eq(tc_shutdown_wr(&tf_conn), 0);
  for (int i = 0; i < 10; i++) {
    cr_assert_eq(tc_read(&tf_conn, &tf_resp, 5000), 0, "response %d", i);
    cr_assert_str_eq(tf_resp.body, "delayed");
  }
  cr_assert_eq(tc_read(&tf_conn, &tf_resp, 5000), 0);
  cr_assert_str_eq(tf_resp.body, "hello");
  cr_assert(tc_wait_closed(&tf_conn, 5000));
  cr_assert_eq(atomic_load(&ts_aborts), 0);
}

Test(half_close, incomplete_request_is_abandoned, .init = tf_start, .fini = tf_stop) {
  /* A complete request, then half of another: the first is answered, the
   * second is abandoned (no 400, no 408), and the connection closes. */
  cr_assert_eq(tc_sends(&tf_conn, "GET /delay?ms=30 HTTP/1.1\r\n\r\nGET /hello HTTP/1.1\r\nHo"), 0);
  cr_assert_eq(tc_shutdown_wr(&tf_conn), 0);
  cr_assert_eq(tc_read(&tf_conn, &tf_resp, 5000), 0);
  cr_assert_str_eq(tf_resp.body, "delayed");
  cr_assert(tc_wait_closed(&tf_conn, 5000), "only one response, then close");
}

Test(half_close, reset_still_aborts, .init = tf_start, .fini = tf_stop) {
  cr_assert_eq(tc_sends(&tf_conn, "GET /delay?ms=1000 HTTP/1.1\r\n\r\n"), 0);
  cr_assert_eq(ts_wait_int(&ts_delayed, 1, 5000), 1);
  tc_reset(&tf_conn);
  cr_assert_eq(ts_wait_int(&ts_aborts, 1, 5000), 1);
  cr_assert_eq(ts_wait_int(&ts_late_done, 1, 5000), 1);
  cr_assert_eq(atomic_load(&ts_late_rc), -ECONNABORTED);
}

/* ---- item 7: chunked body with trailer fields -------------------------- */

Test(trailers, chunked_with_trailers_is_routed, .init = tf_start, .fini = tf_stop) {
  cr_assert_eq(tc_sends(&tf_conn, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                             "3\r\nabc\r\n2\r\nde\r\n0\r\nX-Checksum: 12\r\nX-Other: y\r\n\r\n"),
               0);
  cr_assert_eq(tc_read(&tf_conn, &tf_resp, 3000), 0);
  cr_assert_eq(tf_resp.status, 200);
  cr_assert_str_eq(tf_resp.body, "{\"len\":5,\"body\":\"abcde\"}");
  cr_assert_str_eq(tc_header(&tf_resp, "Connection"), "keep-alive");
  /* The connection is still usable: the parser is at a clean boundary. */
  cr_assert_eq(tc_sends(&tf_conn, TF_GET_HELLO), 0);
  cr_assert_eq(tc_read(&tf_conn, &tf_resp, 3000), 0);
  cr_assert_str_eq(tf_resp.body, "hello");
}

Test(trailers, oversized_trailers_are_431, .fini = tf_stop) {
  TF_START_SET(max_header_bytes, 512);
  char big[2048];
  memset(big, 'a', sizeof(big));
  big[sizeof(big) - 1] = '\0';
  cr_assert_eq(tc_sends(&tf_conn, "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                             "1\r\nx\r\n0\r\nX-Big: "), 0);
  cr_assert_eq(tc_sends(&tf_conn, big), 0);
  cr_assert_eq(tc_sends(&tf_conn, "\r\n\r\n"), 0);
  cr_assert_eq(tc_read(&tf_conn, &tf_resp, 3000), 0);
  cr_assert_eq(tf_resp.status, 431);
  cr_assert(tc_wait_closed(&tf_conn, 3000));
}

/* ---- item 8: the request deadline starts at the first byte ------------- */

/* Sends CRLF every 50 ms (what a slow sender does before the request line)
 * until the server says something or 200 rounds pass (10 s, far beyond the
 * 200 ms deadline configured). */
static int trickle_crlf(tc_conn_t *c) {
  for (int i = 0; i < 200; i++) {
    if (tc_sends(c, "\r\n") < 0) return 1; /* server closed: it had answered */
    struct pollfd p = {.fd = c->fd, .events = POLLIN};
    if (poll(&p, 1, 50) > 0) return 1;
  }
  return 0;
}

Test(slow_sender, crlf_before_request_line_gets_408, .fini = tf_stop) {
  fnet_http_config_t cfg;
  fnet_http_config_default(&cfg);
  cfg.read_timeout_ms = 200;
  cfg.idle_timeout_ms = 60000; /* only the request deadline can end this */
  tf_start_with(&cfg);
  cr_assert(trickle_crlf(&tf_conn), "the server never answered the slow sender");
  cr_assert_eq(tc_read(&tf_conn, &tf_resp, 3000), 0);
  cr_assert_eq(tf_resp.status, 408);
  cr_assert_str_eq(tf_resp.body, "{\"error\":\"request timeout\",\"status\":408}");
  cr_assert(tc_wait_closed(&tf_conn, 3000));
}

Test(slow_sender, crlf_after_keep_alive_response_gets_408, .fini = tf_stop) {
  fnet_http_config_t cfg;
  fnet_http_config_default(&cfg);
  cfg.read_timeout_ms = 200;
  cfg.idle_timeout_ms = 60000;
  tf_start_with(&cfg);
  cr_assert_eq(tc_sends(&tf_conn, TF_GET_HELLO), 0);
  cr_assert_eq(tc_read(&tf_conn, &tf_resp, 3000), 0);
  cr_assert_eq(tf_resp.status, 200);
  cr_assert(trickle_crlf(&tf_conn), "the server never answered the slow sender");
  cr_assert_eq(tc_read(&tf_conn, &tf_resp, 3000), 0);
  cr_assert_eq(tf_resp.status, 408);
  cr_assert(tc_wait_closed(&tf_conn, 3000));
}

/* ---- item 9: strictness -------------------------------------------------- */

static void expect_error_and_close(const char *req, int status, const char *body) {
  cr_assert_eq(tc_sends(&tf_conn, req), 0);
  cr_assert_eq(tc_read(&tf_conn, &tf_resp, 3000), 0);
  cr_assert_eq(tf_resp.status, status, "%s: got %d", req, tf_resp.status);
  if (body) cr_assert_str_eq(tf_resp.body, body);
  cr_assert_str_eq(tc_header(&tf_resp, "Connection"), "close");
  cr_assert(tc_wait_closed(&tf_conn, 3000));
}

Test(strict, http_9_9_is_505, .init = tf_start, .fini = tf_stop) {
  expect_error_and_close("GET /hello HTTP/9.9\r\nHost: x\r\n\r\n", 505,
                         "{\"error\":\"HTTP version not supported\",\"status\":505}");
  cr_assert(!strncmp(tf_resp.head, "HTTP/1.1 505 HTTP Version Not Supported\r\n", 41), "%s", tf_resp.head);
}

Test(strict, http_2_0_is_505, .init = tf_start, .fini = tf_stop) {
  expect_error_and_close("GET /hello HTTP/2.0\r\nHost: x\r\n\r\n", 505, NULL);
}

Test(strict, http_1_x_still_served, .init = tf_start, .fini = tf_stop) {
  cr_assert_eq(tc_sends(&tf_conn, "GET /hello HTTP/1.1\r\n\r\n"), 0);
  cr_assert_eq(tc_read(&tf_conn, &tf_resp, 3000), 0);
  cr_assert_eq(tf_resp.status, 200);
}

Test(strict, header_name_with_space_is_400, .init = tf_start, .fini = tf_stop) {
  expect_error_and_close("GET /hello HTTP/1.1\r\nBad Name: x\r\n\r\n", 400,
                         "{\"error\":\"invalid header name\",\"status\":400}");
}

Test(strict, space_before_colon_is_400, .init = tf_start, .fini = tf_stop) {
  expect_error_and_close("GET /hello HTTP/1.1\r\nHost : x\r\n\r\n", 400, NULL);
}

Test(strict, transfer_coding_other_than_chunked_is_501, .init = tf_start, .fini = tf_stop) {
  expect_error_and_close("POST /echo HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                         "3\r\nabc\r\n0\r\n\r\n",
                         501, "{\"error\":\"transfer coding not implemented\",\"status\":501}");
}

Test(strict, transfer_coding_in_second_header_is_501, .init = tf_start, .fini = tf_stop) {
  expect_error_and_close("POST /echo HTTP/1.1\r\nTransfer-Encoding: gzip\r\n"
                         "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
                         501, NULL);
}

Test(strict, chunked_not_last_is_400, .init = tf_start, .fini = tf_stop) {
  expect_error_and_close("POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"
                         "3\r\nabc\r\n0\r\n\r\n",
                         400, NULL);
}

Test(strict, chunked_twice_is_400, .init = tf_start, .fini = tf_stop) {
  expect_error_and_close("POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
                         "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
                         400, NULL);
}

Test(strict, chunked_with_odd_case_still_works, .init = tf_start, .fini = tf_stop) {
  cr_assert_eq(tc_sends(&tf_conn, "POST /echo HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n"
                             "3\r\nabc\r\n0\r\n\r\n"), 0);
  cr_assert_eq(tc_read(&tf_conn, &tf_resp, 3000), 0);
  cr_assert_eq(tf_resp.status, 200);
  cr_assert_str_eq(tf_resp.body, "{\"len\":3,\"body\":\"abc\"}");
}

Test(strict, head_on_get_route_answers_without_body, .init = tf_start, .fini = tf_stop) {
  /* A body after the HEAD answer would break the framing of the next one. */
  cr_assert_eq(tc_sends(&tf_conn, "HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\n" TF_GET_HELLO), 0);
  cr_assert_eq(tc_read_head(&tf_conn, &tf_resp, 3000), 0);
  cr_assert_str_eq(tf_resp.head,
                   "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n"
                   "Connection: keep-alive\r\n\r\n");
  cr_assert_eq(tc_read(&tf_conn, &tf_resp, 3000), 0);
  cr_assert_eq(tf_resp.status, 200);
  cr_assert_str_eq(tf_resp.body, "hello");
}

Test(strict, head_on_unknown_path_is_404_without_body, .init = tf_start, .fini = tf_stop) {
  cr_assert_eq(tc_sends(&tf_conn, "HEAD /nope HTTP/1.1\r\n\r\n" TF_GET_HELLO), 0);
  cr_assert_eq(tc_read_head(&tf_conn, &tf_resp, 3000), 0);
  cr_assert_eq(tf_resp.status, 404);
  cr_assert_eq(tc_read(&tf_conn, &tf_resp, 3000), 0);
  cr_assert_str_eq(tf_resp.body, "hello");
}

static void set_nofile(rlim_t soft) {
  struct rlimit rl;
  cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
  rl.rlim_cur = soft;
  cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
}

Test(strict, max_connections_clamped_to_fd_limit) {
  /* Criterion runs each test in its own process: the limit stays here. */
  set_nofile(64);
  uv_loop_t loop;
  cr_assert_eq(uv_loop_init(&loop), 0);
  fnet_http_config_t cfg;
  fnet_http_config_default(&cfg);
  cfg.max_connections = 100000;
  fnet_http_server_t *srv;
  cr_assert_eq(fnet_http_server_init(&srv, &loop, &cfg), 0);
  uint32_t eff = fnet_http_server_max_connections(srv);
  cr_assert(eff >= 1 && eff < 64, "effective cap %u", eff);
  fnet_http_server_close(srv, NULL, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  cr_assert_eq(uv_loop_close(&loop), 0);
  /* A cap below the limit is kept as asked. */
  set_nofile(4096);
  cr_assert_eq(uv_loop_init(&loop), 0);
  cfg.max_connections = 10;
  cr_assert_eq(fnet_http_server_init(&srv, &loop, &cfg), 0);
  cr_assert_eq(fnet_http_server_max_connections(srv), 10);
  fnet_http_server_close(srv, NULL, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  cr_assert_eq(uv_loop_close(&loop), 0);
}

Test(strict, out_of_descriptors_client_gets_503) {
  set_nofile(128);
  fnet_http_config_t cfg;
  fnet_http_config_default(&cfg);
  cfg.max_connections = 100000;
  ts_start(&tf_srv, &cfg);
  tf_conn.fd = -1;
  /* Take every descriptor this process may open, then give one back: the
   * client's socket takes it, so the server's accept(2) fails with EMFILE. */
  int fds[256], n = 0;
  while (n < 256) {
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd < 0) break;
    fds[n++] = fd;
  }
  int err = errno;
  cr_assert(n > 0 && n < 256 && err == EMFILE, "n=%d errno=%d", n, err);
  close(fds[--n]);
  int rc = tc_open(&tf_conn, tf_srv.port);
  int rrc = rc == 0 ? tc_read(&tf_conn, &tf_resp, 5000) : rc;
  for (int i = 0; i < n; i++) close(fds[i]);
  cr_assert_eq(rc, 0);
  cr_assert_eq(rrc, 0, "no answer: %s", strerror(-rrc));
  cr_assert_eq(tf_resp.status, 503);
  cr_assert_str_eq(tf_resp.body, "{\"error\":\"too many connections\",\"status\":503}");
  cr_assert_str_eq(tc_header(&tf_resp, "Retry-After"), "1");
  cr_assert(tc_wait_closed(&tf_conn, 3000));
  /* With descriptors free again, the server serves as before. */
  tc_close(&tf_conn);
  cr_assert_eq(tc_open(&tf_conn, tf_srv.port), 0);
  cr_assert_eq(tc_sends(&tf_conn, TF_GET_HELLO), 0);
  cr_assert_eq(tc_read(&tf_conn, &tf_resp, 3000), 0);
  cr_assert_eq(tf_resp.status, 200);
  tf_stop();
}

/* ---- item 10: graceful shutdown reads what has fully arrived ----------- */

Test(shutdown, unread_request_on_idle_connection_is_answered, .init = tf_start, .fini = tf_stop) {
  /* tf_conn becomes an idle keep-alive connection. */
  cr_assert_eq(tc_sends(&tf_conn, TF_GET_HELLO), 0);
  cr_assert_eq(tc_read(&tf_conn, &tf_resp, 3000), 0);
  /* A second connection holds the loop thread inside a handler ... */
  tc_conn_t *b = malloc(sizeof(*b));
  cr_assert_eq(tc_open(b, tf_srv.port), 0);
  cr_assert_eq(tc_sends(b, "GET /block HTTP/1.1\r\n\r\n"), 0);
  cr_assert_eq(ts_wait_int(&ts_blocked, 1, 5000), 1);
  /* ... so this complete request stays unread until the shutdown starts. */
  cr_assert_eq(tc_sends(&tf_conn, TF_GET_HELLO), 0);
  atomic_store(&ts_unblock, 1);
  cr_assert_eq(tc_read(b, &tf_resp, 5000), 0);
  cr_assert_str_eq(tf_resp.body, "blocked");
  cr_assert_eq(tc_read(&tf_conn, &tf_resp, 5000), 0, "the unread request was not answered");
  cr_assert_eq(tf_resp.status, 200);
  cr_assert_str_eq(tf_resp.body, "hello");
  cr_assert_str_eq(tc_header(&tf_resp, "Connection"), "close");
  cr_assert(tc_wait_closed(&tf_conn, 3000));
  cr_assert(tc_wait_closed(b, 3000));
  cr_assert_eq(ts_wait_int(&tf_srv.shut_done, 1, 3000), 1);
  tc_close(b);
  free(b);
}

Test(shutdown, partial_request_on_idle_connection_is_dropped, .init = tf_start, .fini = tf_stop) {
  tc_conn_t *b = malloc(sizeof(*b));
  cr_assert_eq(tc_open(b, tf_srv.port), 0);
  cr_assert_eq(tc_sends(b, "GET /block HTTP/1.1\r\n\r\n"), 0);
  cr_assert_eq(ts_wait_int(&ts_blocked, 1, 5000), 1);
  cr_assert_eq(tc_sends(&tf_conn, "GET /hello HTTP/1.1\r\nHo"), 0);
  atomic_store(&ts_unblock, 1);
  cr_assert_eq(tc_read(b, &tf_resp, 5000), 0);
  cr_assert(tc_wait_closed(&tf_conn, 3000), "no answer to half a request");
  cr_assert_eq(ts_wait_int(&tf_srv.shut_done, 1, 3000), 1);
  tc_close(b);
  free(b);
}
