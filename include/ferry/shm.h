/* ferry shm: hands jobs from one server process to worker processes on the
 * same machine through a ring in POSIX shared memory.
 *
 * Workload: many small requests (a few hundred bytes of JSON) from one server
 * to a handful of workers, answered in microseconds; a worker may be killed at
 * any moment and a server may crash and restart. Tuned for latency: a waiting
 * side spins briefly, then sleeps on a futex in the segment, so an idle
 * system uses no CPU.
 *
 * Conventions (every function here):
 *   - Functions return 0 (or a count) on success and a negative errno on
 *     failure; a function that fails changes nothing and never calls the
 *     callback it was given. fshm_strerror() turns the code into text and
 *     fshm_last_error() gives the detail of the calling thread's last failure
 *     (e.g. which header field did not match).
 *   - Destroy functions (fshm_server_close, fshm_worker_detach) accept NULL.
 *
 * Threading:
 *   - Server: every fshm_server_* call on one handle must come from one thread
 *     (the loop thread). fshm_server_open() starts one helper thread that
 *     sleeps on the segment's completion futex and writes the event fd when
 *     completions or worker events are pending; it touches nothing the loop
 *     thread owns. fshm_server_close() joins it.
 *   - Worker: every fshm_worker_* call on one handle must come from one
 *     thread. fshm_worker_attach() starts one helper thread that writes the
 *     worker's heartbeat every heartbeat_ms (so a long-running handler is not
 *     mistaken for a dead worker) and notices a dead server.
 *   - Neither side may fork() and keep using a handle in the child.
 *
 * Task lifetime: fshm_server_submit() copies the request into a task slot
 * and queues it; a worker claims it with fshm_worker_next() and answers with
 * fshm_worker_reply(); the server's fshm_server_poll() calls the callback
 * exactly once per submitted task (unless it was cancelled or the server is
 * closed first), with the worker's answer or an error. A task whose worker
 * dies is queued again until max_attempts attempts, then fails with
 * -EOWNERDEAD. fshm_server_close() drops pending tasks without callbacks.
 */
#ifndef FERRY_SHM_H
#define FERRY_SHM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Segment layout version; a binary speaking another version refuses to attach. */
#define FSHM_LAYOUT_VERSION 4u

/* Configuration. fshm_config_default() fills every field; zero in a numeric
 * field also means "default". */
typedef struct fshm_config {
    const char *name;      /* logical name, [A-Za-z0-9_-]{1,32}; segment "/ferry-<uid>-<name>" */
    uint32_t ring_slots;   /* task slots, power of two 2..65536, default 256 */
    uint32_t payload_max;  /* max request and response bytes, 1..16 MiB, default 64 KiB */
    uint32_t max_workers;  /* worker table size, 1..4096, default 64 */
    uint32_t max_attempts; /* dispatches of a task whose workers keep dying, 1..100, default 3 */
    uint32_t heartbeat_ms; /* heartbeat period, 10..60000, default 500; a live but stuck
                              worker is dead after max(4 periods, 1 s) */
} fshm_config_t;

void fshm_config_default(fshm_config_t *cfg);

/* Builds "/ferry-<uid>-<name>" into buf. -EINVAL bad name, -ENAMETOOLONG buf too small. */
int fshm_segment_name(const char *name, char *buf, size_t size);

/* Text for a negative errno as this layer uses it (never NULL). */
const char *fshm_strerror(int err);

/* Detail of the calling thread's last failure in this library ("" if none). */
const char *fshm_last_error(void);

/* ---- server side ------------------------------------------------------ */

typedef struct fshm_server fshm_server_t;

/* Creates the segment (mode 0600, every page reserved up front) and starts
 * the helper thread. A segment left by a crashed server (its owner lock is
 * free) is removed and created anew; workers still mapped to it notice and
 * leave. If another user created the name first, the segment gets a random
 * alternate name that workers find by themselves. fshm_last_error() then
 * holds a note on what was replaced or avoided ("" otherwise).
 * ERRORS: -EINVAL bad config; -EEXIST a live server owns the name;
 * -ENOSPC /dev/shm has less room than the segment needs (the detail names
 * the size and the config fields that set it); -ENOMEM, or the errno of
 * shm_open/posix_fallocate/mmap/eventfd/pthread_create. */
