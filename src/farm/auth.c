/* ferry farm: the shared-secret handshake, frame sealing and authenticated
 * announces, all on libsodium primitives:
 *   proofs         HMAC-SHA-256 keyed with the secret over both fresh nonces
 *                  (each side's proof is bound to its role, so a proof cannot
 *                  be reflected back)
 *   session keys   BLAKE2b keyed with the secret over both nonces, one key
 *                  per direction
 *   frames         AES-256-GCM when both sides' CPUs have it (several GB/s
 *                  with AES-NI), else ChaCha20-Poly1305 (IETF), the header +
 *                  id as additional data, the per-direction frame counter as
 *                  the nonce: a replayed, dropped or reordered frame fails to
 *                  open. The choice travels in the handshake and is covered
 *                  by both proofs.
 *   file bytes     in clear-data mode (negotiated like the cipher), a DATA
 *                  frame is the same AEAD with an empty plaintext: header,
 *                  id and file bytes are all additional data, so the tag
 *                  (GMAC / Poly1305) authenticates them as before at half
 *                  the cost of encrypting them (docs/farm.md says why).
 *   announces      XChaCha20-Poly1305 with a random nonce (UDP, no counter)
 * Nothing is sent to a peer that has not proved the secret except our nonce
 * and our own proof over its nonce, which teaches it nothing about the key. */
#include "farm_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

_Static_assert(crypto_aead_xchacha20poly1305_ietf_ABYTES == FFARM_TAG_LEN, "tag length");
_Static_assert(crypto_aead_chacha20poly1305_ietf_ABYTES == FFARM_TAG_LEN, "tag length");
_Static_assert(crypto_aead_aes256gcm_ABYTES == FFARM_TAG_LEN, "tag length");
_Static_assert(crypto_aead_chacha20poly1305_ietf_NPUBBYTES == FFARM_AEAD_NONCE_LEN, "nonce");
_Static_assert(crypto_aead_aes256gcm_NPUBBYTES == FFARM_AEAD_NONCE_LEN, "nonce");
_Static_assert(crypto_auth_hmacsha256_BYTES == 32, "proof length");

int ffarm_crypto_init(void) {
  return sodium_init() < 0 ? -EIO : 0;
}

int ffarm_key_load(ffarm_key_t *key, const char *path) {
  if (ffarm_crypto_init() < 0) return -EIO;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  struct stat st;
  if (fstat(fd, &st) < 0) {
    int e = -errno;
    close(fd);
    return e;
  }
  if (st.st_mode & (S_IRWXG | S_IRWXO)) {
    close(fd);
    return -EPERM;
  }
  if (st.st_size <= 0 || st.st_size > 65536) {
    close(fd);
    return -EINVAL;
  }
  uint8_t buf[65536];
  size_t have = 0;
  for (;;) {
    ssize_t n = read(fd, buf + have, sizeof(buf) - have);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int e = -errno;
      close(fd);
      sodium_memzero(buf, sizeof(buf));
      return e;
    }
    if (n == 0) break;
    have += (size_t)n;
    if (have == sizeof(buf)) break;
  }
  close(fd);
  /* a trailing newline from `echo secret > file` is not part of the secret */
  while (have > 0 && (buf[have - 1] == '\n' || buf[have - 1] == '\r')) have--;
  if (have == 0) return -EINVAL;
  crypto_generichash(key->k, sizeof(key->k), buf, have, (const uint8_t *)"ferry-farm-secret", 17);
  sodium_memzero(buf, sizeof(buf));
  return 0;
}

void ffarm_key_insecure(ffarm_key_t *key) {
  ffarm_crypto_init();
  crypto_generichash(key->k, sizeof(key->k), (const uint8_t *)"insecure", 8,
                     (const uint8_t *)"ferry-farm-secret", 17);
}

unsigned ffarm_ciphers_local(void) {
  unsigned m = FFARM_CIPHER_CHACHA;
  if (ffarm_crypto_init() < 0) return m;
  const char *env = getenv("FERRY_FARM_CIPHER");
  if (crypto_aead_aes256gcm_is_available() && !(env && strcmp(env, "chacha20") == 0))
    m |= FFARM_CIPHER_AES;
  return m;
}

unsigned ffarm_mode_local(void) {
  const char *env = getenv("FERRY_FARM_ENCRYPT_DATA");
  return env && *env && strcmp(env, "0") != 0 ? 0 : FFARM_MODE_CLEAR_DATA;
}

