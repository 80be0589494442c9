/* Bounded multi-producer/multi-consumer ring of 64-bit values in shared memory.
 *
 * Each cell carries a sequence number that says whose turn it is: a producer
 * may fill cell (pos % cap) only when its seq equals pos, a consumer may empty
 * it only when its seq equals pos + 1, and the consumer hands the cell to the
 * producer of the next lap by storing pos + cap. A producer or consumer owns
 * position pos once its compare-and-swap moved the shared enq/deq counter
 * from pos to pos + 1; there is no step that backs out after that. Positions
 * are 64-bit and never wrap in practice.
 *
 * Processes can die between claiming a position and finishing with its cell.
 * Callers that may die (workers) pass an "intent" word in shared memory where
 * the position being worked on is published (pos + 1, 0 when none), so the
 * survivor can find a half-done cell and repair it (fshm__ring_repair_*).
 */
#ifndef FERRY_SHM_RING_H
#define FERRY_SHM_RING_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A value no producer ever pushes: fills a cell whose producer died. */
#define FSHM_RING_HOLE UINT64_MAX

/* Bytes of message a cell carries inline (see fshm_cell_t). */
#define FSHM_INLINE_MAX 104u
/* fshm_cell_t.len of a cell whose message is not inline (out of line in
 * the task slot, or no message at all). */
#define FSHM_NOT_INLINE UINT32_MAX

/* One cell: two cache lines (128 bytes, 128-aligned in the segment: the
 * adjacent-line prefetcher fetches them together). A small message
 * travels inside the cell, next to the sequence word that publishes it,
 * so the reader that sees the cell full has the message too: no separate
 * payload line, and no dependent miss on a line found through the value.
 * The producer writes val, len, status and data before the release store
 * of seq; the consumer reads them after the acquire load of seq and
 * before it hands the cell back, so plain accesses are race-free. */
typedef struct fshm_cell {
    _Alignas(64) _Atomic uint64_t seq; /* whose turn: pos (empty, producer's) or pos+1 (full) */
    _Atomic uint64_t val;   /* the value; atomic so a reader never sees a torn word */
    uint32_t len;           /* inline message bytes, or FSHM_NOT_INLINE */
    int32_t status;         /* completions: the answer's status (0 or -errno) */
    uint8_t data[FSHM_INLINE_MAX]; /* the inline message (len bytes) */
} fshm_cell_t;

typedef struct fshm_ring_shared {
    _Alignas(64) _Atomic uint64_t enq; /* next position a producer claims */
    _Alignas(64) _Atomic uint64_t deq; /* next position a consumer claims */
    _Alignas(64) fshm_cell_t cells[];  /* cap cells; separate lines from the counters */
} fshm_ring_shared_t;

/* A process's view of a ring: the shared part and a mask of its own, so a
 * corrupted segment cannot steer an index out of bounds. */
typedef struct fshm_ring {
    fshm_ring_shared_t *sh; /* the ring in the segment */
    uint64_t mask;          /* cap - 1, from this process's validated config */
    _Atomic uint64_t known_free; /* a position whose cell a producer using this
                             * view saw free for exactly that lap (UINT64_MAX:
                             * none): its push skips loading the seq (a
                             * transfer, see ring.c); atomic (release/acquire)
                             * because threads may share a view */
    bool single_consumer;   /* this process is the ring's only consumer (the
                             * server on the completion ring): pops move deq
                             * with a plain store instead of a locked CAS */
} fshm_ring_t;

/* Bytes of shared memory a ring of cap cells (power of two) needs. */
size_t fshm__ring_bytes(uint32_t cap);

/* Formats mem as an empty ring (the creator does this once). */
void fshm__ring_init(fshm_ring_t *r, void *mem, uint32_t cap);

/* Views an already formatted ring. */
void fshm__ring_attach(fshm_ring_t *r, void *mem, uint32_t cap);

/* Appends val. intent (may be NULL) holds pos + 1 while the cell is being
 * filled. Returns 0, -EAGAIN when the ring is full (every cell holds a
 * value), or -EBUSY when it is not full but the cell of the next position
 * is still being emptied by the consumer of the previous lap (preempted
 * between its claim and its hand-back, or dead there): nothing was
 * written; try again later (the caller must keep the value meanwhile). */
int fshm__ring_push(fshm_ring_t *r, uint64_t val, _Atomic uint64_t *intent);

/* Appends val with a message of len bytes (len <= FSHM_INLINE_MAX) copied
 * into the cell, and status; len FSHM_NOT_INLINE: no message (data is
 * ignored). Same returns as fshm__ring_push. */
int fshm__ring_push_msg(fshm_ring_t *r, uint64_t val, int32_t status, const void *data,
                        uint32_t len, _Atomic uint64_t *intent);

/* As fshm__ring_pop, and copies the cell's message into buf (room for
 * FSHM_INLINE_MAX bytes) before handing the cell back: *len is its length
 * or FSHM_NOT_INLINE (then buf is untouched), *status the cell's status.
 * A length above FSHM_INLINE_MAX (a corrupted cell) reads as not inline. */
int fshm__ring_pop_msg(fshm_ring_t *r, uint64_t *val, int32_t *status, void *buf, uint32_t *len,
                       _Atomic uint64_t *intent, _Atomic uint64_t *popped);

/* Removes the oldest value into *val. intent (may be NULL) holds pos + 1
 * while the cell is being emptied; popped (may be NULL) receives the value
 * before the cell is handed back, so a value is always findable in either
 * the cell or *popped. Returns 0, or -EAGAIN when the ring is empty. */
int fshm__ring_pop(fshm_ring_t *r, uint64_t *val, _Atomic uint64_t *intent,
                   _Atomic uint64_t *popped);

/* True if the next pop would find a value (a cheap check for spinning). */
bool fshm__ring_ready(const fshm_ring_t *r);

/* Values pushed and not yet popped (approximate while others are active). */
uint64_t fshm__ring_count(const fshm_ring_t *r);

/* A consumer claimed pos and never handed the cell back: the value is still
 * in it. If so, takes the value into *val, releases the cell and returns 1;
 * returns 0 if pos is not wedged. Only call once the claimer is known dead. */
int fshm__ring_repair_pop(fshm_ring_t *r, uint64_t pos, uint64_t *val);

/* A producer claimed pos and never published: the consumer would wait there
 * forever. If so, fills the cell with FSHM_RING_HOLE, publishes it and
 * returns 1; returns 0 if pos is not wedged. Only call once the claimer is
 * known dead. */
int fshm__ring_repair_push(fshm_ring_t *r, uint64_t pos);

/* Test hooks: claim a position exactly as push/pop do and stop there, as a
 * process killed at that instant would. */
int fshm__ring_push_claim_only(fshm_ring_t *r, _Atomic uint64_t *intent);
int fshm__ring_pop_claim_only(fshm_ring_t *r, _Atomic uint64_t *intent);

#endif
