/* The user backend's segment: its name, layout, creation and validation.
 *
 * Creation without races: every opener opens (or creates) the file with mode
 * 0600 and then takes an OFD write lock on its first byte for the few
 * microseconds of "initialise or validate". The first one finds it empty (or
 * with no magic: its creator died half-way, which the released lock proves)
 * and initialises it, storing the magic last; the others validate it. */
#define _GNU_SOURCE
#include "segment.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static const uint32_t primes[ZKPROLOGML_PIPES] = MONSTER_PRIMES_INIT;

static size_t align64(size_t x)
{
    return (x + 63) & ~(size_t)63;
}

const char *fmon_seg_default_name(void)
{
    const char *env = getenv("FERRY_MONSTER_NAME");
    return env && *env ? env : "default";
}

int fmon_seg_path(char *buf, size_t len, const char *name)
{
    if (!name)
        name = fmon_seg_default_name();
    size_t n = strlen(name);
    if (n == 0 || n > FMON_NAME_MAX)
        return fmon_fail(-EINVAL, "segment name must be 1..%d characters", FMON_NAME_MAX);
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return fmon_fail(-EINVAL, "segment name may hold only [A-Za-z0-9_-]");
    }
    snprintf(buf, len, "/ferry-%u-monster-%s", (unsigned)getuid(), name);
    return 0;
}

/* Offsets of every section for the given capacities; returns the total. */
static size_t layout(const uint32_t *cap, uint64_t *ring_offset)
{
    size_t off = align64(sizeof(fmon_header_t));
    off += align64(ZKPROLOGML_PIPES * sizeof(fmon_pipe_t));
    off += align64(FMON_MAX_REGS * sizeof(fmon_reg_t));
    off += align64(ZKPROLOGML_WAIT_STATES * sizeof(fmon_wait_t));
    for (int i = 0; i < ZKPROLOGML_PIPES; i++) {
        ring_offset[i] = off;
        off += align64((size_t)cap[i] * sizeof(struct process_sample));
    }
    return off;
}

static void map_sections(fmon_seg_t *seg)
{
    char *base = (char *)seg->hdr;
    size_t off = align64(sizeof(fmon_header_t));
    seg->pipes = (fmon_pipe_t *)(base + off);
    off += align64(ZKPROLOGML_PIPES * sizeof(fmon_pipe_t));
    seg->regs = (fmon_reg_t *)(base + off);
    off += align64(FMON_MAX_REGS * sizeof(fmon_reg_t));
    seg->waits = (fmon_wait_t *)(base + off);
}

static int init_segment(fmon_seg_t *seg, int fd, const uint32_t *cap)
{
    uint64_t ring_offset[ZKPROLOGML_PIPES];
    size_t total = layout(cap, ring_offset);
    /* Start from zeroes: a half-initialised file from a dead creator is cut. */
    if (ftruncate(fd, 0) < 0 || ftruncate(fd, (off_t)total) < 0)
        return fmon_fail(-errno, "sizing the segment: %s", strerror(errno));
    void *p = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        return fmon_fail(-errno, "mapping the segment: %s", strerror(errno));
    fmon_header_t *h = p;
    seg->hdr = h;
    seg->size = total;
    map_sections(seg);
    h->version = FMON_LAYOUT_VERSION;
    h->abi_version = MONSTER_ABI_VERSION;
    h->header_size = sizeof(fmon_header_t);
    h->pipe_size = sizeof(fmon_pipe_t);
    h->reg_size = sizeof(fmon_reg_t);
    h->wait_size = sizeof(fmon_wait_t);
    h->sample_size = sizeof(struct process_sample);
    h->npipes = ZKPROLOGML_PIPES;
    h->nregs = FMON_MAX_REGS;
    h->nwaits = ZKPROLOGML_WAIT_STATES;
    h->nlog = ZKPROLOGML_LOG_ENTRIES;
    memcpy(h->capacity, cap, sizeof(h->capacity));
    memcpy(h->ring_offset, ring_offset, sizeof(h->ring_offset));
    h->total_size = total;
    h->creator_uid = (uint32_t)getuid();
    h->creator_pid = (int32_t)getpid();
    int rc = fmon_mutex_init(&h->lock); /* pipe locks: zero is unlocked */
    if (rc < 0) {
        munmap(p, total);
        seg->hdr = NULL;
        return fmon_fail(rc, "initialising the segment's locks");
    }
    atomic_store_explicit(&h->magic, FMON_MAGIC, memory_order_release);
    return 0;
}

#define CHECK_FIELD(field, want)                                                          \
    do {                                                                                  \
        if ((uint64_t)(h->field) != (uint64_t)(want))                                     \
            return fmon_fail(-EPROTO, "segment %s was made by an incompatible binary: " #field \
                             " is %llu, this binary expects %llu (run `monster-status reset`)", \
                             path, (unsigned long long)(h->field), (unsigned long long)(want)); \
    } while (0)

