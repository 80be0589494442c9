/* llama_model: a small random "llama" model for llama.cpp (see llama_model.h).
 *
 * What llama.cpp needs, in short (read from its loader, not copied):
 *   - metadata: general.architecture = "llama"; llama.context_length,
 *     embedding_length, block_count, feed_forward_length,
 *     attention.head_count, attention.head_count_kv,
 *     attention.layer_norm_rms_epsilon (required for this architecture);
 *   - tokenizer.ggml.model = "llama" selects the SentencePiece tokenizer,
 *     which merges adjacent pieces only when their concatenation is itself a
 *     token (highest score first) and falls back to <0xNN> byte tokens for
 *     anything else; so every multi-character token we add has its shorter
 *     prefixes in the vocabulary too, or it could never be produced;
 *   - tensors token_embd, output_norm, output and per block i
 *     blk.i.{attn_norm, attn_q, attn_k, attn_v, attn_output, ffn_norm,
 *     ffn_gate, ffn_down, ffn_up}.weight with ne0 = the input width.
 */
#include "llama_model.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const fgguf_shape_t shapes[] = {
    /* ~0.5 MB: fast enough for tests on a loaded 2-core machine. */
    {.name = "tiny", .n_layer = 2, .n_embd = 64, .n_head = 4, .n_head_kv = 2, .n_ff = 256,
     .n_vocab = 1024, .n_ctx = 2048},
    /* ~25 MB: enough work per token that a proxy's cost can be compared. */
    {.name = "bench", .n_layer = 6, .n_embd = 384, .n_head = 6, .n_head_kv = 2, .n_ff = 1024,
     .n_vocab = 4096, .n_ctx = 4096},
};

const fgguf_shape_t *fgguf_shape_find(const char *name) {
    if (!name) return NULL;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        if (strcmp(shapes[i].name, name) == 0) return &shapes[i];
    return NULL;
}

/* ---- vocabulary ---------------------------------------------------------- */

/* SentencePiece's word-boundary marker U+2581 "▁" in UTF-8. */
#define SPM_SPACE "\xe2\x96\x81"

/* Token types (llama.cpp's llama_token_type numbers). */
enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_BYTE = 6 };

/* Common English words: each becomes "▁word" plus all its prefixes. */
static const char *const words[] = {
    "the", "be", "to", "of", "and", "a", "in", "that", "have", "it", "for", "not", "on",
    "with", "he", "as", "you", "do", "at", "this", "but", "his", "by", "from", "they",
    "we", "say", "her", "she", "or", "an", "will", "my", "one", "all", "would", "there",
    "their", "what", "so", "up", "out", "if", "about", "who", "get", "which", "go", "me",
    "when", "make", "can", "like", "time", "no", "just", "him", "know", "take", "people",
    "into", "year", "your", "good", "some", "could", "them", "see", "other", "than",
    "then", "now", "look", "only", "come", "its", "over", "think", "also", "back",
    "after", "use", "two", "how", "our", "work", "first", "well", "way", "even", "new",
    "want", "because", "any", "these", "give", "day", "most", "us", "is", "are", "was",
    "were", "been", "has", "had", "hello", "world", "test", "message", "model", "ferry",
    "hub", "spoke", "worker", "request", "reply", "token", "stream", "chat", "joke",
    "tell", "quick", "brown", "fox", "jumps", "lazy", "dog", "river", "boat", "water",
    "light", "night", "story", "small", "large", "fast", "slow", "yes", "here", "where",
};

/* An open-addressing set of the strings added so far (no duplicates allowed:
 * llama.cpp maps text to id, a duplicate would shadow its twin). */
typedef struct vocab {
    char **text;          /* token strings, owned */
    float *score;         /* SentencePiece scores */
    int32_t *type;        /* token types */
    uint32_t n;           /* tokens added */
    uint32_t cap;         /* shape's n_vocab */
    uint32_t *slot;       /* hash table of ids + 1 (0: empty) */
    uint32_t nslot;       /* table size, a power of two > 2 * cap */
} vocab_t;

