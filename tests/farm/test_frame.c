/* farm frame codec and handshake: exact bytes, bounds, partial input,
 * sealing (tamper, replay, reorder), wrong secrets, announces. */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ferry/farm.h"

static ffarm_key_t key_of(const char *s) {
  char path[64];
  snprintf(path, sizeof(path), "/tmp/ffarm-key-%d", (int)getpid());
  int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0600);
  cr_assert(fd >= 0);
  cr_assert_eq(write(fd, s, strlen(s)), (ssize_t)strlen(s));
  close(fd);
  ffarm_key_t k;
  cr_assert_eq(ffarm_key_load(&k, path), 0);
  unlink(path);
  return k;
}

Test(frame, header_bytes_exact) {
  ffarm_hdr_t h = {.type = FFARM_T_TASK, .id_len = 5, .payload_len = 0x0102030405ULL & 0xffff};
  uint8_t b[16];
  ffarm_hdr_put(b, &h);
  uint8_t want[16] = {'F', 'M', FFARM_VERSION, 0x12, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0x04, 0x05};
  cr_assert_arr_eq(b, want, 16);
  ffarm_hdr_t g;
  cr_assert_eq(ffarm_hdr_get(b, &g), 0);
  cr_assert_eq(g.type, FFARM_T_TASK);
  cr_assert_eq(g.id_len, 5);
  cr_assert_eq(g.payload_len, 0x0405);
}

Test(frame, header_rejects_bad_fields) {
  ffarm_hdr_t h = {.type = FFARM_T_DATA, .id_len = 1, .payload_len = 10};
  uint8_t b[16], c[16];
  ffarm_hdr_put(b, &h);
  ffarm_hdr_t g;
  memcpy(c, b, 16); c[0] = 'X';
  cr_assert_eq(ffarm_hdr_get(c, &g), -EPROTO);
  memcpy(c, b, 16); c[2] = FFARM_VERSION - 1;  /* an older peer */
  cr_assert_eq(ffarm_hdr_get(c, &g), -EPROTO);
  memcpy(c, b, 16); c[2] = FFARM_VERSION + 1;
  cr_assert_eq(ffarm_hdr_get(c, &g), -EPROTO);
  memcpy(c, b, 16); c[3] = 0x7f;
  cr_assert_eq(ffarm_hdr_get(c, &g), -EPROTO);
  memcpy(c, b, 16); c[7] = 1;
  cr_assert_eq(ffarm_hdr_get(c, &g), -EPROTO);
  memcpy(c, b, 16); c[4] = 0; c[5] = FFARM_ID_MAX + 1;
  cr_assert_eq(ffarm_hdr_get(c, &g), -EMSGSIZE);
  /* a 64-bit length far over the bound: refused before anything is stored */
  memcpy(c, b, 16); c[8] = 0x80;
  cr_assert_eq(ffarm_hdr_get(c, &g), -EMSGSIZE);
  h.payload_len = FFARM_PAYLOAD_MAX + 1;
  ffarm_hdr_put(c, &h);
  cr_assert_eq(ffarm_hdr_get(c, &g), -EMSGSIZE);
  h.payload_len = FFARM_PAYLOAD_MAX;
  ffarm_hdr_put(c, &h);
  cr_assert_eq(ffarm_hdr_get(c, &g), 0);
}

Test(frame, ids) {
  cr_assert(ffarm_id_valid("chunk_01.json", 13));
  cr_assert(ffarm_id_valid("a-b.c_D9", 8));
  cr_assert_not(ffarm_id_valid("", 0));
  cr_assert_not(ffarm_id_valid(".", 1));
  cr_assert_not(ffarm_id_valid("..", 2));
  cr_assert_not(ffarm_id_valid("../etc", 6));
  cr_assert_not(ffarm_id_valid("a/b", 3));
  cr_assert_not(ffarm_id_valid("a b", 3));
  cr_assert_not(ffarm_id_valid("a\0b", 3));
  char big[FFARM_ID_MAX + 2];
  memset(big, 'a', sizeof(big));
  cr_assert(ffarm_id_valid(big, FFARM_ID_MAX));
  cr_assert_not(ffarm_id_valid(big, FFARM_ID_MAX + 1));
}

