/* ferry-gguf's writer and model: the output is deterministic from the seed
 * and parses as GGUF v3 (header, counts, every key/value and tensor info,
 * alignment, sizes), read back by an independent little parser below. */
#include "llama_model.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- a strict, bounded GGUF reader (test-only) --------------------------- */

typedef struct rd {
    const uint8_t *p;   /* file bytes */
    size_t len;         /* file size */
    size_t pos;         /* read position */
    int bad;            /* set once anything ran past the end or was malformed */
} rd_t;

static const void *take(rd_t *r, size_t n) {
    if (r->bad || n > r->len - r->pos) {
        r->bad = 1;
        return NULL;
    }
    const void *q = r->p + r->pos;
    r->pos += n;
    return q;
}
static uint32_t u32(rd_t *r) { uint32_t v = 0; const void *q = take(r, 4); if (q) memcpy(&v, q, 4); return v; }
static uint64_t u64(rd_t *r) { uint64_t v = 0; const void *q = take(r, 8); if (q) memcpy(&v, q, 8); return v; }
/* A string as a NUL-terminated copy in `out` (truncated to cap). */
static void str(rd_t *r, char *out, size_t cap) {
    uint64_t n = u64(r);
    const char *q = take(r, n);
    if (!q) { out[0] = 0; return; }
    size_t k = n < cap - 1 ? n : cap - 1;
    memcpy(out, q, k);
    out[k] = 0;
}

/* Copies a short string, truncating (test fields are small on purpose). */
static void keep(char *dst, size_t cap, const char *src) {
    size_t n = strlen(src);
    if (n >= cap) n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = 0;
}

static size_t scalar_size(uint32_t t) {
    switch (t) {
    case 0: case 1: case 7: return 1;
    case 2: case 3: return 2;
    case 4: case 5: case 6: return 4;
    case 10: case 11: case 12: return 8;
    default: return 0;
    }
}

typedef struct tinfo {
    char name[96];      /* tensor name */
    uint32_t n_dims;    /* dimensions */
    uint64_t ne[4];     /* sizes, ne0 first */
    uint32_t type;      /* ggml type */
    uint64_t offset;    /* into the data section */
} tinfo_t;

typedef struct parsed {
    uint32_t version;        /* header version */
    uint64_t n_tensors;      /* header tensor count */
    uint64_t n_kv;           /* header key/value count */
    char arch[32];           /* general.architecture */
    uint32_t alignment;      /* general.alignment */
    uint32_t eos, bos;       /* tokenizer ids */
    uint32_t n_layer;        /* llama.block_count */
    uint32_t n_embd;         /* llama.embedding_length */
    uint64_t n_tokens;       /* tokenizer.ggml.tokens length */
    char tok0[32], tok3[32], tok258[32], tok259[32], tok260[32];  /* sample tokens */
    int has_template;        /* tokenizer.chat_template present */
    tinfo_t t[128];          /* tensor infos */
    size_t data_start;       /* file offset of the data section */
} parsed_t;

