/* The segment: config checks, layout, creation by the server (with stale
 * segment take-over) and validation by workers.
 *
 * Ownership is an OFD lock on byte 0 of the shm file held by the server for
 * its lifetime. The kernel drops it when the server dies however it dies, so
 * "can I take the lock?" is an exact staleness test with no pid-reuse window;
 * unlike a classic fcntl lock, closing some other fd of the same file (a
 * worker thread in the server's process) does not drop it. A fork child
 * would share the lock through the inherited fd, so an atfork handler closes
 * those fds in children. owner_pid/owner_start in the header are for
 * messages and for workers' diagnostics. */
#define _GNU_SOURCE
#include "segment.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

_Static_assert(sizeof(fshm_slot_t) == 64, "slot is one cache line");
_Static_assert(sizeof(fshm_wentry_t) == 128, "worker entry is two cache lines");
_Static_assert(sizeof(fshm_cell_t) == 16, "ring cell is two words");
_Static_assert(sizeof(fshm_hdr_t) <= 4096, "header fits its page");

#define FSHM_PAGE 4096ull
#define FSHM_SEG_MAX (16ull << 30) /* refuse configs that would map more */

void fshm_config_default(fshm_config_t *cfg)
{
    cfg->name = "kolosal";
    cfg->ring_slots = 1024;
    cfg->payload_max = 64 * 1024;
    cfg->max_workers = 64;
    cfg->max_attempts = 3;
    cfg->heartbeat_ms = 500;
}

