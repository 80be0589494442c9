/* ferry dispatch: the scheduler of jobs onto workers, shared by the GoLlama
 * hub (HTTP spokes) and, later, the task farm (TCP employees).
 *
 * The dispatcher owns jobs and workers, never sockets. A transport adapter
 * tells it what happened ("worker joined with capacity N", "job finished",
 * "job failed, retryable or not", "worker lost") and it answers through two
 * callbacks: "run job J on worker W" and "job J gave up (reason)".
 *
 * Workload: thousands of queued jobs, tens of workers with a few slots each,
 * every event handled in O(workers + retried jobs at the head) at most. It
 * never blocks and owns no thread or timer: the caller drives time with
 * fdisp_tick() at the moment fdisp_next_timeout() asks for (a uv_timer in the
 * hub, a fake clock in the tests). Time comes from the clock given at init
 * (milliseconds, monotonic).
 *
 * Rules the scheduler keeps:
 *   - The queue is bounded: a submit into a full queue fails at once with
 *     -EAGAIN (the caller answers 503 + Retry-After) and changes nothing.
 *   - Every job has a deadline; when it passes the job gives up with
 *     FDISP_R_DEADLINE, queued or running.
 *   - A job that fails retryably goes back to the HEAD of the line and runs
 *     next on a worker it has not tried yet, at most max_retries times. When
 *     every untried worker is down (fdisp_worker_set_up), a healthy worker
 *     it tried before may take it (it may have restarted); with no untried
 *     worker known at all it gives up (FDISP_R_NO_WORKER).
 *   - A job a worker refused for lack of a free slot (FDISP_F_BUSY: the
 *     transport's view of its capacity was stale) goes back to the head of
 *     the line WITHOUT spending a retry, and may run on that worker again;
 *     the worker takes no job for a short hold (busy_hold_ms, doubling on
 *     each refusal in a row up to busy_hold_max_ms) or until one of its
 *     jobs ends or the transport reports its capacity again. Such a job can
 *     bounce any number of times; its deadline bounds the wait.
 *   - A worker whose jobs fail with FDISP_F_WORKER_FAULT eject_after times in
 *     a row is ejected for a cool-down (doubling on each ejection, capped),
 *     then gets one probe job (half-open): success heals it, failure ejects it
 *     again. One error never removes a worker.
 *   - Policies: least-loaded (default; lowest busy/capacity, ties in turn)
 *     and round-robin (next worker in turn with a free slot).
 *
 * Conventions: 0 or a value on success, negative errno on failure; a failed
 * call changes nothing and calls no callback. Single-threaded (the loop's
 * thread). Callbacks may call back into the dispatcher (the scheduling loop
 * is re-entrancy safe), except fdisp_destroy().
 */
#ifndef FERRY_DISPATCH_H
#define FERRY_DISPATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fdisp fdisp_t;
typedef uint64_t fdisp_job_id_t;     /* never 0, never reused */
typedef uint32_t fdisp_worker_id_t;  /* never 0, never reused */

/* Most tries per job (first run + retries) the dispatcher tracks. */
#define FDISP_MAX_TRIES 16

typedef enum fdisp_policy {
  FDISP_LEAST_LOADED = 0,  /* lowest busy/capacity ratio, ties in turn (default) */
  FDISP_ROUND_ROBIN,       /* next worker in turn that has a free slot */
} fdisp_policy_t;

/* Why a job gave up. */
typedef enum fdisp_reason {
  FDISP_R_DEADLINE = 1,   /* its deadline passed (queued or running) */
  FDISP_R_RETRIES,        /* failed on max_retries + 1 workers */
  FDISP_R_FAILED,         /* failed and not retryable */
  FDISP_R_NO_WORKER,      /* failed, and every worker known has been tried */
  FDISP_R_SHUTDOWN,       /* fdisp_shutdown() */
} fdisp_reason_t;

/* Flags for fdisp_job_failed(). */
#define FDISP_F_RETRY 1u         /* may run again on another worker */
#define FDISP_F_WORKER_FAULT 2u  /* the worker is to blame: counts towards ejection */
#define FDISP_F_BUSY 4u          /* the worker had no free slot: requeued at the head, no retry spent
                                    (other flags are ignored) */