static void read_value(rd_t *r, parsed_t *out, const char *key, uint32_t type) {
    char s[4096];
    if (type == 8) {
        str(r, s, sizeof s);
        if (!strcmp(key, "general.architecture")) keep(out->arch, sizeof out->arch, s);
        if (!strcmp(key, "tokenizer.chat_template")) out->has_template = strstr(s, "<|im_start|>") != NULL;
        return;
    }
    if (type == 9) {
        uint32_t et = u32(r);
        uint64_t n = u64(r);
        if (!strcmp(key, "tokenizer.ggml.tokens")) out->n_tokens = n;
        for (uint64_t i = 0; i < n && !r->bad; i++) {
            if (et == 8) {
                str(r, s, sizeof s);
                if (!strcmp(key, "tokenizer.ggml.tokens")) {
                    if (i == 0) keep(out->tok0, 32, s);
                    if (i == 3) keep(out->tok3, 32, s);
                    if (i == 258) keep(out->tok258, 32, s);
                    if (i == 259) keep(out->tok259, 32, s);
                    if (i == 260) keep(out->tok260, 32, s);
                }
            } else {
                size_t sz = scalar_size(et);
                if (!sz) { r->bad = 1; return; }
                take(r, sz);
            }
        }
        return;
    }
    size_t sz = scalar_size(type);
    if (!sz) { r->bad = 1; return; }
    uint32_t v = 0;
    if (sz == 4) {
        v = u32(r);
    } else {
        take(r, sz);
    }
    if (!strcmp(key, "general.alignment")) out->alignment = v;
    if (!strcmp(key, "tokenizer.ggml.eos_token_id")) out->eos = v;
    if (!strcmp(key, "tokenizer.ggml.bos_token_id")) out->bos = v;
    if (!strcmp(key, "llama.block_count")) out->n_layer = v;
    if (!strcmp(key, "llama.embedding_length")) out->n_embd = v;
}

/* Parses a whole file; fails the test on any structural error. */
static void parse(const uint8_t *p, size_t len, parsed_t *out) {
    memset(out, 0, sizeof *out);
    rd_t r = {.p = p, .len = len};
    const char *magic = take(&r, 4);
    cr_assert(magic && memcmp(magic, "GGUF", 4) == 0, "magic");
    out->version = u32(&r);
    out->n_tensors = u64(&r);
    out->n_kv = u64(&r);
    cr_assert(out->n_tensors <= 128, "tensor count %llu", (unsigned long long)out->n_tensors);
    for (uint64_t i = 0; i < out->n_kv && !r.bad; i++) {
        char key[256];
        str(&r, key, sizeof key);
        read_value(&r, out, key, u32(&r));
    }
    cr_assert(!r.bad, "key/value section is malformed");
    for (uint64_t i = 0; i < out->n_tensors && !r.bad; i++) {
        tinfo_t *t = &out->t[i];
        str(&r, t->name, sizeof t->name);
        t->n_dims = u32(&r);
        cr_assert(t->n_dims >= 1 && t->n_dims <= 4, "%s: n_dims %u", t->name, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++) t->ne[d] = u64(&r);
        t->type = u32(&r);
        t->offset = u64(&r);
    }
    cr_assert(!r.bad, "tensor info section is malformed");
    uint32_t al = out->alignment ? out->alignment : 32;
    out->data_start = (r.pos + al - 1) / al * al;
    for (size_t i = r.pos; i < out->data_start; i++) cr_assert_eq(p[i], 0, "padding byte %zu", i);
}

static uint64_t tensor_bytes(const tinfo_t *t) {
    uint64_t n = t->type == 0 ? 4 : 2;
    for (uint32_t d = 0; d < t->n_dims; d++) n *= t->ne[d];
    return n;
}

static const tinfo_t *find_tensor(const parsed_t *ps, const char *name) {
    for (uint64_t i = 0; i < ps->n_tensors; i++)
        if (!strcmp(ps->t[i].name, name)) return &ps->t[i];
    return NULL;
}

/* ---- helpers ------------------------------------------------------------- */

static uint8_t *build(const char *shape, uint64_t seed, size_t *len) {
    fgguf_writer_t w;
    fgguf_writer_init(&w);
    cr_assert_eq(fgguf_llama_build(&w, fgguf_shape_find(shape), seed), 0);
    char path[128];
    snprintf(path, sizeof path, "/tmp/ferry-gguf-test-%d-%llu.gguf", (int)getpid(), (unsigned long long)seed);
    size_t expect = fgguf_file_size(&w);
    cr_assert_eq(fgguf_write_file(&w, path), 0);
    fgguf_writer_destroy(&w);

    FILE *f = fopen(path, "rb");
    cr_assert(f);
    uint8_t *buf = malloc(expect + 1);
    cr_assert(buf);
    *len = fread(buf, 1, expect + 1, f);
    fclose(f);
    unlink(path);
    cr_assert_eq(*len, expect, "file size %zu, writer said %zu", *len, expect);
    return buf;
}

