/* ferry farm: frame header codec and the incremental decoder. Everything
 * here runs on bytes an unauthenticated peer chose, so every length is
 * checked against its bound before a byte of the frame body is stored, and
 * the decoder never allocates after init: its one buffer fits the largest
 * legal frame. */
#include "farm_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

bool ffarm_type_valid(unsigned t) {
  switch (t) {
  case FFARM_T_AUTH1: case FFARM_T_AUTH2: case FFARM_T_AUTH3:
  case FFARM_T_HELLO: case FFARM_T_SCRIPT: case FFARM_T_TASK: case FFARM_T_CANCEL:
  case FFARM_T_RESULT: case FFARM_T_ACK: case FFARM_T_DATA: case FFARM_T_END:
    return true;
  default:
    return false;
  }
}

const char *ffarm_type_name(unsigned t) {
  switch (t) {
  case FFARM_T_AUTH1: return "AUTH1";
  case FFARM_T_AUTH2: return "AUTH2";
  case FFARM_T_AUTH3: return "AUTH3";
  case FFARM_T_HELLO: return "HELLO";
  case FFARM_T_SCRIPT: return "SCRIPT";
  case FFARM_T_TASK: return "TASK";
  case FFARM_T_CANCEL: return "CANCEL";
  case FFARM_T_RESULT: return "RESULT";
  case FFARM_T_ACK: return "ACK";
  case FFARM_T_DATA: return "DATA";
  case FFARM_T_END: return "END";
  default: return "?";
  }
}

bool ffarm_id_valid(const char *id, size_t len) {
  if (len == 0 || len > FFARM_ID_MAX) return false;
  if ((len == 1 && id[0] == '.') || (len == 2 && id[0] == '.' && id[1] == '.')) return false;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)id[i];
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

void ffarm_put_u64(uint8_t *p, uint64_t v) {
  for (int i = 7; i >= 0; i--) { p[i] = (uint8_t)v; v >>= 8; }
}

uint64_t ffarm_get_u64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = (v << 8) | p[i];
  return v;
}

void ffarm_hdr_put(uint8_t out[FFARM_HDR_LEN], const ffarm_hdr_t *h) {
  out[0] = 'F';
  out[1] = 'M';
  out[2] = FFARM_VERSION;
  out[3] = h->type;
  out[4] = (uint8_t)(h->id_len >> 8);
  out[5] = (uint8_t)h->id_len;
  out[6] = 0;
  out[7] = 0;
  ffarm_put_u64(out + 8, h->payload_len);
}

int ffarm_hdr_get(const uint8_t in[FFARM_HDR_LEN], ffarm_hdr_t *h) {
  if (in[0] != 'F' || in[1] != 'M' || in[2] != FFARM_VERSION) return -EPROTO;
  if (!ffarm_type_valid(in[3]) || in[6] != 0 || in[7] != 0) return -EPROTO;
  uint16_t id_len = (uint16_t)((in[4] << 8) | in[5]);
  uint64_t plen = ffarm_get_u64(in + 8);
  if (id_len > FFARM_ID_MAX || plen > FFARM_PAYLOAD_MAX) return -EMSGSIZE;
  h->type = in[3];
  h->id_len = id_len;
  h->payload_len = plen;
  return 0;
}

/* AddressSanitizer builds keep malloc: its redzones catch a decoder bug at
 * the exact byte (the fuzz target relies on that), page rounding would not. */
#if defined(__SANITIZE_ADDRESS__)
#define BIG_MALLOC 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BIG_MALLOC 1
#endif
#endif

void *ffarm_big_alloc(size_t n) {
#ifdef BIG_MALLOC
  return malloc(n);
#else
  void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return NULL;
  (void)madvise(p, n, MADV_DONTFORK);  /* advice: without it, only slower forks */
  return p;
#endif
}

void ffarm_big_free(void *p, size_t n) {
#ifdef BIG_MALLOC
  (void)n;
  free(p);
#else
  if (p) munmap(p, n);
#endif
}

int ffarm_dec_init(ffarm_dec_t *d) {
  memset(d, 0, sizeof(*d));
  d->buf = ffarm_big_alloc(FFARM_DEC_BUF);
  if (!d->buf) return -ENOMEM;
  d->need = FFARM_HDR_LEN;
  return 0;
}

