/* net layer: the HTTP/1.1 server over real sockets on 127.0.0.1. */
#include <criterion/criterion.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

static th_server_t ts;
static tc_conn_t cc;
static tc_resp_t rr;

static void start_with(const fnet_http_config_t *cfg) {
  ts_start(&ts, cfg);
  cr_assert_eq(tc_open(&cc, ts.port), 0);
}

static void start_default(void) { start_with(NULL); }
static void stop(void) {
  tc_close(&cc);
  ts_stop(&ts);
}

#define GET_HELLO "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"

Test(http, good_request, .init = start_default, .fini = stop) {
  cr_assert_eq(tc_sends(&cc, GET_HELLO), 0);
  cr_assert_eq(tc_read(&cc, &rr, 3000), 0);
  cr_assert_str_eq(rr.head,
                   "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n"
                   "Connection: keep-alive\r\n\r\n");
  cr_assert_str_eq(rr.body, "hello");
}

Test(http, keep_alive_two_requests, .init = start_default, .fini = stop) {
  for (int i = 0; i < 2; i++) {
    cr_assert_eq(tc_sends(&cc, GET_HELLO), 0);
    cr_assert_eq(tc_read(&cc, &rr, 3000), 0);
    cr_assert_eq(rr.status, 200);
    cr_assert_str_eq(rr.body, "hello");
  }
}

