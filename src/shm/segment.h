/* The shared segment: its header, its layout, and how a server creates it and
 * a worker maps and validates it. Internal to src/shm (tests include it). */
#ifndef FERRY_SHM_SEGMENT_H
#define FERRY_SHM_SEGMENT_H

#include "futex.h"
#include "ring.h"

#include <ferry/shm.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* "FERRYSHM" read as a little-endian 64-bit word. */
#define FSHM_MAGIC 0x4d48535952524546ull

/* Segment states (fshm_hdr_t.state). */
enum { FSHM_SEG_OPEN = 1, FSHM_SEG_CLOSED = 2 };

/* Task slot states (bits 16..31 of fshm_slot_t.word). Who moves what:
 * server FREE->QUEUED (submit), QUEUED->FREE with seq+1 (cancel: the ticket
 * left in the ring is stale from then on), CLAIMED->QUEUED or ->HELD (its
 * worker died), DONE/HELD->FREE (delivered);
 * worker QUEUED->CLAIMED (next), CLAIMED->WRITING->DONE (reply). */
enum {
    FSHM_SLOT_FREE = 0,      /* on the server's free list */
    FSHM_SLOT_QUEUED = 1,    /* ticket in the request ring */
    FSHM_SLOT_CLAIMED = 2,   /* a worker runs it (owner = its index) */
    FSHM_SLOT_WRITING = 3,   /* the worker writes the response */
    FSHM_SLOT_DONE = 4,      /* response written; ticket in the completion ring */
    /* 5 was CANCELLED in layout 1 */
    FSHM_SLOT_HELD = 6,      /* the server failed it; delivered from its own list */
};

/* Worker entry states (bits 32..39 of fshm_wentry_t.word). */
enum {
    FSHM_W_FREE = 0, /* nobody */
    FSHM_W_IDLE = 1, /* attached, waiting for a task */
    FSHM_W_BUSY = 2, /* running current_task */
    FSHM_W_DEAD = 3, /* declared dead (or detached holding a task); server reclaims */
};

/* A slot word packs seq (32 bits: which dispatch this is, bumped by the
 * server only), state (16) and owner worker index (16) so one CAS checks all
 * three: a worker holding an outdated ticket can never touch a newer
 * dispatch. A ticket in a ring is (slot index << 32 | seq). */
static inline uint64_t fshm__slot_word(uint32_t seq, uint32_t state, uint32_t owner)
{
    return (uint64_t)seq << 32 | (uint64_t)(state & 0xffff) << 16 | (owner & 0xffff);
}
static inline uint32_t fshm__sw_seq(uint64_t w) { return (uint32_t)(w >> 32); }
static inline uint32_t fshm__sw_state(uint64_t w) { return (uint32_t)(w >> 16) & 0xffff; }
static inline uint32_t fshm__sw_owner(uint64_t w) { return (uint32_t)w & 0xffff; }
static inline uint64_t fshm__ticket(uint32_t idx, uint32_t seq) { return (uint64_t)idx << 32 | seq; }

/* A worker entry word packs gen (24 bits, bumped at every attach), state (8)
 * and pid (32), so attaching is one CAS and a worker can tell with one load
 * that its entry was taken from it. */
static inline uint64_t fshm__wword(uint32_t gen, uint32_t state, int32_t pid)
{
    return (uint64_t)(gen & 0xffffff) << 40 | (uint64_t)(state & 0xff) << 32 | (uint32_t)pid;
}
static inline uint32_t fshm__ww_gen(uint64_t w) { return (uint32_t)(w >> 40) & 0xffffff; }
static inline uint32_t fshm__ww_state(uint64_t w) { return (uint32_t)(w >> 32) & 0xff; }
static inline int32_t fshm__ww_pid(uint64_t w) { return (int32_t)(uint32_t)w; }

/* A heartbeat word packs the gen of the attach that wrote it (24 bits) and
 * CLOCK_MONOTONIC ms (40 bits, 34 years of uptime). A worker writes it by
 * CAS from a value carrying its own gen, so a worker that lost its entry (a
 * "ghost") can never make the entry's next owner look alive; the server
 * ignores a beat whose gen is not the entry's. */
#define FSHM_HB_MS_MASK ((1ull << 40) - 1)
static inline uint64_t fshm__hb(uint32_t gen, uint64_t ms)
{
    return (uint64_t)(gen & 0xffffff) << 40 | (ms & FSHM_HB_MS_MASK);
}
static inline uint32_t fshm__hb_gen(uint64_t h) { return (uint32_t)(h >> 40) & 0xffffff; }
static inline uint64_t fshm__hb_ms(uint64_t h) { return h & FSHM_HB_MS_MASK; }