/* A client and a server session after a good handshake. */
static void pair(const ffarm_key_t *kc, const ffarm_key_t *ks, ffarm_sess_t *c, ffarm_sess_t *s,
                 int *rc_client, int *rc_server) {
  ffarm_hs_t hc, hsv;
  uint8_t out[256];
  size_t n = 0;
  ffarm_dec_t d;
  cr_assert_eq(ffarm_dec_init(&d), 0);
  ffarm_frame_t f;
  size_t used;
  cr_assert_eq(ffarm_hs_client(&hc, kc, out, &n), 0);
  ffarm_hs_server(&hsv, ks);
  cr_assert_eq(ffarm_dec_feed(&d, out, n, &used, &f), 1);
  cr_assert_eq(ffarm_hs_step(&hsv, &f, out, &n), 0);  /* AUTH1 -> AUTH2 */
  cr_assert_eq(ffarm_dec_feed(&d, out, n, &used, &f), 1);
  *rc_client = ffarm_hs_step(&hc, &f, out, &n);      /* AUTH2 -> AUTH3 */
  *rc_server = -1;
  if (*rc_client == 0) {
    cr_assert_eq(ffarm_dec_feed(&d, out, n, &used, &f), 1);
    *rc_server = ffarm_hs_step(&hsv, &f, out, &n);
  }
  if (*rc_client == 0 && *rc_server == 0) {
    cr_assert_eq(ffarm_hs_session(&hc, c), 0);
    cr_assert_eq(ffarm_hs_session(&hsv, s), 0);
  } else {
    cr_assert_eq(ffarm_hs_session(&hc, c), -EINVAL);
  }
  ffarm_dec_destroy(&d);
}

Test(auth, good_secret_and_sealed_frames) {
  ffarm_key_t k = key_of("correct horse");
  ffarm_sess_t c, s;
  int rc1, rc2;
  pair(&k, &k, &c, &s, &rc1, &rc2);
  cr_assert_eq(rc1, 0);
  cr_assert_eq(rc2, 0);
  uint8_t buf[FFARM_FRAME_MAX];
  ssize_t n = ffarm_frame_encode(&c, FFARM_T_TASK, "t1.json", 7, "{\"a\":1}", 7, buf, sizeof(buf));
  cr_assert_eq(n, (ssize_t)ffarm_frame_size(7, 7));
  /* the payload is not in clear on the wire */
  cr_assert_null(memmem(buf, (size_t)n, "{\"a\":1}", 7));
  ffarm_dec_t d;
  ffarm_dec_init(&d);
  ffarm_frame_t f;
  size_t used;
  /* byte by byte: partial reads are handled */
  int r = 0;
  for (ssize_t i = 0; i < n; i++) {
    r = ffarm_dec_feed(&d, buf + i, 1, &used, &f);
    cr_assert_eq(used, 1);
    if (i < n - 1) cr_assert_eq(r, 0);
  }
  cr_assert_eq(r, 1);
  cr_assert_eq(ffarm_frame_open(&s, &f), 0);
  cr_assert_eq(f.len, 7);
  cr_assert_eq(memcmp(f.payload, "{\"a\":1}", 7), 0);
  cr_assert_eq(memcmp(f.id, "t1.json", 7), 0);
  ffarm_dec_destroy(&d);
}

