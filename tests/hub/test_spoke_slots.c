/* The spoke's busy_other bookkeeping (apps/spoke/slots.c): which of
 * llama.cpp's busy slots belong to other clients. Pure logic, no sockets. */
#include <criterion/criterion.h>

#include "slots.h"

/* The cause of the half-second waits at concurrency 4: a request that ended
 * while the /slots poll was out still shows busy in the snapshot; the old
 * code subtracted the requests in flight when the answer ARRIVED (none), so
 * it reported a slot busy with someone else and the hub held its next job
 * for a whole poll period. Fails on the old code (busy_other 1). */
Test(spoke_slots, request_ending_during_the_poll_is_not_someone_elses) {
  spoke_slots_t s;
  spoke_slots_init(&s);
  spoke_slots_start(&s);
  spoke_slots_poll_sent(&s);
  spoke_slots_end(&s, false);         /* ends before the answer arrives */
  cr_expect_eq(spoke_slots_poll_result(&s, 1), 0, "our own ended request counted as another client's");
  cr_expect_eq(s.inflight, 0);
}

Test(spoke_slots, four_streams_turning_over_during_polls_never_count_as_others) {
  spoke_slots_t s;
  spoke_slots_init(&s);
  for (int i = 0; i < 4; i++) spoke_slots_start(&s);
  for (int round = 0; round < 50; round++) {
    spoke_slots_poll_sent(&s);
    /* llama.cpp's snapshot: all 4 busy; then one ends and is replaced */
    spoke_slots_end(&s, false);
    spoke_slots_start(&s);
    cr_assert_eq(spoke_slots_poll_result(&s, 4), 0, "round %d", round);
  }
}

Test(spoke_slots, request_started_during_the_poll_may_show_busy) {
  spoke_slots_t s;
  spoke_slots_init(&s);
  spoke_slots_poll_sent(&s);
  spoke_slots_start(&s);
  cr_expect_eq(spoke_slots_poll_result(&s, 1), 0);
}

Test(spoke_slots, other_clients_are_counted) {
  spoke_slots_t s;
  spoke_slots_init(&s);
  spoke_slots_poll_sent(&s);
  cr_expect_eq(spoke_slots_poll_result(&s, 2), 2);
  /* with ours: 2 of ours in flight, one ends during the poll, 3 busy: 1 other */
  spoke_slots_start(&s);
  spoke_slots_start(&s);
  spoke_slots_poll_sent(&s);
  spoke_slots_end(&s, false);
  cr_expect_eq(spoke_slots_poll_result(&s, 3), 1);
  /* the other client leaves: seen at the next poll */
  spoke_slots_poll_sent(&s);
  cr_expect_eq(spoke_slots_poll_result(&s, 1), 0);
}

Test(spoke_slots, aborted_request_counts_as_ours_until_its_slot_frees) {
  spoke_slots_t s;
  spoke_slots_init(&s);
  spoke_slots_start(&s);
  spoke_slots_end(&s, true);           /* we cut it: llama.cpp has not noticed yet */
  spoke_slots_poll_sent(&s);
  cr_expect_eq(spoke_slots_poll_result(&s, 1), 0, "our aborted request is not another client's");
  cr_expect_eq(s.draining, 1);
  spoke_slots_poll_sent(&s);
  cr_expect_eq(spoke_slots_poll_result(&s, 0), 0);
  cr_expect_eq(s.draining, 0, "the slot was seen free: nothing drains any more");
  /* from now on a busy slot is someone else's */
  spoke_slots_poll_sent(&s);
  cr_expect_eq(spoke_slots_poll_result(&s, 1), 1);
}

Test(spoke_slots, draining_is_forgotten_after_a_few_polls) {
  spoke_slots_t s;
  spoke_slots_init(&s);
  spoke_slots_start(&s);
  spoke_slots_end(&s, true);
  /* a slot stays busy: after SPOKE_DRAIN_POLLS polls it is taken for another client's */
  uint32_t other = 0;
  for (int i = 0; i < SPOKE_DRAIN_POLLS; i++) {
    spoke_slots_poll_sent(&s);
    other = spoke_slots_poll_result(&s, 1);
    cr_expect_eq(other, 0, "poll %d", i);
  }
  cr_expect_eq(s.draining, 0);
  spoke_slots_poll_sent(&s);
  cr_expect_eq(spoke_slots_poll_result(&s, 1), 1);
}

Test(spoke_slots, abort_during_the_poll_stays_for_the_next_one) {
  spoke_slots_t s;
  spoke_slots_init(&s);
  spoke_slots_start(&s);
  spoke_slots_poll_sent(&s);
  spoke_slots_end(&s, true);           /* in flight at the send: counted as ours there */
  cr_expect_eq(spoke_slots_poll_result(&s, 1), 0);
  cr_expect_eq(s.draining, 1, "not yet seen free");
  spoke_slots_poll_sent(&s);
  cr_expect_eq(spoke_slots_poll_result(&s, 1), 0, "still draining, not someone else's");
}

Test(spoke_slots, failed_poll_learns_nothing) {
  spoke_slots_t s;
  spoke_slots_init(&s);
  spoke_slots_poll_sent(&s);
  cr_expect_eq(spoke_slots_poll_result(&s, 1), 1);
  spoke_slots_poll_sent(&s);
  spoke_slots_poll_failed(&s);
  cr_expect_eq(s.busy_other, 1, "a failed poll keeps the last figure");
  cr_expect(!s.polling);
  spoke_slots_start(&s);
  cr_expect_eq(s.poll_ours, 0, "no poll out: nothing to remember");
  cr_expect_eq(s.inflight, 1);
}

/* A loaded llama.cpp answers /slots late (it answers between two decode
 * steps). A timed-out poll keeps the last view (busy_other, ready) until
 * `limit` timeouts in a row; any answer starts the count again. */
Test(spoke_slots, timeouts_keep_the_last_view_until_the_limit) {
  spoke_slots_t s;
  spoke_slots_init(&s);
  spoke_slots_poll_sent(&s);
  cr_assert_eq(spoke_slots_poll_result(&s, 1), 1);   /* someone else holds a slot */
  for (int i = 1; i < SPOKE_SLOW_POLLS; i++) {
    spoke_slots_poll_sent(&s);
    cr_assert(spoke_slots_poll_timed_out(&s, SPOKE_SLOW_POLLS), "timeout %d withdrew the view", i);
    cr_assert_eq(s.busy_other, 1, "timeout %d lost busy_other", i);
    cr_assert(!s.polling);
  }
  spoke_slots_poll_sent(&s);
  cr_expect(!spoke_slots_poll_timed_out(&s, SPOKE_SLOW_POLLS), "the limit's timeout must count as not ready");
  spoke_slots_poll_sent(&s);
  cr_expect(!spoke_slots_poll_timed_out(&s, SPOKE_SLOW_POLLS), "still not ready while timeouts go on");
  /* an answer: the count starts again */
  spoke_slots_poll_sent(&s);
  cr_expect_eq(spoke_slots_poll_result(&s, 0), 0);
  spoke_slots_poll_sent(&s);
  cr_expect(spoke_slots_poll_timed_out(&s, SPOKE_SLOW_POLLS), "an answer must reset the count");
  /* a failed poll (refused, 5xx) resets it too; limit 1 = every timeout counts */
  spoke_slots_poll_failed(&s);
  cr_expect_eq(s.timeouts, 0);
  cr_expect(!spoke_slots_poll_timed_out(&s, 1));
}
