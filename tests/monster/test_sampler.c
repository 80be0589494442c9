/* The sampler: real samples of the threads on this machine, with this
 * process among them and its CPU time showing up as deltas; the stat
 * parser copes with names holding spaces and parentheses. */
#include "monster_test.h"

#include <stdlib.h>


Test(sampler, parse_stat_with_awkward_comm, .fini = mt_cleanup)
{
    const char *line = "123 (a) (b c)) S 1 123 123 0 -1 4194560 100 0 0 0 "
                       "17 5 0 0 20 0 1 0 9999 1000000 250 18446744073709551615 1 1 0 0 0 0 0 "
                       "0 0 0 0 0 17 1 0 0 0 0 0";
    fmon_stat_t st;
    cr_assert_eq(fmon_parse_stat(line, &st), 0);
    cr_assert_str_eq(st.comm, "a) (b c)");
    cr_assert_eq(st.state, 'S');
    cr_assert_eq(st.utime, 17u);
    cr_assert_eq(st.stime, 5u);
    cr_assert_eq(st.start_time, 9999u);
    cr_assert_eq(st.rss_pages, 250u);
    cr_assert_eq(st.cpu, 1u);
    cr_assert_eq(fmon_parse_stat("123 (x S 1", &st), -EIO);
    cr_assert_eq(fmon_parse_stat("garbage", &st), -EIO);
    cr_assert_eq(fmon_parse_stat("1 (x) S 1 2", &st), -EIO, "too few fields");
}

static volatile uint64_t sink;

Test(sampler, samples_this_process_with_cpu_deltas, .fini = mt_cleanup)
{
    zkprologml_ctx_t *ctx = mt_open(8);
    size_t count = 7;
    cr_assert_eq(zkprologml_read_samples(ctx, NULL, 0, &count), 0);
    cr_assert_eq(count, 0u);
    cr_assert_eq(zkprologml_read_samples(ctx, NULL, 1, &count), -EINVAL);
    zkprologml_sample_t buf[256];
    bool seen_self = false, seen_cpu = false;
    /* Burn CPU between scans until our own sample shows it (bounded by the
     * test timeout, not by a clock in the test). */
    for (int round = 0; !(seen_self && seen_cpu); round++) {
        for (int i = 0; i < 2000000; i++)
            sink += (uint64_t)i * (uint64_t)round;
        cr_assert_eq(zkprologml_read_samples(ctx, buf, 256, &count), 0);
        cr_assert_gt(count, 0u);
        for (size_t i = 0; i < count; i++) {
            cr_assert_neq(memchr(buf[i].comm, '\0', sizeof(buf[i].comm)), NULL, "comm terminated");
            cr_assert_gt(buf[i].pid, 0u);
            cr_assert_gt(buf[i].timestamp_ns, 0u);
            if (buf[i].tid == (uint32_t)getpid()) {
                seen_self = true;
                cr_assert_eq(buf[i].pid, (uint32_t)getpid());
                cr_assert_gt(buf[i].rss_kb, 0u);
                if (buf[i].utime_delta_ns + buf[i].stime_delta_ns > 0)
                    seen_cpu = true;
            }
        }
    }
    zkprologml_close(ctx);
}