Test(auth, tamper_replay_reorder_fail) {
  ffarm_key_t k = key_of("s3cret");
  ffarm_sess_t c, s;
  int rc1, rc2;
  pair(&k, &k, &c, &s, &rc1, &rc2);
  uint8_t f1[256], f2[256], tmp[256];
  ssize_t n1 = ffarm_frame_encode(&c, FFARM_T_ACK, "x", 1, "one", 3, f1, sizeof(f1));
  ssize_t n2 = ffarm_frame_encode(&c, FFARM_T_ACK, "x", 1, "two", 3, f2, sizeof(f2));
  ffarm_dec_t d;
  ffarm_dec_init(&d);
  ffarm_frame_t f;
  size_t used;
  /* reorder: frame 2 first fails */
  memcpy(tmp, f2, (size_t)n2);
  cr_assert_eq(ffarm_dec_feed(&d, tmp, (size_t)n2, &used, &f), 1);
  cr_assert_eq(ffarm_frame_open(&s, &f), -EBADMSG);
  /* tamper with the id (additional data) */
  memcpy(tmp, f1, (size_t)n1);
  tmp[FFARM_HDR_LEN] = 'y';
  cr_assert_eq(ffarm_dec_feed(&d, tmp, (size_t)n1, &used, &f), 1);
  cr_assert_eq(ffarm_frame_open(&s, &f), -EBADMSG);
  /* the genuine frame 1 opens, then a replay of it fails */
  memcpy(tmp, f1, (size_t)n1);
  cr_assert_eq(ffarm_dec_feed(&d, tmp, (size_t)n1, &used, &f), 1);
  cr_assert_eq(ffarm_frame_open(&s, &f), 0);
  memcpy(tmp, f1, (size_t)n1);
  cr_assert_eq(ffarm_dec_feed(&d, tmp, (size_t)n1, &used, &f), 1);
  cr_assert_eq(ffarm_frame_open(&s, &f), -EBADMSG);
  memcpy(tmp, f2, (size_t)n2);
  cr_assert_eq(ffarm_dec_feed(&d, tmp, (size_t)n2, &used, &f), 1);
  cr_assert_eq(ffarm_frame_open(&s, &f), 0);
  cr_assert_eq(memcmp(f.payload, "two", 3), 0);
  /* the server's own key does not open client frames (directions differ) */
  ffarm_sess_t s2 = s;
  s2.rx = s.tx;
  n1 = ffarm_frame_encode(&c, FFARM_T_ACK, "x", 1, "3", 1, f1, sizeof(f1));
  cr_assert_eq(ffarm_dec_feed(&d, f1, (size_t)n1, &used, &f), 1);
  cr_assert_eq(ffarm_frame_open(&s2, &f), -EBADMSG);
  ffarm_dec_destroy(&d);
}

Test(auth, wrong_secret_refused_both_ways) {
  ffarm_key_t a = key_of("right"), b = key_of("wrong");
  ffarm_sess_t c, s;
  int rc1, rc2;
  /* the server lacks the secret: the client rejects its proof */
  pair(&a, &b, &c, &s, &rc1, &rc2);
  cr_assert_eq(rc1, -EACCES);
  /* a client that lacks the secret cannot forge AUTH3: emulate it by a
   * client that answers with a random proof */
  ffarm_hs_t hsv, hc;
  uint8_t out[256];
  size_t n;
  ffarm_hs_server(&hsv, &a);
  ffarm_hs_client(&hc, &b, out, &n);
  ffarm_dec_t d;
  ffarm_dec_init(&d);
  ffarm_frame_t f;
  size_t used;
  cr_assert_eq(ffarm_dec_feed(&d, out, n, &used, &f), 1);
  cr_assert_eq(ffarm_hs_step(&hsv, &f, out, &n), 0);
  uint8_t fake[FFARM_HDR_LEN + 32];
  ffarm_hdr_t h = {.type = FFARM_T_AUTH3, .id_len = 0, .payload_len = 32};
  ffarm_hdr_put(fake, &h);
  memset(fake + FFARM_HDR_LEN, 0x55, 32);
  cr_assert_eq(ffarm_dec_feed(&d, fake, sizeof(fake), &used, &f), 1);
  cr_assert_eq(ffarm_hs_step(&hsv, &f, out, &n), -EACCES);
  cr_assert_eq(hsv.state, FFARM_HS_FAILED);
  ffarm_dec_destroy(&d);
}

