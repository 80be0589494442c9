/* Monster coordination: 15 blocking sample pipes and 256 wait states shared
 * by the applications of one user on one machine, and a sampler of the
 * processes running on it (the Monster spec, docs/monster.md).
 *
 * Workload: a handful of cooperating processes (producer -> filter ->
 * consumer, a coordinator) moving 64-byte samples at up to millions per
 * second and meeting at barriers a few times per second; any of them may be
 * killed at any moment without wedging the others.
 *
 * Backends: one API, chosen at zkprologml_open(). The user-space backend (the
 * default, no root needed) keeps everything in a POSIX shared-memory segment
 * "/ferry-<uid>-monster-<name>" (mode 0600) that the first application
 * creates and the others attach to; the kernel backend (monster_sampler.ko,
 * issue 11) will sit behind the same calls. Records and ioctl numbers shared
 * with the kernel are in <ferry/monster_ioctl.h>.
 *
 * Conventions (every function here):
 *   - int functions return 0 (or a count) on success and a negative errno on
 *     failure; a call that fails changes nothing. The two calls the spec
 *     shows returning a pointer (zkprologml_pipe_open, zkprologml_wait_create)
 *     return NULL and set errno to the positive code instead.
 *     zkprologml_last_error() has a sentence about the calling thread's last
 *     failure.
 *   - Timeouts in milliseconds on CLOCK_MONOTONIC: 0 = try once without
 *     blocking (-EAGAIN if it would block), < 0 = wait forever, > 0 = wait at
 *     most that long (-ETIME when it expires).
 *   - Bad ids (ring outside 0..14, shard outside 0..255) give -EINVAL.
 *   - Close/free functions accept NULL.
 *   - A context and its pipes may be used by several threads at once; one
 *     wait state by one thread at a time. Handles do not survive fork().
 *
 * Pipes (FIFO, each read and write moves one whole sample atomically):
 *   - a writer blocks while the ring is full or no consumer is registered;
 *   - a reader blocks while the ring is empty (also when no producer has
 *     registered yet);
 *   - the pipe is "closed" once one side had registered and all of it is gone
 *     (closed, or killed and reclaimed): readers drain what is left and then
 *     get -EPIPE, writers get -EPIPE at once; every close wakes every waiter;
 *   - when the last handle of a closed pipe goes, the next open starts a new
 *     session (empty ring, closed=0).
 *   - Several producers and consumers per pipe: samples of one producer are
 *     read in the order it wrote them.
 *
 * Wait states (256 slots, shard ids 0..255):
 *   - each zkprologml_wait_create() gets a sequence number larger than every
 *     earlier one on this segment;
 *   - zkprologml_coordinate_shard() wakes every wait state on the shard and
 *     returns how many it coordinated; a coordination that happens while the
 *     app is not waiting is kept, so the next zkprologml_wait_for_coord()
 *     returns 0 at once (no lost wake-up);
 *   - zkprologml_signal_ready() marks the app ready; zkprologml_wait_ready()
 *     is the coordinator's barrier (wait until N apps on a shard are ready);
 *     coordinating clears the ready flags.
 *
 * Death: registrations (pipe ends, wait states) carry the process id and its
 * start time. A process that dies (SIGKILL included) is noticed by the next
 * open, coordinate or status call, and by any peer blocked on it within
 * ZKPROLOGML_LIVENESS_MS; its registrations are removed and blocked peers
 * woken. A process killed inside a pipe operation leaves the pipe consistent
 * (a waiter takes a dead owner's pipe lock over; a sample is published last).
 */
#ifndef FERRY_MONSTER_H
#define FERRY_MONSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ferry/monster_ioctl.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ZKPROLOGML_PIPES MONSTER_NUM_PIPES             /* 15  */
#define ZKPROLOGML_WAIT_STATES MONSTER_NUM_WAIT_STATES /* 256 */
#define ZKPROLOGML_SHARDS MONSTER_NUM_SHARDS           /* 256 */
#define ZKPROLOGML_DEFAULT_CAPACITY 1024u  /* samples per pipe              */
#define ZKPROLOGML_MAX_CAPACITY 65536u     /* samples per pipe, at most     */
#define ZKPROLOGML_DEFAULT_HZ 10u          /* sampler: scans per second     */
#define ZKPROLOGML_MAX_HZ 1000u
#define ZKPROLOGML_LIVENESS_MS 100         /* blocked calls check peers this often */
#define ZKPROLOGML_LOG_ENTRIES 64          /* coordination log ring         */

