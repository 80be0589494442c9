/* User-space backend: the shared segment's layout and the functions of the
 * files that work on it (segment.c, reg.c, pipe.c, wait.c).
 *
 * Layout ("/ferry-<uid>-monster-<name>", mode 0600), each part 64-byte
 * aligned and computed from the capacities alone:
 *   header | 15 pipe control blocks | 1024 registrations | 256 wait states
 *          | ring 0 samples | ring 1 samples | ... | ring 14 samples
 *
 * Trust: every process maps the segment read-write, so a buggy or hostile
 * process of the same user could scribble anything into it. Sizes and offsets
 * are validated once at attach and then taken from the process's own copy
 * (fmon_seg_t), never re-read; positions, pids, shard and pipe ids read from
 * the segment are checked before they index anything. */
#ifndef FERRY_MONSTER_SEGMENT_H
#define FERRY_MONSTER_SEGMENT_H

#include "backend.h"
#include "plock.h"
#include "sampler.h"

#include "futex.h" /* src/shm: futex wait/wake and the event count */

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

#define FMON_MAGIC 0x524554534e4f4d46ull /* "FMONSTER"; stored last, after the header is complete */
#define FMON_LAYOUT_VERSION 2u /* 2: pipe fast-path fields in one cache line */
#define FMON_MAX_REGS 1024u             /* pipe ends registered at once   */
#define FMON_NAME_MAX 32

/* Registration kinds. */
enum { FMON_REG_FREE = 0, FMON_REG_PRODUCER = 1, FMON_REG_CONSUMER = 2 };

/* One pipe's control block; the samples live in the ring section. The
 * first 64 bytes hold every field a write or read touches (lock, positions,
 * counters, sleeper counts), so an operation touches two cache lines: this
 * one and the sample's. The rest is for open, close and the status view. */
typedef struct fmon_pipe {
    /* line 0: the write/read fast path */
    fmon_plock_t lock;      /* owner-tid lock (plock.h): guards every field below but the evcs */
    uint32_t readers;       /* registered consumers                             */
    uint64_t head;          /* next position to read (monotonic)                */
    uint64_t tail;          /* next position to write; tail - head <= capacity  */
    uint64_t written;       /* samples written this session                    */
    uint64_t read;          /* samples read this session                       */
    fshm_evc_t data;        /* readers sleep here: data, a producer, close      */
    fshm_evc_t space;       /* writers sleep here: space, a consumer, close     */
    uint32_t writers;       /* registered producers                             */
    uint32_t closed;        /* a side had registered and is all gone            */
    /* line 1: registration bookkeeping */
    int32_t producer_pid;   /* most recent producer, for the status view        */
    int32_t consumer_pid;   /* most recent consumer                             */
    uint32_t had_reader;    /* a consumer registered this session               */
    uint32_t had_writer;    /* a producer registered this session               */
} __attribute__((aligned(64))) fmon_pipe_t;
_Static_assert(__builtin_offsetof(fmon_pipe_t, producer_pid) == 64,
               "the write/read fields fill exactly the first cache line");

/* One registered pipe end. Guarded by the header lock. */
typedef struct fmon_reg {
    uint32_t kind;          /* FMON_REG_*                                       */
    uint32_t ring;          /* pipe id (checked < 15 before use)                */
    int32_t pid;            /* owner process                                    */
    uint32_t pad;           /* zero                                             */
    uint64_t start_time;    /* owner's /proc start time (pid reuse)             */
} fmon_reg_t;

/* One wait state. used/pid/start/shard/sequence under the header lock;
 * ready and coord are also read without it. */
typedef struct fmon_wait {
    uint32_t used;              /* 1: taken                                     */
    int32_t pid;                /* owner                                        */
    uint64_t start_time;        /* owner's /proc start time                     */
    uint32_t shard;             /* 0..255 (checked before use)                  */
    _Atomic uint32_t ready;     /* signalled since the last coordination        */
    uint64_t sequence;          /* creation order; identifies this use          */
    _Atomic uint32_t coord;     /* coordinations received (only ever grows)     */
    uint32_t pad;               /* zero                                         */
} fmon_wait_t;