Test(auth, out_of_order_handshake) {
  ffarm_key_t a = key_of("k");
  ffarm_hs_t hsv;
  ffarm_hs_server(&hsv, &a);
  uint8_t fr[FFARM_HDR_LEN + 32], out[256];
  size_t n;
  ffarm_hdr_t h = {.type = FFARM_T_AUTH3, .payload_len = 32};
  ffarm_hdr_put(fr, &h);
  ffarm_frame_t f = {.type = FFARM_T_AUTH3, .payload = fr + FFARM_HDR_LEN, .len = 32, .hdr = fr};
  cr_assert_eq(ffarm_hs_step(&hsv, &f, out, &n), -EPROTO);
  /* a sealed type is never accepted as a handshake step */
  ffarm_hs_server(&hsv, &a);
  f.type = FFARM_T_TASK;
  cr_assert_eq(ffarm_hs_step(&hsv, &f, out, &n), -EPROTO);
}

Test(auth, key_file_rules) {
  char path[64];
  snprintf(path, sizeof(path), "/tmp/ffarm-kf-%d", (int)getpid());
  int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
  cr_assert(write(fd, "x\n", 2) == 2);
  close(fd);
  chmod(path, 0644);
  ffarm_key_t k, k2;
  cr_assert_eq(ffarm_key_load(&k, path), -EPERM);
  chmod(path, 0600);
  cr_assert_eq(ffarm_key_load(&k, path), 0);
  k2 = key_of("x");  /* the trailing newline is not part of the secret */
  cr_assert_arr_eq(k.k, k2.k, FFARM_KEY_LEN);
  fd = open(path, O_TRUNC | O_WRONLY);
  close(fd);
  cr_assert_eq(ffarm_key_load(&k, path), -EINVAL);
  unlink(path);
  cr_assert_eq(ffarm_key_load(&k, path), -ENOENT);
}

Test(frame, decoder_bounds_and_streams) {
  ffarm_dec_t d;
  ffarm_dec_init(&d);
  ffarm_frame_t f;
  size_t used;
  /* two clear frames in one buffer: the decoder stops after the first */
  uint8_t buf[512];
  ssize_t a = ffarm_frame_encode(NULL, FFARM_T_AUTH1, NULL, 0, "abc", 3, buf, sizeof(buf));
  ssize_t b = ffarm_frame_encode(NULL, FFARM_T_AUTH3, NULL, 0, NULL, 0, buf + a, sizeof(buf) - a);
  cr_assert_eq(b, FFARM_HDR_LEN);
  cr_assert_eq(ffarm_dec_feed(&d, buf, (size_t)(a + b), &used, &f), 1);
  cr_assert_eq(used, (size_t)a);
  cr_assert_eq(f.len, 3);
  cr_assert_eq(ffarm_dec_feed(&d, buf + used, (size_t)(a + b) - used, &used, &f), 1);
  cr_assert_eq(f.type, FFARM_T_AUTH3);
  cr_assert_eq(f.len, 0);
  /* encode refuses a sealed type in clear, bad ids and oversize payloads */
  cr_assert_eq(ffarm_frame_encode(NULL, FFARM_T_TASK, NULL, 0, "x", 1, buf, sizeof(buf)), -EINVAL);
  cr_assert_eq(ffarm_frame_encode(NULL, FFARM_T_AUTH1, "../x", 4, "x", 1, buf, sizeof(buf)),
               -EINVAL);
  cr_assert_eq(ffarm_frame_encode(NULL, FFARM_T_AUTH1, NULL, 0, buf, FFARM_CHUNK + 1, buf,
                                  sizeof(buf)), -EMSGSIZE);
  cr_assert_eq(ffarm_frame_encode(NULL, FFARM_T_AUTH1, NULL, 0, buf, 100, buf, 50), -EMSGSIZE);
  /* garbage kills the stream for good */
  uint8_t junk[16] = "GET / HTTP/1.1\r\n";
  cr_assert_eq(ffarm_dec_feed(&d, junk, 16, &used, &f), -EPROTO);
  cr_assert_eq(ffarm_dec_feed(&d, buf, (size_t)a, &used, &f), -EPROTO);
  ffarm_dec_destroy(&d);
}