typedef struct process_sample zkprologml_sample_t;
typedef struct zkprologml_ctx zkprologml_ctx_t;
typedef struct zkprologml_pipe zkprologml_pipe_t;
typedef struct zkprologml_wait zkprologml_wait_t;

typedef enum zkprologml_backend {
    ZKPROLOGML_BACKEND_AUTO = 0, /* env FERRY_MONSTER_BACKEND ("user"/"kernel"), else user */
    ZKPROLOGML_BACKEND_USER,     /* shared-memory segment (this issue)                      */
    ZKPROLOGML_BACKEND_KERNEL,   /* /dev/monster_sampler (issue 11; -ENOTSUP until then)     */
} zkprologml_backend_t;

typedef struct zkprologml_config {
    const char *name;         /* segment name [A-Za-z0-9_-]{1,32}; NULL: env FERRY_MONSTER_NAME, else "default" */
    zkprologml_backend_t backend; /* which backend                                          */
    uint32_t capacity[ZKPROLOGML_PIPES]; /* samples per pipe, 1..65536 (0: default); used by the creator only */
    uint32_t sample_hz;       /* sampler scans per second, 1..1000 (0: default 10)            */
} zkprologml_config_t;

/* Fills cfg with the defaults. */
void zkprologml_config_default(zkprologml_config_t *cfg);

/* Attaches to the named coordination segment, creating it (mode 0600) when
 * it does not exist. cfg NULL: defaults. ERRORS: -EINVAL bad config or name;
 * -EPROTO the segment was made by an incompatible binary (layout version,
 * sizes); -EACCES it belongs to another user or is not 0600; -ENOTSUP kernel
 * backend not available; -ENOMEM; other -errno from shm_open/mmap. */
int zkprologml_open(zkprologml_ctx_t **out, const zkprologml_config_t *cfg);

/* Closes every pipe and wait state still open on ctx, then detaches. The
 * segment stays (other apps, monster-status); zkprologml_unlink() removes it. */
void zkprologml_close(zkprologml_ctx_t *ctx);

/* Removes the named segment (NULL: default name). Attached apps keep their
 * mapping; the next open creates a fresh one. */
int zkprologml_unlink(const char *name);

/* "user" or "kernel". */
const char *zkprologml_backend_name(const zkprologml_ctx_t *ctx);

/* Detail of the calling thread's last failure. */
const char *zkprologml_last_error(void);

/* --- pipes ------------------------------------------------------------- */

/* Registers the caller as a producer (is_producer) or consumer of pipe
 * ring_id. NULL and errno: EINVAL bad id; ENOSPC registration table full. */
zkprologml_pipe_t *zkprologml_pipe_open(zkprologml_ctx_t *ctx, int ring_id, bool is_producer);

/* Writes one sample (producer handle). 0, or -EAGAIN (try), -ETIME, -EPIPE
 * (every consumer gone), -EBADF (a consumer handle), -EINTR, -EIO (the
 * segment is corrupt). */
int zkprologml_pipe_write(zkprologml_pipe_t *pipe, const zkprologml_sample_t *sample, int timeout_ms);

/* Reads one sample (consumer handle). 0, or -EAGAIN, -ETIME, -EPIPE (every
 * producer gone and nothing left), -EBADF, -EINTR, -EIO. */
int zkprologml_pipe_read(zkprologml_pipe_t *pipe, zkprologml_sample_t *sample, int timeout_ms);

/* Unregisters and frees the handle, waking every waiter on the pipe. */
void zkprologml_pipe_close(zkprologml_pipe_t *pipe);

/* --- wait states --------------------------------------------------------- */

/* Takes a wait state on shard_id with the next sequence number. NULL and
 * errno: EINVAL bad shard; ENOSPC all 256 in use. */
zkprologml_wait_t *zkprologml_wait_create(zkprologml_ctx_t *ctx, int shard_id);