const char *ffarm_cipher_name(unsigned cipher) {
  switch (cipher) {
  case FFARM_CIPHER_CHACHA: return "chacha20-poly1305";
  case FFARM_CIPHER_AES: return "aes-256-gcm";
  default: return "?";
  }
}

/* Proofs cover the nonces and the AEAD offer and choice (no downgrade by a
 * man in the middle). */
static void proof(const ffarm_key_t *key, char role, const uint8_t *a, const uint8_t *b,
                  uint8_t offer, uint8_t cipher, uint8_t out[32]) {
  crypto_auth_hmacsha256_state st;
  crypto_auth_hmacsha256_init(&st, key->k, sizeof(key->k));
  uint8_t tag[8] = {'f', 'f', 'a', 'r', 'm', '-', (uint8_t)role, 0};
  crypto_auth_hmacsha256_update(&st, tag, sizeof(tag));
  crypto_auth_hmacsha256_update(&st, a, FFARM_NONCE_LEN);
  crypto_auth_hmacsha256_update(&st, b, FFARM_NONCE_LEN);
  uint8_t oc[2] = {offer, cipher};
  crypto_auth_hmacsha256_update(&st, oc, sizeof(oc));
  crypto_auth_hmacsha256_final(&st, out);
  sodium_memzero(&st, sizeof(st));
}

static size_t put_clear(uint8_t type, const uint8_t *p, size_t n, uint8_t *out) {
  ffarm_hdr_t h = {.type = type, .id_len = 0, .payload_len = n};
  ffarm_hdr_put(out, &h);
  memcpy(out + FFARM_HDR_LEN, p, n);
  return FFARM_HDR_LEN + n;
}

int ffarm_hs_client(ffarm_hs_t *hs, const ffarm_key_t *key, uint8_t *out, size_t *out_len) {
  if (ffarm_crypto_init() < 0) return -EIO;
  memset(hs, 0, sizeof(*hs));
  hs->key = *key;
  randombytes_buf(hs->mine, sizeof(hs->mine));
  hs->offer = (uint8_t)(ffarm_ciphers_local() | ffarm_mode_local());
  uint8_t body[FFARM_NONCE_LEN + 1];
  memcpy(body, hs->mine, FFARM_NONCE_LEN);
  body[FFARM_NONCE_LEN] = hs->offer;
  *out_len = put_clear(FFARM_T_AUTH1, body, sizeof(body), out);
  hs->state = FFARM_HS_WAIT2;
  return 0;
}

void ffarm_hs_server(ffarm_hs_t *hs, const ffarm_key_t *key) {
  ffarm_crypto_init();
  memset(hs, 0, sizeof(*hs));
  hs->server = true;
  hs->key = *key;
  randombytes_buf(hs->mine, sizeof(hs->mine));
  hs->state = FFARM_HS_WAIT1;
}

static int hs_fail(ffarm_hs_t *hs, int err) {
  hs->state = FFARM_HS_FAILED;
  return err;
}