Test(announce, sealed_and_checked) {
  ffarm_key_t a = key_of("net"), b = key_of("other");
  uint8_t pkt[FFARM_ANNOUNCE_MAX];
  ssize_t n = ffarm_announce_seal(&a, "{\"id\":\"e1\",\"port\":12345}", pkt, sizeof(pkt));
  cr_assert_gt(n, 0);
  char js[FFARM_ANNOUNCE_MAX];
  cr_assert_eq(ffarm_announce_open(&a, pkt, (size_t)n, js, sizeof(js)), 0);
  cr_assert_str_eq(js, "{\"id\":\"e1\",\"port\":12345}");
  cr_assert_eq(ffarm_announce_open(&b, pkt, (size_t)n, js, sizeof(js)), -EBADMSG);
  pkt[n - 1] ^= 1;
  cr_assert_eq(ffarm_announce_open(&a, pkt, (size_t)n, js, sizeof(js)), -EBADMSG);
  cr_assert_eq(ffarm_announce_open(&a, pkt, 10, js, sizeof(js)), -EBADMSG);
  char big[FFARM_ANNOUNCE_MAX + 10];
  memset(big, 'a', sizeof(big) - 1);
  big[sizeof(big) - 1] = 0;
  cr_assert_eq(ffarm_announce_seal(&a, big, pkt, sizeof(pkt)), -EMSGSIZE);
}

/* Both AEADs: the handshake agrees on AES-256-GCM when both offer it and on
 * ChaCha20-Poly1305 when one side withholds AES; frames open only with the
 * agreed one. */
