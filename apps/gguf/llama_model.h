/* llama_model: describes a small random model of llama.cpp's "llama"
 * architecture (GGUF metadata, a SentencePiece-style vocabulary, ChatML
 * chat template, F16 weights) into a gguf writer.
 *
 * The weights are random but deterministic: the same shape and seed give
 * byte-identical files. The text such a model writes is gibberish; its use is
 * exercising a real inference server (slots, streaming, cancellation). */
#ifndef FERRY_LLAMA_MODEL_H
#define FERRY_LLAMA_MODEL_H

#include "gguf_writer.h"

#include <stdint.h>

typedef struct fgguf_shape {
    const char *name;        /* "tiny", "bench" */
    uint32_t n_layer;        /* transformer blocks */
    uint32_t n_embd;         /* embedding width */
    uint32_t n_head;         /* attention heads */
    uint32_t n_head_kv;      /* key/value heads (grouped-query attention) */
    uint32_t n_ff;           /* feed-forward width */
    uint32_t n_vocab;        /* vocabulary size, >= FGGUF_VOCAB_MIN */
    uint32_t n_ctx;          /* training context length (the server's default) */
} fgguf_shape_t;

/* Tokens every vocabulary has: <unk>, <s>, </s>, 256 byte tokens,
 * <|im_start|>, <|im_end|>, and the word-piece "▁" plus the 94 printable
 * ASCII characters. */
#define FGGUF_VOCAB_MIN 356u

/* Fixed token ids. */
#define FGGUF_TOK_UNK 0
#define FGGUF_TOK_BOS 1
#define FGGUF_TOK_EOS_S 2             /* </s> (not the end of a chat turn) */
#define FGGUF_TOK_BYTE0 3             /* <0x00> .. <0xFF> follow */
#define FGGUF_TOK_IM_START 259
#define FGGUF_TOK_IM_END 260          /* the model's end-of-sequence token */

/* The shape called `name`, or NULL. */
const fgguf_shape_t *fgguf_shape_find(const char *name);

/* Adds the whole model to `w` (which should be empty).
 * ERRORS: -EINVAL bad shape; -ENOMEM; -E2BIG. */
int fgguf_llama_build(fgguf_writer_t *w, const fgguf_shape_t *shape, uint64_t seed);

#endif
