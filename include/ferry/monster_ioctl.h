/* Monster ABI: the records and constants shared by every Monster backend,
 * the user-space library (src/monster) and the kernel module
 * monster_sampler.ko (issue 11), so the two can never drift apart.
 *
 * Only fixed-width UAPI types (<linux/types.h>, <linux/ioctl.h>): this header
 * is included unchanged by kernel code and by user programs. Layout changes
 * bump MONSTER_ABI_VERSION; every struct has a _Static_assert on its size.
 */
#ifndef FERRY_MONSTER_IOCTL_H
#define FERRY_MONSTER_IOCTL_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define MONSTER_ABI_VERSION 1

#define MONSTER_NUM_PIPES 15         /* pipe (ring) ids 0..14, one per Monster prime */
#define MONSTER_NUM_WAIT_STATES 256  /* wait state slots                           */
#define MONSTER_NUM_SHARDS 256       /* shard ids 0..255                            */
#define MONSTER_COMM_LEN 16          /* like TASK_COMM_LEN, NUL-terminated          */

/* The 15 primes dividing the order of the Monster group; pipe i is named
 * after MONSTER_PRIMES[i]. */
#define MONSTER_PRIMES_INIT {2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 41, 47, 59, 71}

/* One sample of one thread, 64 bytes (one cache line). */
struct process_sample {
    __u32 pid;             /* thread group id (process)                          */
    __u32 tid;             /* thread id                                          */
    __u32 cpu;             /* CPU the thread last ran on                         */
    __u8 state;            /* scheduler state letter: 'R', 'S', 'D', 'Z', ...    */
    __u8 flags;            /* MONSTER_SAMPLE_* bits                              */
    __u16 reserved;        /* zero                                               */
    __u64 timestamp_ns;    /* CLOCK_MONOTONIC when the sample was taken          */
    __u64 utime_delta_ns;  /* user CPU time since this thread's previous sample  */
    __u64 stime_delta_ns;  /* system CPU time since its previous sample          */
    __u64 rss_kb;          /* resident set size of the process, KiB              */
    char comm[MONSTER_COMM_LEN]; /* thread name, NUL-terminated                  */
};

#define MONSTER_SAMPLE_FIRST 0x01u  /* first sample of this thread: deltas are 0 */

#ifdef __cplusplus
static_assert(sizeof(struct process_sample) == 64, "process_sample is 64 bytes");
#else
_Static_assert(sizeof(struct process_sample) == 64, "process_sample is 64 bytes");
#endif

/* The spec's ioctls on /dev/monster_sampler (kernel backend, issue 11).
 * Numbers and argument types exactly as the spec shows them; commands the
 * API needs beyond these are numbered from 8 by the kernel issue. */
#define MONSTER_IOC_MAGIC 'M'

#define MONSTER_IOC_PIPE_OPEN    _IOW(MONSTER_IOC_MAGIC, 1, int)
#define MONSTER_IOC_PIPE_CLOSE   _IO(MONSTER_IOC_MAGIC, 2)
#define MONSTER_IOC_PIPE_READ    _IOR(MONSTER_IOC_MAGIC, 3, struct process_sample)
#define MONSTER_IOC_PIPE_WRITE   _IOW(MONSTER_IOC_MAGIC, 4, struct process_sample)
#define MONSTER_IOC_WAIT_CREATE  _IOW(MONSTER_IOC_MAGIC, 5, __u8)
#define MONSTER_IOC_WAIT_COORD   _IOW(MONSTER_IOC_MAGIC, 6, __u64)
#define MONSTER_IOC_COORD_SHARD  _IOW(MONSTER_IOC_MAGIC, 7, __u8)

#endif
