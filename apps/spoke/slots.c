/* GoLlama spoke: bookkeeping of our llama.cpp requests against /slots
 * snapshots (see slots.h for why the snapshot's moment matters). */
#include "slots.h"

#include <string.h>

void spoke_slots_init(spoke_slots_t *s) { memset(s, 0, sizeof(*s)); }

void spoke_slots_start(spoke_slots_t *s) {
  s->inflight++;
  if (s->polling) s->poll_ours++;   /* it may have started before the snapshot */
}

void spoke_slots_end(spoke_slots_t *s, bool aborted) {
  if (s->inflight) s->inflight--;
  if (aborted) {
    /* llama.cpp frees the slot when it notices the closed connection */
    s->draining++;
    s->drain_polls = SPOKE_DRAIN_POLLS;
  }
}

void spoke_slots_poll_sent(spoke_slots_t *s) {
  s->polling = true;
  s->poll_ours = s->inflight;       /* an end during the poll still shows busy */
  s->poll_draining = s->draining;
}

uint32_t spoke_slots_poll_result(spoke_slots_t *s, uint32_t busy) {
  uint32_t ours = s->poll_ours;
  /* aborted ones still held count as ours; at most `busy` of them can be */
  uint32_t drain_seen = s->poll_draining < busy ? s->poll_draining : busy;
  uint64_t mine = (uint64_t)ours + drain_seen;
  s->busy_other = busy > mine ? (uint32_t)(busy - mine) : 0;
  /* aborted before the send and not busy beyond our live requests: freed.
   * Aborts during the poll (draining grew) stay for the next one. */
  uint32_t beyond_live = busy > ours ? busy - ours : 0;
  uint32_t kept = s->poll_draining < beyond_live ? s->poll_draining : beyond_live;
  s->draining = s->draining - s->poll_draining + kept;
  if (s->drain_polls && --s->drain_polls == 0) s->draining = 0;
  s->polling = false;
  s->timeouts = 0;
  return s->busy_other;
}

void spoke_slots_poll_failed(spoke_slots_t *s) {
  s->polling = false;
  s->timeouts = 0;
}

bool spoke_slots_poll_timed_out(spoke_slots_t *s, uint32_t limit) {
  s->polling = false;
  if (s->timeouts < limit) s->timeouts++;   /* saturates: stays "not ready" */
  return s->timeouts < limit;
}
