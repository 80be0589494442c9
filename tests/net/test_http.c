/* net layer: the HTTP/1.1 server over real sockets on 127.0.0.1. */
#include <criterion/criterion.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

Test(http, good_request, .init = tf_start, .fini = tf_stop) {
  cr_assert_eq(tc_sends(&tf_conn, TF_GET_HELLO), 0);
  cr_assert_eq(tc_read(&tf_conn, &tf_resp, 3000), 0);
  cr_assert_str_eq(tf_resp.head,
                   "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n"
                   "Connection: keep-alive\r\n\r\n");
  cr_assert_str_eq(tf_resp.body, "hello");
}

Test(http, keep_alive_two_requests, .init = tf_start, .fini = tf_stop) {
  for (int i = 0; i < 2; i++) {
    cr_assert_eq(tc_sends(&tf_conn, TF_GET_HELLO), 0);
    cr_assert_eq(tc_read(&tf_conn, &tf_resp, 3000), 0);
    cr_assert_eq(tf_resp.status, 200);
    cr_assert_str_eq(tf_resp.body, "hello");
  }
}

Test(http, post_body_echo, .init = tf_start, .fini = tf_stop) {
  cr_assert_eq(tc_sends(&tf_conn, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world"), 0);
  cr_assert_eq(tc_read(&tf_conn, &tf_resp, 3000), 0);
  cr_assert_eq(tf_resp.status, 200);
  cr_assert_str_eq(tf_resp.body, "{\"len\":11,\"body\":\"hello world\"}");
  cr_assert_str_eq(tc_header(&tf_resp, "Content-Type"), "application/json");
}

Test(http, chunked_body, .init = tf_start, .fini = tf_stop) {
  cr_assert_eq(tc_sends(&tf_conn, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                             "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), 0);
  cr_assert_eq(tc_read(&tf_conn, &tf_resp, 3000), 0);
  cr_assert_str_eq(tf_resp.body, "{\"len\":5,\"body\":\"abcde\"}");
}

Test(http, pipelining_keeps_order, .init = tf_start, .fini = tf_stop) {
  /* The first request is answered 150 ms later than the second. */
  cr_assert_eq(tc_sends(&tf_conn, "GET /delay?ms=150 HTTP/1.1\r\nHost: x\r\n\r\n" TF_GET_HELLO
                             "POST /echo HTTP/1.1\r\nContent-Length: 2\r\n\r\nok"), 0);
  cr_assert_eq(tc_read(&tf_conn, &tf_resp, 3000), 0);
  cr_assert_str_eq(tf_resp.body, "delayed");
  cr_assert_eq(tc_read(&tf_conn, &tf_resp, 3000), 0);
  cr_assert_str_eq(tf_resp.body, "hello");
  cr_assert_eq(tc_read(&tf_conn, &tf_resp, 3000), 0);
  cr_assert_str_eq(tf_resp.body, "{\"len\":2,\"body\":\"ok\"}");
}

Test(http, pipelining_beyond_cap, .fini = tf_stop) {
  TF_START_SET(max_pipeline, 2);
  char burst[64 * 40];
  burst[0] = '\0';
  for (int i = 0; i < 40; i++) strcat(burst, TF_GET_HELLO);
  cr_assert_eq(tc_sends(&tf_conn, burst), 0);
  for (int i = 0; i < 40; i++) {
    cr_assert_eq(tc_read(&tf_conn, &tf_resp, 3000), 0, "response %d", i);
    cr_assert_str_eq(tf_resp.body, "hello");
  }
}

Test(http, malformed_is_400_and_closes, .init = tf_start, .fini = tf_stop) {
  cr_assert_eq(tc_sends(&tf_conn, "GARBAGE\r\n\r\n"), 0);
  cr_assert_eq(tc_read(&tf_conn, &tf_resp, 3000), 0);
  cr_assert_eq(tf_resp.status, 400);
  cr_assert_str_eq(tf_resp.body, "{\"error\":\"malformed HTTP request\",\"status\":400}");
  cr_assert_str_eq(tc_header(&tf_resp, "Connection"), "close");
  cr_assert(tc_wait_closed(&tf_conn, 3000));
}

Test(http, oversized_body_is_413_without_reading_it, .fini = tf_stop) {
  TF_START_SET(max_body_bytes, 1024);
  /* Only the head is sent: the answer must not wait for 10 MB. */
  cr_assert_eq(tc_sends(&tf_conn, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n"), 0);
  cr_assert_eq(tc_read(&tf_conn, &tf_resp, 3000), 0);
  cr_assert_eq(tf_resp.status, 413);
  cr_assert_str_eq(tf_resp.body, "{\"error\":\"request body too large\",\"status\":413}");
  cr_assert(tc_wait_closed(&tf_conn, 3000));
}

Test(http, oversized_chunked_body_is_413, .fini = tf_stop) {
  TF_START_SET(max_body_bytes, 16);
  cr_assert_eq(tc_sends(&tf_conn, "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                             "10\r\n0123456789abcdef\r\n1\r\nX\r\n"), 0);
  cr_assert_eq(tc_read(&tf_conn, &tf_resp, 3000), 0);
  cr_assert_eq(tf_resp.status, 413);
  cr_assert(tc_wait_closed(&tf_conn, 3000));
}

Test(http, header_too_large_is_431, .fini = tf_stop) {
  TF_START_SET(max_header_bytes, 512);
  char big[2048];
  memset(big, 'a', sizeof(big));
  big[sizeof(big) - 1] = '\0';
  cr_assert_eq(tc_sends(&tf_conn, "GET /hello HTTP/1.1\r\nX-Big: "), 0);
  cr_assert_eq(tc_sends(&tf_conn, big), 0);
  cr_assert_eq(tc_sends(&tf_conn, "\r\n\r\n"), 0);
  cr_assert_eq(tc_read(&tf_conn, &tf_resp, 3000), 0);
  cr_assert_eq(tf_resp.status, 431);
  cr_assert_str_eq(tf_resp.body, "{\"error\":\"request header too large\",\"status\":431}");
  cr_assert(tc_wait_closed(&tf_conn, 3000));
}

Test(http, idle_timeout_closes, .fini = tf_stop) {
  TF_START_SET(idle_timeout_ms, 100);
  cr_assert_eq(tc_sends(&tf_conn, TF_GET_HELLO), 0);
  cr_assert_eq(tc_read(&tf_conn, &tf_resp, 3000), 0);
  cr_assert(tc_wait_closed(&tf_conn, 5000));
}

Test(http, partial_request_times_out_408, .fini = tf_stop) {
  TF_START_SET(read_timeout_ms, 100);
  cr_assert_eq(tc_sends(&tf_conn, "GET /hello HTTP/1.1\r\nHost"), 0);
  cr_assert_eq(tc_read(&tf_conn, &tf_resp, 5000), 0);
  cr_assert_eq(tf_resp.status, 408);
  cr_assert_str_eq(tf_resp.body, "{\"error\":\"request timeout\",\"status\":408}");
  cr_assert(tc_wait_closed(&tf_conn, 3000));
}

Test(http, async_response, .init = tf_start, .fini = tf_stop) {
  cr_assert_eq(tc_sends(&tf_conn, "GET /delay?ms=50 HTTP/1.1\r\n\r\n"), 0);
  cr_assert_eq(tc_read(&tf_conn, &tf_resp, 3000), 0);
  cr_assert_eq(tf_resp.status, 200);
  cr_assert_str_eq(tf_resp.body, "delayed");
  cr_assert_eq(ts_wait_int(&ts_late_rc, 0, 3000), 0);
}

Test(http, client_gone_before_async_answer, .init = tf_start, .fini = tf_stop) {
  cr_assert_eq(tc_sends(&tf_conn, "GET /delay?ms=1000 HTTP/1.1\r\n\r\n"), 0);
  cr_assert_eq(ts_wait_int(&ts_delayed, 1, 5000), 1);
  /* A reset: an EOF after a complete request is a half-close and the request
   * is answered (test_hardening.c, half_close). */
  tc_reset(&tf_conn);
  cr_assert_eq(ts_wait_int(&ts_aborts, 1, 5000), 1);
  cr_assert_eq(atomic_load(&ts_late_done), 0, "abort came before the answer");
  /* The late answer is discarded and the handle freed (ASan checks). */
  cr_assert_eq(ts_wait_int(&ts_late_done, 1, 5000), 1);
  cr_assert_eq(atomic_load(&ts_late_rc), -ECONNABORTED);
}

Test(http, not_found_and_method_not_allowed, .init = tf_start, .fini = tf_stop) {
  cr_assert_eq(tc_sends(&tf_conn, "GET /nope HTTP/1.1\r\n\r\n"), 0);
  cr_assert_eq(tc_read(&tf_conn, &tf_resp, 3000), 0);
  cr_assert_eq(tf_resp.status, 404);
  cr_assert_str_eq(tf_resp.body, "{\"error\":\"not found\",\"status\":404}");
  cr_assert_eq(tc_sends(&tf_conn, "DELETE /hello?x=1 HTTP/1.1\r\n\r\n"), 0);
  cr_assert_eq(tc_read(&tf_conn, &tf_resp, 3000), 0);
  cr_assert_eq(tf_resp.status, 405);
  cr_assert_str_eq(tc_header(&tf_resp, "Allow"), "GET");
  cr_assert_str_eq(tf_resp.body, "{\"error\":\"method not allowed\",\"status\":405}");
}

Test(http, http10_closes, .init = tf_start, .fini = tf_stop) {
  cr_assert_eq(tc_sends(&tf_conn, "GET /hello HTTP/1.0\r\n\r\n"), 0);
  cr_assert_eq(tc_read(&tf_conn, &tf_resp, 3000), 0);
  cr_assert_eq(tf_resp.status, 200);
  cr_assert_str_eq(tc_header(&tf_resp, "Connection"), "close");
  cr_assert(tc_wait_closed(&tf_conn, 3000));
}

Test(http, http10_keep_alive, .init = tf_start, .fini = tf_stop) {
  for (int i = 0; i < 2; i++) {
    cr_assert_eq(tc_sends(&tf_conn, "GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"), 0);
    cr_assert_eq(tc_read(&tf_conn, &tf_resp, 3000), 0);
    cr_assert_str_eq(tc_header(&tf_resp, "Connection"), "keep-alive");
  }
}

Test(http, connection_close_header, .init = tf_start, .fini = tf_stop) {
  /* The request after the closing one is never answered. */
  cr_assert_eq(tc_sends(&tf_conn, "GET /hello HTTP/1.1\r\nConnection: close\r\n\r\n" TF_GET_HELLO), 0);
  cr_assert_eq(tc_read(&tf_conn, &tf_resp, 3000), 0);
  cr_assert_str_eq(tc_header(&tf_resp, "Connection"), "close");
  cr_assert(tc_wait_closed(&tf_conn, 3000));
}

Test(http, expect_100_continue, .init = tf_start, .fini = tf_stop) {
  cr_assert_eq(tc_sends(&tf_conn, "POST /echo HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n"), 0);
  /* "100 Continue" comes before the body is sent, then the real answer. */
  cr_assert_eq(tc_read(&tf_conn, &tf_resp, 3000), 0);
  cr_assert_str_eq(tf_resp.head, "HTTP/1.1 100 Continue\r\n\r\n");
  cr_assert_eq(tc_sends(&tf_conn, "abc"), 0);
  cr_assert_eq(tc_read(&tf_conn, &tf_resp, 3000), 0);
  cr_assert_eq(tf_resp.status, 200);
  cr_assert_str_eq(tf_resp.body, "{\"len\":3,\"body\":\"abc\"}");
}

Test(http, connection_cap_503, .fini = tf_stop) {
  TF_START_SET(max_connections, 1);
  cr_assert_eq(tc_sends(&tf_conn, TF_GET_HELLO), 0);
  cr_assert_eq(tc_read(&tf_conn, &tf_resp, 3000), 0);
  tc_conn_t *c2 = malloc(sizeof(*c2));
  cr_assert_eq(tc_open(c2, tf_srv.port), 0);
  cr_assert_eq(tc_read(c2, &tf_resp, 3000), 0);
  cr_assert_eq(tf_resp.status, 503);
  cr_assert_str_eq(tf_resp.body, "{\"error\":\"too many connections\",\"status\":503}");
  tc_close(c2);
  free(c2);
}

Test(http, graceful_shutdown_answers_in_flight, .init = tf_start, .fini = tf_stop) {
  tc_conn_t *idle = malloc(sizeof(*idle));
  cr_assert_eq(tc_open(idle, tf_srv.port), 0);
  cr_assert_eq(tc_sends(&tf_conn, "GET /delay?ms=200 HTTP/1.1\r\n\r\n"), 0);
  cr_assert_eq(ts_wait_int(&ts_delayed, 1, 5000), 1);
  ts_shutdown(&tf_srv);
  cr_assert(tc_wait_closed(idle, 3000), "idle connection closed at once");
  cr_assert_eq(tc_read(&tf_conn, &tf_resp, 3000), 0);
  cr_assert_str_eq(tf_resp.body, "delayed");
  cr_assert_str_eq(tc_header(&tf_resp, "Connection"), "close");
  cr_assert(tc_wait_closed(&tf_conn, 3000));
  cr_assert_eq(ts_wait_int(&tf_srv.shut_done, 1, 3000), 1);
  tc_close(idle);
  free(idle);
}

Test(http, async_pipeline_beyond_cap_resumes, .fini = tf_stop) {
  TF_START_SET(max_pipeline, 2);
  char burst[64 * 8];
  burst[0] = '\0';
  for (int i = 0; i < 6; i++) strcat(burst, "GET /delay?ms=10 HTTP/1.1\r\n\r\n");
  strcat(burst, TF_GET_HELLO);
  cr_assert_eq(tc_sends(&tf_conn, burst), 0);
  for (int i = 0; i < 6; i++) {
    cr_assert_eq(tc_read(&tf_conn, &tf_resp, 3000), 0, "response %d", i);
    cr_assert_str_eq(tf_resp.body, "delayed");
  }
  cr_assert_eq(tc_read(&tf_conn, &tf_resp, 3000), 0);
  cr_assert_str_eq(tf_resp.body, "hello");
}

Test(http, good_then_malformed_pipelined, .init = tf_start, .fini = tf_stop) {
  cr_assert_eq(tc_sends(&tf_conn, "GET /delay?ms=30 HTTP/1.1\r\n\r\nNOT HTTP\r\n\r\n"), 0);
  cr_assert_eq(tc_read(&tf_conn, &tf_resp, 3000), 0);
  cr_assert_str_eq(tf_resp.body, "delayed");
  cr_assert_eq(tc_read(&tf_conn, &tf_resp, 3000), 0);
  cr_assert_eq(tf_resp.status, 400);
  cr_assert(tc_wait_closed(&tf_conn, 3000));
}
