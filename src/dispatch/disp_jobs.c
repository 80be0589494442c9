/* ferry dispatch: the job table. Lookups by id come from the transport (one
 * per event); the deadline heap answers "what expires next" in O(1). */
#include "disp_internal.h"

#include <errno.h>
#include <stdlib.h>

static size_t slot(const fdisp_jobtab_t *t, fdisp_job_id_t id) {
  /* ids are sequential: a multiplicative mix spreads them over the buckets */
  return (size_t)((id * 0x9E3779B97F4A7C15ull) >> 20) & (t->nbuckets - 1);
}

int fdisp__jt_init(fdisp_jobtab_t *t) {
  t->nbuckets = 64;
  t->buckets = calloc(t->nbuckets, sizeof(*t->buckets));
  t->count = 0;
  t->heap_cap = 64;
  t->heap = malloc(t->heap_cap * sizeof(*t->heap));
  if (!t->buckets || !t->heap) {
    free(t->buckets);
    free(t->heap);
    return -ENOMEM;
  }
  return 0;
}

void fdisp__jt_destroy(fdisp_jobtab_t *t) {
  free(t->buckets);
  free(t->heap);
  t->buckets = NULL;
  t->heap = NULL;
}

static void heap_swap(fdisp_jobtab_t *t, size_t a, size_t b) {
  fdisp_job_t *x = t->heap[a];
  t->heap[a] = t->heap[b];
  t->heap[b] = x;
  t->heap[a]->heap_idx = a;
  t->heap[b]->heap_idx = b;
}

static void heap_up(fdisp_jobtab_t *t, size_t i) {
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (t->heap[p]->deadline <= t->heap[i]->deadline) break;
    heap_swap(t, p, i);
    i = p;
  }
}

static void heap_down(fdisp_jobtab_t *t, size_t i) {
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    if (l < t->count && t->heap[l]->deadline < t->heap[m]->deadline) m = l;
    if (r < t->count && t->heap[r]->deadline < t->heap[m]->deadline) m = r;
    if (m == i) return;
    heap_swap(t, i, m);
    i = m;
  }
}

static int grow(fdisp_jobtab_t *t) {
  if (t->count + 1 > t->heap_cap) {
    size_t cap = t->heap_cap * 2;
    fdisp_job_t **h = realloc(t->heap, cap * sizeof(*h));
    if (!h) return -ENOMEM;
    t->heap = h;
    t->heap_cap = cap;
  }
  if (t->count + 1 > t->nbuckets) {
    size_t nb = t->nbuckets * 2;
    fdisp_job_t **b = calloc(nb, sizeof(*b));
    if (!b) return -ENOMEM;
    fdisp_job_t **old = t->buckets;
    size_t onb = t->nbuckets;
    t->buckets = b;
    t->nbuckets = nb;
    for (size_t i = 0; i < onb; i++) {
      fdisp_job_t *j = old[i], *n;
      for (; j; j = n) {
        n = j->hnext;
        size_t s = slot(t, j->id);
        j->hnext = b[s];
        b[s] = j;
      }
    }
    free(old);
  }
  return 0;
}

int fdisp__jt_add(fdisp_jobtab_t *t, fdisp_job_t *j) {
  if (grow(t) < 0) return -ENOMEM;
  size_t s = slot(t, j->id);
  j->hnext = t->buckets[s];
  t->buckets[s] = j;
  j->heap_idx = t->count;
  t->heap[t->count++] = j;
  heap_up(t, j->heap_idx);
  return 0;
}

void fdisp__jt_del(fdisp_jobtab_t *t, fdisp_job_t *j) {
  fdisp_job_t **pp = &t->buckets[slot(t, j->id)];
  while (*pp != j) pp = &(*pp)->hnext;
  *pp = j->hnext;
  size_t i = j->heap_idx;
  t->count--;
  if (i != t->count) {
    t->heap[i] = t->heap[t->count];
    t->heap[i]->heap_idx = i;
    heap_up(t, i);
    heap_down(t, t->heap[i]->heap_idx);
  }
}

fdisp_job_t *fdisp__jt_get(const fdisp_jobtab_t *t, fdisp_job_id_t id) {
  for (fdisp_job_t *j = t->buckets[slot(t, id)]; j; j = j->hnext)
    if (j->id == id) return j;
  return NULL;
}

fdisp_job_t *fdisp__jt_earliest(const fdisp_jobtab_t *t) { return t->count ? t->heap[0] : NULL; }
