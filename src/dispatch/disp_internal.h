/* ferry dispatch internals: the job table (id hash + deadline heap) shared by
 * the scheduler. */
#ifndef FERRY_DISP_INTERNAL_H
#define FERRY_DISP_INTERNAL_H

#include "ferry/dispatch.h"

typedef struct fdisp_worker fdisp_worker_t;

typedef struct fdisp_job {
  fdisp_job_id_t id;             /* caller-visible id */
  void *data;                    /* caller's data */
  uint64_t deadline;             /* clock value at which it gives up */
  uint64_t started;              /* clock value of its current run's start */
  struct fdisp_job *hnext;       /* next in its hash bucket */
  struct fdisp_job *prev, *next; /* queue links (queued jobs only) */
  size_t heap_idx;               /* position in the deadline heap */
  fdisp_worker_t *worker;        /* worker it runs on, NULL while queued */
  bool probe;                    /* its run is a half-open probe */
  bool fresh;                    /* queued and never run: counts against queue_size */
  uint8_t tries;                 /* runs started so far */
  fdisp_worker_id_t tried[FDISP_MAX_TRIES]; /* workers it ran on, in order */
} fdisp_job_t;

/* Jobs by id (chained hash, grows) and by deadline (binary min-heap). */
typedef struct fdisp_jobtab {
  fdisp_job_t **buckets;         /* hash buckets */
  size_t nbuckets;               /* power of two */
  size_t count;                  /* jobs stored */
  fdisp_job_t **heap;            /* min-heap on deadline */
  size_t heap_cap;               /* heap slots allocated */
} fdisp_jobtab_t;

int fdisp__jt_init(fdisp_jobtab_t *t);
void fdisp__jt_destroy(fdisp_jobtab_t *t);   /* frees the tables, not the jobs */
int fdisp__jt_add(fdisp_jobtab_t *t, fdisp_job_t *j);   /* -ENOMEM: nothing added */
void fdisp__jt_del(fdisp_jobtab_t *t, fdisp_job_t *j);
fdisp_job_t *fdisp__jt_get(const fdisp_jobtab_t *t, fdisp_job_id_t id);
fdisp_job_t *fdisp__jt_earliest(const fdisp_jobtab_t *t);   /* NULL if empty */

#endif
