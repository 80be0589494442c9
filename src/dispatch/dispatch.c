/* ferry dispatch: the scheduler. Jobs wait in one FIFO (retried jobs at its
 * head), workers have slots and a health state; schedule() hands queued jobs
 * to free slots until no job can start. It is re-entrancy safe: a callback
 * that reports back (done, failed, cancel, submit) only marks that another
 * round is needed, and the outer round restarts from the head of the line. */
#include "disp_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct fdisp_worker {
  fdisp_worker_id_t id;        /* public id */
  void *data;                  /* caller's data */
  fdisp_wstate_t state;        /* healthy, ejected or probing (DOWN is !up) */
  bool up;                     /* transport says reachable */
  bool removing;               /* lost: forget once busy == 0 */
  uint32_t capacity;           /* slots */
  uint32_t busy;               /* slots in use */
  uint32_t external;           /* slots taken by others (clients of the backend we do not see) */
  uint64_t eject_until;        /* end of the cool-down while ejected */
  uint64_t hold_until;         /* refused a job (FDISP_F_BUSY): takes none before this */
  uint32_t hold_cur;           /* length of the next such hold (doubles on refusals in a row) */
  uint32_t cooldown_cur;       /* length of the next ejection */
  fdisp_worker_stats_t st;     /* counters (id, state, busy, capacity filled on read) */
};

struct fdisp {
  fdisp_config_t cfg;          /* limits, defaults filled in */
  fdisp_ops_t ops;             /* callbacks */
  void *ops_arg;               /* their argument */
  fdisp_clock_fn clock;        /* time source */
  void *clock_arg;             /* its argument */
  fdisp_jobtab_t jobs;         /* every job, queued or running */
  fdisp_job_t *qhead, *qtail;  /* the line */
  uint32_t queued;             /* jobs in the line */
  uint32_t fresh_queued;       /* of those, never tried: they count against queue_size */
  fdisp_worker_t **workers;    /* by increasing id */
  size_t nworkers;             /* entries used */
  size_t wcap;                 /* entries allocated */
  size_t rr;                   /* round-robin / tie-break cursor into workers */
  fdisp_job_id_t next_job;     /* next job id */
  fdisp_worker_id_t next_worker; /* next worker id */
  bool in_schedule;            /* schedule() is running */
  bool again;                  /* something changed during it: run another round */
  bool shut;                   /* fdisp_shutdown() called */
  fdisp_stats_t st;            /* global counters */
};

static uint64_t now(const fdisp_t *d) { return d->clock(d->clock_arg); }

void fdisp_config_default(fdisp_config_t *c) {
  memset(c, 0, sizeof(*c));
  c->queue_size = 5000;
  c->max_retries = 3;
  c->policy = FDISP_LEAST_LOADED;
  c->eject_after = 3;
  c->cooldown_ms = 2000;
  c->cooldown_max_ms = 30000;
  c->default_deadline_ms = 60000;
  c->busy_hold_ms = 50;
  c->busy_hold_max_ms = 1000;
}

int fdisp_init(fdisp_t **out, const fdisp_config_t *cfg, const fdisp_ops_t *ops, void *ops_arg,
               fdisp_clock_fn clock, void *clock_arg) {
  if (!out || !ops || !ops->run || !ops->gave_up || !clock) return -EINVAL;
  fdisp_config_t def;
  fdisp_config_default(&def);
  fdisp_config_t c = cfg ? *cfg : def;
  if (!c.queue_size) c.queue_size = def.queue_size;
  if (c.max_retries == 0)
    c.max_retries = def.max_retries;
  else if (c.max_retries < 0)
    c.max_retries = 0;
  if (c.max_retries >= FDISP_MAX_TRIES) return -EINVAL;
  if (c.policy != FDISP_LEAST_LOADED && c.policy != FDISP_ROUND_ROBIN) return -EINVAL;
  if (!c.eject_after) c.eject_after = def.eject_after;
  if (!c.cooldown_ms) c.cooldown_ms = def.cooldown_ms;
  if (!c.cooldown_max_ms) c.cooldown_max_ms = def.cooldown_max_ms;
  if (c.cooldown_max_ms < c.cooldown_ms) c.cooldown_max_ms = c.cooldown_ms;
  if (!c.default_deadline_ms) c.default_deadline_ms = def.default_deadline_ms;
  if (!c.busy_hold_ms) c.busy_hold_ms = def.busy_hold_ms;
  if (!c.busy_hold_max_ms) c.busy_hold_max_ms = def.busy_hold_max_ms;
  if (c.busy_hold_max_ms < c.busy_hold_ms) c.busy_hold_max_ms = c.busy_hold_ms;
  fdisp_t *d = calloc(1, sizeof(*d));
  if (!d) return -ENOMEM;
  if (fdisp__jt_init(&d->jobs) < 0) {
    free(d);
    return -ENOMEM;
  }
  d->cfg = c;
  d->ops = *ops;
  d->ops_arg = ops_arg;
  d->clock = clock;
  d->clock_arg = clock_arg;
  d->next_job = 1;
  d->next_worker = 1;
  *out = d;
  return 0;
}