int ffarm_hs_step(ffarm_hs_t *hs, const ffarm_frame_t *f, uint8_t *out, size_t *out_len) {
  uint8_t p[32];
  *out_len = 0;
  if (f->id_len != 0) return hs_fail(hs, -EPROTO);
  switch (hs->state) {
  case FFARM_HS_WAIT1:  /* server gets the client's nonce */
    if (f->type != FFARM_T_AUTH1 || f->len != FFARM_NONCE_LEN + 1) return hs_fail(hs, -EPROTO);
    memcpy(hs->peer, f->payload, FFARM_NONCE_LEN);
    if (sodium_memcmp(hs->peer, hs->mine, FFARM_NONCE_LEN) == 0) return hs_fail(hs, -EPROTO);
    hs->offer = f->payload[FFARM_NONCE_LEN];
    {
      unsigned both = hs->offer & ffarm_ciphers_local();
      if (both & FFARM_CIPHER_AES) hs->cipher = FFARM_CIPHER_AES;
      else if (both & FFARM_CIPHER_CHACHA) hs->cipher = FFARM_CIPHER_CHACHA;
      else return hs_fail(hs, -EPROTO);
      hs->clear_data = (hs->offer & ffarm_mode_local() & FFARM_MODE_CLEAR_DATA) != 0;
      uint8_t choice = (uint8_t)(hs->cipher | (hs->clear_data ? FFARM_MODE_CLEAR_DATA : 0));
      uint8_t body[FFARM_NONCE_LEN + 32 + 1];
      memcpy(body, hs->mine, FFARM_NONCE_LEN);
      proof(&hs->key, 'S', hs->peer, hs->mine, hs->offer, choice, body + FFARM_NONCE_LEN);
      body[FFARM_NONCE_LEN + 32] = choice;
      *out_len = put_clear(FFARM_T_AUTH2, body, sizeof(body), out);
    }
    hs->state = FFARM_HS_WAIT3;
    return 0;
  case FFARM_HS_WAIT2:  /* client checks the server's proof, answers its own */
    if (f->type != FFARM_T_AUTH2 || f->len != FFARM_NONCE_LEN + 32 + 1)
      return hs_fail(hs, -EPROTO);
    memcpy(hs->peer, f->payload, FFARM_NONCE_LEN);
    if (sodium_memcmp(hs->peer, hs->mine, FFARM_NONCE_LEN) == 0) return hs_fail(hs, -EPROTO);
    uint8_t choice = f->payload[FFARM_NONCE_LEN + 32];
    proof(&hs->key, 'S', hs->mine, hs->peer, hs->offer, choice, p);
    if (sodium_memcmp(p, f->payload + FFARM_NONCE_LEN, 32) != 0) return hs_fail(hs, -EACCES);
    hs->cipher = choice & (uint8_t)~FFARM_MODE_CLEAR_DATA;
    hs->clear_data = (choice & FFARM_MODE_CLEAR_DATA) != 0;
    /* one of ours, exactly one bit; clear data only if we offered it */
    if ((hs->cipher != FFARM_CIPHER_AES && hs->cipher != FFARM_CIPHER_CHACHA) ||
        !(hs->cipher & hs->offer) || (hs->clear_data && !(hs->offer & FFARM_MODE_CLEAR_DATA)))
      return hs_fail(hs, -EPROTO);
    proof(&hs->key, 'C', hs->peer, hs->mine, hs->offer, choice, p);
    *out_len = put_clear(FFARM_T_AUTH3, p, 32, out);
    hs->state = FFARM_HS_DONE;
    return 0;
  case FFARM_HS_WAIT3:  /* server checks the client's proof */
    if (f->type != FFARM_T_AUTH3 || f->len != 32) return hs_fail(hs, -EPROTO);
    proof(&hs->key, 'C', hs->mine, hs->peer, hs->offer,
          (uint8_t)(hs->cipher | (hs->clear_data ? FFARM_MODE_CLEAR_DATA : 0)), p);
    if (sodium_memcmp(p, f->payload, 32) != 0) return hs_fail(hs, -EACCES);
    hs->state = FFARM_HS_DONE;
    return 0;
  default:
    return hs_fail(hs, -EPROTO);
  }
}

static void dir_key(const ffarm_key_t *key, const char *label, const uint8_t *nc,
                    const uint8_t *ns, uint8_t out[FFARM_KEY_LEN]) {
  crypto_generichash_state st;
  crypto_generichash_init(&st, key->k, sizeof(key->k), FFARM_KEY_LEN);
  crypto_generichash_update(&st, (const uint8_t *)label, strlen(label));
  crypto_generichash_update(&st, nc, FFARM_NONCE_LEN);
  crypto_generichash_update(&st, ns, FFARM_NONCE_LEN);
  crypto_generichash_final(&st, out, FFARM_KEY_LEN);
}

int ffarm_hs_session(const ffarm_hs_t *hs, ffarm_sess_t *s) {
  if (hs->state != FFARM_HS_DONE) return -EINVAL;
  const uint8_t *nc = hs->server ? hs->peer : hs->mine;
  const uint8_t *ns = hs->server ? hs->mine : hs->peer;
  memset(s, 0, sizeof(*s));
  s->cipher = hs->cipher;
  s->clear_data = hs->clear_data;
  dir_key(&hs->key, "ffarm-c2s", nc, ns, hs->server ? s->rx.k : s->tx.k);
  dir_key(&hs->key, "ffarm-s2c", nc, ns, hs->server ? s->tx.k : s->rx.k);
  return 0;
}

size_t ffarm_frame_size(size_t id_len, size_t plain_len) {
  return FFARM_HDR_LEN + id_len + plain_len + FFARM_TAG_LEN;
}

static void seq_nonce(uint64_t seq, uint8_t n[FFARM_AEAD_NONCE_LEN]) {
  memset(n, 0, FFARM_AEAD_NONCE_LEN);
  ffarm_put_u64(n, seq);
}

