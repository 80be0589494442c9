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
#include <sys/statvfs.h>
#include <unistd.h>

_Static_assert(sizeof(fshm_slot_t) == 64, "slot is one cache line");
_Static_assert(sizeof(fshm_wentry_t) == 128, "worker entry is two cache lines");
_Static_assert(sizeof(fshm_cell_t) == 128, "ring cell is two cache lines");
_Static_assert(sizeof(fshm_hdr_t) <= 4096, "header fits its page");

#define FSHM_PAGE 4096ull
#define FSHM_SEG_MAX (16ull << 30) /* refuse configs that would map more */

void fshm_config_default(fshm_config_t *cfg)
{
    cfg->name = "kolosal";
    /* 256 x 2 x 64 KiB: a 32 MiB segment, half of Docker's default
     * /dev/shm; 256 requests in flight keep a handful of workers busy. */
    cfg->ring_slots = 256;
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
    /* Request ring twice the slots too: a cancelled task's slot is reused
     * at once and its stale ticket may still sit in the ring (the server
     * compacts the ring if stale tickets ever fill it, see server.c). */
    lay->req_cells = cfg->ring_slots * 2;
    lay->off_req = off;
    off += align_up(fshm__ring_bytes(lay->req_cells), FSHM_PAGE);
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
        fshm__ring_init(&seg->req, req, seg->lay.req_cells);
        fshm__ring_init(&seg->cmp, cmp, seg->lay.cmp_slots);
    } else {
        fshm__ring_attach(&seg->req, req, seg->lay.req_cells);
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

static bool lock_held(int fd)
{
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
    if (fcntl(fd, F_OFD_GETLK, &fl) < 0)
        return true; /* cannot tell: do not declare a live server dead */
    return fl.l_type != F_UNLCK;
}

bool fshm__seg_owner_alive(const fshm_seg_t *seg)
{
    return lock_held(seg->fd);
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
    h->req_cells = seg->lay.req_cells;
    h->payload_stride = seg->lay.payload_stride;
    h->owner_pid = getpid();
    h->owner_uid = getuid();
    /* Until the server waits in fshm_server_wait(), workers know nothing. */
    atomic_init(&h->srv_cpu, FSHM_RUN_UNKNOWN);
    h->owner_start = start;
    atomic_store(&h->state, FSHM_SEG_OPEN);
    /* Last: a worker that sees the magic sees everything above. */
    atomic_store_explicit(&h->magic, FSHM_MAGIC, memory_order_release);
}

static double mib(uint64_t bytes)
{
    return (double)bytes / (1024.0 * 1024.0);
}

/* Reserves every page of the segment now: a sparse file on a tmpfs that
 * later runs full kills whoever first touches a missing page with SIGBUS
 * (the server in the middle of a request, a worker writing a reply). */
static int reserve(fshm_seg_t *seg, int fd)
{
    int err = posix_fallocate(fd, 0, (off_t)seg->lay.total);
    if (err == 0)
        return 0;
    if (err != ENOSPC && err != EFBIG)
        return fshm__fail(-err, "%s: reserving %llu bytes: %s", seg->path,
                          (unsigned long long)seg->lay.total, strerror(err));
    struct statvfs vfs;
    double avail = -1;
    if (fstatvfs(fd, &vfs) == 0)
        avail = mib((uint64_t)vfs.f_bavail * vfs.f_frsize);
    uint64_t buffers = (uint64_t)seg->cfg.ring_slots * 2 * seg->lay.payload_stride;
    char freebuf[48] = "too little";
    if (avail >= 0)
        snprintf(freebuf, sizeof(freebuf), "%.1f MiB", avail);
    return fshm__fail(-ENOSPC,
                      "the segment needs %.1f MiB (%llu bytes: ring_slots %u x 2 x payload_max "
                      "%u = %.1f MiB of buffers, plus rings and tables) but /dev/shm has %s "
                      "free",
                      mib(seg->lay.total), (unsigned long long)seg->lay.total,
                      seg->cfg.ring_slots, seg->cfg.payload_max, mib(buffers), freebuf);
}

/* Formats a file we just created with O_EXCL. -EAGAIN: another server
 * removed it before we locked it (it took it for a stale one): try again. */
static int create_fresh(fshm_seg_t *seg, int fd)
{
    int rc = owner_lock(fd);
    if (rc == -EAGAIN)
        return fshm__fail(-EEXIST, "%s: another server took it while we created it", seg->path);
    if (rc < 0)
        return fshm__fail(rc, "%s: lock: %s", seg->path, strerror(-rc));
    struct stat st;
    if (fstat(fd, &st) < 0)
        return fshm__fail(-errno, "%s: %s", seg->path, strerror(errno));
    if (st.st_nlink == 0)
        return -EAGAIN;
    /* The umask may have cleared bits; make it exactly owner read/write. */
    if (fchmod(fd, 0600) < 0)
        return fshm__fail(-errno, "%s: %s", seg->path, strerror(errno));
    if ((rc = reserve(seg, fd)) < 0)
        return rc;
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

/* Creates seg->path with O_EXCL and formats it. 1: the name exists (the
 * caller decides), 0 done, -EAGAIN try again, or -errno. */
static int create_at(fshm_seg_t *seg)
{
    int fd = shm_open(seg->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        if (errno == EEXIST)
            return 1;
        return fshm__fail(-errno, "shm_open %s: %s", seg->path, strerror(errno));
    }
    int rc = create_fresh(seg, fd);
    if (rc < 0) {
        int keep = errno;
        /* The name is ours unless someone else took or removed it: do not
         * leave it half made. */
        if (rc != -EEXIST && rc != -EAGAIN)
            shm_unlink(seg->path);
        close(fd);
        seg->fd = -1;
        errno = keep;
    }
    return rc;
}

/* The segment's owner lock is free: its server crashed (or died while
 * creating it). Removes the name unless someone already did. Called with
 * the lock held on fd. Returns 1 removed, 0 already gone, or -errno. */
static int remove_stale(const char *path, int fd)
{
    struct stat st;
    /* nlink 0: another server already removed this one (and may have made a
     * new segment under the name): remove nothing. Unlinking while holding
     * the lock means a racing server can lock the old file only after we
     * close it, and then sees nlink 0 here. */
    if (fstat(fd, &st) == 0 && st.st_nlink == 0)
        return 0;
    if (shm_unlink(path) < 0)
        return errno == ENOENT ? 0 : -errno;
    return 1;
}

/* Creates the primary name, replacing a stale segment of ours. 1: the name
 * belongs to another user; 0 done; or -errno. */
static int create_primary(fshm_seg_t *seg, int32_t *stale_pid)
{
    for (int tries = 0; tries < 4; tries++) {
        int rc = create_at(seg);
        if (rc == 0 || (rc < 0 && rc != -EAGAIN))
            return rc;
        if (rc == -EAGAIN)
            continue;

        int fd = shm_open(seg->path, O_RDWR | O_CLOEXEC, 0);
        if (fd < 0) {
            if (errno == ENOENT)
                continue; /* removed meanwhile: try creating again */
            if (errno == EACCES)
                return 1; /* another user's, closed to us */
            return fshm__fail(-errno, "shm_open %s: %s", seg->path, strerror(errno));
        }
        struct stat st;
        if (fstat(fd, &st) < 0 || st.st_uid != geteuid()) {
            close(fd);
            return 1; /* another user's: never read, lock or remove it */
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
        /* We hold the lock of a segment nobody owns: remove the name and
         * create anew; workers still mapped to the old one see the lock
         * gone and leave. */
        rc = remove_stale(seg->path, fd);
        close(fd);
        if (rc < 0)
            return fshm__fail(rc, "%s: cannot remove the stale segment: %s", seg->path,
                              strerror(-rc));
        if (rc == 1)
            *stale_pid = old.owner_pid;
    }
    return fshm__fail(-EEXIST, "%s: could not take the name over (other servers racing)",
                      seg->path);
}

/* Creates a fresh alternate name (see locate.c). */
static int create_alternate(fshm_seg_t *seg)
{
    for (int tries = 0; tries < 8; tries++) {
        int rc = fshm__alt_path(seg->name, seg->path, sizeof(seg->path));
        if (rc < 0)
            return rc;
        rc = create_at(seg);
        if (rc <= 0 && rc != -EAGAIN)
            return rc;
    }
    return fshm__fail(-EEXIST, "could not create an alternate segment for '%s'", seg->name);
}

/* Scan state for one_server(): our own path, and what was found. */
typedef struct uniq {
    const char *self; /* our segment's name */
    char other[96];   /* a live one found */
    int32_t pid;      /* its owner */
} uniq_t;

/* Another live segment of ours for this name? Removes stale ones. */
static int uniq_visit(void *arg, const char *path, int fd)
{
    uniq_t *u = arg;
    if (strcmp(path, u->self) == 0)
        return 0;
    fshm_hdr_t old;
    memset(&old, 0, sizeof(old));
    if (pread(fd, &old, sizeof(old), 0) != (ssize_t)sizeof(old))
        memset(&old, 0, sizeof(old));
    if (owner_lock(fd) == -EAGAIN) {
        snprintf(u->other, sizeof(u->other), "%s", path);
        u->pid = old.owner_pid;
        return 1; /* fd stays ours: closed below */
    }
    remove_stale(path, fd); /* a crashed alternate server's */
    return 0;
}

/* Create-then-check: after taking our name, look for another live server
 * of ours under the primary or an alternate name. Two servers racing both
 * see each other and both refuse, which is safe; one never misses the
 * other, because each looks only after its own segment exists. */
static int one_server(fshm_seg_t *seg, const char *primary)
{
    uniq_t u = {.self = seg->path};
    if (strcmp(seg->path, primary) != 0) {
        int fd = shm_open(primary, O_RDWR | O_CLOEXEC, 0);
        struct stat st;
        if (fd >= 0) {
            int found = 0;
            if (fstat(fd, &st) == 0 && st.st_uid == geteuid() && !(st.st_mode & 077))
                found = uniq_visit(&u, primary, fd);
            close(fd);
            if (found)
                goto busy;
        }
    }
    int rc = fshm__alt_scan(seg->name, uniq_visit, &u);
    if (rc == 1)
        goto busy;
    return 0; /* a scan that failed (e.g. no /dev/shm listing) finds nobody */
busy:
    return fshm__fail(-EEXIST, "%s is owned by a live server (pid %d)", u.other, (int)u.pid);
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
    char primary[64];
    if ((rc = fshm_segment_name(seg->name, primary, sizeof(primary))) < 0)
        return rc;
    snprintf(seg->path, sizeof(seg->path), "%s", primary);

    int32_t stale_pid = 0;
    char note[320] = "";
    rc = create_primary(seg, &stale_pid);
    if (rc == 1) {
        char who[64];
        fshm__describe_owner(primary, who, sizeof(who));
        rc = create_alternate(seg);
        if (rc == 0)
            snprintf(note, sizeof(note),
                     "%s belongs to %s, not to uid %u (another user created it): using %s",
                     primary, who, (unsigned)geteuid(), seg->path);
    } else if (rc == 0 && stale_pid) {
        snprintf(note, sizeof(note), "%s: replaced a stale segment left by pid %d", primary,
                 (int)stale_pid);
    }
    if (rc < 0)
        return rc;
    if ((rc = one_server(seg, primary)) < 0) {
        char why[256];
        snprintf(why, sizeof(why), "%s", fshm_last_error());
        fshm__seg_destroy(seg, true);
        return fshm__fail(rc, "%s", why);
    }
    fshm__fail(0, "%s", note);
    return 0;
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
        h->req_cells != l->req_cells ||
        h->payload_stride != l->payload_stride)
        return fshm__fail(-EPROTO, "%s: section offsets differ from this binary's layout",
                          seg->path);
    if (l->total > file_size)
        return fshm__fail(-EPROTO, "%s: file is %zu bytes, layout needs %llu", seg->path,
                          file_size, (unsigned long long)l->total);
    return 0;
}

/* Keeps the first live alternate found by fshm__alt_scan. */
static int find_live(void *arg, const char *path, int fd)
{
    fshm_seg_t *seg = arg;
    if (!lock_held(fd))
        return 0; /* a crashed server's */
    snprintf(seg->path, sizeof(seg->path), "%s", path);
    seg->fd = fd;
    return 1;
}

/* Opens the server's segment: the primary name if it is ours, else a live
 * alternate (see locate.c). Returns the fd or -errno. */
static int open_segment(fshm_seg_t *seg)
{
    int fd = shm_open(seg->path, O_RDWR | O_CLOEXEC, 0);
    struct stat st;
    if (fd >= 0) {
        if (fstat(fd, &st) == 0 && st.st_uid != geteuid()) {
            close(fd);
            fd = -1;
            errno = EACCES;
        } else {
            return fd; /* ours (or unreadable): the caller checks it */
        }
    }
    if (errno != ENOENT && errno != EACCES)
        return fshm__fail(-errno, "shm_open %s: %s", seg->path, strerror(errno));
    bool foreign = errno == EACCES;
    char primary[96];
    snprintf(primary, sizeof(primary), "%s", seg->path);
    if (fshm__alt_scan(seg->name, find_live, seg) == 1)
        return seg->fd;
    if (!foreign)
        return fshm__fail(-ENOENT, "no server: %s does not exist", primary);
    char who[64];
    fshm__describe_owner(primary, who, sizeof(who));
    return fshm__fail(-EACCES,
                      "%s belongs to %s, not to uid %u (another user created it), and no "
                      "server of ours runs under an alternate name",
                      primary, who, (unsigned)geteuid());
}

int fshm__seg_attach(fshm_seg_t *seg, const char *name)
{
    memset(seg, 0, sizeof(*seg));
    seg->fd = -1;
    int rc = fshm_segment_name(name, seg->path, sizeof(seg->path));
    if (rc < 0)
        return rc;
    snprintf(seg->name, sizeof(seg->name), "%s", name);

    int fd = open_segment(seg);
    seg->fd = -1;
    if (fd < 0)
        return fd;
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
