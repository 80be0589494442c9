/* gguf_writer: builds a GGUF v3 file (ggml's model container) in memory and
 * writes it out in one go.
 *
 * Workload: small generated test models (a few hundred KiB to a few tens of
 * MiB), so everything is kept in memory and written once; no streaming.
 *
 * File layout written (all integers little-endian, as GGUF requires):
 *   "GGUF" | u32 version=3 | u64 tensor count | u64 key/value count
 *   key/value pairs: string key, u32 type, value (arrays: u32 element type,
 *     u64 count, elements); strings are u64 length + bytes, no NUL
 *   tensor infos: string name, u32 n_dims, u64 dims[n_dims] (ne0 first, the
 *     contiguous one), u32 ggml type, u64 offset into the data section
 *   zero padding up to the alignment, then the data section, every tensor
 *   starting at a multiple of the alignment.
 *
 * Errors: negative errno. A call that fails leaves the writer as it was
 * (a failed add adds nothing). */
#ifndef FERRY_GGUF_WRITER_H
#define FERRY_GGUF_WRITER_H

#include <stddef.h>
#include <stdint.h>

#define FGGUF_MAGIC "GGUF"
#define FGGUF_VERSION 3u
#define FGGUF_ALIGNMENT 32u          /* ggml's default data alignment */
#define FGGUF_MAX_DIMS 4u            /* ggml tensors have at most 4 dimensions */

/* Value types of key/value pairs (the numbers are GGUF's). */
enum fgguf_type {
    FGGUF_UINT8 = 0, FGGUF_INT8 = 1, FGGUF_UINT16 = 2, FGGUF_INT16 = 3,
    FGGUF_UINT32 = 4, FGGUF_INT32 = 5, FGGUF_FLOAT32 = 6, FGGUF_BOOL = 7,
    FGGUF_STRING = 8, FGGUF_ARRAY = 9, FGGUF_UINT64 = 10, FGGUF_INT64 = 11,
    FGGUF_FLOAT64 = 12,
};

/* Tensor element types we write (the numbers are ggml's enum ggml_type). */
enum fgguf_tensor_type {
    FGGUF_F32 = 0,
    FGGUF_F16 = 1,
};

/* A growable byte buffer with a hard size limit. */
typedef struct fgguf_buf {
    uint8_t *data;   /* bytes, owned */
    size_t len;      /* bytes used */
    size_t cap;      /* bytes allocated */
} fgguf_buf_t;

typedef struct fgguf_writer {
    fgguf_buf_t kv;          /* serialised key/value pairs */
    fgguf_buf_t info;        /* serialised tensor infos */
    fgguf_buf_t data;        /* the data section (tensors, aligned) */
    uint64_t n_kv;           /* key/value pairs added */
    uint64_t n_tensors;      /* tensors added */
} fgguf_writer_t;

/* Upper bound for any one buffer: generated models are small. */
#define FGGUF_MAX_BYTES ((size_t)1 << 30)

void fgguf_writer_init(fgguf_writer_t *w);
/* Frees the buffers. Accepts NULL. */
void fgguf_writer_destroy(fgguf_writer_t *w);

/* Scalar and string values. ERRORS: -EINVAL (NULL key/value), -ENOMEM,
 * -E2BIG (over FGGUF_MAX_BYTES). */
int fgguf_kv_u32(fgguf_writer_t *w, const char *key, uint32_t v);
int fgguf_kv_i32(fgguf_writer_t *w, const char *key, int32_t v);
int fgguf_kv_f32(fgguf_writer_t *w, const char *key, float v);
int fgguf_kv_bool(fgguf_writer_t *w, const char *key, int v);
int fgguf_kv_str(fgguf_writer_t *w, const char *key, const char *v);
/* Arrays of n strings / floats / int32s. */
int fgguf_kv_arr_str(fgguf_writer_t *w, const char *key, const char *const *v, size_t n);
int fgguf_kv_arr_f32(fgguf_writer_t *w, const char *key, const float *v, size_t n);
int fgguf_kv_arr_i32(fgguf_writer_t *w, const char *key, const int32_t *v, size_t n);

/* Adds a tensor of `type` with n_dims dimensions (dims[0] is the contiguous
 * one) and reserves its zeroed, aligned space in the data section; *out (if
 * not NULL) points at that space to be filled before the next add (a later
 * add may move the buffer). ERRORS: -EINVAL (bad dims or type), -ENOMEM,
 * -E2BIG. */
int fgguf_tensor_add(fgguf_writer_t *w, const char *name, uint32_t n_dims, const uint64_t *dims,
                     enum fgguf_tensor_type type, void **out);

/* Total size of the file fgguf_write_file() would write. */
size_t fgguf_file_size(const fgguf_writer_t *w);

/* Writes the file to `path` atomically (a temporary file in the same folder,
 * then rename), mode 0644. ERRORS: negative errno from open/write/rename. */
int fgguf_write_file(const fgguf_writer_t *w, const char *path);

/* IEEE 754 binary32 -> binary16 (round to nearest even; overflow gives inf). */
uint16_t fgguf_f32_to_f16(float f);

#endif
