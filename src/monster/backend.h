/* The one interface every Monster backend implements (user space now, the
 * kernel module later), and the context and handle structs the public calls
 * in api.c share. api.c validates arguments (ids, NULLs) before any backend
 * call, so backends see only ids in range. */
#ifndef FERRY_MONSTER_BACKEND_H
#define FERRY_MONSTER_BACKEND_H

#include <ferry/monster.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct fmon_backend_ops {
    const char *name; /* "user", "kernel" */
    /* Attaches; *state is the backend's private data. */
    int (*open)(void **state, const zkprologml_config_t *cfg);
    void (*close)(void *state);
    /* Pipe ends: *token identifies the registration to the backend. */
    int (*pipe_open)(void *state, uint32_t ring, bool producer, uint64_t *token);
    void (*pipe_close)(void *state, uint32_t ring, uint64_t token);
    int (*pipe_write)(void *state, uint32_t ring, uint64_t token, const struct process_sample *s,
                      int timeout_ms);
    int (*pipe_read)(void *state, uint32_t ring, uint64_t token, struct process_sample *s,
                     int timeout_ms);
    /* Wait states: (slot, sequence) identifies one; *seen is the caller's
     * count of coordinations already consumed. */
    int (*wait_create)(void *state, uint32_t shard, uint32_t *slot, uint64_t *sequence,
                       uint32_t *seen);
    int (*wait_for_coord)(void *state, uint32_t slot, uint64_t sequence, uint32_t *seen,
                          int timeout_ms);
    int (*signal_ready)(void *state, uint32_t slot, uint64_t sequence);
    void (*wait_free)(void *state, uint32_t slot, uint64_t sequence);
    int (*coordinate_shard)(void *state, uint32_t shard);
    int (*wait_ready)(void *state, uint32_t shard, uint32_t n, int timeout_ms);
    /* Sampler. */
    int (*read_samples)(void *state, struct process_sample *out, size_t n, size_t *count);
    /* Status views. */
    int (*pipe_status)(void *state, zkprologml_pipe_status_t *out);
    int (*wait_status)(void *state, zkprologml_wait_status_t *out);
    int (*log_read)(void *state, zkprologml_log_entry_t *out, size_t n);
} fmon_backend_ops_t;

extern const fmon_backend_ops_t fmon_user_backend;

/* Intrusive list node: the context tracks its open handles so that
 * zkprologml_close() can release what the app forgot. */
typedef struct fmon_link {
    struct fmon_link *prev, *next; /* neighbours; a lone node points at itself */
} fmon_link_t;

struct zkprologml_ctx {
    const fmon_backend_ops_t *ops; /* the backend chosen at open        */
    void *state;                   /* the backend's private data        */
    pthread_mutex_t lock;          /* guards handles                    */
    fmon_link_t handles;           /* open pipes and wait states        */
};

struct zkprologml_pipe {
    fmon_link_t link;        /* in ctx->handles (first member)        */
    bool is_wait;            /* false: this is a pipe                 */
    zkprologml_ctx_t *ctx;   /* owner                                 */
    uint32_t ring;           /* 0..14                                 */
    bool producer;           /* which end                             */
    uint64_t token;          /* backend's registration                */
};

struct zkprologml_wait {
    fmon_link_t link;        /* in ctx->handles (first member)        */
    bool is_wait;            /* true: this is a wait state            */
    zkprologml_ctx_t *ctx;   /* owner                                 */
    uint32_t slot;           /* 0..255                                */
    uint64_t sequence;       /* identity of the slot's current use    */
    uint32_t seen;           /* coordinations consumed so far         */
};

/* Records a sentence for zkprologml_last_error() and returns err. */
int fmon_fail(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