void fdisp_destroy(fdisp_t *d) {
  if (!d) return;
  for (size_t i = 0; i < d->jobs.count; i++) free(d->jobs.heap[i]);
  fdisp__jt_destroy(&d->jobs);
  for (size_t i = 0; i < d->nworkers; i++) free(d->workers[i]);
  free(d->workers);
  free(d);
}

/* ---- workers ------------------------------------------------------------ */

static fdisp_worker_t *wfind(const fdisp_t *d, fdisp_worker_id_t id) {
  size_t lo = 0, hi = d->nworkers;
  while (lo < hi) {
    size_t m = (lo + hi) / 2;
    if (d->workers[m]->id < id)
      lo = m + 1;
    else
      hi = m;
  }
  return lo < d->nworkers && d->workers[lo]->id == id ? d->workers[lo] : NULL;
}

static void wfree_if_gone(fdisp_t *d, fdisp_worker_t *w) {
  if (!w->removing || w->busy) return;
  size_t i = 0;
  while (d->workers[i] != w) i++;
  memmove(&d->workers[i], &d->workers[i + 1], (d->nworkers - i - 1) * sizeof(*d->workers));
  d->nworkers--;
  if (d->rr > i) d->rr--;
  if (d->rr >= d->nworkers) d->rr = 0;
  free(w);
}

/* Can start a job now (ignoring which jobs tried it). A hold from a
 * refusal (FDISP_F_BUSY) is cleared by whatever frees a slot or reports the
 * capacity anew, and by fdisp_tick() once it is over. */
static bool w_free(const fdisp_worker_t *w) {
  if (w->removing || !w->up || w->hold_until) return false;
  if (w->state == FDISP_W_HEALTHY) return (uint64_t)w->busy + w->external < w->capacity;
  if (w->state == FDISP_W_PROBING) return w->busy == 0 && w->external < w->capacity;
  return false;
}

static void schedule(fdisp_t *d);

/* Something freed a slot or re-reported the worker's capacity: a hold
 * after a refusal ends. */
static void unhold(fdisp_worker_t *w) { w->hold_until = 0; }

int fdisp_worker_add(fdisp_t *d, uint32_t capacity, void *wdata, fdisp_worker_id_t *out) {
  if (!d || !capacity) return -EINVAL;
  if (d->nworkers == d->wcap) {
    size_t cap = d->wcap ? d->wcap * 2 : 8;
    fdisp_worker_t **a = realloc(d->workers, cap * sizeof(*a));
    if (!a) return -ENOMEM;
    d->workers = a;
    d->wcap = cap;
  }
  fdisp_worker_t *w = calloc(1, sizeof(*w));
  if (!w) return -ENOMEM;
  w->id = d->next_worker++;
  w->data = wdata;
  w->up = true;
  w->capacity = capacity;
  w->cooldown_cur = d->cfg.cooldown_ms;
  d->workers[d->nworkers++] = w;
  if (out) *out = w->id;
  schedule(d);
  return 0;
}

int fdisp_worker_set_capacity(fdisp_t *d, fdisp_worker_id_t id, uint32_t capacity) {
  fdisp_worker_t *w = d ? wfind(d, id) : NULL;
  if (!w || w->removing) return -ENOENT;
  if (!capacity) return -EINVAL;
  w->capacity = capacity;
  unhold(w);
  schedule(d);
  return 0;
}

int fdisp_worker_set_external(fdisp_t *d, fdisp_worker_id_t id, uint32_t external) {
  fdisp_worker_t *w = d ? wfind(d, id) : NULL;
  if (!w || w->removing) return -ENOENT;
  bool more_room = external < w->external || w->hold_until;
  w->external = external;
  unhold(w);
  if (more_room) schedule(d);
  return 0;
}

