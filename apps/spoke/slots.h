/* GoLlama spoke: which of llama.cpp's busy slots are someone else's.
 *
 * llama.cpp's /slots says how many slots are processing, not whose. The
 * spoke knows its own requests, so "busy with others" (busy_other, what the
 * hub must not count on) is busy minus ours. The subtraction must use the
 * requests that were ours WHILE llama.cpp took its snapshot, not when its
 * answer arrives: a request that ended in between still shows busy in the
 * snapshot, and counting it as someone else's made the hub hold new jobs
 * for a whole poll period (the cause of half-second waits at concurrency 4).
 *
 * So a poll remembers every request in flight when it was sent plus every
 * request started while it is out: those are the ones the snapshot may show.
 * Requests we aborted (the hub's client went away) may hold their slot
 * until llama.cpp notices; they count as ours ("draining") until a snapshot
 * shows the slots free or a few polls have passed.
 *
 * Pure bookkeeping (no I/O, no clock), unit-tested in tests/hub. */
#ifndef FERRY_SPOKE_SLOTS_H
#define FERRY_SPOKE_SLOTS_H

#include <stdbool.h>
#include <stdint.h>

/* Polls an aborted request may keep counting as ours. */
#define SPOKE_DRAIN_POLLS 3

/* Default of the /slots polls in a row that may time out before llama.cpp
 * counts as not ready (spoke -slow-polls). llama.cpp answers /slots from its main loop between two decode
 * steps, so a loaded machine delays the answer (410 ms measured with 8 CPU
 * hogs on 2 cores): a slow answer is a busy server, not a dead one, and
 * must not withdraw the spoke (nor lose what the last snapshot said). A
 * refused or reset connection, or a 5xx, still counts at once. */
#define SPOKE_SLOW_POLLS 5

typedef struct spoke_slots {
  uint32_t inflight;      /* our requests to llama.cpp in progress */
  uint32_t draining;      /* ours aborted before their end: llama.cpp may still hold their slots */
  uint32_t drain_polls;   /* poll results left before `draining` is forgotten */
  bool polling;           /* a /slots poll is out */
  uint32_t poll_ours;     /* ours the poll out may show busy: in flight at its send + started since */
  uint32_t poll_draining; /* `draining` when the poll out was sent */
  uint32_t busy_other;    /* slots busy with others' requests (last poll) */
  uint32_t timeouts;      /* polls in a row that timed out (0 after any answer) */
} spoke_slots_t;

void spoke_slots_init(spoke_slots_t *s);
/* One of our requests to llama.cpp starts. */
void spoke_slots_start(spoke_slots_t *s);
/* It ends: `aborted` when we cut it before llama.cpp finished it. */
void spoke_slots_end(spoke_slots_t *s, bool aborted);
/* A /slots poll goes out. */
void spoke_slots_poll_sent(spoke_slots_t *s);
/* Its answer: `busy` slots processing. Returns the new busy_other. */
uint32_t spoke_slots_poll_result(spoke_slots_t *s, uint32_t busy);
/* The poll failed (no snapshot): nothing learnt; the next poll starts afresh. */
void spoke_slots_poll_failed(spoke_slots_t *s);
/* The poll timed out: nothing learnt. Returns true while the last view
 * (llama.cpp ready, busy_other) still stands: fewer than `limit` timeouts
 * in a row (limit 0 or 1: every timeout counts as not ready). */
bool spoke_slots_poll_timed_out(spoke_slots_t *s, uint32_t limit);

#endif