static uint32_t hash_str(const char *s) {
    uint32_t h = 2166136261u;   /* FNV-1a */
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

static uint32_t *vocab_find_slot(vocab_t *v, const char *s) {
    uint32_t i = hash_str(s) & (v->nslot - 1);
    while (v->slot[i] && strcmp(v->text[v->slot[i] - 1], s) != 0) i = (i + 1) & (v->nslot - 1);
    return &v->slot[i];
}

/* Adds `s` unless present or full. Returns 1 added, 0 skipped, -ENOMEM. */
static int vocab_add(vocab_t *v, const char *s, int32_t type, float score) {
    if (v->n == v->cap) return 0;
    uint32_t *sl = vocab_find_slot(v, s);
    if (*sl) return 0;
    char *t = strdup(s);
    if (!t) return -ENOMEM;
    v->text[v->n] = t;
    v->type[v->n] = type;
    v->score[v->n] = score;
    *sl = ++v->n;
    return 1;
}

static void vocab_destroy(vocab_t *v) {
    if (!v->text) return;
    for (uint32_t i = 0; i < v->n; i++) free(v->text[i]);
    free(v->text);
    free(v->score);
    free(v->type);
    free(v->slot);
}

/* Normal tokens get decreasing scores in the order they are added, so the
 * tokenizer prefers the earlier (shorter, commoner) merges. */
static int add_normal(vocab_t *v, const char *s) {
    return vocab_add(v, s, TT_NORMAL, -(float)v->n);
}

static int vocab_build(vocab_t *v, uint32_t n_vocab) {
    memset(v, 0, sizeof *v);
    v->cap = n_vocab;
    v->nslot = 1;
    while (v->nslot <= 2 * n_vocab) v->nslot <<= 1;
    v->text = calloc(n_vocab, sizeof *v->text);
    v->score = calloc(n_vocab, sizeof *v->score);
    v->type = calloc(n_vocab, sizeof *v->type);
    v->slot = calloc(v->nslot, sizeof *v->slot);
    if (!v->text || !v->score || !v->type || !v->slot) return -ENOMEM;

    int rc = 0;
    char buf[64];
    rc |= vocab_add(v, "<unk>", TT_UNKNOWN, 0) < 0;
    rc |= vocab_add(v, "<s>", TT_CONTROL, 0) < 0;
    rc |= vocab_add(v, "</s>", TT_CONTROL, 0) < 0;
    for (int b = 0; b < 256; b++) {
        snprintf(buf, sizeof buf, "<0x%02X>", b);
        rc |= vocab_add(v, buf, TT_BYTE, 0) < 0;
    }
    rc |= vocab_add(v, "<|im_start|>", TT_CONTROL, 0) < 0;
    rc |= vocab_add(v, "<|im_end|>", TT_CONTROL, 0) < 0;
    if (rc) return -ENOMEM;

    /* "▁" and the printable ASCII characters (not the space: SentencePiece
     * writes it as "▁"). */
    if (add_normal(v, SPM_SPACE) < 0) return -ENOMEM;
    for (int c = 0x21; c < 0x7f; c++) {
        buf[0] = (char)c;
        buf[1] = 0;
        if (add_normal(v, buf) < 0) return -ENOMEM;
    }
    /* Words, through all their prefixes: "▁t", "▁th", "▁the". */
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
        size_t len = strlen(words[i]);
        for (size_t k = 1; k <= len; k++) {
            snprintf(buf, sizeof buf, SPM_SPACE "%.*s", (int)k, words[i]);
            if (add_normal(v, buf) < 0) return -ENOMEM;
        }
    }
    /* Fill up with letter pairs, then "▁" + pair, then triples. */
    for (int a = 'a'; a <= 'z'; a++)
        for (int b = 'a'; b <= 'z'; b++) {
            snprintf(buf, sizeof buf, "%c%c", a, b);
            if (add_normal(v, buf) < 0) return -ENOMEM;
        }
    for (int a = 'a'; a <= 'z'; a++)
        for (int b = 'a'; b <= 'z'; b++) {
            snprintf(buf, sizeof buf, SPM_SPACE "%c%c", a, b);
            if (add_normal(v, buf) < 0) return -ENOMEM;
        }
    for (int a = 'a'; a <= 'z' && v->n < v->cap; a++)
        for (int b = 'a'; b <= 'z'; b++)
            for (int c = 'a'; c <= 'z'; c++) {
                snprintf(buf, sizeof buf, "%c%c%c", a, b, c);
                if (add_normal(v, buf) < 0) return -ENOMEM;
            }
    return v->n == v->cap ? 0 : -EINVAL;   /* more than 356 + 18252 asked */
}

