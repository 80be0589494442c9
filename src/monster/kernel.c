/* The kernel backend: the ops table over /dev/monster_sampler
 * (kmod/monster_sampler, ABI in <ferry/monster_ioctl.h>).
 *
 * One fd per handle, because the module keeps one pipe end and one wait
 * state per open file and releases both when the file goes (so a killed app
 * releases everything without any liveness scan). The context has its own
 * control fd for coordination, the barrier, the sampler and the status
 * views. A pipe's token is its fd; wait states are found by slot (slots are
 * unique machine-wide, so within this process too). */
#define _GNU_SOURCE
#include "backend.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define KDEV_PATH "/dev/monster_sampler"

typedef struct kstate {
    int ctl;                                /* control fd                      */
    pthread_mutex_t lock;                   /* guards wait_fd                  */
    int wait_fd[ZKPROLOGML_WAIT_STATES];    /* fd of this process's slot, -1   */
} kstate_t;

static int kopen_dev(void)
{
    int fd = open(KDEV_PATH, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return fmon_fail(-errno, "open %s: %s%s", KDEV_PATH, strerror(errno),
                         errno == ENOENT ? " (is monster_sampler.ko loaded?)" : "");
    return fd;
}

/* ioctl returning 0/count or -errno; EINTR is passed up (tools stop on it). */
static int kio(int fd, unsigned long cmd, void *arg)
{
    int rc = ioctl(fd, cmd, arg);
    return rc < 0 ? -errno : rc;
}

bool fmon_kernel_available(void)
{
    return access(KDEV_PATH, R_OK | W_OK) == 0;
}

static int k_open(void **state, const zkprologml_config_t *cfg)
{
    (void)cfg; /* capacities and rate are module parameters */
    kstate_t *k = calloc(1, sizeof(*k));
    if (!k)
        return fmon_fail(-ENOMEM, "out of memory");
    k->ctl = kopen_dev();
    if (k->ctl < 0) {
        int rc = k->ctl;
        free(k);
        /* No device: the backend is not available (monster.h's -ENOTSUP);
         * -EACCES and the rest are passed up as they are. */
        if (rc == -ENOENT || rc == -ENODEV || rc == -ENXIO)
            return fmon_fail(-ENOTSUP, "%s does not exist: load monster_sampler.ko", KDEV_PATH);
        return rc;
    }
    uint32_t abi = 0;
    int rc = kio(k->ctl, MONSTER_IOC_ABI_VERSION, &abi);
    if (rc < 0 || abi != MONSTER_ABI_VERSION) {
        close(k->ctl);
        free(k);
        return fmon_fail(-EPROTO, "monster_sampler.ko ABI %u, this library %u", abi,
                         MONSTER_ABI_VERSION);
    }
    pthread_mutex_init(&k->lock, NULL);
    for (int i = 0; i < ZKPROLOGML_WAIT_STATES; i++)
        k->wait_fd[i] = -1;
    *state = k;
    return 0;
}

static void k_close(void *state)
{
    kstate_t *k = state;
    for (int i = 0; i < ZKPROLOGML_WAIT_STATES; i++)
        if (k->wait_fd[i] >= 0)
            close(k->wait_fd[i]);
    close(k->ctl);
    pthread_mutex_destroy(&k->lock);
    free(k);
}

static int k_pipe_open(void *state, uint32_t ring, bool producer, uint64_t *token)
{
    (void)state;
    int fd = kopen_dev();
    if (fd < 0)
        return fd;
    int v = (int)ring | (producer ? MONSTER_PIPE_PRODUCER : 0);
    int rc = kio(fd, MONSTER_IOC_PIPE_OPEN, &v);
    if (rc < 0) {
        close(fd);
        return fmon_fail(rc, "MONSTER_IOC_PIPE_OPEN %u: %s", ring, strerror(-rc));
    }
    *token = (uint64_t)fd;
    return 0;
}

static void k_pipe_close(void *state, uint32_t ring, uint64_t token)
{
    (void)state;
    (void)ring;
    close((int)token); /* release() unregisters and wakes every waiter */
}

static int k_xfer(uint64_t token, unsigned long cmd, const void *s, int timeout_ms)
{
    struct monster_xfer x = {.sample = (uint64_t)(uintptr_t)s, .timeout_ms = timeout_ms};
    return kio((int)token, cmd, &x);
}

static int k_pipe_write(void *state, uint32_t ring, uint64_t token, const struct process_sample *s,
                        int timeout_ms)
{
    (void)state;
    (void)ring;
    return k_xfer(token, MONSTER_IOC_PIPE_WRITE_T, s, timeout_ms);
}

static int k_pipe_read(void *state, uint32_t ring, uint64_t token, struct process_sample *s,
                       int timeout_ms)
{
    (void)state;
    (void)ring;
    return k_xfer(token, MONSTER_IOC_PIPE_READ_T, s, timeout_ms);
}

static int k_wait_create(void *state, uint32_t shard, uint32_t *slot, uint64_t *sequence,
                         uint32_t *seen)
{
    kstate_t *k = state;
    int fd = kopen_dev();
    if (fd < 0)
        return fd;
    uint8_t sh = (uint8_t)shard; /* api.c checked 0..255 */
    int rc = kio(fd, MONSTER_IOC_WAIT_CREATE, &sh);
    struct monster_wait_id id;
    if (rc == 0)
        rc = kio(fd, MONSTER_IOC_WAIT_INFO, &id);
    if (rc < 0 || id.slot >= ZKPROLOGML_WAIT_STATES) {
        close(fd);
        rc = rc < 0 ? rc : -EIO;
        return fmon_fail(rc, "MONSTER_IOC_WAIT_CREATE shard %u: %s", shard, strerror(-rc));
    }
    pthread_mutex_lock(&k->lock);
    k->wait_fd[id.slot] = fd;
    pthread_mutex_unlock(&k->lock);
    *slot = id.slot;
    *sequence = id.sequence;
    *seen = 0; /* the module counts consumed coordinations per file */
    return 0;
}

static int wait_fd(kstate_t *k, uint32_t slot)
{
    pthread_mutex_lock(&k->lock);
    int fd = slot < ZKPROLOGML_WAIT_STATES ? k->wait_fd[slot] : -1;
    pthread_mutex_unlock(&k->lock);
    return fd;
}

static int k_wait_for_coord(void *state, uint32_t slot, uint64_t sequence, uint32_t *seen,
                            int timeout_ms)
{
    (void)sequence;
    (void)seen;
    int fd = wait_fd(state, slot);
    if (fd < 0)
        return -EIDRM;
    uint64_t t = (uint64_t)(int64_t)timeout_ms;
    return kio(fd, MONSTER_IOC_WAIT_COORD, &t);
}

static int k_signal_ready(void *state, uint32_t slot, uint64_t sequence)
{
    (void)sequence;
    int fd = wait_fd(state, slot);
    if (fd < 0)
        return -EIDRM;
    return kio(fd, MONSTER_IOC_SIGNAL_READY, NULL);
}

static void k_wait_free(void *state, uint32_t slot, uint64_t sequence)
{
    (void)sequence;
    kstate_t *k = state;
    pthread_mutex_lock(&k->lock);
    int fd = slot < ZKPROLOGML_WAIT_STATES ? k->wait_fd[slot] : -1;
    if (fd >= 0)
        k->wait_fd[slot] = -1;
    pthread_mutex_unlock(&k->lock);
    if (fd >= 0)
        close(fd);
}

static int k_coordinate_shard(void *state, uint32_t shard)
{
    kstate_t *k = state;
    uint8_t sh = (uint8_t)shard;
    return kio(k->ctl, MONSTER_IOC_COORD_SHARD, &sh);
}

static int k_wait_ready(void *state, uint32_t shard, uint32_t n, int timeout_ms)
{
    kstate_t *k = state;
    struct monster_barrier b = {.shard = shard, .n = n, .timeout_ms = timeout_ms};
    int rc = kio(k->ctl, MONSTER_IOC_WAIT_READY, &b);
    return rc < 0 ? rc : (int)b.ready;
}

static int k_read_samples(void *state, struct process_sample *out, size_t n, size_t *count)
{
    kstate_t *k = state;
    *count = 0;
    if (n == 0)
        return 0;
    struct monster_buf b = {.ptr = (uint64_t)(uintptr_t)out,
                            .n = n > UINT32_MAX ? UINT32_MAX : (uint32_t)n,
                            .timeout_ms = -1};
    int rc = kio(k->ctl, MONSTER_IOC_READ_SAMPLES, &b);
    if (rc < 0)
        return fmon_fail(rc, "MONSTER_IOC_READ_SAMPLES: %s", strerror(-rc));
    *count = b.count;
    return 0;
}

static int k_pipe_status(void *state, zkprologml_pipe_status_t *out)
{
    kstate_t *k = state;
    static const uint32_t primes[ZKPROLOGML_PIPES] = MONSTER_PRIMES_INIT;
    struct monster_pipe_info info[ZKPROLOGML_PIPES];
    struct monster_buf b = {.ptr = (uint64_t)(uintptr_t)info, .n = ZKPROLOGML_PIPES};
    int rc = kio(k->ctl, MONSTER_IOC_PIPE_STATUS, &b);
    if (rc < 0)
        return rc;
    for (uint32_t i = 0; i < ZKPROLOGML_PIPES; i++) {
        out[i] = (zkprologml_pipe_status_t){
            .id = i,
            .prime = primes[i],
            .producer_pid = i < b.count ? info[i].producer : 0,
            .consumer_pid = i < b.count ? info[i].consumer : 0,
            .readers = i < b.count ? info[i].readers : 0,
            .writers = i < b.count ? info[i].writers : 0,
            .closed = i < b.count ? info[i].closed : 0,
            .capacity = i < b.count ? info[i].capacity : 0,
            .count = i < b.count ? info[i].count : 0,
            .written = i < b.count ? info[i].written : 0,
            .read = i < b.count ? info[i].read : 0,
        };
    }
    return 0;
}

static int k_wait_status(void *state, zkprologml_wait_status_t *out)
{
    kstate_t *k = state;
    static struct monster_wait_info info[ZKPROLOGML_WAIT_STATES];
    static pthread_mutex_t info_lock = PTHREAD_MUTEX_INITIALIZER; /* guards info */
    pthread_mutex_lock(&info_lock);
    struct monster_buf b = {.ptr = (uint64_t)(uintptr_t)info, .n = ZKPROLOGML_WAIT_STATES};
    int rc = kio(k->ctl, MONSTER_IOC_WAIT_STATUS, &b);
    if (rc == 0) {
        for (uint32_t i = 0; i < ZKPROLOGML_WAIT_STATES; i++)
            out[i] = (zkprologml_wait_status_t){.id = i};
        for (uint32_t j = 0; j < b.count && j < ZKPROLOGML_WAIT_STATES; j++) {
            uint32_t s = info[j].id;
            if (s >= ZKPROLOGML_WAIT_STATES)
                continue;
            out[s] = (zkprologml_wait_status_t){.id = s,
                                                .in_use = 1,
                                                .pid = info[j].pid,
                                                .shard = info[j].shard,
                                                .sequence = info[j].sequence,
                                                .ready = info[j].ready};
        }
        rc = (int)b.count;
    }
    pthread_mutex_unlock(&info_lock);
    return rc;
}

static int k_log_read(void *state, zkprologml_log_entry_t *out, size_t n)
{
    kstate_t *k = state;
    struct monster_log_info info[MONSTER_LOG_ENTRIES];
    struct monster_buf b = {.ptr = (uint64_t)(uintptr_t)info,
                            .n = n < MONSTER_LOG_ENTRIES ? (uint32_t)n : MONSTER_LOG_ENTRIES};
    int rc = kio(k->ctl, MONSTER_IOC_LOG_READ, &b);
    if (rc < 0)
        return rc;
    for (uint32_t i = 0; i < b.count && i < n; i++)
        out[i] = (zkprologml_log_entry_t){.seq = info[i].seq,
                                          .timestamp_ns = info[i].timestamp_ns,
                                          .pid = info[i].pid,
                                          .shard = info[i].shard,
                                          .count = info[i].count};
    return (int)b.count;
}

const fmon_backend_ops_t fmon_kernel_backend = {
    .name = "kernel",
    .open = k_open,
    .close = k_close,
    .pipe_open = k_pipe_open,
    .pipe_close = k_pipe_close,
    .pipe_write = k_pipe_write,
    .pipe_read = k_pipe_read,
    .wait_create = k_wait_create,
    .wait_for_coord = k_wait_for_coord,
    .signal_ready = k_signal_ready,
    .wait_free = k_wait_free,
    .coordinate_shard = k_coordinate_shard,
    .wait_ready = k_wait_ready,
    .read_samples = k_read_samples,
    .pipe_status = k_pipe_status,
    .wait_status = k_wait_status,
    .log_read = k_log_read,
};
