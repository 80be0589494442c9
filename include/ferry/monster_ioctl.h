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
#define MONSTER_SAMPLE_USER 0x02u   /* kernel sampler: the CPU was in user mode  */
#define MONSTER_SAMPLE_KERNEL 0x04u /* kernel sampler: the CPU was in kernel mode */

#ifdef __cplusplus
static_assert(sizeof(struct process_sample) == 64, "process_sample is 64 bytes");
#else
_Static_assert(sizeof(struct process_sample) == 64, "process_sample is 64 bytes");
#endif

/* The spec's ioctls on /dev/monster_sampler (kernel backend, issue 11).
 * Numbers and argument types exactly as the spec shows them; commands the
 * API needs beyond these are numbered from 8 (below).
 *
 * Per open file (one fd = one handle): at most one pipe end and at most one
 * wait state. Closing the fd (or the process dying) releases both and wakes
 * every peer blocked on them.
 *   PIPE_OPEN   int: ring id 0..14, | MONSTER_PIPE_PRODUCER for the writing
 *               end (without it the fd is a consumer, as in the spec's
 *               example); -EBUSY if the fd already has a pipe end.
 *   PIPE_READ/PIPE_WRITE block without limit; PIPE_READ_T/PIPE_WRITE_T take
 *               a timeout (0 try: -EAGAIN, < 0 forever, > 0 ms: -ETIME).
 *   WAIT_CREATE __u8 shard; WAIT_COORD __u64 = timeout in ms read as a signed
 *               64-bit value (0 try, < 0 forever). */
#define MONSTER_IOC_MAGIC 'M'

#define MONSTER_IOC_PIPE_OPEN    _IOW(MONSTER_IOC_MAGIC, 1, int)
#define MONSTER_IOC_PIPE_CLOSE   _IO(MONSTER_IOC_MAGIC, 2)
#define MONSTER_IOC_PIPE_READ    _IOR(MONSTER_IOC_MAGIC, 3, struct process_sample)
#define MONSTER_IOC_PIPE_WRITE   _IOW(MONSTER_IOC_MAGIC, 4, struct process_sample)
#define MONSTER_IOC_WAIT_CREATE  _IOW(MONSTER_IOC_MAGIC, 5, __u8)
#define MONSTER_IOC_WAIT_COORD   _IOW(MONSTER_IOC_MAGIC, 6, __u64)
#define MONSTER_IOC_COORD_SHARD  _IOW(MONSTER_IOC_MAGIC, 7, __u8)

#define MONSTER_PIPE_PRODUCER 0x100 /* PIPE_OPEN flag: the writing end */
#define MONSTER_PIPE_CAPACITY_MAX 65536u /* module parameter capacity, at most */
#define MONSTER_LOG_ENTRIES 64           /* coordination log ring              */

/* PIPE_READ_T / PIPE_WRITE_T argument. */
struct monster_xfer {
    __u64 sample;      /* user pointer to one struct process_sample      */
    __s32 timeout_ms;  /* 0 try, < 0 forever, > 0 milliseconds            */
    __u32 reserved;    /* zero                                            */
};

/* WAIT_INFO result: identity of the fd's wait state. */
struct monster_wait_id {
    __u32 slot;        /* 0..255                                          */
    __u32 reserved;    /* zero                                            */
    __u64 sequence;    /* creation order, increasing over the module's life */
};

/* WAIT_READY argument (the coordinator's barrier). */
struct monster_barrier {
    __u32 shard;       /* 0..255                                          */
    __u32 n;           /* apps that must be ready, 0..256                 */
    __s32 timeout_ms;  /* 0 try, < 0 forever, > 0 milliseconds            */
    __u32 ready;       /* out: apps ready when it returned                */
};

/* READ_SAMPLES / PIPE_STATUS / WAIT_STATUS / LOG_READ argument: a user
 * buffer of n records; count is set to the records written. */