int fshm_server_open(fshm_server_t **out, const fshm_config_t *cfg);

/* The segment's name as created ("/ferry-<uid>-<name>", or the alternate
 * "/ferry-<uid>-<name>.<16 hex>"). Owned by srv. */
const char *fshm_server_path(const fshm_server_t *srv);

/* Marks the segment closed, wakes every worker (their next/attach return
 * -ESHUTDOWN), unlinks the name, joins the helper and frees. NULL is ok.
 * Pending tasks are dropped without callbacks. */
void fshm_server_close(fshm_server_t *srv);

/* An eventfd that is readable while completions or worker events are
 * pending; poll it (e.g. uv_poll) and call fshm_server_poll(). Owned by srv. */
int fshm_server_event_fd(const fshm_server_t *srv);

/* Copies req into a free slot and queues it; never blocks.
 * ERRORS: -EMSGSIZE len > payload_max; -EAGAIN no free slot (back-pressure);
 * -EINVAL req NULL with len > 0 or task_id_out NULL. */
int fshm_server_submit(fshm_server_t *srv, const void *req, size_t len, uint64_t *task_id_out);

/* The caller gave up on task_id: its callback will not be called. A queued
 * task's slot is free again at once (workers never see the task); a running
 * one's answer is dropped and its slot reclaimed when the worker lets go of
 * it (counted in cancelled_held until then, not in in_flight).
 * ERRORS: -ENOENT unknown, finished or already cancelled task. */
int fshm_server_cancel(fshm_server_t *srv, uint64_t task_id);

/* status 0: resp/len is the worker's answer. status < 0: a negative errno:
 * the worker's own (e.g. -EINVAL bad input, -EIO), -EOWNERDEAD the task's
 * workers died max_attempts times, -EPROTO the worker wrote garbage;
 * resp may then hold a short error text. resp is valid only during the call. */
typedef void (*fshm_done_cb)(void *arg, uint64_t task_id, int status, const void *resp, size_t len);

/* Clears the event fd, delivers every pending completion through cb, and
 * reaps dead workers at most once per heartbeat period. cb may submit and
 * cancel, but must not close the server.
 * Returns the number delivered, or -EINVAL (cb NULL). */
int fshm_server_poll(fshm_server_t *srv, fshm_done_cb cb, void *arg);

/* Blocks until a completion is pending or timeout_ms passes (<0 forever):
 * spins briefly, then sleeps on the event fd. For programs without an event
 * loop (tests, benchmarks). Returns 1 pending, 0 timeout, or -errno. */
int fshm_server_wait(fshm_server_t *srv, int timeout_ms);

/* Detects dead workers (process gone; or process stuck: heartbeat older
 * than max(4 heartbeats, 1 s) while its heartbeat thread is not runnable),
 * queues their tasks again or fails them (delivered by the next poll),
 * reclaims their table entries, and repairs ring cells they left half-done.
 * Call it from a timer every heartbeat_ms. Returns the number reaped. */
int fshm_server_check_workers(fshm_server_t *srv);

typedef struct fshm_worker_info {
    int32_t pid;               /* worker process id (0 for a free entry) */
    uint32_t index;            /* entry index in the worker table */
    const char *state;         /* "idle", "busy", "dead" or "free" (static string) */
    uint64_t tasks_done;       /* tasks answered with status 0 */
    uint64_t tasks_failed;     /* tasks answered with status < 0 */
    uint64_t current_task;     /* task id being run, 0 when idle */
    uint64_t heartbeat_age_ms; /* time since the last heartbeat */
} fshm_worker_info_t;

/* Fills out[] with the entries that are not free (at most max).
 * Returns the number written. */
int fshm_server_workers(fshm_server_t *srv, fshm_worker_info_t *out, size_t max);