/* A live process is declared dead for a stale heartbeat only after
 * max(4 heartbeats, this floor), and only when its heartbeat thread is not
 * runnable (see workers.c): with --heartbeat-ms 10 a loaded machine easily
 * delays a thread by 40 ms without anything being wrong. */
#define FSHM_STALE_FLOOR_MS 1000u

typedef struct fshm_slot {
    _Atomic uint64_t word; /* seq | state | owner, see fshm__slot_word */
    uint64_t task_id;      /* server-written before QUEUED: the id the worker reports */
    uint32_t req_len;      /* server-written before QUEUED; worker checks <= payload_max */
    uint32_t resp_len;     /* worker-written in WRITING; server checks <= payload_max */
    int32_t status;        /* worker-written in WRITING: 0 or a negative errno */
    uint32_t attempt;      /* server-written: dispatch number (1 = first), for logs */
    uint8_t pad[32];       /* one slot per cache line */
} fshm_slot_t;

/* Two cache lines. The first holds what the worker writes for every task
 * (the server reads it only when it checks workers); the second what
 * changes rarely, among it run_cpu, which the server reads whenever it is
 * about to spin for a completion: it must not share a line with per-task
 * writes, or every such read would move a line. */
typedef struct fshm_wentry {
    _Atomic uint64_t word;         /* gen | state | pid, see fshm__wword */
    _Atomic uint64_t start_time;   /* /proc start time of pid (tells pid reuse); 0 unknown */
    _Atomic uint64_t heartbeat;    /* gen | CLOCK_MONOTONIC ms of the last beat, see fshm__hb */
    _Atomic uint64_t current_task; /* task id being run, 0 when idle */
    _Atomic uint64_t tasks_done;   /* answers with status 0 */
    _Atomic uint64_t req_intent;   /* request-ring position + 1 being popped, 0 none */
    _Atomic uint64_t cmp_intent;   /* completion-ring position + 1 being pushed, 0 none */
    _Atomic uint64_t popped;       /* ticket popped and not yet claimed, 0 none */
    _Alignas(64) _Atomic uint64_t tasks_failed; /* answers with status < 0 */
    _Atomic uint32_t hb_tid;       /* thread id of the heartbeat thread, 0 unknown */
    _Atomic uint32_t run_cpu;      /* the worker's main thread: FSHM_RUN_ASLEEP, or CPU + 1
                                    * (see fshm__run_here); written only when it changes */
    uint8_t pad[48];               /* two cache lines per entry */
} fshm_wentry_t;

typedef struct fshm_hdr {
    _Atomic uint64_t magic;        /* FSHM_MAGIC, stored last by the creator */
    uint32_t version;              /* FSHM_LAYOUT_VERSION */
    uint32_t hdr_size;             /* sizeof(fshm_hdr_t) in the creator */
    uint32_t slot_size;            /* sizeof(fshm_slot_t) in the creator */
    uint32_t wentry_size;          /* sizeof(fshm_wentry_t) in the creator */
    uint32_t cell_size;            /* sizeof(fshm_cell_t) in the creator */
    uint32_t ring_slots;           /* config: task slots = request ring cells */
    uint32_t payload_max;          /* config: request/response limit */
    uint32_t max_workers;          /* config: worker entries */
    uint32_t max_attempts;         /* config */
    uint32_t heartbeat_ms;         /* config */
    uint64_t total_size;           /* bytes of the segment */
    uint64_t off_req;              /* offset of the request ring */
    uint64_t off_cmp;              /* offset of the completion ring */
    uint64_t off_workers;          /* offset of the worker table */
    uint64_t off_slots;            /* offset of the slot array */
    uint64_t off_payload;          /* offset of the payload buffers */
    uint32_t cmp_slots;            /* completion ring cells (2 x ring_slots) */
    uint32_t req_cells;            /* request ring cells (2 x ring_slots) */
    uint32_t payload_stride;       /* bytes per buffer (payload_max rounded up) */
    int32_t owner_pid;             /* server process */
    uint32_t owner_uid;            /* server's uid (the name has it too) */
    uint64_t owner_start;          /* server's /proc start time (pid reuse) */
    _Atomic uint32_t state;        /* FSHM_SEG_OPEN / FSHM_SEG_CLOSED */
    _Atomic uint32_t worker_events; /* bumped by attach/detach so the server looks */
    _Atomic uint32_t entries_freed; /* futex: bumped when a worker entry becomes free */
    _Alignas(64) fshm_evc_t work;  /* workers sleep here for requests */
    _Alignas(64) _Atomic uint32_t done_want; /* 1: the server's helper sleeps, wake it */
    _Alignas(64) _Atomic uint32_t srv_cpu; /* the server's loop thread in fshm_server_wait():
                                    * FSHM_RUN_ASLEEP, CPU + 1, or FSHM_RUN_UNKNOWN (it
                                    * never waits there, e.g. an event loop); own line,
                                    * written only when it changes */
} fshm_hdr_t;