/* ---- tests --------------------------------------------------------------- */

Test(gguf, tiny_model_parses_with_the_expected_layout) {
    size_t len;
    uint8_t *p = build("tiny", 1, &len);
    parsed_t *ps = calloc(1, sizeof *ps);
    parse(p, len, ps);

    cr_assert_eq(ps->version, 3);
    cr_assert_str_eq(ps->arch, "llama");
    cr_assert_eq(ps->alignment, 32);
    cr_assert_eq(ps->n_layer, 2);
    cr_assert_eq(ps->n_embd, 64);
    cr_assert_eq(ps->n_tensors, 3 + 9 * 2);
    cr_assert_eq(ps->n_tokens, 1024);
    cr_assert_str_eq(ps->tok0, "<unk>");
    cr_assert_str_eq(ps->tok3, "<0x00>");
    cr_assert_str_eq(ps->tok258, "<0xFF>");
    cr_assert_str_eq(ps->tok259, "<|im_start|>");
    cr_assert_str_eq(ps->tok260, "<|im_end|>");
    cr_assert_eq(ps->eos, 260);
    cr_assert_eq(ps->bos, 1);
    cr_assert(ps->has_template);

    /* Every tensor aligned, inside the file, not overlapping the next one;
     * the last one ends exactly at the end of the file. */
    cr_assert_eq(ps->data_start % 32, 0);
    uint64_t end = 0;
    for (uint64_t i = 0; i < ps->n_tensors; i++) {
        const tinfo_t *t = &ps->t[i];
        cr_assert_eq(t->offset % 32, 0, "%s offset %llu", t->name, (unsigned long long)t->offset);
        cr_assert_geq(t->offset, end, "%s overlaps its predecessor", t->name);
        end = t->offset + tensor_bytes(t);
    }
    cr_assert_eq(ps->data_start + end, len);

    const tinfo_t *e = find_tensor(ps, "token_embd.weight");
    cr_assert(e);
    cr_assert_eq(e->type, 1);
    cr_assert_eq(e->ne[0], 64);
    cr_assert_eq(e->ne[1], 1024);
    const tinfo_t *k = find_tensor(ps, "blk.1.attn_k.weight");
    cr_assert(k);
    cr_assert_eq(k->ne[1], 32, "2 KV heads of width 16");
    const tinfo_t *d = find_tensor(ps, "blk.0.ffn_down.weight");
    cr_assert(d);
    cr_assert_eq(d->ne[0], 256);
    cr_assert_eq(d->ne[1], 64);
    const tinfo_t *n = find_tensor(ps, "output_norm.weight");
    cr_assert(n);
    cr_assert_eq(n->type, 0);
    float one;
    memcpy(&one, p + ps->data_start + n->offset, 4);
    cr_assert_eq(one, 1.0f);
    cr_assert(find_tensor(ps, "output.weight"));
    cr_assert_null(find_tensor(ps, "blk.2.attn_q.weight"));

    /* About half a megabyte, as promised in --help. */
    cr_assert(len > 400000 && len < 700000, "size %zu", len);
    free(ps);
    free(p);
}

Test(gguf, same_seed_same_bytes_other_seed_other_weights_only) {
    size_t a_len, b_len, c_len;
    uint8_t *a = build("tiny", 42, &a_len);
    uint8_t *b = build("tiny", 42, &b_len);
    uint8_t *c = build("tiny", 43, &c_len);
    cr_assert_eq(a_len, b_len);
    cr_assert_eq(memcmp(a, b, a_len), 0, "same seed must give the same file");
    cr_assert_eq(a_len, c_len);
    parsed_t *ps = calloc(1, sizeof *ps);
    parse(a, a_len, ps);
    /* Header and metadata do not depend on the seed; the weights do. */
    cr_assert_eq(memcmp(a, c, ps->data_start), 0);
    cr_assert_neq(memcmp(a + ps->data_start, c + ps->data_start, a_len - ps->data_start), 0);
    free(ps);
    free(a);
    free(b);
    free(c);
}