Test(http, post_body_echo, .init = start_default, .fini = stop) {
  cr_assert_eq(tc_sends(&cc, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world"), 0);
  cr_assert_eq(tc_read(&cc, &rr, 3000), 0);
  cr_assert_eq(rr.status, 200);
  cr_assert_str_eq(rr.body, "{\"len\":11,\"body\":\"hello world\"}");
  cr_assert_str_eq(tc_header(&rr, "Content-Type"), "application/json");
}

Test(http, chunked_body, .init = start_default, .fini = stop) {
  cr_assert_eq(tc_sends(&cc, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                             "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), 0);
  cr_assert_eq(tc_read(&cc, &rr, 3000), 0);
  cr_assert_str_eq(rr.body, "{\"len\":5,\"body\":\"abcde\"}");
}

Test(http, pipelining_keeps_order, .init = start_default, .fini = stop) {
  /* The first request is answered 150 ms later than the second. */
  cr_assert_eq(tc_sends(&cc, "GET /delay?ms=150 HTTP/1.1\r\nHost: x\r\n\r\n" GET_HELLO
                             "POST /echo HTTP/1.1\r\nContent-Length: 2\r\n\r\nok"), 0);
  cr_assert_eq(tc_read(&cc, &rr, 3000), 0);
  cr_assert_str_eq(rr.body, "delayed");
  cr_assert_eq(tc_read(&cc, &rr, 3000), 0);
  cr_assert_str_eq(rr.body, "hello");
  cr_assert_eq(tc_read(&cc, &rr, 3000), 0);
  cr_assert_str_eq(rr.body, "{\"len\":2,\"body\":\"ok\"}");
}

Test(http, pipelining_beyond_cap, .fini = stop) {
  fnet_http_config_t cfg;
  fnet_http_config_default(&cfg);
  cfg.max_pipeline = 2;
  start_with(&cfg);
  char burst[64 * 40];
  burst[0] = '\0';
  for (int i = 0; i < 40; i++) strcat(burst, GET_HELLO);
  cr_assert_eq(tc_sends(&cc, burst), 0);
  for (int i = 0; i < 40; i++) {
    cr_assert_eq(tc_read(&cc, &rr, 3000), 0, "response %d", i);
    cr_assert_str_eq(rr.body, "hello");
  }
}

Test(http, malformed_is_400_and_closes, .init = start_default, .fini = stop) {
  cr_assert_eq(tc_sends(&cc, "GARBAGE\r\n\r\n"), 0);
  cr_assert_eq(tc_read(&cc, &rr, 3000), 0);
  cr_assert_eq(rr.status, 400);
  cr_assert_str_eq(rr.body, "{\"error\":\"malformed HTTP request\",\"status\":400}");
  cr_assert_str_eq(tc_header(&rr, "Connection"), "close");
  cr_assert(tc_wait_closed(&cc, 3000));
}

Test(http, oversized_body_is_413_without_reading_it, .fini = stop) {
  fnet_http_config_t cfg;
  fnet_http_config_default(&cfg);
  cfg.max_body_bytes = 1024;
  start_with(&cfg);
  /* Only the head is sent: the answer must not wait for 10 MB. */
  cr_assert_eq(tc_sends(&cc, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n"), 0);
  cr_assert_eq(tc_read(&cc, &rr, 3000), 0);
  cr_assert_eq(rr.status, 413);
  cr_assert_str_eq(rr.body, "{\"error\":\"request body too large\",\"status\":413}");
  cr_assert(tc_wait_closed(&cc, 3000));
}

Test(http, oversized_chunked_body_is_413, .fini = stop) {
  fnet_http_config_t cfg;
  fnet_http_config_default(&cfg);
  cfg.max_body_bytes = 16;
  start_with(&cfg);
  cr_assert_eq(tc_sends(&cc, "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                             "10\r\n0123456789abcdef\r\n1\r\nX\r\n"), 0);
  cr_assert_eq(tc_read(&cc, &rr, 3000), 0);
  cr_assert_eq(rr.status, 413);
  cr_assert(tc_wait_closed(&cc, 3000));
}

Test(http, header_too_large_is_431, .fini = stop) {
  fnet_http_config_t cfg;
  fnet_http_config_default(&cfg);
  cfg.max_header_bytes = 512;
  start_with(&cfg);
  char big[2048];
  memset(big, 'a', sizeof(big));
  big[sizeof(big) - 1] = '\0';
  cr_assert_eq(tc_sends(&cc, "GET /hello HTTP/1.1\r\nX-Big: "), 0);
  cr_assert_eq(tc_sends(&cc, big), 0);
  cr_assert_eq(tc_sends(&cc, "\r\n\r\n"), 0);
  cr_assert_eq(tc_read(&cc, &rr, 3000), 0);
  cr_assert_eq(rr.status, 431);
  cr_assert_str_eq(rr.body, "{\"error\":\"request header too large\",\"status\":431}");
  cr_assert(tc_wait_closed(&cc, 3000));
}

Test(http, idle_timeout_closes, .fini = stop) {
  fnet_http_config_t cfg;
  fnet_http_config_default(&cfg);
  cfg.idle_timeout_ms = 100;
  start_with(&cfg);
  cr_assert_eq(tc_sends(&cc, GET_HELLO), 0);
  cr_assert_eq(tc_read(&cc, &rr, 3000), 0);
  cr_assert(tc_wait_closed(&cc, 5000));
}

Test(http, partial_request_times_out_408, .fini = stop) {
  fnet_http_config_t cfg;
  fnet_http_config_default(&cfg);
  cfg.read_timeout_ms = 100;
  start_with(&cfg);
  cr_assert_eq(tc_sends(&cc, "GET /hello HTTP/1.1\r\nHost"), 0);
  cr_assert_eq(tc_read(&cc, &rr, 5000), 0);
  cr_assert_eq(rr.status, 408);
  cr_assert_str_eq(rr.body, "{\"error\":\"request timeout\",\"status\":408}");
  cr_assert(tc_wait_closed(&cc, 3000));
}

Test(http, async_response, .init = start_default, .fini = stop) {
  cr_assert_eq(tc_sends(&cc, "GET /delay?ms=50 HTTP/1.1\r\n\r\n"), 0);
  cr_assert_eq(tc_read(&cc, &rr, 3000), 0);
  cr_assert_eq(rr.status, 200);
  cr_assert_str_eq(rr.body, "delayed");
  cr_assert_eq(ts_wait_int(&ts_late_rc, 0, 3000), 0);
}

Test(http, client_gone_before_async_answer, .init = start_default, .fini = stop) {
  cr_assert_eq(tc_sends(&cc, "GET /delay?ms=1000 HTTP/1.1\r\n\r\n"), 0);
  cr_assert_eq(ts_wait_int(&ts_delayed, 1, 5000), 1);
  /* A reset: an EOF after a complete request is a half-close and the request
   * is answered (test_hardening.c, half_close). */
  tc_reset(&cc);
  cr_assert_eq(ts_wait_int(&ts_aborts, 1, 5000), 1);
  cr_assert_eq(atomic_load(&ts_late_done), 0, "abort came before the answer");
  /* The late answer is discarded and the handle freed (ASan checks). */
  cr_assert_eq(ts_wait_int(&ts_late_done, 1, 5000), 1);
  cr_assert_eq(atomic_load(&ts_late_rc), -ECONNABORTED);
}

Test(http, not_found_and_method_not_allowed, .init = start_default, .fini = stop) {
  cr_assert_eq(tc_sends(&cc, "GET /nope HTTP/1.1\r\n\r\n"), 0);
  cr_assert_eq(tc_read(&cc, &rr, 3000), 0);
  cr_assert_eq(rr.status, 404);
  cr_assert_str_eq(rr.body, "{\"error\":\"not found\",\"status\":404}");
  cr_assert_eq(tc_sends(&cc, "DELETE /hello?x=1 HTTP/1.1\r\n\r\n"), 0);
  cr_assert_eq(tc_read(&cc, &rr, 3000), 0);
  cr_assert_eq(rr.status, 405);
  cr_assert_str_eq(tc_header(&rr, "Allow"), "GET");
  cr_assert_str_eq(rr.body, "{\"error\":\"method not allowed\",\"status\":405}");
}

Test(http, http10_closes, .init = start_default, .fini = stop) {
  cr_assert_eq(tc_sends(&cc, "GET /hello HTTP/1.0\r\n\r\n"), 0);
  cr_assert_eq(tc_read(&cc, &rr, 3000), 0);
  cr_assert_eq(rr.status, 200);
  cr_assert_str_eq(tc_header(&rr, "Connection"), "close");
  cr_assert(tc_wait_closed(&cc, 3000));
}

Test(http, http10_keep_alive, .init = start_default, .fini = stop) {
  for (int i = 0; i < 2; i++) {
    cr_assert_eq(tc_sends(&cc, "GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"), 0);
    cr_assert_eq(tc_read(&cc, &rr, 3000), 0);
    cr_assert_str_eq(tc_header(&rr, "Connection"), "keep-alive");
  }
}

Test(http, connection_close_header, .init = start_default, .fini = stop) {
  /* The request after the closing one is never answered. */
  cr_assert_eq(tc_sends(&cc, "GET /hello HTTP/1.1\r\nConnection: close\r\n\r\n" GET_HELLO), 0);
  cr_assert_eq(tc_read(&cc, &rr, 3000), 0);
  cr_assert_str_eq(tc_header(&rr, "Connection"), "close");
  cr_assert(tc_wait_closed(&cc, 3000));
}

Test(http, expect_100_continue, .init = start_default, .fini = stop) {
  cr_assert_eq(tc_sends(&cc, "POST /echo HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n"), 0);
  /* "100 Continue" comes before the body is sent, then the real answer. */
  cr_assert_eq(tc_read(&cc, &rr, 3000), 0);
  cr_assert_str_eq(rr.head, "HTTP/1.1 100 Continue\r\n\r\n");
  cr_assert_eq(tc_sends(&cc, "abc"), 0);
  cr_assert_eq(tc_read(&cc, &rr, 3000), 0);
  cr_assert_eq(rr.status, 200);
  cr_assert_str_eq(rr.body, "{\"len\":3,\"body\":\"abc\"}");
}

Test(http, connection_cap_503, .fini = stop) {
  fnet_http_config_t cfg;
  fnet_http_config_default(&cfg);
  cfg.max_connections = 1;
  start_with(&cfg);
  cr_assert_eq(tc_sends(&cc, GET_HELLO), 0);
  cr_assert_eq(tc_read(&cc, &rr, 3000), 0);
  tc_conn_t *c2 = malloc(sizeof(*c2));
  cr_assert_eq(tc_open(c2, ts.port), 0);
  cr_assert_eq(tc_read(c2, &rr, 3000), 0);
  cr_assert_eq(rr.status, 503);
  cr_assert_str_eq(rr.body, "{\"error\":\"too many connections\",\"status\":503}");
  tc_close(c2);
  free(c2);
}

Test(http, graceful_shutdown_answers_in_flight, .init = start_default, .fini = stop) {
  tc_conn_t *idle = malloc(sizeof(*idle));
  cr_assert_eq(tc_open(idle, ts.port), 0);
  cr_assert_eq(tc_sends(&cc, "GET /delay?ms=200 HTTP/1.1\r\n\r\n"), 0);
  cr_assert_eq(ts_wait_int(&ts_delayed, 1, 5000), 1);
  ts_shutdown(&ts);
  cr_assert(tc_wait_closed(idle, 3000), "idle connection closed at once");
  cr_assert_eq(tc_read(&cc, &rr, 3000), 0);
  cr_assert_str_eq(rr.body, "delayed");
  cr_assert_str_eq(tc_header(&rr, "Connection"), "close");
  cr_assert(tc_wait_closed(&cc, 3000));
  cr_assert_eq(ts_wait_int(&ts.shut_done, 1, 3000), 1);
  tc_close(idle);
  free(idle);
}

Test(http, async_pipeline_beyond_cap_resumes, .fini = stop) {
  fnet_http_config_t cfg;
  fnet_http_config_default(&cfg);
  cfg.max_pipeline = 2;
  start_with(&cfg);
  char burst[64 * 8];
  burst[0] = '\0';
  for (int i = 0; i < 6; i++) strcat(burst, "GET /delay?ms=10 HTTP/1.1\r\n\r\n");
  strcat(burst, GET_HELLO);
  cr_assert_eq(tc_sends(&cc, burst), 0);
  for (int i = 0; i < 6; i++) {
    cr_assert_eq(tc_read(&cc, &rr, 3000), 0, "response %d", i);
    cr_assert_str_eq(rr.body, "delayed");
  }
  cr_assert_eq(tc_read(&cc, &rr, 3000), 0);
  cr_assert_str_eq(rr.body, "hello");
}

Test(http, good_then_malformed_pipelined, .init = start_default, .fini = stop) {
  cr_assert_eq(tc_sends(&cc, "GET /delay?ms=30 HTTP/1.1\r\n\r\nNOT HTTP\r\n\r\n"), 0);
  cr_assert_eq(tc_read(&cc, &rr, 3000), 0);
  cr_assert_str_eq(rr.body, "delayed");
  cr_assert_eq(tc_read(&cc, &rr, 3000), 0);
  cr_assert_eq(rr.status, 400);
  cr_assert(tc_wait_closed(&cc, 3000));
}