uint8_t *ffarm_dec_swap(ffarm_dec_t *d, uint8_t *buf) {
  uint8_t *old = d->buf;
  d->buf = buf;
  /* the handed-out frame is complete: the next one starts from empty (the
   * header-only case already reset have) */
  if (d->have == d->need) {
    d->have = 0;
    d->need = FFARM_HDR_LEN;
    d->at = 0;
  }
  return old;
}

void ffarm_dec_destroy(ffarm_dec_t *d) {
  if (!d) return;
  ffarm_big_free(d->buf, FFARM_DEC_BUF);
  d->buf = NULL;
}

/* The previous frame was handed out: start the next one. */
static void next_frame(ffarm_dec_t *d) {
  if (d->have == d->need && d->need > FFARM_HDR_LEN) {
    d->have = 0;
    d->need = FFARM_HDR_LEN;
    d->at = 0;
  }
}

/* The header (at buf[0]) is known: move it so that the payload will start
 * on an FFARM_DATA_ALIGN boundary of memory (from the buffer's real address:
 * sanitizer builds use malloc's). */
static void place(ffarm_dec_t *d) {
  uintptr_t body = (uintptr_t)d->buf + FFARM_HDR_LEN + d->hdr.id_len;
  size_t pad = (size_t)((FFARM_DATA_ALIGN - body % FFARM_DATA_ALIGN) % FFARM_DATA_ALIGN);
  if (pad > 0) memmove(d->buf + pad, d->buf, FFARM_HDR_LEN);
  d->at = pad;
}

static void hand_out(ffarm_dec_t *d, ffarm_frame_t *f) {
  f->type = d->hdr.type;
  f->id_len = d->hdr.id_len;
  uint8_t *base = d->buf + d->at;
  f->id = (const char *)base + FFARM_HDR_LEN;
  f->payload = base + FFARM_HDR_LEN + d->hdr.id_len;
  f->len = (size_t)d->hdr.payload_len;
  f->hdr = base;
}

size_t ffarm_dec_space(ffarm_dec_t *d, uint8_t **p) {
  if (d->failed) return 0;
  next_frame(d);
  /* only once the header is known (and checked): need is then bounded */
  if (d->need <= FFARM_HDR_LEN || d->have < FFARM_HDR_LEN || d->have >= d->need) return 0;
  *p = d->buf + d->at + d->have;
  return d->need - d->have;
}

int ffarm_dec_commit(ffarm_dec_t *d, size_t n, ffarm_frame_t *f) {
  if (d->failed) return -EPROTO;
  if (n > d->need - d->have) {  /* caller bug: more than ffarm_dec_space() allowed */
    d->failed = true;
    return -EPROTO;
  }
  d->have += n;
  if (d->have < d->need) return 0;
  hand_out(d, f);
  return 1;
}

int ffarm_dec_feed(ffarm_dec_t *d, const uint8_t *data, size_t len, size_t *used,
                   ffarm_frame_t *f) {
  *used = 0;
  if (d->failed) return -EPROTO;
  next_frame(d);
  while (*used < len) {
    size_t take = d->need - d->have;
    if (take > len - *used) take = len - *used;
    memcpy(d->buf + d->at + d->have, data + *used, take);
    d->have += take;
    *used += take;
    if (d->have < d->need) return 0;
    if (d->need == FFARM_HDR_LEN) {
      int rc = ffarm_hdr_get(d->buf, &d->hdr);
      if (rc < 0) {
        d->failed = true;
        return rc;
      }
      d->need = FFARM_HDR_LEN + d->hdr.id_len + (size_t)d->hdr.payload_len;
      if (d->need > FFARM_HDR_LEN) {
        place(d);
        continue;
      }
      /* an empty frame (no id, no payload) is complete with its header; it
       * is marked done by need == HDR_LEN + 0 below */
    }
    hand_out(d, f);
    if (d->need == FFARM_HDR_LEN) {
      d->have = 0;  /* header-only frame: the buffer is free again at once */
      d->at = 0;
    }
    return 1;
  }
  return 0;
}