int fdisp_worker_set_up(fdisp_t *d, fdisp_worker_id_t id, bool up) {
  fdisp_worker_t *w = d ? wfind(d, id) : NULL;
  if (!w || w->removing) return -ENOENT;
  bool was_up = w->up;
  w->up = up;
  if (up) unhold(w);
  if (up && !was_up) {
    /* Back from down: the transport's own check saw it healthy. */
    w->state = FDISP_W_HEALTHY;
    w->st.consecutive_faults = 0;
  }
  schedule(d);
  return 0;
}

int fdisp_worker_remove(fdisp_t *d, fdisp_worker_id_t id) {
  fdisp_worker_t *w = d ? wfind(d, id) : NULL;
  if (!w || w->removing) return -ENOENT;
  w->removing = true;
  wfree_if_gone(d, w);
  schedule(d);  /* jobs that only waited for an untried worker may now give up */
  return 0;
}

void *fdisp_worker_data(const fdisp_t *d, fdisp_worker_id_t id) {
  fdisp_worker_t *w = d ? wfind(d, id) : NULL;
  return w ? w->data : NULL;
}

static void eject(fdisp_t *d, fdisp_worker_t *w) {
  w->state = FDISP_W_EJECTED;
  w->eject_until = now(d) + w->cooldown_cur;
  w->st.ejections++;
  uint64_t next = (uint64_t)w->cooldown_cur * 2;
  w->cooldown_cur = next > d->cfg.cooldown_max_ms ? d->cfg.cooldown_max_ms : (uint32_t)next;
}

/* ---- the line ------------------------------------------------------------- */

static void q_remove(fdisp_t *d, fdisp_job_t *j) {
  if (j->prev)
    j->prev->next = j->next;
  else
    d->qhead = j->next;
  if (j->next)
    j->next->prev = j->prev;
  else
    d->qtail = j->prev;
  j->prev = j->next = NULL;
  d->queued--;
  if (j->fresh) d->fresh_queued--;
  j->fresh = false;
}

static void q_push_tail(fdisp_t *d, fdisp_job_t *j) {
  j->next = NULL;
  j->prev = d->qtail;
  if (d->qtail)
    d->qtail->next = j;
  else
    d->qhead = j;
  d->qtail = j;
  d->queued++;
  d->fresh_queued++;
  j->fresh = true;
}

/* A retried job goes before every job never tried; among retried jobs the
 * older (lower id) stays first. (A job refused as busy before any real try
 * has tries == 0 but keeps its place at the head the same way.) */
static void q_push_retry(fdisp_t *d, fdisp_job_t *j) {
  fdisp_job_t *after = NULL, *p = d->qhead;
  while (p && !p->fresh && p->id < j->id) {
    after = p;
    p = p->next;
  }
  j->prev = after;
  j->next = p;
  if (after)
    after->next = j;
  else
    d->qhead = j;
  if (p)
    p->prev = j;
  else
    d->qtail = j;
  d->queued++;
}

static bool tried(const fdisp_job_t *j, fdisp_worker_id_t id) {
  for (unsigned i = 0; i < j->tries; i++)
    if (j->tried[i] == id) return true;
  return false;
}

/* Some worker still in service that this job has not tried (in any state). */
static bool untried_exists(const fdisp_t *d, const fdisp_job_t *j) {
  for (size_t i = 0; i < d->nworkers; i++)
    if (!d->workers[i]->removing && !tried(j, d->workers[i]->id)) return true;
  return false;
}

/* Some worker the job has not tried that is up (it may come free). */
static bool untried_up(const fdisp_t *d, const fdisp_job_t *j) {
  for (size_t i = 0; i < d->nworkers; i++) {
    const fdisp_worker_t *w = d->workers[i];
    if (!w->removing && w->up && !tried(j, w->id)) return true;
  }
  return false;
}

/* A free worker for j: one it has not tried; or, if every untried worker is
 * down (waiting for it could take until the deadline), a healthy one it
 * tried before (it may have been restarted since). */