struct monster_buf {
    __u64 ptr;         /* user pointer to n records                       */
    __u32 n;           /* records the buffer holds                        */
    __u32 count;       /* out: records written                            */
    __s32 timeout_ms;  /* READ_SAMPLES: wait for the first sample (0 try)   */
    __u32 reserved;    /* zero                                            */
};

/* PIPE_STATUS record (one per pipe, 15). */
struct monster_pipe_info {
    __u32 id;          /* 0..14                                           */
    __s32 producer;    /* last registered producer pid, 0 none            */
    __s32 consumer;    /* last registered consumer pid, 0 none            */
    __u32 readers;     /* registered consumers                            */
    __u32 writers;     /* registered producers                            */
    __u32 closed;      /* a side had registered and is all gone           */
    __u32 capacity;    /* ring size in samples                            */
    __u32 count;       /* samples in the ring                             */
    __u64 written;     /* samples written this session                   */
    __u64 read;        /* samples read this session                      */
};

/* WAIT_STATUS record (one per slot in use). */
struct monster_wait_info {
    __u32 id;          /* slot 0..255                                     */
    __s32 pid;         /* owner                                           */
    __u32 shard;       /* 0..255                                          */
    __u32 ready;       /* signalled since the last coordination           */
    __u64 sequence;    /* creation order                                  */
};

/* LOG_READ record, oldest first. */
struct monster_log_info {
    __u64 seq;         /* 1, 2, ... since the module was loaded           */
    __u64 timestamp_ns;/* ktime_get_ns() (CLOCK_MONOTONIC)                */
    __s32 pid;         /* the coordinator                                 */
    __u32 shard;       /* 0..255                                          */
    __u32 count;       /* apps coordinated                                */
    __u32 reserved;    /* zero                                            */
};

#define MONSTER_IOC_PIPE_READ_T   _IOW(MONSTER_IOC_MAGIC, 8, struct monster_xfer)
#define MONSTER_IOC_PIPE_WRITE_T  _IOW(MONSTER_IOC_MAGIC, 9, struct monster_xfer)
#define MONSTER_IOC_SIGNAL_READY  _IO(MONSTER_IOC_MAGIC, 10)
#define MONSTER_IOC_WAIT_FREE     _IO(MONSTER_IOC_MAGIC, 11)
#define MONSTER_IOC_WAIT_INFO     _IOR(MONSTER_IOC_MAGIC, 12, struct monster_wait_id)
#define MONSTER_IOC_WAIT_READY    _IOWR(MONSTER_IOC_MAGIC, 13, struct monster_barrier)
#define MONSTER_IOC_READ_SAMPLES  _IOWR(MONSTER_IOC_MAGIC, 14, struct monster_buf)
#define MONSTER_IOC_PIPE_STATUS   _IOWR(MONSTER_IOC_MAGIC, 15, struct monster_buf)
#define MONSTER_IOC_WAIT_STATUS   _IOWR(MONSTER_IOC_MAGIC, 16, struct monster_buf)
#define MONSTER_IOC_LOG_READ      _IOWR(MONSTER_IOC_MAGIC, 17, struct monster_buf)
#define MONSTER_IOC_ABI_VERSION   _IOR(MONSTER_IOC_MAGIC, 18, __u32)

#ifdef __cplusplus
static_assert(sizeof(struct monster_xfer) == 16, "monster_xfer");
static_assert(sizeof(struct monster_buf) == 24, "monster_buf");
static_assert(sizeof(struct monster_pipe_info) == 48, "monster_pipe_info");
static_assert(sizeof(struct monster_wait_info) == 24, "monster_wait_info");
static_assert(sizeof(struct monster_log_info) == 32, "monster_log_info");
#else
_Static_assert(sizeof(struct monster_xfer) == 16, "monster_xfer");
_Static_assert(sizeof(struct monster_buf) == 24, "monster_buf");
_Static_assert(sizeof(struct monster_pipe_info) == 48, "monster_pipe_info");
_Static_assert(sizeof(struct monster_wait_info) == 24, "monster_wait_info");
_Static_assert(sizeof(struct monster_log_info) == 32, "monster_log_info");
#endif

#endif
