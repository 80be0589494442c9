/* Kolosal server: HTTP requests waiting for a worker's answer, by task id
 * and in deadline order. */
#ifndef KSRV_PENDING_H
#define KSRV_PENDING_H

#include <stddef.h>
#include <stdint.h>

#include "ferry/net.h"

typedef struct kpend {
  uint64_t task_id;            /* shm task carrying the request */
  fnet_req_t *req;             /* HTTP request to answer */
  uint64_t deadline_ms;        /* uv_now() after which the answer is 504 */
  struct kpend *hnext;         /* hash chain */
  struct kpend *prev, *next;   /* deadline order, oldest first */
} kpend_t;

typedef struct kpend_table {
  kpend_t **buckets;   /* chains, power-of-two count */
  size_t nbuckets;     /* bucket count */
  size_t count;        /* entries */
  kpend_t *head;       /* earliest deadline */
  kpend_t *tail;       /* latest deadline */
} kpend_table_t;

/* 0 or -ENOMEM. */
int kpend_init(kpend_table_t *t, size_t hint);
/* Frees the table itself, not the entries. */
void kpend_destroy(kpend_table_t *t);
/* Appends p (its deadline must not be earlier than the tail's). 0 or -ENOMEM
 * (the table is unchanged). */
int kpend_add(kpend_table_t *t, kpend_t *p);
kpend_t *kpend_find(const kpend_table_t *t, uint64_t task_id);
void kpend_remove(kpend_table_t *t, kpend_t *p);

#endif
