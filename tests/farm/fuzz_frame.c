/* libFuzzer target for the farm's frame decoder and everything that reads a
 * decoded frame before authentication: the decoder takes the input in
 * pieces whose sizes come from the input itself (partial reads), every
 * frame goes to a server handshake and to a session's open(). Built and run
 * for a bounded time by tests/farm/fuzz.sh when clang is installed. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ferry/farm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static ffarm_dec_t dec;
  static ffarm_key_t key;
  static int ready;
  if (!ready) {
    ffarm_key_insecure(&key);
    ready = 1;
  }
  if (ffarm_dec_init(&dec) != 0) return 0;
  ffarm_hs_t hs;
  ffarm_hs_server(&hs, &key);
  ffarm_sess_t sess;
  memset(&sess, 0, sizeof(sess));
  /* both AEADs get garbage to open */
  sess.cipher = (size & 1) && (ffarm_ciphers_local() & FFARM_CIPHER_AES) ? FFARM_CIPHER_AES
                                                                          : FFARM_CIPHER_CHACHA;
  uint8_t out[256];
  size_t out_len;
  size_t pos = 0;
  while (pos < size) {
    /* first byte of each piece chooses the piece length, and its top bit
     * the zero-copy path (ffarm_dec_space/commit) where the decoder offers it */
    size_t piece = 1 + data[pos] % 64;
    int direct = data[pos] & 0x80;
    pos++;
    if (piece > size - pos) piece = size - pos;
    size_t off = 0;
    while (off < piece) {
      size_t used = 0;
      ffarm_frame_t f;
      int rc;
      uint8_t *room;
      size_t n = direct ? ffarm_dec_space(&dec, &room) : 0;
      if (n > 0) {
        if (n > piece - off) n = piece - off;
        memcpy(room, data + pos + off, n);
        used = n;
        rc = ffarm_dec_commit(&dec, n, &f);
      } else {
        rc = ffarm_dec_feed(&dec, data + pos + off, piece - off, &used, &f);
      }
      off += used;
      if (rc < 0) goto done;
      if (rc == 0) break;
      if (f.len > FFARM_PAYLOAD_MAX || f.id_len > FFARM_ID_MAX) __builtin_trap();
      if (f.type < 0x10) {
        ffarm_hs_step(&hs, &f, out, &out_len);
      } else {
        ffarm_frame_open(&sess, &f);
        ffarm_id_valid(f.id, f.id_len);
      }
    }
    pos += piece;
  }
  char js[FFARM_ANNOUNCE_MAX];
  ffarm_announce_open(&key, data, size, js, sizeof(js));
done:
  ffarm_dec_destroy(&dec);
  return 0;
}