static int validate(fmon_seg_t *seg, const char *path, size_t file_size)
{
    const fmon_header_t *h = seg->hdr;
    CHECK_FIELD(version, FMON_LAYOUT_VERSION);
    CHECK_FIELD(abi_version, MONSTER_ABI_VERSION);
    CHECK_FIELD(header_size, sizeof(fmon_header_t));
    CHECK_FIELD(pipe_size, sizeof(fmon_pipe_t));
    CHECK_FIELD(reg_size, sizeof(fmon_reg_t));
    CHECK_FIELD(wait_size, sizeof(fmon_wait_t));
    CHECK_FIELD(sample_size, sizeof(struct process_sample));
    CHECK_FIELD(npipes, ZKPROLOGML_PIPES);
    CHECK_FIELD(nregs, FMON_MAX_REGS);
    CHECK_FIELD(nwaits, ZKPROLOGML_WAIT_STATES);
    CHECK_FIELD(nlog, ZKPROLOGML_LOG_ENTRIES);
    uint32_t cap[ZKPROLOGML_PIPES];
    for (int i = 0; i < ZKPROLOGML_PIPES; i++) {
        cap[i] = h->capacity[i];
        if (cap[i] == 0 || cap[i] > ZKPROLOGML_MAX_CAPACITY)
            return fmon_fail(-EPROTO, "segment %s: pipe %d capacity %u out of range", path, i,
                             cap[i]);
    }
    uint64_t ring_offset[ZKPROLOGML_PIPES];
    size_t total = layout(cap, ring_offset);
    for (int i = 0; i < ZKPROLOGML_PIPES; i++)
        CHECK_FIELD(ring_offset[i], ring_offset[i]);
    CHECK_FIELD(total_size, total);
    if (file_size < total)
        return fmon_fail(-EPROTO, "segment %s is %zu bytes, its layout needs %zu", path,
                         file_size, total);
    memcpy(seg->capacity, cap, sizeof(cap));
    for (int i = 0; i < ZKPROLOGML_PIPES; i++)
        seg->ring[i] = (struct process_sample *)((char *)seg->hdr + ring_offset[i]);
    return 0;
}

static int lock_file(int fd, short type)
{
    struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
    while (fcntl(fd, type == F_UNLCK ? F_OFD_SETLK : F_OFD_SETLKW, &fl) < 0)
        if (errno != EINTR)
            return -errno;
    return 0;
}

/* Opens or creates the file and maps a validated segment into seg. */
static int attach(fmon_seg_t *seg, const char *path, const uint32_t *cap)
{
    int fd = shm_open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return fmon_fail(-errno, "shm_open %s: %s", path, strerror(errno));
    int rc = lock_file(fd, F_WRLCK);
    if (rc < 0) {
        close(fd);
        return fmon_fail(rc, "locking %s: %s", path, strerror(-rc));
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        rc = fmon_fail(-errno, "fstat %s: %s", path, strerror(errno));
        goto out;
    }
    if (st.st_uid != getuid() || (st.st_mode & 077)) {
        rc = fmon_fail(-EACCES, "segment %s belongs to uid %u with mode %o: refusing it", path,
                       (unsigned)st.st_uid, (unsigned)(st.st_mode & 0777));
        goto out;
    }
    uint64_t magic = 0;
    if ((size_t)st.st_size >= sizeof(fmon_header_t) &&
        pread(fd, &magic, sizeof(magic), offsetof(fmon_header_t, magic)) != sizeof(magic))
        magic = 0;
    if (magic == 0) {
        rc = init_segment(seg, fd, cap);
        if (rc == 0)
            rc = validate(seg, path, seg->size);
        goto out;
    }
    if (magic != FMON_MAGIC) {
        rc = fmon_fail(-EPROTO, "%s is not a Monster segment (bad magic)", path);
        goto out;
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        rc = fmon_fail(-errno, "mapping %s: %s", path, strerror(errno));
        goto out;
    }
    seg->hdr = p;
    seg->size = (size_t)st.st_size;
    map_sections(seg);
    rc = validate(seg, path, seg->size);
out:
    if (rc < 0 && seg->hdr) {
        munmap(seg->hdr, seg->size);
        seg->hdr = NULL;
    }
    /* Unlock explicitly: the mapping keeps the open file description (and
     * so an OFD lock) alive after close(). */
    lock_file(fd, F_UNLCK);
    close(fd);
    return rc;
}

int fmon_seg_open(fmon_seg_t **out, const zkprologml_config_t *cfg)
{
    char path[96];
    int rc = fmon_seg_path(path, sizeof(path), cfg->name);
    if (rc < 0)
        return rc;
    uint32_t cap[ZKPROLOGML_PIPES];
    for (int i = 0; i < ZKPROLOGML_PIPES; i++) {
        cap[i] = cfg->capacity[i] ? cfg->capacity[i] : ZKPROLOGML_DEFAULT_CAPACITY;
        if (cap[i] > ZKPROLOGML_MAX_CAPACITY)
            return fmon_fail(-EINVAL, "pipe %d capacity %u: at most %u", i, cap[i],
                             ZKPROLOGML_MAX_CAPACITY);
    }
    uint32_t hz = cfg->sample_hz ? cfg->sample_hz : ZKPROLOGML_DEFAULT_HZ;
    if (hz > ZKPROLOGML_MAX_HZ)
        return fmon_fail(-EINVAL, "sample rate %u Hz: at most %u", hz, ZKPROLOGML_MAX_HZ);
    fmon_seg_t *seg = calloc(1, sizeof(*seg));
    if (!seg)
        return -ENOMEM;
    seg->pid = getpid();
    rc = fmon_proc_start_time(seg->pid, &seg->start_time);
    if (rc < 0)
        seg->start_time = 0; /* /proc unreadable: liveness falls back to kill(0) */
    rc = fmon_sampler_init(&seg->sampler, hz);
    if (rc == 0)
        rc = -pthread_mutex_init(&seg->sampler_lock, NULL);
    if (rc == 0)
        rc = attach(seg, path, cap);
    if (rc < 0) {
        fmon_sampler_destroy(&seg->sampler);
        free(seg);
        return rc;
    }
    *out = seg;
    return 0;
}

void fmon_seg_close(fmon_seg_t *seg)
{
    if (!seg)
        return;
    munmap(seg->hdr, seg->size);
    fmon_sampler_destroy(&seg->sampler);
    pthread_mutex_destroy(&seg->sampler_lock);
    free(seg);
}

uint32_t fmon_prime(uint32_t i)
{
    return i < ZKPROLOGML_PIPES ? primes[i] : 0;
}