/* ---- random weights ------------------------------------------------------ */

/* splitmix64: small, fast, and the same sequence everywhere. */
static uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [-1, 1). */
static float rng_unit(uint64_t *s) {
    return (float)((double)(rng_next(s) >> 11) * (1.0 / 9007199254740992.0) * 2.0 - 1.0);
}

/* Adds an F16 matrix ne0 x ne1 filled with uniform values in [-scale, scale). */
static int add_f16(fgguf_writer_t *w, const char *name, uint64_t ne0, uint64_t ne1, float scale,
                   uint64_t *rng) {
    uint64_t dims[2] = {ne0, ne1};
    void *p;
    int rc = fgguf_tensor_add(w, name, 2, dims, FGGUF_F16, &p);
    if (rc) return rc;
    uint16_t *h = p;
    for (uint64_t i = 0; i < ne0 * ne1; i++) h[i] = fgguf_f32_to_f16(scale * rng_unit(rng));
    return 0;
}

/* Adds an F32 vector of ones (RMS-norm gains). */
static int add_ones(fgguf_writer_t *w, const char *name, uint64_t n) {
    void *p;
    int rc = fgguf_tensor_add(w, name, 1, &n, FGGUF_F32, &p);
    if (rc) return rc;
    float *f = p;
    for (uint64_t i = 0; i < n; i++) f[i] = 1.0f;
    return 0;
}

/* ChatML, as a Jinja template (llama.cpp's server renders it). */
static const char chatml[] =
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

static int add_metadata(fgguf_writer_t *w, const fgguf_shape_t *s, const vocab_t *v) {
    char name[64];
    snprintf(name, sizeof name, "ferry-%s", s->name);
    int rc = 0;
    rc = rc ? rc : fgguf_kv_str(w, "general.architecture", "llama");
    rc = rc ? rc : fgguf_kv_str(w, "general.name", name);
    rc = rc ? rc : fgguf_kv_u32(w, "general.alignment", FGGUF_ALIGNMENT);
    rc = rc ? rc : fgguf_kv_u32(w, "general.file_type", 1);            /* mostly F16 */
    rc = rc ? rc : fgguf_kv_u32(w, "llama.context_length", s->n_ctx);
    rc = rc ? rc : fgguf_kv_u32(w, "llama.embedding_length", s->n_embd);
    rc = rc ? rc : fgguf_kv_u32(w, "llama.block_count", s->n_layer);
    rc = rc ? rc : fgguf_kv_u32(w, "llama.feed_forward_length", s->n_ff);
    rc = rc ? rc : fgguf_kv_u32(w, "llama.attention.head_count", s->n_head);
    rc = rc ? rc : fgguf_kv_u32(w, "llama.attention.head_count_kv", s->n_head_kv);
    rc = rc ? rc : fgguf_kv_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    rc = rc ? rc : fgguf_kv_f32(w, "llama.rope.freq_base", 10000.0f);
    rc = rc ? rc : fgguf_kv_u32(w, "llama.rope.dimension_count", s->n_embd / s->n_head);
    rc = rc ? rc : fgguf_kv_u32(w, "llama.vocab_size", s->n_vocab);
    rc = rc ? rc : fgguf_kv_str(w, "tokenizer.ggml.model", "llama");
    rc = rc ? rc : fgguf_kv_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)v->text, v->n);
    rc = rc ? rc : fgguf_kv_arr_f32(w, "tokenizer.ggml.scores", v->score, v->n);
    rc = rc ? rc : fgguf_kv_arr_i32(w, "tokenizer.ggml.token_type", v->type, v->n);
    rc = rc ? rc : fgguf_kv_u32(w, "tokenizer.ggml.unknown_token_id", FGGUF_TOK_UNK);
    rc = rc ? rc : fgguf_kv_u32(w, "tokenizer.ggml.bos_token_id", FGGUF_TOK_BOS);
    rc = rc ? rc : fgguf_kv_u32(w, "tokenizer.ggml.eos_token_id", FGGUF_TOK_IM_END);
    rc = rc ? rc : fgguf_kv_u32(w, "tokenizer.ggml.padding_token_id", FGGUF_TOK_UNK);
    rc = rc ? rc : fgguf_kv_bool(w, "tokenizer.ggml.add_bos_token", 1);
    rc = rc ? rc : fgguf_kv_bool(w, "tokenizer.ggml.add_eos_token", 0);
    rc = rc ? rc : fgguf_kv_str(w, "tokenizer.chat_template", chatml);
    return rc;
}