/* Writes header + id; checks what encode and seal_inplace share. */
static ssize_t put_head(ffarm_sess_t *s, uint8_t type, const char *id, size_t id_len, size_t len,
                        uint8_t *out, size_t cap) {
  if (!ffarm_type_valid(type)) return -EINVAL;
  if (id_len > FFARM_ID_MAX || len > FFARM_CHUNK) return -EMSGSIZE;
  if (id_len > 0 && !ffarm_id_valid(id, id_len)) return -EINVAL;
  bool sealed = s != NULL;
  if (sealed == (type < 0x10)) return -EINVAL;  /* handshake in clear, the rest sealed */
  size_t total = FFARM_HDR_LEN + id_len + len + (sealed ? FFARM_TAG_LEN : 0);
  if (total > cap) return -EMSGSIZE;
  ffarm_hdr_t h = {.type = type, .id_len = (uint16_t)id_len,
                   .payload_len = len + (sealed ? FFARM_TAG_LEN : 0)};
  ffarm_hdr_put(out, &h);
  if (id_len) memmove(out + FFARM_HDR_LEN, id, id_len);
  return (ssize_t)total;
}

/* Seals body[0..len) in place (the tag goes to body + len) under s->tx.
 * body follows ad[0..adlen) directly. A DATA frame in clear-data mode: the
 * AEAD over an empty plaintext with ad and body both additional data. */
static void seal_body(ffarm_sess_t *s, uint8_t type, const uint8_t *ad, size_t adlen,
                      uint8_t *body, size_t len) {
  uint8_t nonce[FFARM_AEAD_NONCE_LEN];
  seq_nonce(s->tx.seq, nonce);
  if (type == FFARM_T_DATA && s->clear_data) {
    if (s->cipher == FFARM_CIPHER_AES)
      crypto_aead_aes256gcm_encrypt_detached(body, body + len, NULL, body, 0, ad, adlen + len,
                                             NULL, nonce, s->tx.k);
    else
      crypto_aead_chacha20poly1305_ietf_encrypt_detached(body, body + len, NULL, body, 0, ad,
                                                         adlen + len, NULL, nonce, s->tx.k);
  } else if (s->cipher == FFARM_CIPHER_AES)
    crypto_aead_aes256gcm_encrypt_detached(body, body + len, NULL, body, len, ad, adlen, NULL,
                                           nonce, s->tx.k);
  else
    crypto_aead_chacha20poly1305_ietf_encrypt_detached(body, body + len, NULL, body, len, ad,
                                                       adlen, NULL, nonce, s->tx.k);
  s->tx.seq++;
}

ssize_t ffarm_frame_encode(ffarm_sess_t *s, uint8_t type, const char *id, size_t id_len,
                           const void *payload, size_t len, uint8_t *out, size_t cap) {
  ssize_t total = put_head(s, type, id, id_len, len, out, cap);
  if (total < 0) return total;
  uint8_t *body = out + FFARM_HDR_LEN + id_len;
  if (len) memmove(body, payload, len);
  if (s) seal_body(s, type, out, FFARM_HDR_LEN + id_len, body, len);
  return total;
}

ssize_t ffarm_frame_seal_inplace(ffarm_sess_t *s, uint8_t type, const char *id, size_t id_len,
                                 size_t len, uint8_t *out) {
  if (!s) return -EINVAL;
  ssize_t total = put_head(s, type, id, id_len, len, out, ffarm_frame_size(id_len, len));
  if (total < 0) return total;
  seal_body(s, type, out, FFARM_HDR_LEN + id_len, out + FFARM_HDR_LEN + id_len, len);
  return total;
}