typedef enum fdisp_wstate {
  FDISP_W_HEALTHY = 0,  /* takes jobs up to its capacity */
  FDISP_W_EJECTED,      /* cooling down after failures: takes no job */
  FDISP_W_PROBING,      /* cool-down over: takes one probe job */
  FDISP_W_DOWN,         /* the transport says it is unreachable (fdisp_worker_set_up) */
} fdisp_wstate_t;

typedef struct fdisp_ops {
  /* Run job `job` (user data `jdata`) on worker `w` (user data `wdata`).
   * The transport later reports fdisp_job_done() or fdisp_job_failed(),
   * possibly from inside this call. */
  void (*run)(fdisp_t *d, fdisp_job_id_t job, void *jdata, fdisp_worker_id_t w, void *wdata,
              void *arg);
  /* Job `job` is over without success. `w` is the worker it was running on
   * (0 if queued): the transport stops its work there. The dispatcher
   * forgets the job before this call. */
  void (*gave_up)(fdisp_t *d, fdisp_job_id_t job, void *jdata, fdisp_worker_id_t w,
                  fdisp_reason_t reason, void *arg);
} fdisp_ops_t;

/* Zero in a field means "use the default". */
typedef struct fdisp_config {
  uint32_t queue_size;        /* queued jobs at most (default 5000) */
  int32_t max_retries;        /* retries after the first try, < FDISP_MAX_TRIES (default 3; -1: none) */
  fdisp_policy_t policy;      /* default least-loaded */
  uint32_t eject_after;       /* consecutive worker faults before ejection (default 3) */
  uint32_t cooldown_ms;       /* first ejection's cool-down (default 2000) */
  uint32_t cooldown_max_ms;   /* cool-down cap after repeated ejections (default 30000) */
  uint32_t default_deadline_ms; /* deadline when submit passes 0 (default 60000) */
  uint32_t max_running;       /* jobs running at once over all workers (0: only slots limit) */
  uint32_t busy_hold_ms;      /* a worker that refused a job (FDISP_F_BUSY) takes none this long (default 50) */
  uint32_t busy_hold_max_ms;  /* cap of that hold, doubling on refusals in a row (default 1000) */
} fdisp_config_t;

void fdisp_config_default(fdisp_config_t *cfg);

/* Monotonic milliseconds. */
typedef uint64_t (*fdisp_clock_fn)(void *arg);

/* ERRORS: -EINVAL (NULL ops/clock, max_retries out of range); -ENOMEM. */
int fdisp_init(fdisp_t **out, const fdisp_config_t *cfg, const fdisp_ops_t *ops, void *ops_arg,
               fdisp_clock_fn clock, void *clock_arg);
/* Frees everything without calling any callback. Accepts NULL. */
void fdisp_destroy(fdisp_t *d);
/* Gives up every job (FDISP_R_SHUTDOWN) and refuses further submits (-ESHUTDOWN). */
void fdisp_shutdown(fdisp_t *d);

/* ---- workers ------------------------------------------------------------ */

/* Adds a worker with `capacity` concurrent slots (>= 1). `wdata` is passed to run().
 * ERRORS: -EINVAL; -ENOMEM. */
int fdisp_worker_add(fdisp_t *d, uint32_t capacity, void *wdata, fdisp_worker_id_t *out);
/* Changes the slot count (>= 1; running jobs above it finish normally). */
int fdisp_worker_set_capacity(fdisp_t *d, fdisp_worker_id_t w, uint32_t capacity);
/* Slots of the worker taken by others than this dispatcher (e.g. clients
 * talking to the backend directly): it takes a job only while
 * busy + external < capacity, and least-loaded counts them as load.
 * ERRORS: -ENOENT. */
int fdisp_worker_set_external(fdisp_t *d, fdisp_worker_id_t w, uint32_t external);
/* The transport's view of reachability: down takes no job until up again;
 * the change from down to up also ends an ejection (seen healthy). */
int fdisp_worker_set_up(fdisp_t *d, fdisp_worker_id_t w, bool up);
/* Worker lost for good: it takes no further job and is forgotten once its
 * running jobs are reported done or failed. ERRORS: -ENOENT. */
int fdisp_worker_remove(fdisp_t *d, fdisp_worker_id_t w);
/* The user data given at add, or NULL for an unknown id. */
void *fdisp_worker_data(const fdisp_t *d, fdisp_worker_id_t w);

/* ---- jobs --------------------------------------------------------------- */

