/* gguf_writer: GGUF v3 serialisation into memory buffers (see gguf_writer.h). */
#include "gguf_writer.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- bounded buffer ------------------------------------------------------ */

static int buf_reserve(fgguf_buf_t *b, size_t more) {
    if (more > FGGUF_MAX_BYTES - b->len) return -E2BIG;
    size_t need = b->len + more;
    if (need <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < need) cap = cap > FGGUF_MAX_BYTES / 2 ? FGGUF_MAX_BYTES : cap * 2;
    uint8_t *p = realloc(b->data, cap);
    if (!p) return -ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

/* Appends without checking room: callers reserve first, so a failed add
 * never leaves a half-written value behind. */
static void put(fgguf_buf_t *b, const void *p, size_t n) {
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

/* GGUF is little-endian; so is every machine we build for, but say it once. */
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "gguf_writer assumes a little-endian host"
#endif

static void put_u32(fgguf_buf_t *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(fgguf_buf_t *b, uint64_t v) { put(b, &v, 8); }
static void put_str(fgguf_buf_t *b, const char *s, size_t n) {
    put_u64(b, n);
    put(b, s, n);
}

static size_t str_bytes(const char *s) { return 8 + strlen(s); }

/* ---- key/value pairs ----------------------------------------------------- */

void fgguf_writer_init(fgguf_writer_t *w) { memset(w, 0, sizeof *w); }

void fgguf_writer_destroy(fgguf_writer_t *w) {
    if (!w) return;
    free(w->kv.data);
    free(w->info.data);
    free(w->data.data);
    memset(w, 0, sizeof *w);
}

/* Reserves room for the key, the type and `vbytes` of value, then writes the
 * key and the type. */
static int kv_begin(fgguf_writer_t *w, const char *key, enum fgguf_type type, size_t vbytes) {
    if (!w || !key) return -EINVAL;
    size_t kb = str_bytes(key);
    if (vbytes > FGGUF_MAX_BYTES || kb > FGGUF_MAX_BYTES) return -E2BIG;
    int rc = buf_reserve(&w->kv, kb + 4 + vbytes);
    if (rc) return rc;
    put_str(&w->kv, key, strlen(key));
    put_u32(&w->kv, (uint32_t)type);
    w->n_kv++;
    return 0;
}

int fgguf_kv_u32(fgguf_writer_t *w, const char *key, uint32_t v) {
    int rc = kv_begin(w, key, FGGUF_UINT32, 4);
    if (!rc) put_u32(&w->kv, v);
    return rc;
}

int fgguf_kv_i32(fgguf_writer_t *w, const char *key, int32_t v) {
    int rc = kv_begin(w, key, FGGUF_INT32, 4);
    if (!rc) put(&w->kv, &v, 4);
    return rc;
}

int fgguf_kv_f32(fgguf_writer_t *w, const char *key, float v) {
    int rc = kv_begin(w, key, FGGUF_FLOAT32, 4);
    if (!rc) put(&w->kv, &v, 4);
    return rc;
}

int fgguf_kv_bool(fgguf_writer_t *w, const char *key, int v) {
    int rc = kv_begin(w, key, FGGUF_BOOL, 1);
    uint8_t b = v ? 1 : 0;
    if (!rc) put(&w->kv, &b, 1);
    return rc;
}

int fgguf_kv_str(fgguf_writer_t *w, const char *key, const char *v) {
    if (!v) return -EINVAL;
    int rc = kv_begin(w, key, FGGUF_STRING, str_bytes(v));
    if (!rc) put_str(&w->kv, v, strlen(v));
    return rc;
}

int fgguf_kv_arr_str(fgguf_writer_t *w, const char *key, const char *const *v, size_t n) {
    if (!v && n) return -EINVAL;
    size_t bytes = 4 + 8;
    for (size_t i = 0; i < n; i++) {
        if (!v[i]) return -EINVAL;
        size_t sb = str_bytes(v[i]);
        if (sb > FGGUF_MAX_BYTES - bytes) return -E2BIG;
        bytes += sb;
    }
    int rc = kv_begin(w, key, FGGUF_ARRAY, bytes);
    if (rc) return rc;
    put_u32(&w->kv, FGGUF_STRING);
    put_u64(&w->kv, n);
    for (size_t i = 0; i < n; i++) put_str(&w->kv, v[i], strlen(v[i]));
    return 0;
}

static int kv_arr_4(fgguf_writer_t *w, const char *key, enum fgguf_type et, const void *v, size_t n) {
    if (!v && n) return -EINVAL;
    if (n > (FGGUF_MAX_BYTES - 12) / 4) return -E2BIG;
    int rc = kv_begin(w, key, FGGUF_ARRAY, 12 + 4 * n);
    if (rc) return rc;
    put_u32(&w->kv, (uint32_t)et);
    put_u64(&w->kv, n);
    if (n) put(&w->kv, v, 4 * n);
    return 0;
}

int fgguf_kv_arr_f32(fgguf_writer_t *w, const char *key, const float *v, size_t n) {
    return kv_arr_4(w, key, FGGUF_FLOAT32, v, n);
}

int fgguf_kv_arr_i32(fgguf_writer_t *w, const char *key, const int32_t *v, size_t n) {
    return kv_arr_4(w, key, FGGUF_INT32, v, n);
}

/* ---- tensors ------------------------------------------------------------- */

static size_t align_up(size_t n) { return (n + FGGUF_ALIGNMENT - 1) / FGGUF_ALIGNMENT * FGGUF_ALIGNMENT; }

int fgguf_tensor_add(fgguf_writer_t *w, const char *name, uint32_t n_dims, const uint64_t *dims,
                     enum fgguf_tensor_type type, void **out) {
    if (!w || !name || !dims || n_dims == 0 || n_dims > FGGUF_MAX_DIMS) return -EINVAL;
    size_t esize;
    switch (type) {
    case FGGUF_F32: esize = 4; break;
    case FGGUF_F16: esize = 2; break;
    default: return -EINVAL;
    }
    uint64_t elems = 1;
    for (uint32_t i = 0; i < n_dims; i++) {
        if (dims[i] == 0 || dims[i] > FGGUF_MAX_BYTES || elems > FGGUF_MAX_BYTES / dims[i]) return -E2BIG;
        elems *= dims[i];
    }
    if (elems > FGGUF_MAX_BYTES / esize) return -E2BIG;
    size_t bytes = (size_t)elems * esize;
    size_t offset = align_up(w->data.len);
    if (offset > FGGUF_MAX_BYTES || bytes > FGGUF_MAX_BYTES - offset) return -E2BIG;

    size_t ib = str_bytes(name) + 4 + 8 * n_dims + 4 + 8;
    int rc = buf_reserve(&w->info, ib);
    if (rc) return rc;
    rc = buf_reserve(&w->data, offset + bytes - w->data.len);
    if (rc) return rc;

    put_str(&w->info, name, strlen(name));
    put_u32(&w->info, n_dims);
    for (uint32_t i = 0; i < n_dims; i++) put_u64(&w->info, dims[i]);
    put_u32(&w->info, (uint32_t)type);
    put_u64(&w->info, offset);
    memset(w->data.data + w->data.len, 0, offset + bytes - w->data.len);
    w->data.len = offset + bytes;
    w->n_tensors++;
    if (out) *out = w->data.data + offset;
    return 0;
}

/* ---- output -------------------------------------------------------------- */

static size_t head_bytes(const fgguf_writer_t *w) {
    return 4 + 4 + 8 + 8 + w->kv.len + w->info.len;
}

size_t fgguf_file_size(const fgguf_writer_t *w) {
    return align_up(head_bytes(w)) + w->data.len;
}

static int write_all(int fd, const void *p, size_t n) {
    const uint8_t *c = p;
    while (n) {
        ssize_t k = write(fd, c, n);
        if (k < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        c += k;
        n -= (size_t)k;
    }
    return 0;
}

int fgguf_write_file(const fgguf_writer_t *w, const char *path) {
    if (!w || !path) return -EINVAL;
    char tmp[PATH_MAX];
    int n = snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof tmp) return -ENAMETOOLONG;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return -errno;

    uint8_t hdr[24];
    uint32_t version = FGGUF_VERSION;
    memcpy(hdr, FGGUF_MAGIC, 4);
    memcpy(hdr + 4, &version, 4);
    memcpy(hdr + 8, &w->n_tensors, 8);
    memcpy(hdr + 16, &w->n_kv, 8);
    static const uint8_t zeros[FGGUF_ALIGNMENT];
    size_t pad = align_up(head_bytes(w)) - head_bytes(w);

    int rc = write_all(fd, hdr, sizeof hdr);
    if (!rc && w->kv.len) rc = write_all(fd, w->kv.data, w->kv.len);
    if (!rc && w->info.len) rc = write_all(fd, w->info.data, w->info.len);
    if (!rc) rc = write_all(fd, zeros, pad);
    if (!rc && w->data.len) rc = write_all(fd, w->data.data, w->data.len);
    if (close(fd) < 0 && !rc) rc = -errno;
    if (!rc && rename(tmp, path) < 0) rc = -errno;
    if (rc) {
        int saved = errno;
        unlink(tmp);
        errno = saved;
    }
    return rc;
}

/* ---- half precision ------------------------------------------------------ */

uint16_t fgguf_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t exp = (x >> 23) & 0xffu;
    uint32_t man = x & 0x7fffffu;

    if (exp == 0xff) return (uint16_t)(sign | 0x7c00u | (man ? 0x200u : 0));   /* inf, nan */
    int e = (int)exp - 127 + 15;                                               /* rebias */
    if (e >= 31) return (uint16_t)(sign | 0x7c00u);                            /* overflow */
    if (e <= 0) {                                                              /* subnormal or zero */
        if (e < -10) return sign;
        man |= 0x800000u;                                /* implicit leading one */
        uint32_t shift = (uint32_t)(14 - e);
        uint32_t half = man >> shift;
        uint32_t rest = man & ((1u << shift) - 1);
        uint32_t mid = 1u << (shift - 1);
        if (rest > mid || (rest == mid && (half & 1))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t half = ((uint32_t)e << 10) | (man >> 13);
    uint32_t rest = man & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (half & 1))) half++;  /* may carry into exp: fine */
    return (uint16_t)(sign | half);
}