static fdisp_worker_t *pick(fdisp_t *d, const fdisp_job_t *j) {
  bool any_tried = j->tries && !untried_up(d, j);
  size_t n = d->nworkers;
  fdisp_worker_t *best = NULL;
  size_t best_i = 0;
  for (size_t k = 0; k < n; k++) {
    size_t i = (d->rr + k) % n;
    fdisp_worker_t *w = d->workers[i];
    if (!w_free(w)) continue;
    if (tried(j, w->id) && !(any_tried && w->state == FDISP_W_HEALTHY)) continue;
    if (d->cfg.policy == FDISP_ROUND_ROBIN) {
      best = w;
      best_i = i;
      break;
    }
    /* least loaded: (busy + external)/capacity, compared without division */
    if (!best || ((uint64_t)w->busy + w->external) * best->capacity <
                     ((uint64_t)best->busy + best->external) * w->capacity) {
      best = w;
      best_i = i;
    }
  }
  if (best) d->rr = (best_i + 1) % n;
  return best;
}

static bool any_free(const fdisp_t *d) {
  if (d->cfg.max_running && d->st.running >= d->cfg.max_running) return false;
  for (size_t i = 0; i < d->nworkers; i++)
    if (w_free(d->workers[i])) return true;
  return false;
}

/* Forgets j (queued or running) and tells the transport. */
static void give_up(fdisp_t *d, fdisp_job_t *j, fdisp_reason_t why) {
  fdisp_worker_t *w = j->worker;
  fdisp_worker_id_t wid = w ? w->id : 0;
  if (w) {
    w->busy--;
    d->st.running--;
    w->st.failed++;
    w->st.last_active_ms = now(d);
    unhold(w);
  } else {
    q_remove(d, j);
  }
  fdisp__jt_del(&d->jobs, j);
  d->st.gave_up[why]++;
  void *data = j->data;
  fdisp_job_id_t id = j->id;
  free(j);
  if (w) wfree_if_gone(d, w);
  d->again = true;
  d->ops.gave_up(d, id, data, wid, why, d->ops_arg);
}

static void start(fdisp_t *d, fdisp_job_t *j, fdisp_worker_t *w) {
  q_remove(d, j);
  if (j->tries) d->st.retries++;
  j->tried[j->tries++] = w->id;
  j->worker = w;
  j->probe = w->state == FDISP_W_PROBING;
  j->started = now(d);
  w->busy++;
  w->st.requests++;
  w->st.last_active_ms = j->started;
  d->st.running++;
  d->again = true;
  d->ops.run(d, j->id, j->data, w->id, w->data, d->ops_arg);
}

/* Starts every queued job that can start. After any callback the walk
 * restarts from the head: the callback may have changed the line. */
static void schedule(fdisp_t *d) {
  if (d->in_schedule) {
    d->again = true;
    return;
  }
  d->in_schedule = true;
  do {
    d->again = false;
    for (fdisp_job_t *j = d->qhead; j && !d->again; j = j->next) {
      if (j->tries && !untried_exists(d, j)) {
        give_up(d, j, FDISP_R_NO_WORKER);
        break;
      }
      if (!any_free(d)) break;
      fdisp_worker_t *w = pick(d, j);
      if (w) {
        start(d, j, w);
        break;
      }
      /* Only a retried job can find no worker while one is free (it tried
       * those); jobs behind it may still start. A fresh one means none can. */
      if (!j->tries) break;
    }
  } while (d->again);
  d->in_schedule = false;
}

/* ---- jobs ------------------------------------------------------------------- */

int fdisp_submit(fdisp_t *d, void *jdata, uint32_t timeout_ms, fdisp_job_id_t *out) {
  if (!d) return -EINVAL;
  if (d->shut) return -ESHUTDOWN;
  if (d->fresh_queued >= d->cfg.queue_size) {
    d->st.rejected_full++;
    return -EAGAIN;
  }
  fdisp_job_t *j = calloc(1, sizeof(*j));
  if (!j) return -ENOMEM;
  j->id = d->next_job;
  j->data = jdata;
  j->deadline = now(d) + (timeout_ms ? timeout_ms : d->cfg.default_deadline_ms);
  if (fdisp__jt_add(&d->jobs, j) < 0) {
    free(j);
    return -ENOMEM;
  }
  d->next_job++;
  q_push_tail(d, j);
  if (d->queued > d->st.queue_peak) d->st.queue_peak = d->queued;
  d->st.submitted++;
  if (out) *out = j->id;
  schedule(d);
  return 0;
}

