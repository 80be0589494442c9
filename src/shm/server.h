/* Server-private state shared by server.c (tasks, polling) and reap.c
 * (dead workers). Everything here is touched by the loop thread only, except
 * the fields marked "helper". */
#ifndef FERRY_SHM_SERVER_H
#define FERRY_SHM_SERVER_H

#include "segment.h"

#include <pthread.h>

/* The server's own record of a slot; the segment's copy is only trusted
 * after it agrees with this one. */
typedef struct fshm_task {
    uint64_t id;         /* task id handed out; 0 while delivering or free */
    uint32_t seq;        /* current dispatch seq (the slot word must match) */
    uint32_t attempts;   /* dispatches so far */
    int32_t fail_status; /* for HELD slots: the status to deliver */
    uint32_t req_len;    /* request bytes (in the slot's buffer; inline in the ticket's cell if small) */
    uint8_t busy;        /* allocated (not on the free stack) */
    uint8_t cancelled;   /* the caller gave up: no callback */
    uint8_t deferred;    /* on the deferred list */
} fshm_task_t;

/* A ring position a dead worker left half-done, repaired once it has stayed
 * wedged for a heartbeat period (a live worker would have finished by then). */
typedef struct fshm_repair {
    uint8_t cmp;       /* 0: request ring pop; 1: completion ring push */
    uint64_t pos;      /* ring position */
    uint64_t first_ms; /* when it was recorded */
} fshm_repair_t;

struct fshm_server {
    fshm_seg_t seg;         /* the mapping */
    fshm_task_t *tasks;     /* ring_slots records */
    uint32_t *free_stack;   /* free slot indexes */
    uint32_t nfree;         /* entries in free_stack */
    uint32_t *deferred;     /* FIFO of slots to deliver without a ticket (reaped) */
    uint32_t def_head;      /* next to deliver */
    uint32_t def_count;     /* entries queued */
    uint64_t *scratch;      /* req_cells tickets: room for compact_requests() */
    uint64_t *backlog;      /* FIFO of tickets not yet in the request ring (req_cells) */
    uint32_t bl_head;       /* oldest backlog entry */
    uint32_t bl_count;      /* backlog entries */
    uint32_t ncancelled;    /* cancelled tasks whose worker still holds the slot */
    fshm_repair_t *repairs; /* pending ring repairs */
    uint32_t nrepairs;      /* entries in repairs */
    uint32_t max_repairs;   /* capacity of repairs */
    uint64_t serial;        /* last task serial (task id = serial << 16 | slot) */
    uint64_t last_check_ms; /* last worker check (fshm__now_coarse_ms) */
    uint32_t seen_events;   /* worker_events value at the last check */
    uint32_t live_hi;       /* 1 + the highest worker entry in use at the last check */
    bool woke;              /* a submit woke a sleeping worker since the last wait */
    fshm_stats_t stats;     /* counters (queue_depth etc. computed on demand) */
    char errtext[128];      /* error text for server-made failures */
    _Alignas(16) uint8_t inbuf[FSHM_INLINE_MAX]; /* an inline answer copied out of its cell */
    int efd;                /* eventfd handed to the loop */
    bool efd_dirty;         /* the loop thread itself wrote efd since the last poll */
    pthread_t helper;       /* turns futex wakes into eventfd writes */
    bool helper_started;    /* helper must be joined */
    _Atomic uint32_t started;   /* helper: running its loop (open waits for it) */
    _Atomic uint32_t stop;      /* helper: exit */
    _Atomic uint32_t signaled;  /* helper wrote efd; poll() clears and wakes it */
    _Atomic uint32_t spin_mode; /* loop thread uses fshm_server_wait(): helper stands down */
};

/* Queues idx on the deferred list (once) and marks the event fd. */
void fshm__srv_defer(fshm_server_t *srv, uint32_t idx);
/* Pushes backlogged tickets into the request ring (as many as it takes). */
void fshm__srv_flush(fshm_server_t *srv);
/* Puts a slot the server holds back into the request ring, or fails it. */
void fshm__srv_requeue(fshm_server_t *srv, uint32_t idx, uint64_t expect_word);

#endif