static void seal_open_roundtrip(ffarm_sess_t *c, ffarm_sess_t *s) {
  uint8_t *buf = malloc(FFARM_FRAME_MAX);
  cr_assert_not_null(buf);
  ffarm_dec_t d;
  cr_assert_eq(ffarm_dec_init(&d), 0);
  for (int round = 0; round < 3; round++) {
    /* a full-size DATA frame sealed in place, read zero-copy into the decoder */
    uint8_t *body = buf + FFARM_HDR_LEN + 5;
    for (size_t i = 0; i < FFARM_CHUNK; i++) body[i] = (uint8_t)(i * 7 + round);
    ssize_t n = ffarm_frame_seal_inplace(c, FFARM_T_DATA, "big.x", 5, FFARM_CHUNK, buf);
    cr_assert_eq(n, (ssize_t)ffarm_frame_size(5, FFARM_CHUNK));
    /* file bytes: encrypted unless the session agreed on clear data */
    bool clear = true;
    for (size_t i = 0; i < FFARM_CHUNK; i += 4099) clear = clear && body[i] == (uint8_t)(i * 7 + round);
    cr_assert_eq(clear, c->clear_data, "payload in clear: %d, clear-data session: %d", clear,
                 c->clear_data);
    ffarm_frame_t f;
    size_t used;
    uint8_t *p;
    cr_assert_eq(ffarm_dec_space(&d, &p), 0);  /* no header yet: no direct room */
    cr_assert_eq(ffarm_dec_feed(&d, buf, 20, &used, &f), 0);
    cr_assert_eq(used, 20);
    size_t room = ffarm_dec_space(&d, &p);
    cr_assert_eq(room, (size_t)n - 20);
    memcpy(p, buf + 20, 1000);
    cr_assert_eq(ffarm_dec_commit(&d, 1000, &f), 0);
    room = ffarm_dec_space(&d, &p);
    cr_assert_eq(room, (size_t)n - 1020);
    memcpy(p, buf + 1020, room);
    cr_assert_eq(ffarm_dec_commit(&d, room, &f), 1);
    cr_assert_eq(ffarm_frame_open(s, &f), 0);
    cr_assert_eq(f.len, FFARM_CHUNK);
    for (size_t i = 0; i < FFARM_CHUNK; i += 4099) cr_assert_eq(f.payload[i], (uint8_t)(i * 7 + round));
  }
  /* a flipped bit in a frame's bytes, its tag or its header: refused (in
   * clear-data mode too: the tag covers every byte) */
  uint8_t *body = buf + FFARM_HDR_LEN;
  ffarm_frame_t f;
  size_t used;
  size_t where[3] = {FFARM_HDR_LEN + 100, FFARM_HDR_LEN + 4096 + 3, 3};
  for (int w = 0; w < 3; w++) {
    memset(body, 1, 4096);
    ffarm_sess_t c2 = *c, s2 = *s;
    ssize_t n = ffarm_frame_seal_inplace(&c2, FFARM_T_DATA, NULL, 0, 4096, buf);
    cr_assert_gt(n, 0);
    buf[where[w]] ^= 1;  /* header: DATA becomes END */
    ffarm_dec_t d3;
    ffarm_dec_init(&d3);
    int rc = ffarm_dec_feed(&d3, buf, (size_t)n, &used, &f);
    cr_assert_eq(rc, 1, "case %d", w);
    cr_assert_eq(ffarm_frame_open(&s2, &f), -EBADMSG, "case %d", w);
    ffarm_dec_destroy(&d3);
  }
  ssize_t n = ffarm_frame_seal_inplace(c, FFARM_T_DATA, NULL, 0, 4096, buf);
  cr_assert_gt(n, 0);
  /* committing more than the room is a caller bug: the stream dies */
  ffarm_dec_t d2;
  ffarm_dec_init(&d2);
  cr_assert_eq(ffarm_dec_feed(&d2, buf, FFARM_HDR_LEN, &used, &f), 0);
  cr_assert_eq(ffarm_dec_commit(&d2, (size_t)n, &f), -EPROTO);
  ffarm_dec_destroy(&d2);
  ffarm_dec_destroy(&d);
  free(buf);
}

Test(auth, aes_gcm_when_both_have_it) {
  unsetenv("FERRY_FARM_CIPHER");
  ffarm_key_t k = key_of("aes");
  ffarm_sess_t c, s;
  int rc1, rc2;
  pair(&k, &k, &c, &s, &rc1, &rc2);
  cr_assert_eq(rc1, 0);
  cr_assert_eq(rc2, 0);
  unsigned want = (ffarm_ciphers_local() & FFARM_CIPHER_AES) ? FFARM_CIPHER_AES
                                                             : FFARM_CIPHER_CHACHA;
  cr_assert_eq(c.cipher, want);
  cr_assert_eq(s.cipher, want);
  cr_assert(c.clear_data && s.clear_data);  /* the default: file bytes in clear, tagged */
  seal_open_roundtrip(&c, &s);
  seal_open_roundtrip(&s, &c);
}

/* Clear-data mode (the default) leaves metadata sealed: only DATA frames
 * travel readable. Either side asking for encrypted file data gets it, and a
 * frame of the other mode does not open. */
static bool sealed_hello_hides(ffarm_sess_t *c) {
  uint8_t buf[256];
  const char *js = "{\"secret\":\"meta\"}";
  ssize_t n = ffarm_frame_encode(c, FFARM_T_HELLO, NULL, 0, js, strlen(js), buf, sizeof(buf));
  cr_assert_gt(n, 0);
  return memmem(buf, (size_t)n, "secret", 6) == NULL;
}