typedef struct fshm_stats {
    uint64_t submitted;    /* tasks accepted by fshm_server_submit */
    uint64_t completed;    /* callbacks with status 0 */
    uint64_t failed;       /* callbacks with status < 0 */
    uint64_t requeued;     /* re-dispatches after a worker died */
    uint64_t queue_depth;  /* tasks queued and not yet claimed by a worker (not cancelled) */
    uint64_t in_flight;    /* tasks submitted, not cancelled, not yet delivered */
    uint32_t workers_live; /* worker entries in state idle or busy */
    uint64_t cancelled;    /* fshm_server_cancel calls that took effect */
    uint64_t cancelled_held; /* cancelled tasks a worker still runs (their slots are busy) */
} fshm_stats_t;

void fshm_server_stats(fshm_server_t *srv, fshm_stats_t *out);

/* ---- worker side ------------------------------------------------------ */

typedef struct fshm_worker fshm_worker_t;

/* Maps the server's segment, checks its header and takes a worker entry.
 * When every entry is taken but some belong to processes that are gone,
 * asks the server to reclaim them and waits for that (at most one heartbeat
 * period plus a second) instead of failing.
 * ERRORS: -EINVAL bad name; -ENOENT no server (or it is still starting);
 * -EACCES the name belongs to another user (and no server of ours runs
 * under an alternate name) or is open to others;
 * -EPROTO magic, layout version or sizes differ from this binary (see
 * fshm_last_error()); -ESHUTDOWN the server closed or died; -ENOSPC worker
 * table full; -ENOMEM; errno of mmap/pthread_create. */
int fshm_worker_attach(fshm_worker_t **out, const char *name);

/* Claims the next task (spins briefly, then sleeps on the futex).
 * timeout_ms: 0 try once, <0 forever, >0 milliseconds (CLOCK_MONOTONIC).
 * The request (req, len) stays valid until fshm_worker_reply() for this task.
 * ERRORS: -ETIME timeout; -ESHUTDOWN server closed or died; -EINTR
 * fshm_worker_interrupt() was called; -EBUSY a task is claimed and not yet
 * answered; -ENOLINK this worker was declared dead (it was stuck) and its
 * entry reclaimed: detach and attach again. A worker in that state stops
 * writing heartbeats into the entry, and a sleeping next() is woken. */
int fshm_worker_next(fshm_worker_t *w, uint64_t *task_id, const void **req, size_t *len,
                     int timeout_ms);

/* Makes the pending (or the next) fshm_worker_next() return -EINTR.
 * Async-signal-safe: call it from a SIGTERM handler to stop a sleeping
 * worker without a race between checking a flag and going to sleep. */
void fshm_worker_interrupt(fshm_worker_t *w);

/* Answers the claimed task: status 0 and the response, or a negative errno
 * and an optional short error text. A task revoked meanwhile (the server
 * declared this worker dead) is dropped and -ENOLINK returned.
 * ERRORS: -EINVAL not the claimed task or status > 0; -EMSGSIZE len >
 * payload_max (the task then fails with -EMSGSIZE); -ENOLINK. */
int fshm_worker_reply(fshm_worker_t *w, uint64_t task_id, int status, const void *resp,
                      size_t len);

/* Releases the entry (a claimed, unanswered task is queued again by the
 * server as if the worker had died), stops the helper, unmaps. NULL ok. */
void fshm_worker_detach(fshm_worker_t *w);

/* The worker's index in the table and the segment's payload limit. */
uint32_t fshm_worker_index(const fshm_worker_t *w);
uint32_t fshm_worker_payload_max(const fshm_worker_t *w);

/* Whether the server died without closing its segment (crash, SIGKILL), as
 * opposed to closing it (fshm_server_close). Meaningful once
 * fshm_worker_next() returned -ESHUTDOWN: 1 died, 0 closed. A worker can
 * then tell an orderly stop from a failure (e.g. exit with a status that
 * makes a supervisor restart it). */
int fshm_worker_server_died(const fshm_worker_t *w);

#ifdef __cplusplus
}
#endif
#endif /* FERRY_SHM_H */