/* Where everything lies, computed from the config alone (both sides compute
 * it and the worker compares it with the header). */
typedef struct fshm_layout {
    uint64_t off_req, off_cmp, off_workers, off_slots, off_payload; /* section offsets */
    uint32_t cmp_slots;      /* completion ring cells */
    uint32_t req_cells;      /* request ring cells */
    uint32_t payload_stride; /* bytes per request or response buffer */
    uint64_t total;          /* segment size */
} fshm_layout_t;

/* One process's mapping of a segment, with pointers derived from its own
 * validated config (never from offsets read back from the segment). */
typedef struct fshm_seg {
    fshm_config_t cfg;    /* validated config (cfg.name points at name) */
    char name[33];        /* logical name */
    char path[96];        /* "/ferry-<uid>-<name>", or with ".<16 hex>" (see locate.c) */
    int fd;               /* the shm fd; the server's holds the owner lock */
    uint8_t *base;        /* mapping */
    size_t size;          /* mapping length */
    fshm_layout_t lay;    /* layout of this config */
    fshm_hdr_t *hdr;      /* header at base */
    fshm_ring_t req;      /* request ring: server pushes, workers pop */
    fshm_ring_t cmp;      /* completion ring: workers push, server pops */
    fshm_wentry_t *workers; /* max_workers entries */
    fshm_slot_t *slots;   /* ring_slots slots */
    uint8_t *payload;     /* 2 x ring_slots buffers of payload_stride */
} fshm_seg_t;

/* Fills defaults into a copy of in and checks every field (-EINVAL). */
int fshm__config_resolve(fshm_config_t *out, const fshm_config_t *in);
int fshm__layout(const fshm_config_t *cfg, fshm_layout_t *lay);

/* Server: creates, locks and formats the segment; replaces a stale one. */
int fshm__seg_create(fshm_seg_t *seg, const fshm_config_t *cfg);
/* Worker: opens, maps and validates the segment. */
int fshm__seg_attach(fshm_seg_t *seg, const char *name);
/* Unmaps and closes; unlinks the name if unlink_name (server). */
void fshm__seg_destroy(fshm_seg_t *seg, bool unlink_name);
/* True while some process holds the owner lock (the server is alive). */
bool fshm__seg_owner_alive(const fshm_seg_t *seg);

static inline uint8_t *fshm__slot_req(const fshm_seg_t *seg, uint32_t idx)
{
    return seg->payload + (uint64_t)idx * 2 * seg->lay.payload_stride;
}
static inline uint8_t *fshm__slot_resp(const fshm_seg_t *seg, uint32_t idx)
{
    return fshm__slot_req(seg, idx) + seg->lay.payload_stride;
}

/* /proc: the start time of pid (field 22 of /proc/pid/stat) and its state
 * letter (R running or runnable, S sleeping, T stopped, Z zombie...).
 * -ESRCH if gone. */
int fshm__proc_stat(pid_t pid, uint64_t *start_time, char *state);
/* Alive and, if start_time != 0, the same process that recorded it. */
bool fshm__proc_alive(pid_t pid, uint64_t start_time);
/* State letter of thread tid of process pid, or of pid itself when tid is
 * 0; '?' when it cannot be read. */
char fshm__proc_thread_state(pid_t pid, pid_t tid);

/* ---- locating segments (locate.c) ----
 * The name "/ferry-<uid>-<name>" (the primary) may have been created first
 * by another user. The server then uses "/ferry-<uid>-<name>.<16 hex>"
 * (an alternate, random suffix, O_EXCL) and workers find it by listing
 * /dev/shm: only files of our own uid, mode 0600, whose owner lock is held
 * count, and nobody else can create a file owned by us. */

/* Fills buf with a fresh alternate name. 0 or -errno (getrandom). */
int fshm__alt_path(const char *name, char *buf, size_t size);
/* Calls fn(arg, path, fd) for every alternate of name in /dev/shm that is a
 * regular file of our euid with mode 0600, with fd open O_RDWR. fn returns
 * 0 to go on (the fd is closed), 1 to stop and keep the fd (it is then
 * fn's), or a negative errno to stop. Returns 0 if the list ended, 1 or
 * fn's error, or -errno of opendir. */
int fshm__alt_scan(const char *name, int (*fn)(void *arg, const char *path, int fd), void *arg);
/* Describes who owns the object at path for an error message ("uid 1001,
 * mode 644"); "unknown owner" if it cannot be read. */
void fshm__describe_owner(const char *path, char *buf, size_t size);


/* Records the detail of a failure for fshm_last_error(); returns err. */
int fshm__fail(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