static bool name_ok(const char *name)
{
    if (!name)
        return false;
    size_t n = strlen(name);
    if (n < 1 || n > 32)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

int fshm_segment_name(const char *name, char *buf, size_t size)
{
    if (!name_ok(name))
        return fshm__fail(-EINVAL, "name must match [A-Za-z0-9_-]{1,32}");
    int n = snprintf(buf, size, "/ferry-%u-%s", (unsigned)getuid(), name);
    if (n < 0 || (size_t)n >= size)
        return -ENAMETOOLONG;
    return 0;
}

int fshm__config_resolve(fshm_config_t *out, const fshm_config_t *in)
{
    fshm_config_t c;
    fshm_config_default(&c);
    if (in) {
        c.name = in->name;
        if (in->ring_slots)
            c.ring_slots = in->ring_slots;
        if (in->payload_max)
            c.payload_max = in->payload_max;
        if (in->max_workers)
            c.max_workers = in->max_workers;
        if (in->max_attempts)
            c.max_attempts = in->max_attempts;
        if (in->heartbeat_ms)
            c.heartbeat_ms = in->heartbeat_ms;
    }
    if (!name_ok(c.name))
        return fshm__fail(-EINVAL, "name must match [A-Za-z0-9_-]{1,32}");
    /* ring_slots <= 65536: a task id keeps the slot index in 16 bits. */
    if (c.ring_slots < 2 || c.ring_slots > 65536 || (c.ring_slots & (c.ring_slots - 1)))
        return fshm__fail(-EINVAL, "ring_slots %u: need a power of two in 2..65536",
                          c.ring_slots);
    if (c.payload_max > (16u << 20))
        return fshm__fail(-EINVAL, "payload_max %u: limit is 16 MiB", c.payload_max);
    /* max_workers < 65535: a slot word keeps the owner index in 16 bits. */
    if (c.max_workers > 4096)
        return fshm__fail(-EINVAL, "max_workers %u: limit is 4096", c.max_workers);
    if (c.max_attempts > 100)
        return fshm__fail(-EINVAL, "max_attempts %u: limit is 100", c.max_attempts);
    if (c.heartbeat_ms < 10 || c.heartbeat_ms > 60000)
        return fshm__fail(-EINVAL, "heartbeat_ms %u: need 10..60000", c.heartbeat_ms);
    *out = c;
    return 0;
}

static uint64_t align_up(uint64_t v, uint64_t a)
{
    return (v + a - 1) / a * a;
}

int fshm__layout(const fshm_config_t *cfg, fshm_layout_t *lay)
{
    uint64_t off = FSHM_PAGE; /* the header page */
    lay->payload_stride = (uint32_t)align_up(cfg->payload_max, 64);
    /* Completion ring twice the slots: a slot's ticket can briefly be there
     * twice after a worker died between publishing and the server's reap. */
    lay->cmp_slots = cfg->ring_slots * 2;
    lay->off_req = off;
    off += align_up(fshm__ring_bytes(cfg->ring_slots), FSHM_PAGE);
    lay->off_cmp = off;
    off += align_up(fshm__ring_bytes(lay->cmp_slots), FSHM_PAGE);
    lay->off_workers = off;
    off += align_up((uint64_t)cfg->max_workers * sizeof(fshm_wentry_t), FSHM_PAGE);
    lay->off_slots = off;
    off += align_up((uint64_t)cfg->ring_slots * sizeof(fshm_slot_t), FSHM_PAGE);
    lay->off_payload = off;
    off += (uint64_t)cfg->ring_slots * 2 * lay->payload_stride;
    lay->total = align_up(off, FSHM_PAGE);
    if (lay->total > FSHM_SEG_MAX)
        return fshm__fail(-EINVAL, "segment would be %llu bytes (limit %llu)",
                          (unsigned long long)lay->total, (unsigned long long)FSHM_SEG_MAX);
    return 0;
}

/* Pointers into the mapping, from this process's own layout. */
static void seg_views(fshm_seg_t *seg, bool format)
{
    seg->hdr = (fshm_hdr_t *)seg->base;
    void *req = seg->base + seg->lay.off_req, *cmp = seg->base + seg->lay.off_cmp;
    if (format) {
        fshm__ring_init(&seg->req, req, seg->cfg.ring_slots);
        fshm__ring_init(&seg->cmp, cmp, seg->lay.cmp_slots);
    } else {
        fshm__ring_attach(&seg->req, req, seg->cfg.ring_slots);
        fshm__ring_attach(&seg->cmp, cmp, seg->lay.cmp_slots);
    }
    seg->workers = (fshm_wentry_t *)(seg->base + seg->lay.off_workers);
    seg->slots = (fshm_slot_t *)(seg->base + seg->lay.off_slots);
    seg->payload = seg->base + seg->lay.off_payload;
}

/* ---- owner lock and its fork handling ---- */

#define FSHM_MAX_LOCK_FDS 32
static _Atomic int lock_fds[FSHM_MAX_LOCK_FDS]; /* fd + 1 of each open server; 0 empty */
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* In a fork child the server's fd would keep the owner lock alive after the
 * server died; the child never uses it, so close it there. Async-signal-safe. */
static void atfork_child(void)
{
    for (int i = 0; i < FSHM_MAX_LOCK_FDS; i++) {
        int v = atomic_exchange(&lock_fds[i], 0);
        if (v)
            close(v - 1);
    }
}

static void atfork_install(void)
{
    pthread_atfork(NULL, NULL, atfork_child);
}

static void lock_fd_register(int fd)
{
    pthread_once(&atfork_once, atfork_install);
    for (int i = 0; i < FSHM_MAX_LOCK_FDS; i++) {
        int expected = 0;
        if (atomic_compare_exchange_strong(&lock_fds[i], &expected, fd + 1))
            return;
    }
    /* Table full: children of this process may then keep the lock. */
}

static void lock_fd_unregister(int fd)
{
    for (int i = 0; i < FSHM_MAX_LOCK_FDS; i++) {
        int expected = fd + 1;
        if (atomic_compare_exchange_strong(&lock_fds[i], &expected, 0))
            return;
    }
}

static int owner_lock(int fd)
{
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
    if (fcntl(fd, F_OFD_SETLK, &fl) < 0)
        return (errno == EACCES || errno == EAGAIN) ? -EAGAIN : -errno;
    return 0;
}

bool fshm__seg_owner_alive(const fshm_seg_t *seg)
{
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
    if (fcntl(seg->fd, F_OFD_GETLK, &fl) < 0)
        return true; /* cannot tell: do not declare a live server dead */
    return fl.l_type != F_UNLCK;
}

/* ---- server side ---- */

static void format(fshm_seg_t *seg)
{
    fshm_hdr_t *h = seg->hdr;
    uint64_t start = 0;
    fshm__proc_stat(getpid(), &start, NULL);

    /* ftruncate of a new file gave zeros: FREE slots and workers, gen 0. */
    h->version = FSHM_LAYOUT_VERSION;
    h->hdr_size = sizeof(fshm_hdr_t);
    h->slot_size = sizeof(fshm_slot_t);
    h->wentry_size = sizeof(fshm_wentry_t);
    h->cell_size = sizeof(fshm_cell_t);
    h->ring_slots = seg->cfg.ring_slots;
    h->payload_max = seg->cfg.payload_max;
    h->max_workers = seg->cfg.max_workers;
    h->max_attempts = seg->cfg.max_attempts;
    h->heartbeat_ms = seg->cfg.heartbeat_ms;
    h->total_size = seg->lay.total;
    h->off_req = seg->lay.off_req;
    h->off_cmp = seg->lay.off_cmp;
    h->off_workers = seg->lay.off_workers;
    h->off_slots = seg->lay.off_slots;
    h->off_payload = seg->lay.off_payload;
    h->cmp_slots = seg->lay.cmp_slots;
    h->payload_stride = seg->lay.payload_stride;
    h->owner_pid = getpid();
    h->owner_uid = getuid();
    h->owner_start = start;
    atomic_store(&h->state, FSHM_SEG_OPEN);
    /* Last: a worker that sees the magic sees everything above. */
    atomic_store_explicit(&h->magic, FSHM_MAGIC, memory_order_release);
}

static int create_fresh(fshm_seg_t *seg, int fd)
{
    int rc = owner_lock(fd);
    if (rc == -EAGAIN)
        return fshm__fail(-EEXIST, "%s: another server took it while we created it", seg->path);
    if (rc < 0)
        return fshm__fail(rc, "%s: lock: %s", seg->path, strerror(-rc));
    /* The umask may have cleared bits; make it exactly owner read/write. */
    if (fchmod(fd, 0600) < 0 || ftruncate(fd, (off_t)seg->lay.total) < 0)
        return fshm__fail(-errno, "%s: %s", seg->path, strerror(errno));
    void *base = mmap(NULL, seg->lay.total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED)
        return fshm__fail(-errno, "%s: mmap %llu bytes: %s", seg->path,
                          (unsigned long long)seg->lay.total, strerror(errno));
    seg->fd = fd;
    seg->base = base;
    seg->size = seg->lay.total;
    seg_views(seg, true);
    format(seg);
    lock_fd_register(fd);
    return 0;
}

int fshm__seg_create(fshm_seg_t *seg, const fshm_config_t *cfg)
{
    memset(seg, 0, sizeof(*seg));
    seg->fd = -1;
    int rc = fshm__config_resolve(&seg->cfg, cfg);
    if (rc < 0)
        return rc;
    snprintf(seg->name, sizeof(seg->name), "%s", seg->cfg.name);
    seg->cfg.name = seg->name;
    if ((rc = fshm__layout(&seg->cfg, &seg->lay)) < 0)
        return rc;
    if ((rc = fshm_segment_name(seg->name, seg->path, sizeof(seg->path))) < 0)
        return rc;

    int32_t stale_pid = 0;
    bool replaced = false;
    for (int tries = 0; tries < 4; tries++) {
        int fd = shm_open(seg->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd >= 0) {
            rc = create_fresh(seg, fd);
            if (rc < 0) {
                int keep = errno;
                if (rc != -EEXIST) /* the name is ours: do not leave it half made */
                    shm_unlink(seg->path);
                close(fd);
                seg->fd = -1;
                errno = keep;
                return rc;
            }
            if (replaced)
                fshm__fail(0, "%s: replaced a stale segment left by pid %d", seg->path,
                           (int)stale_pid);
            else
                fshm__fail(0, "%s", "");
            return 0;
        }
        if (errno != EEXIST)
            return fshm__fail(-errno, "shm_open %s: %s", seg->path, strerror(errno));

        fd = shm_open(seg->path, O_RDWR | O_CLOEXEC, 0);
        if (fd < 0) {
            if (errno == ENOENT)
                continue; /* removed meanwhile: try creating again */
            return fshm__fail(-errno, "shm_open %s: %s", seg->path, strerror(errno));
        }
        fshm_hdr_t old;
        memset(&old, 0, sizeof(old));
        if (pread(fd, &old, sizeof(old), 0) != (ssize_t)sizeof(old))
            memset(&old, 0, sizeof(old));
        rc = owner_lock(fd);
        if (rc == -EAGAIN) {
            close(fd);
            return fshm__fail(-EEXIST, "%s is owned by a live server (pid %d)", seg->path,
                              (int)old.owner_pid);
        }
        if (rc < 0) {
            close(fd);
            return fshm__fail(rc, "%s: lock: %s", seg->path, strerror(-rc));
        }
        /* We hold the lock of a segment nobody owns: its server crashed (or
         * died while creating it). Remove the name and create anew; workers
         * still mapped to the old one see the lock gone and leave. */
        struct stat st;
        if (fstat(fd, &st) == 0 && st.st_nlink == 0) {
            /* Another server already removed this one (and may have made a
             * new segment under the name): start over, remove nothing. */
            close(fd);
            continue;
        }
        stale_pid = old.owner_pid;
        replaced = true;
        /* Unlink while holding the lock: a racing server can lock the old
         * file only after we close it, and then sees st_nlink == 0 above. */
        if (shm_unlink(seg->path) < 0 && errno != ENOENT) {
            int err = errno;
            close(fd);
            return fshm__fail(-err, "%s: cannot remove the stale segment: %s", seg->path,
                              strerror(err));
        }
        close(fd);
    }
    return fshm__fail(-EEXIST, "%s: could not take the name over (other servers racing)",
                      seg->path);
}

void fshm__seg_destroy(fshm_seg_t *seg, bool unlink_name)
{
    if (!seg)
        return;
    if (unlink_name && seg->path[0])
        shm_unlink(seg->path);
    if (seg->base)
        munmap(seg->base, seg->size);
    if (seg->fd >= 0) {
        lock_fd_unregister(seg->fd);
        close(seg->fd);
    }
    seg->base = NULL;
    seg->fd = -1;
}

/* ---- worker side ---- */

static int check_header(fshm_seg_t *seg, size_t file_size)
{
    const fshm_hdr_t *h = seg->hdr;
    uint64_t magic = atomic_load_explicit(&((fshm_hdr_t *)h)->magic, memory_order_acquire);
    if (magic == 0)
        return fshm__fail(-ENOENT, "%s: the server is still creating it", seg->path);
    if (magic != FSHM_MAGIC)
        return fshm__fail(-EPROTO, "%s: not a ferry segment (magic %#llx, want %#llx)",
                          seg->path, (unsigned long long)magic, (unsigned long long)FSHM_MAGIC);
    if (h->version != FSHM_LAYOUT_VERSION)
        return fshm__fail(-EPROTO,
                          "%s: layout version %u, this binary speaks %u: rebuild server "
                          "and worker from the same tree",
                          seg->path, h->version, FSHM_LAYOUT_VERSION);
    if (h->hdr_size != sizeof(fshm_hdr_t) || h->slot_size != sizeof(fshm_slot_t) ||
        h->wentry_size != sizeof(fshm_wentry_t) || h->cell_size != sizeof(fshm_cell_t))
        return fshm__fail(-EPROTO,
                          "%s: struct sizes hdr/slot/worker/cell %u/%u/%u/%u, this binary "
                          "has %zu/%zu/%zu/%zu",
                          seg->path, h->hdr_size, h->slot_size, h->wentry_size, h->cell_size,
                          sizeof(fshm_hdr_t), sizeof(fshm_slot_t), sizeof(fshm_wentry_t),
                          sizeof(fshm_cell_t));
    fshm_config_t in = {
        .name = seg->name,
        .ring_slots = h->ring_slots,
        .payload_max = h->payload_max,
        .max_workers = h->max_workers,
        .max_attempts = h->max_attempts,
        .heartbeat_ms = h->heartbeat_ms,
    };
    /* Zero would mean "default" to resolve(); in a header it is corruption. */
    if (!in.ring_slots || !in.payload_max || !in.max_workers || !in.max_attempts)
        return fshm__fail(-EPROTO, "%s: header has a zero size field", seg->path);
    char why[256];
    int rc = fshm__config_resolve(&seg->cfg, &in);
    if (rc < 0) {
        snprintf(why, sizeof(why), "%s", fshm_last_error());
        return fshm__fail(-EPROTO, "%s: header config invalid: %s", seg->path, why);
    }
    seg->cfg.name = seg->name;
    if ((rc = fshm__layout(&seg->cfg, &seg->lay)) < 0)
        return fshm__fail(-EPROTO, "%s: header config gives an impossible layout", seg->path);
    const fshm_layout_t *l = &seg->lay;
    if (h->total_size != l->total || h->off_req != l->off_req || h->off_cmp != l->off_cmp ||
        h->off_workers != l->off_workers || h->off_slots != l->off_slots ||
        h->off_payload != l->off_payload || h->cmp_slots != l->cmp_slots ||
        h->payload_stride != l->payload_stride)
        return fshm__fail(-EPROTO, "%s: section offsets differ from this binary's layout",
                          seg->path);
    if (l->total > file_size)
        return fshm__fail(-EPROTO, "%s: file is %zu bytes, layout needs %llu", seg->path,
                          file_size, (unsigned long long)l->total);
    return 0;
}

int fshm__seg_attach(fshm_seg_t *seg, const char *name)
{
    memset(seg, 0, sizeof(*seg));
    seg->fd = -1;
    int rc = fshm_segment_name(name, seg->path, sizeof(seg->path));
    if (rc < 0)
        return rc;
    snprintf(seg->name, sizeof(seg->name), "%s", name);

    int fd = shm_open(seg->path, O_RDWR | O_CLOEXEC, 0);
    if (fd < 0) {
        if (errno == ENOENT)
            return fshm__fail(-ENOENT, "no server: %s does not exist", seg->path);
        return fshm__fail(-errno, "shm_open %s: %s", seg->path, strerror(errno));
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        rc = fshm__fail(-errno, "fstat %s: %s", seg->path, strerror(errno));
        goto fail_fd;
    }
    /* Only a segment our own user created, closed to everyone else: another
     * user could otherwise plant a segment under our name and feed us. */
    if (st.st_uid != geteuid() || (st.st_mode & 077)) {
        rc = fshm__fail(-EACCES, "%s: owned by uid %u with mode %o; want uid %u, mode 0600",
                        seg->path, (unsigned)st.st_uid, (unsigned)(st.st_mode & 0777),
                        (unsigned)geteuid());
        goto fail_fd;
    }
    if ((size_t)st.st_size < FSHM_PAGE) {
        rc = fshm__fail(-ENOENT, "%s: the server is still creating it", seg->path);
        goto fail_fd;
    }
    if ((uint64_t)st.st_size > FSHM_SEG_MAX) {
        rc = fshm__fail(-EPROTO, "%s: %lld bytes, larger than any valid layout", seg->path,
                        (long long)st.st_size);
        goto fail_fd;
    }
    void *base = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) {
        rc = fshm__fail(-errno, "mmap %s: %s", seg->path, strerror(errno));
        goto fail_fd;
    }
    seg->fd = fd;
    seg->base = base;
    seg->size = (size_t)st.st_size;
    seg->hdr = (fshm_hdr_t *)base;
    if ((rc = check_header(seg, seg->size)) < 0)
        goto fail_map;
    if (atomic_load(&seg->hdr->state) != FSHM_SEG_OPEN || !fshm__seg_owner_alive(seg)) {
        rc = fshm__fail(-ESHUTDOWN, "%s: its server (pid %d) closed or died", seg->path,
                        (int)seg->hdr->owner_pid);
        goto fail_map;
    }
    seg_views(seg, false);
    return 0;

fail_map:
    munmap(base, seg->size);
    seg->base = NULL;
fail_fd:
    close(fd);
    seg->fd = -1;
    return rc;
}