Test(gguf, bench_shape_is_larger_and_parses) {
    size_t len;
    uint8_t *p = build("bench", 1, &len);
    parsed_t *ps = calloc(1, sizeof *ps);
    parse(p, len, ps);
    cr_assert_str_eq(ps->arch, "llama");
    cr_assert_gt(ps->n_layer, 2);
    cr_assert_eq(ps->n_tensors, 3 + 9 * (uint64_t)ps->n_layer);
    cr_assert_gt(len, 4000000);
    free(ps);
    free(p);
}

Test(gguf, f16_conversion) {
    cr_assert_eq(fgguf_f32_to_f16(0.0f), 0x0000);
    cr_assert_eq(fgguf_f32_to_f16(-0.0f), 0x8000);
    cr_assert_eq(fgguf_f32_to_f16(1.0f), 0x3c00);
    cr_assert_eq(fgguf_f32_to_f16(-2.0f), 0xc000);
    cr_assert_eq(fgguf_f32_to_f16(0.1f), 0x2e66);
    cr_assert_eq(fgguf_f32_to_f16(65504.0f), 0x7bff);   /* largest finite */
    cr_assert_eq(fgguf_f32_to_f16(1e6f), 0x7c00);       /* overflow: inf */
    cr_assert_eq(fgguf_f32_to_f16(5.9604645e-8f), 0x0001);  /* smallest subnormal */
    cr_assert_eq(fgguf_f32_to_f16(1e-9f), 0x0000);      /* underflow */
    cr_assert_eq(fgguf_f32_to_f16(1.00048828125f), 0x3c00);  /* tie rounds to even */
}

Test(gguf, failures_change_nothing) {
    fgguf_writer_t w;
    fgguf_writer_init(&w);
    uint64_t dims[2] = {4, 0};
    cr_assert_eq(fgguf_tensor_add(&w, "x", 2, dims, FGGUF_F16, NULL), -E2BIG);
    cr_assert_eq(fgguf_tensor_add(&w, "x", 0, dims, FGGUF_F16, NULL), -EINVAL);
    cr_assert_eq(fgguf_tensor_add(&w, "x", 5, dims, FGGUF_F16, NULL), -EINVAL);
    cr_assert_eq(fgguf_tensor_add(&w, "x", 1, dims, (enum fgguf_tensor_type)7, NULL), -EINVAL);
    cr_assert_eq(fgguf_kv_str(&w, "k", NULL), -EINVAL);
    cr_assert_eq(w.n_tensors, 0);
    cr_assert_eq(w.n_kv, 0);
    cr_assert_eq(w.data.len, 0);
    cr_assert_eq(w.kv.len, 0);

    fgguf_shape_t bad = *fgguf_shape_find("tiny");
    bad.n_head = 3;   /* 64 is not a multiple of 3 */
    cr_assert_eq(fgguf_llama_build(&w, &bad, 1), -EINVAL);
    cr_assert_null(fgguf_shape_find("huge"));

    /* An unwritable path fails with the errno and leaves no temporary file. */
    cr_assert_eq(fgguf_kv_u32(&w, "k", 1), 0);
    char path[128];
    snprintf(path, sizeof path, "/tmp/ferry-gguf-nodir-%d/m.gguf", (int)getpid());
    cr_assert_eq(fgguf_write_file(&w, path), -ENOENT);
    struct stat st;
    cr_assert_neq(stat(path, &st), 0);
    fgguf_writer_destroy(&w);
    fgguf_writer_destroy(NULL);
}