static int add_tensors(fgguf_writer_t *w, const fgguf_shape_t *s, const vocab_t *v, uint64_t seed) {
    uint64_t rng = seed;
    const uint64_t E = s->n_embd, F = s->n_ff, V = s->n_vocab;
    const uint64_t head = E / s->n_head, KV = head * s->n_head_kv;
    const float in_e = 1.0f / sqrtf((float)E), in_f = 1.0f / sqrtf((float)F);
    char name[64];
    int rc;

    if ((rc = add_f16(w, "token_embd.weight", E, V, 1.0f, &rng))) return rc;
    if ((rc = add_ones(w, "output_norm.weight", E))) return rc;
    /* The output projection decides which tokens get sampled. Strong rows
     * for word pieces and weak ones for byte and control tokens make the
     * gibberish mostly printable words, and an early <|im_end|> rare. */
    if ((rc = add_f16(w, "output.weight", E, V, 6.0f * in_e, &rng))) return rc;
    {
        uint16_t *out = (uint16_t *)(w->data.data + w->data.len) - E * V;
        for (uint64_t t = 0; t < V; t++) {
            if (v->type[t] == TT_NORMAL) continue;
            for (uint64_t i = 0; i < E; i++)
                out[t * E + i] = fgguf_f32_to_f16(0.05f * in_e * rng_unit(&rng));
        }
    }
    for (uint32_t l = 0; l < s->n_layer; l++) {
#define NAME(x) (snprintf(name, sizeof name, "blk.%u." x ".weight", l), name)
        if ((rc = add_ones(w, NAME("attn_norm"), E))) return rc;
        if ((rc = add_f16(w, NAME("attn_q"), E, E, 2.0f * in_e, &rng))) return rc;
        if ((rc = add_f16(w, NAME("attn_k"), E, KV, 2.0f * in_e, &rng))) return rc;
        if ((rc = add_f16(w, NAME("attn_v"), E, KV, 2.0f * in_e, &rng))) return rc;
        if ((rc = add_f16(w, NAME("attn_output"), E, E, in_e, &rng))) return rc;
        if ((rc = add_ones(w, NAME("ffn_norm"), E))) return rc;
        if ((rc = add_f16(w, NAME("ffn_gate"), E, F, 2.0f * in_e, &rng))) return rc;
        if ((rc = add_f16(w, NAME("ffn_down"), F, E, in_f, &rng))) return rc;
        if ((rc = add_f16(w, NAME("ffn_up"), E, F, 2.0f * in_e, &rng))) return rc;
#undef NAME
    }
    return 0;
}

int fgguf_llama_build(fgguf_writer_t *w, const fgguf_shape_t *s, uint64_t seed) {
    if (!w || !s || s->n_layer == 0 || s->n_head == 0 || s->n_head_kv == 0 ||
        s->n_embd % s->n_head || s->n_head % s->n_head_kv || s->n_vocab < FGGUF_VOCAB_MIN ||
        s->n_ff == 0 || s->n_ctx == 0)
        return -EINVAL;
    vocab_t v;
    int rc = vocab_build(&v, s->n_vocab);
    if (!rc) rc = add_metadata(w, s, &v);
    if (!rc) rc = add_tensors(w, s, &v, seed);
    vocab_destroy(&v);
    return rc;
}
