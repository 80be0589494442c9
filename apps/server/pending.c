/* Kolosal server: pending table. Every request has the same deadline length,
 * so appending keeps the list sorted by deadline and one timer serves all. */
#include "pending.h"

#include <errno.h>
#include <stdlib.h>

static size_t slot(const kpend_table_t *t, uint64_t id) {
  return (size_t)((id * 0x9E3779B97F4A7C15ull) >> 32) & (t->nbuckets - 1);
}

int kpend_init(kpend_table_t *t, size_t hint) {
  size_t n = 64;
  while (n < hint) n *= 2;
  t->buckets = calloc(n, sizeof(*t->buckets));
  if (!t->buckets) return -ENOMEM;
  t->nbuckets = n;
  t->count = 0;
  t->head = t->tail = NULL;
  return 0;
}

void kpend_destroy(kpend_table_t *t) {
  free(t->buckets);
  t->buckets = NULL;
  t->nbuckets = 0;
}

static int grow(kpend_table_t *t) {
  size_t n = t->nbuckets * 2;
  kpend_t **b = calloc(n, sizeof(*b));
  if (!b) return -ENOMEM;
  kpend_t **old = t->buckets;
  size_t oldn = t->nbuckets;
  t->buckets = b;
  t->nbuckets = n;
  for (size_t i = 0; i < oldn; i++) {
    for (kpend_t *p = old[i], *nx; p; p = nx) {
      nx = p->hnext;
      size_t s = slot(t, p->task_id);
      p->hnext = b[s];
      b[s] = p;
    }
  }
  free(old);
  return 0;
}

int kpend_add(kpend_table_t *t, kpend_t *p) {
  if (t->count >= t->nbuckets && grow(t) < 0) return -ENOMEM;
  size_t s = slot(t, p->task_id);
  p->hnext = t->buckets[s];
  t->buckets[s] = p;
  p->next = NULL;
  p->prev = t->tail;
  if (t->tail)
    t->tail->next = p;
  else
    t->head = p;
  t->tail = p;
  t->count++;
  return 0;
}

kpend_t *kpend_find(const kpend_table_t *t, uint64_t task_id) {
  for (kpend_t *p = t->buckets[slot(t, task_id)]; p; p = p->hnext)
    if (p->task_id == task_id) return p;
  return NULL;
}

void kpend_remove(kpend_table_t *t, kpend_t *p) {
  kpend_t **pp = &t->buckets[slot(t, p->task_id)];
  while (*pp && *pp != p) pp = &(*pp)->hnext;
  if (*pp) *pp = p->hnext;
  if (p->prev)
    p->prev->next = p->next;
  else
    t->head = p->next;
  if (p->next)
    p->next->prev = p->prev;
  else
    t->tail = p->prev;
  p->prev = p->next = p->hnext = NULL;
  t->count--;
}