int ffarm_frame_open(ffarm_sess_t *s, ffarm_frame_t *f) {
  if (f->type < 0x10) return -EPROTO;
  if (f->len < FFARM_TAG_LEN) return -EBADMSG;
  uint8_t nonce[FFARM_AEAD_NONCE_LEN];
  seq_nonce(s->rx.seq, nonce);
  size_t clen = f->len - FFARM_TAG_LEN;
  const uint8_t *tag = f->payload + clen;
  int rc;
  /* payload follows header + id in the decoder's buffer: one additional-data span */
  size_t adlen = FFARM_HDR_LEN + f->id_len + clen;
  if (f->type == FFARM_T_DATA && s->clear_data && f->payload != f->hdr + FFARM_HDR_LEN + f->id_len)
    return -EINVAL;
  if (f->type == FFARM_T_DATA && s->clear_data && s->cipher == FFARM_CIPHER_AES)
    rc = crypto_aead_aes256gcm_decrypt_detached(f->payload, NULL, f->payload, 0, tag, f->hdr,
                                                adlen, nonce, s->rx.k);
  else if (f->type == FFARM_T_DATA && s->clear_data)
    rc = crypto_aead_chacha20poly1305_ietf_decrypt_detached(f->payload, NULL, f->payload, 0, tag,
                                                            f->hdr, adlen, nonce, s->rx.k);
  else if (s->cipher == FFARM_CIPHER_AES)
    rc = crypto_aead_aes256gcm_decrypt_detached(f->payload, NULL, f->payload, clen, tag, f->hdr,
                                                FFARM_HDR_LEN + f->id_len, nonce, s->rx.k);
  else
    rc = crypto_aead_chacha20poly1305_ietf_decrypt_detached(f->payload, NULL, f->payload, clen,
                                                            tag, f->hdr,
                                                            FFARM_HDR_LEN + f->id_len, nonce,
                                                            s->rx.k);
  if (rc != 0) return -EBADMSG;
  s->rx.seq++;
  f->len = clen;
  return 0;
}

/* Announce packet: "FFA1" | 24-byte random nonce | sealed JSON. */
static void announce_key(const ffarm_key_t *key, uint8_t out[FFARM_KEY_LEN]) {
  crypto_generichash(out, FFARM_KEY_LEN, (const uint8_t *)"ffarm-announce", 14, key->k,
                     sizeof(key->k));
}

ssize_t ffarm_announce_seal(const ffarm_key_t *key, const char *json, uint8_t *out, size_t cap) {
  if (ffarm_crypto_init() < 0) return -EIO;
  size_t n = strlen(json);
  size_t np = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
  size_t total = 4 + np + n + FFARM_TAG_LEN;
  if (total > FFARM_ANNOUNCE_MAX || total > cap) return -EMSGSIZE;
  uint8_t k[FFARM_KEY_LEN];
  announce_key(key, k);
  memcpy(out, "FFA1", 4);
  randombytes_buf(out + 4, np);
  unsigned long long clen = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(out + 4 + np, &clen, (const uint8_t *)json, n, out,
                                             4, NULL, out + 4, k);
  sodium_memzero(k, sizeof(k));
  return (ssize_t)total;
}

int ffarm_announce_open(const ffarm_key_t *key, const uint8_t *pkt, size_t len, char *json,
                        size_t cap) {
  size_t np = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
  if (len > FFARM_ANNOUNCE_MAX) return -EMSGSIZE;
  if (len < 4 + np + FFARM_TAG_LEN || memcmp(pkt, "FFA1", 4) != 0) return -EBADMSG;
  size_t clen = len - 4 - np;
  if (clen - FFARM_TAG_LEN + 1 > cap) return -EMSGSIZE;
  uint8_t k[FFARM_KEY_LEN];
  announce_key(key, k);
  unsigned long long mlen = 0;
  int rc = crypto_aead_xchacha20poly1305_ietf_decrypt((uint8_t *)json, &mlen, NULL, pkt + 4 + np,
                                                      clen, pkt, 4, pkt + 4, k);
  sodium_memzero(k, sizeof(k));
  if (rc != 0) return -EBADMSG;
  json[mlen] = '\0';
  if (strlen(json) != mlen) return -EBADMSG;  /* embedded NUL */
  return 0;
}

void ffarm_hex(const uint8_t *in, size_t n, char *out) {
  static const char d[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = d[in[i] >> 4];
    out[2 * i + 1] = d[in[i] & 15];
  }
  out[2 * n] = '\0';
}

int ffarm_hash_file(const char *path, char out[2 * FFARM_HASH_LEN + 1], uint64_t *size) {
  if (ffarm_crypto_init() < 0) return -EIO;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  crypto_generichash_state st;
  crypto_generichash_init(&st, NULL, 0, FFARM_HASH_LEN);
  static _Thread_local uint8_t buf[FFARM_CHUNK];
  uint64_t total = 0;
  for (;;) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int e = -errno;
      close(fd);
      return e;
    }
    if (n == 0) break;
    crypto_generichash_update(&st, buf, (size_t)n);
    total += (uint64_t)n;
  }
  close(fd);
  uint8_t h[FFARM_HASH_LEN];
  crypto_generichash_final(&st, h, sizeof(h));
  ffarm_hex(h, sizeof(h), out);
  if (size) *size = total;
  return 0;
}