/* Queues a job with a deadline `timeout_ms` from now (0: the default).
 * *out is set before run() may be called from inside this call.
 * ERRORS: -EAGAIN queue full; -ESHUTDOWN; -EINVAL; -ENOMEM. */
int fdisp_submit(fdisp_t *d, void *jdata, uint32_t timeout_ms, fdisp_job_id_t *out);
/* The running job succeeded: its slot frees, the worker's stats count it.
 * ERRORS: -ENOENT unknown job; -EINVAL job not running. */
int fdisp_job_done(fdisp_t *d, fdisp_job_id_t job);
/* The running job failed (flags FDISP_F_*): retried elsewhere at the head of
 * the line, or given up (gave_up() is called).
 * ERRORS: -ENOENT; -EINVAL job not running. */
int fdisp_job_failed(fdisp_t *d, fdisp_job_id_t job, unsigned flags);
/* The caller no longer wants the job (client gone): forgotten at once, its
 * slot freed; no callback. ERRORS: -ENOENT. */
int fdisp_job_cancel(fdisp_t *d, fdisp_job_id_t job);
/* The worker a job runs on, 0 if queued, -ENOENT if unknown. */
int64_t fdisp_job_worker(const fdisp_t *d, fdisp_job_id_t job);

/* ---- time ----------------------------------------------------------------- */

/* Handles deadlines and cool-downs due by now, then schedules. */
void fdisp_tick(fdisp_t *d);
/* Milliseconds until fdisp_tick() has something to do (0: now), -1: nothing pending. */
int64_t fdisp_next_timeout(const fdisp_t *d);

/* ---- stats ------------------------------------------------------------------ */

typedef struct fdisp_worker_stats {
  fdisp_worker_id_t id;       /* worker id */
  void *wdata;                /* user data */
  fdisp_wstate_t state;       /* health state */
  bool removing;              /* removed, waiting for its running jobs */
  uint32_t capacity;          /* slots */
  uint32_t busy;              /* slots in use */
  uint32_t external;          /* slots taken by others (fdisp_worker_set_external) */
  uint64_t requests;          /* jobs started on it */
  uint64_t completed;         /* jobs done */
  uint64_t failed;            /* jobs failed on it (any reason) */
  uint64_t total_ms;          /* summed run time of completed jobs (avg = total_ms / completed) */
  uint64_t last_active_ms;    /* clock value of its last start or end, 0 never */
  uint32_t consecutive_faults;/* worker faults since its last success */
  uint32_t ejections;         /* times ejected */
  uint64_t busy_refusals;     /* jobs it refused for lack of a slot (FDISP_F_BUSY) */
} fdisp_worker_stats_t;

typedef struct fdisp_stats {
  uint64_t submitted;         /* jobs accepted */
  uint64_t rejected_full;     /* submits refused: queue full */
  uint64_t completed;         /* jobs done */
  uint64_t retries;           /* re-runs after a retryable failure */
  uint64_t requeued_busy;     /* jobs put back at the head after a worker's FDISP_F_BUSY */
  uint64_t cancelled;         /* jobs cancelled by the caller */
  uint64_t gave_up[FDISP_R_SHUTDOWN + 1]; /* jobs given up, by reason */
  uint32_t queued;            /* jobs waiting now */
  uint32_t running;           /* jobs running now */
  uint32_t queue_peak;        /* most jobs ever waiting at once */
  uint32_t workers;           /* workers known (including removing) */
  uint32_t workers_healthy;   /* workers taking jobs */
  uint32_t slots_total;       /* capacity of workers taking jobs */
  uint32_t slots_busy;        /* slots in use on all workers */
} fdisp_stats_t;

void fdisp_stats(const fdisp_t *d, fdisp_stats_t *out);
/* Fills up to `max` entries (in worker id order); returns how many workers exist. */
size_t fdisp_worker_stats(const fdisp_t *d, fdisp_worker_stats_t *out, size_t max);
/* One worker's stats. ERRORS: -ENOENT. */
int fdisp_worker_stat(const fdisp_t *d, fdisp_worker_id_t w, fdisp_worker_stats_t *out);

const char *fdisp_reason_name(fdisp_reason_t r);   /* "deadline", "retries", ... */
const char *fdisp_wstate_name(fdisp_wstate_t s);   /* "healthy", "ejected", ... */

#ifdef __cplusplus
}
#endif
#endif /* FERRY_DISPATCH_H */