/* Blocks until the shard is coordinated (a coordination since the last call,
 * or since create, counts at once). 0, or -EAGAIN, -ETIME, -EINTR,
 * -EIDRM (the wait state was reclaimed). */
int zkprologml_wait_for_coord(zkprologml_wait_t *wait, int timeout_ms);

/* Marks the app ready on its shard and wakes a barrier waiter. 0 or -EIDRM. */
int zkprologml_signal_ready(zkprologml_wait_t *wait);

/* Wakes every wait state on shard_id, clears their ready flags, logs
 * "Coordinated N apps on shard S". Returns N (>= 0) or -EINVAL. */
int zkprologml_coordinate_shard(zkprologml_ctx_t *ctx, int shard_id);

/* Barrier: blocks until at least n wait states on shard_id are ready.
 * Returns how many are ready (>= n), or -EINVAL, -EAGAIN, -ETIME, -EINTR. */
int zkprologml_wait_ready(zkprologml_ctx_t *ctx, int shard_id, int n, int timeout_ms);

/* Releases the wait state (its slot is free for others). */
void zkprologml_wait_free(zkprologml_wait_t *wait);

/* This wait state's sequence number and slot id. */
uint64_t zkprologml_wait_sequence(const zkprologml_wait_t *wait);
int zkprologml_wait_id(const zkprologml_wait_t *wait);

/* --- sampler ------------------------------------------------------------- */

/* Fills up to n samples of the threads on this machine, taken at
 * cfg.sample_hz scans per second; blocks until the next scan when the
 * previous one is used up. *count: samples written. 0, or -EINVAL, -EINTR,
 * -ENOMEM, -errno reading /proc. */
int zkprologml_read_samples(zkprologml_ctx_t *ctx, zkprologml_sample_t *samples, size_t n,
                            size_t *count);

/* --- status (the spec's debugfs files) ----------------------------------- */

typedef struct zkprologml_pipe_status {
    uint32_t id;           /* 0..14                                      */
    uint32_t prime;        /* the Monster prime it is named after        */
    int32_t producer_pid;  /* most recent registered producer, 0 none    */
    int32_t consumer_pid;  /* most recent registered consumer, 0 none    */
    uint32_t readers;      /* registered consumers                       */
    uint32_t writers;      /* registered producers                       */
    uint32_t closed;       /* 1: a side had registered and is all gone   */
    uint32_t capacity;     /* ring size in samples                       */
    uint32_t count;        /* samples in the ring now                    */
    uint64_t written;      /* samples written this session              */
    uint64_t read;         /* samples read this session                 */
} zkprologml_pipe_status_t;

typedef struct zkprologml_wait_status {
    uint32_t id;       /* slot 0..255                                    */
    uint32_t in_use;   /* 1: taken                                       */
    int32_t pid;       /* owner                                          */
    uint32_t shard;    /* 0..255                                         */
    uint64_t sequence; /* creation order                                 */
    uint32_t ready;    /* signalled ready since the last coordination    */
} zkprologml_wait_status_t;

typedef struct zkprologml_log_entry {
    uint64_t seq;          /* 1, 2, ... over the segment's life           */
    uint64_t timestamp_ns; /* CLOCK_MONOTONIC (like dmesg's boot clock)  */
    int32_t pid;           /* the coordinator                            */
    uint32_t shard;        /* 0..255                                     */
    uint32_t count;        /* apps coordinated                           */
} zkprologml_log_entry_t;

/* Snapshot of the 15 pipes (out has ZKPROLOGML_PIPES entries). Reclaims dead
 * apps first. 0 or -errno. */
int zkprologml_pipe_status(zkprologml_ctx_t *ctx, zkprologml_pipe_status_t *out);

/* Snapshot of the 256 wait-state slots (out has ZKPROLOGML_WAIT_STATES
 * entries). Returns how many are in use, or -errno. */
int zkprologml_wait_status(zkprologml_ctx_t *ctx, zkprologml_wait_status_t *out);

/* The coordination log, oldest first, at most n of the last
 * ZKPROLOGML_LOG_ENTRIES entries. Returns how many were written. */
int zkprologml_log_read(zkprologml_ctx_t *ctx, zkprologml_log_entry_t *out, size_t n);

#ifdef __cplusplus
}
#endif

#endif