typedef struct fmon_header {
    _Atomic uint64_t magic;      /* FMON_MAGIC once initialised                  */
    uint32_t version;            /* FMON_LAYOUT_VERSION                          */
    uint32_t abi_version;        /* MONSTER_ABI_VERSION                          */
    uint32_t header_size;        /* sizeof(fmon_header_t)                        */
    uint32_t pipe_size;          /* sizeof(fmon_pipe_t)                          */
    uint32_t reg_size;           /* sizeof(fmon_reg_t)                           */
    uint32_t wait_size;          /* sizeof(fmon_wait_t)                          */
    uint32_t sample_size;        /* sizeof(struct process_sample)                */
    uint32_t npipes;             /* 15                                           */
    uint32_t nregs;              /* FMON_MAX_REGS                                */
    uint32_t nwaits;             /* 256                                          */
    uint32_t nlog;               /* ZKPROLOGML_LOG_ENTRIES                       */
    uint32_t capacity[ZKPROLOGML_PIPES]; /* samples per ring                      */
    uint64_t ring_offset[ZKPROLOGML_PIPES]; /* byte offset of each ring           */
    uint64_t total_size;         /* bytes                                        */
    uint32_t creator_uid;        /* who made it                                  */
    int32_t creator_pid;         /* for messages                                 */
    pthread_mutex_t lock;        /* robust, shared: registrations, wait states, log, sequence */
    uint64_t next_sequence;      /* last wait-state sequence handed out          */
    uint64_t log_next;           /* entries ever logged                          */
    zkprologml_log_entry_t log[ZKPROLOGML_LOG_ENTRIES]; /* ring, log_next % nlog */
    fshm_evc_t coord[ZKPROLOGML_SHARDS]; /* wait_for_coord sleeps here          */
    fshm_evc_t ready[ZKPROLOGML_SHARDS]; /* wait_ready (barrier) sleeps here    */
} __attribute__((aligned(64))) fmon_header_t;

/* A process's view of the segment: every size and offset it uses. */
typedef struct fmon_seg {
    fmon_header_t *hdr;                  /* mapping start                        */
    size_t size;                         /* mapping length                       */
    fmon_pipe_t *pipes;                  /* 15                                   */
    fmon_reg_t *regs;                    /* FMON_MAX_REGS                        */
    fmon_wait_t *waits;                  /* 256                                  */
    struct process_sample *ring[ZKPROLOGML_PIPES]; /* sample storage            */
    uint32_t capacity[ZKPROLOGML_PIPES]; /* validated copy                       */
    pid_t pid;                           /* getpid() at open                     */
    uint64_t start_time;                 /* our /proc start time                 */
    fmon_sampler_t sampler;              /* this process's /proc sampler         */
    pthread_mutex_t sampler_lock;        /* one reader of the sampler at a time  */
} fmon_seg_t;

/* segment.c */
int fmon_seg_open(fmon_seg_t **out, const zkprologml_config_t *cfg);
void fmon_seg_close(fmon_seg_t *seg);
int fmon_seg_path(char *buf, size_t len, const char *name);
const char *fmon_seg_default_name(void);
/* The Monster prime pipe i is named after (0 if i is out of range). */
uint32_t fmon_prime(uint32_t i);

/* lock.c: robust mutex helpers. lock returns 0 or -EIO (unrecoverable). */
int fmon_mutex_init(pthread_mutex_t *m);
int fmon_lock(pthread_mutex_t *m);
void fmon_unlock(pthread_mutex_t *m);
/* Min(deadline, now + ZKPROLOGML_LIVENESS_MS): a blocked call wakes this
 * often to check on its peers. slice is filled; returns it. */
const struct timespec *fmon_slice(struct timespec *slice, const struct timespec *deadline);

/* proc.c: liveness from /proc/<pid>/stat (start time tells pid reuse). */
int fmon_proc_start_time(pid_t pid, uint64_t *start_time);
bool fmon_proc_alive(pid_t pid, uint64_t start_time);

/* reg.c: registrations and reclaiming the dead. Caller holds hdr->lock for
 * the _locked ones. */
int fmon_reclaim(fmon_seg_t *seg);
int fmon_reclaim_locked(fmon_seg_t *seg);

/* pipe.c */
int fmon_pipe_open(fmon_seg_t *seg, uint32_t ring, bool producer, uint64_t *token);
void fmon_pipe_close(fmon_seg_t *seg, uint32_t ring, uint64_t token);
int fmon_pipe_write(fmon_seg_t *seg, uint32_t ring, const struct process_sample *s, int timeout_ms);
int fmon_pipe_read(fmon_seg_t *seg, uint32_t ring, struct process_sample *s, int timeout_ms);
int fmon_pipe_status(fmon_seg_t *seg, zkprologml_pipe_status_t *out);
/* Caller holds hdr->lock: drops one registration of the given kind from the
 * pipe and wakes every waiter on it. */
void fmon_pipe_unregister_locked(fmon_seg_t *seg, uint32_t ring, uint32_t kind);

/* wait.c */
int fmon_wait_create(fmon_seg_t *seg, uint32_t shard, uint32_t *slot, uint64_t *sequence,
                     uint32_t *seen);
int fmon_wait_for_coord(fmon_seg_t *seg, uint32_t slot, uint64_t sequence, uint32_t *seen,
                        int timeout_ms);
int fmon_signal_ready(fmon_seg_t *seg, uint32_t slot, uint64_t sequence);
void fmon_wait_free(fmon_seg_t *seg, uint32_t slot, uint64_t sequence);
int fmon_coordinate_shard(fmon_seg_t *seg, uint32_t shard);
int fmon_wait_ready(fmon_seg_t *seg, uint32_t shard, uint32_t n, int timeout_ms);
int fmon_wait_status(fmon_seg_t *seg, zkprologml_wait_status_t *out);
int fmon_log_read(fmon_seg_t *seg, zkprologml_log_entry_t *out, size_t n);

#endif