static fdisp_job_t *running_job(fdisp_t *d, fdisp_job_id_t id, int *err) {
  fdisp_job_t *j = d ? fdisp__jt_get(&d->jobs, id) : NULL;
  *err = !j ? -ENOENT : !j->worker ? -EINVAL : 0;
  return *err ? NULL : j;
}

int fdisp_job_done(fdisp_t *d, fdisp_job_id_t id) {
  int err;
  fdisp_job_t *j = running_job(d, id, &err);
  if (!j) return err;
  fdisp_worker_t *w = j->worker;
  uint64_t t = now(d);
  w->busy--;
  w->st.completed++;
  w->st.total_ms += t - j->started;
  w->st.last_active_ms = t;
  w->st.consecutive_faults = 0;
  w->hold_cur = 0;
  unhold(w);
  if (j->probe && w->state == FDISP_W_PROBING) {
    w->state = FDISP_W_HEALTHY;
    w->cooldown_cur = d->cfg.cooldown_ms;
  }
  d->st.running--;
  d->st.completed++;
  fdisp__jt_del(&d->jobs, j);
  free(j);
  wfree_if_gone(d, w);
  schedule(d);
  return 0;
}

/* The worker refused j for lack of a free slot: the try did not happen. j
 * goes back to the head of the line with its retries intact, and the
 * worker takes nothing for a hold (its other jobs ending ends it sooner). */
static void bounce(fdisp_t *d, fdisp_job_t *j) {
  fdisp_worker_t *w = j->worker;
  uint64_t t = now(d);
  w->busy--;
  w->st.busy_refusals++;
  w->st.last_active_ms = t;
  d->st.running--;
  d->st.requeued_busy++;
  j->tries--;              /* its run on w never started: w is not "tried" */
  if (j->tries) d->st.retries--;   /* start() counted it as a retry */
  j->worker = NULL;
  j->probe = false;
  if (!w->removing) {
    uint32_t hold = w->hold_cur ? w->hold_cur : d->cfg.busy_hold_ms;
    w->hold_until = t + hold;
    uint64_t next = (uint64_t)hold * 2;
    w->hold_cur = next > d->cfg.busy_hold_max_ms ? d->cfg.busy_hold_max_ms : (uint32_t)next;
  }
  q_push_retry(d, j);
  wfree_if_gone(d, w);
  schedule(d);
}

int fdisp_job_failed(fdisp_t *d, fdisp_job_id_t id, unsigned flags) {
  int err;
  fdisp_job_t *j = running_job(d, id, &err);
  if (!j) return err;
  fdisp_worker_t *w = j->worker;
  if (flags & FDISP_F_BUSY) {
    bounce(d, j);
    return 0;
  }
  if (flags & FDISP_F_WORKER_FAULT) {
    w->st.consecutive_faults++;
    if (!w->removing && w->state != FDISP_W_EJECTED &&
        (w->state == FDISP_W_PROBING || w->st.consecutive_faults >= d->cfg.eject_after))
      eject(d, w);
  }
  if (!(flags & FDISP_F_RETRY) || j->tries > (unsigned)d->cfg.max_retries) {
    bool nest = d->in_schedule;
    d->in_schedule = true;  /* the callback's re-entries only mark another round */
    give_up(d, j, (flags & FDISP_F_RETRY) ? FDISP_R_RETRIES : FDISP_R_FAILED);
    d->in_schedule = nest;
    schedule(d);
    return 0;
  }
  w->busy--;
  w->st.failed++;
  w->st.last_active_ms = now(d);
  d->st.running--;
  j->worker = NULL;
  unhold(w);   /* a slot freed */
  q_push_retry(d, j);
  wfree_if_gone(d, w);
  schedule(d);
  return 0;
}

int fdisp_job_cancel(fdisp_t *d, fdisp_job_id_t id) {
  fdisp_job_t *j = d ? fdisp__jt_get(&d->jobs, id) : NULL;
  if (!j) return -ENOENT;
  fdisp_worker_t *w = j->worker;
  if (w) {
    w->busy--;
    w->st.last_active_ms = now(d);
    d->st.running--;
    unhold(w);
  } else {
    q_remove(d, j);
  }
  fdisp__jt_del(&d->jobs, j);
  free(j);
  d->st.cancelled++;
  if (w) wfree_if_gone(d, w);
  schedule(d);
  return 0;
}