Test(auth, encrypted_data_when_either_side_asks) {
  unsetenv("FERRY_FARM_CIPHER");
  unsetenv("FERRY_FARM_ENCRYPT_DATA");
  cr_assert_eq(ffarm_mode_local(), FFARM_MODE_CLEAR_DATA);
  ffarm_key_t k = key_of("mode");
  ffarm_sess_t c, s;
  int rc1, rc2;
  pair(&k, &k, &c, &s, &rc1, &rc2);
  cr_assert(rc1 == 0 && rc2 == 0 && c.clear_data && s.clear_data);
  cr_assert(sealed_hello_hides(&c), "metadata must stay encrypted in clear-data mode");
  setenv("FERRY_FARM_ENCRYPT_DATA", "0", 1);  /* "0" is no */
  cr_assert_eq(ffarm_mode_local(), FFARM_MODE_CLEAR_DATA);
  setenv("FERRY_FARM_ENCRYPT_DATA", "1", 1);
  cr_assert_eq(ffarm_mode_local(), 0);
  ffarm_sess_t ce, se;
  pair(&k, &k, &ce, &se, &rc1, &rc2);
  unsetenv("FERRY_FARM_ENCRYPT_DATA");
  cr_assert(rc1 == 0 && rc2 == 0);
  cr_assert(!ce.clear_data && !se.clear_data);
  seal_open_roundtrip(&ce, &se);
  /* only the server asks (the client offers clear data, the server does not
   * choose it) and only the client asks (it does not offer it) */
  for (int who = 0; who < 2; who++) {
    ffarm_hs_t hc, hsv;
    uint8_t out[256];
    size_t n;
    ffarm_dec_t d;
    ffarm_dec_init(&d);
    ffarm_frame_t f;
    size_t used;
    if (who == 1) setenv("FERRY_FARM_ENCRYPT_DATA", "yes", 1);
    cr_assert_eq(ffarm_hs_client(&hc, &k, out, &n), 0);
    unsetenv("FERRY_FARM_ENCRYPT_DATA");
    if (who == 0) setenv("FERRY_FARM_ENCRYPT_DATA", "yes", 1);
    ffarm_hs_server(&hsv, &k);
    cr_assert_eq(ffarm_dec_feed(&d, out, n, &used, &f), 1);
    cr_assert_eq(ffarm_hs_step(&hsv, &f, out, &n), 0);
    unsetenv("FERRY_FARM_ENCRYPT_DATA");
    cr_assert_eq(ffarm_dec_feed(&d, out, n, &used, &f), 1);
    cr_assert_eq(ffarm_hs_step(&hc, &f, out, &n), 0);
    cr_assert_eq(ffarm_dec_feed(&d, out, n, &used, &f), 1);
    cr_assert_eq(ffarm_hs_step(&hsv, &f, out, &n), 0);
    cr_assert(!hc.clear_data && !hsv.clear_data, "case %d", who);
    ffarm_dec_destroy(&d);
  }
  /* a clear-data DATA frame does not open in an encrypting session, nor the
   * reverse (same keys, same counter: only the mode differs) */
  uint8_t *buf = malloc(FFARM_FRAME_MAX);
  cr_assert_not_null(buf);
  for (int dir = 0; dir < 2; dir++) {
    ffarm_sess_t tx = c, rx = s;
    tx.clear_data = dir == 0;
    rx.clear_data = dir != 0;
    memset(buf + FFARM_HDR_LEN, 'x', 1000);
    ssize_t n = ffarm_frame_seal_inplace(&tx, FFARM_T_DATA, NULL, 0, 1000, buf);
    ffarm_dec_t d;
    ffarm_dec_init(&d);
    ffarm_frame_t f;
    size_t used;
    cr_assert_eq(ffarm_dec_feed(&d, buf, (size_t)n, &used, &f), 1);
    cr_assert_eq(ffarm_frame_open(&rx, &f), -EBADMSG, "dir %d", dir);
    ffarm_dec_destroy(&d);
  }
  free(buf);
}