int64_t fdisp_job_worker(const fdisp_t *d, fdisp_job_id_t id) {
  fdisp_job_t *j = d ? fdisp__jt_get(&d->jobs, id) : NULL;
  if (!j) return -ENOENT;
  return j->worker ? j->worker->id : 0;
}

void fdisp_shutdown(fdisp_t *d) {
  if (!d || d->shut) return;
  d->shut = true;
  bool nest = d->in_schedule;
  d->in_schedule = true;
  fdisp_job_t *j;
  while ((j = fdisp__jt_earliest(&d->jobs))) give_up(d, j, FDISP_R_SHUTDOWN);
  d->in_schedule = nest;
}

/* ---- time ------------------------------------------------------------------- */

void fdisp_tick(fdisp_t *d) {
  if (!d) return;
  uint64_t t = now(d);
  bool nest = d->in_schedule;
  d->in_schedule = true;
  fdisp_job_t *j;
  while ((j = fdisp__jt_earliest(&d->jobs)) && j->deadline <= t) give_up(d, j, FDISP_R_DEADLINE);
  for (size_t i = 0; i < d->nworkers; i++) {
    fdisp_worker_t *w = d->workers[i];
    if (w->state == FDISP_W_EJECTED && w->eject_until <= t) w->state = FDISP_W_PROBING;
    if (w->hold_until && w->hold_until <= t) unhold(w);
  }
  d->in_schedule = nest;
  schedule(d);
}

int64_t fdisp_next_timeout(const fdisp_t *d) {
  if (!d) return -1;
  uint64_t t = now(d), best = UINT64_MAX;
  fdisp_job_t *j = fdisp__jt_earliest(&d->jobs);
  if (j) best = j->deadline;
  for (size_t i = 0; i < d->nworkers; i++) {
    fdisp_worker_t *w = d->workers[i];
    if (w->state == FDISP_W_EJECTED && w->eject_until < best) best = w->eject_until;
    if (w->hold_until && w->hold_until < best) best = w->hold_until;
  }
  if (best == UINT64_MAX) return -1;
  return best <= t ? 0 : (int64_t)(best - t);
}

/* ---- stats --------------------------------------------------------------------- */

static void wstat(const fdisp_worker_t *w, fdisp_worker_stats_t *o) {
  *o = w->st;
  o->id = w->id;
  o->wdata = w->data;
  o->state = w->up ? w->state : FDISP_W_DOWN;
  o->removing = w->removing;
  o->capacity = w->capacity;
  o->busy = w->busy;
  o->external = w->external;
}

void fdisp_stats(const fdisp_t *d, fdisp_stats_t *o) {
  *o = d->st;
  o->queued = d->queued;
  o->workers = (uint32_t)d->nworkers;
  o->workers_healthy = 0;
  o->slots_total = 0;
  o->slots_busy = 0;
  for (size_t i = 0; i < d->nworkers; i++) {
    const fdisp_worker_t *w = d->workers[i];
    o->slots_busy += w->busy;
    if (w->removing || !w->up || w->state == FDISP_W_EJECTED) continue;
    o->workers_healthy++;
    o->slots_total += w->capacity;
  }
}

size_t fdisp_worker_stats(const fdisp_t *d, fdisp_worker_stats_t *out, size_t max) {
  for (size_t i = 0; i < d->nworkers && i < max; i++) wstat(d->workers[i], &out[i]);
  return d->nworkers;
}

int fdisp_worker_stat(const fdisp_t *d, fdisp_worker_id_t id, fdisp_worker_stats_t *out) {
  fdisp_worker_t *w = d ? wfind(d, id) : NULL;
  if (!w) return -ENOENT;
  wstat(w, out);
  return 0;
}

const char *fdisp_reason_name(fdisp_reason_t r) {
  switch (r) {
  case FDISP_R_DEADLINE: return "deadline";
  case FDISP_R_RETRIES: return "retries";
  case FDISP_R_FAILED: return "failed";
  case FDISP_R_NO_WORKER: return "no_worker";
  case FDISP_R_SHUTDOWN: return "shutdown";
  }
  return "unknown";
}

const char *fdisp_wstate_name(fdisp_wstate_t s) {
  switch (s) {
  case FDISP_W_HEALTHY: return "healthy";
  case FDISP_W_EJECTED: return "ejected";
  case FDISP_W_PROBING: return "probing";
  case FDISP_W_DOWN: return "down";
  }
  return "unknown";
}