Test(auth, chacha_when_one_side_lacks_aes) {
  setenv("FERRY_FARM_CIPHER", "chacha20", 1);
  cr_assert_eq(ffarm_ciphers_local(), FFARM_CIPHER_CHACHA);
  ffarm_key_t k = key_of("chacha");
  ffarm_sess_t c, s;
  int rc1, rc2;
  pair(&k, &k, &c, &s, &rc1, &rc2);
  unsetenv("FERRY_FARM_CIPHER");
  cr_assert_eq(rc1, 0);
  cr_assert_eq(rc2, 0);
  cr_assert_eq(c.cipher, FFARM_CIPHER_CHACHA);
  cr_assert_eq(s.cipher, FFARM_CIPHER_CHACHA);
  seal_open_roundtrip(&c, &s);
  /* a frame sealed with the other AEAD does not open */
  if (ffarm_ciphers_local() & FFARM_CIPHER_AES) {
    ffarm_sess_t other = c;
    other.cipher = FFARM_CIPHER_AES;
    uint8_t buf[256];
    ssize_t n = ffarm_frame_encode(&other, FFARM_T_HELLO, NULL, 0, "{}", 2, buf, sizeof(buf));
    ffarm_dec_t d;
    ffarm_dec_init(&d);
    ffarm_frame_t f;
    size_t used;
    cr_assert_eq(ffarm_dec_feed(&d, buf, (size_t)n, &used, &f), 1);
    cr_assert_eq(ffarm_frame_open(&s, &f), -EBADMSG);
    ffarm_dec_destroy(&d);
  }
}

/* Someone in the middle who rewrites the offer or the choice (a downgrade)
 * breaks the proofs: the handshake fails. */
Test(auth, cipher_choice_cannot_be_changed_in_between) {
  unsetenv("FERRY_FARM_CIPHER");
  ffarm_key_t k = key_of("mitm");
  unsetenv("FERRY_FARM_ENCRYPT_DATA");
  for (int which = 0; which < 4; which++) {
    ffarm_hs_t hc, hsv;
    uint8_t out[256];
    size_t n;
    ffarm_dec_t d;
    ffarm_dec_init(&d);
    ffarm_frame_t f;
    size_t used;
    cr_assert_eq(ffarm_hs_client(&hc, &k, out, &n), 0);
    cr_assert_eq(n, FFARM_HDR_LEN + FFARM_NONCE_LEN + 1);
    if (which == 0) out[n - 1] = FFARM_CIPHER_CHACHA;  /* offer rewritten */
    if (which == 3) out[n - 1] ^= FFARM_MODE_CLEAR_DATA;  /* data mode offer rewritten */
    ffarm_hs_server(&hsv, &k);
    cr_assert_eq(ffarm_dec_feed(&d, out, n, &used, &f), 1);
    cr_assert_eq(ffarm_hs_step(&hsv, &f, out, &n), 0);
    cr_assert_eq(n, FFARM_HDR_LEN + FFARM_NONCE_LEN + 32 + 1);
    if (which == 1) out[n - 1] = FFARM_CIPHER_CHACHA;  /* choice rewritten */
    if (which == 2) out[n - 1] ^= FFARM_MODE_CLEAR_DATA;  /* data mode rewritten */
    cr_assert_eq(ffarm_dec_feed(&d, out, n, &used, &f), 1);
    int rc = ffarm_hs_step(&hc, &f, out, &n);
    /* without AES on this CPU both sides pick ChaCha anyway: nothing changed */
    if ((ffarm_ciphers_local() & FFARM_CIPHER_AES) || which >= 2)
      cr_assert_eq(rc, -EACCES, "case %d", which);
    ffarm_dec_destroy(&d);
  }
}
