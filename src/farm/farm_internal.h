/* ferry farm: helpers shared by the farm layer's files (not public). */
#ifndef FERRY_FARM_INTERNAL_H
#define FERRY_FARM_INTERNAL_H

#include "ferry/farm.h"

/* sodium_init() once; -EIO if libsodium cannot start. */
int ffarm_crypto_init(void);
void ffarm_put_u64(uint8_t *p, uint64_t v);
uint64_t ffarm_get_u64(const uint8_t *p);

/* Frame-sized buffers (decoder, big outgoing frames, the writer's): their
 * own mappings, marked MADV_DONTFORK. Why: the employee forks (uv_spawn)
 * once per task; pages the child never needs are then neither copied into
 * its page tables nor made copy-on-write for the parent, whose next write to
 * each would fault (costly under virtualisation). They also keep these
 * buffers out of malloc's heap, which would otherwise grow with them. NULL /
 * no-op on failure or NULL. n must be the same at free. */
void *ffarm_big_alloc(size_t n);
void ffarm_big_free(void *p, size_t n);

/* A writer thread for incoming file bytes (writer.c). The loop takes an
 * empty FFARM_DEC_BUF buffer with ffarm_wr_buf() (waits while `depth`
 * writes are in flight; NULL: out of memory) and hands a full one to the
 * thread with ffarm_wr_put() (data .. data+len inside buf, written at file
 * offset off; the thread starts at the first put, and without one the write
 * happens in the caller). ffarm_wr_drain() waits until every queued write is
 * done and returns the first error since the last drain (-errno, or 0).
 * ffarm_wr_trim() frees idle buffers; ffarm_wr_destroy() writes what is
 * queued, stops the thread and frees the buffers it holds (NULL ok).
 * The aligned part of each write goes to the disk with O_DIRECT (through a
 * twin descriptor of the same file, closed by drain: drain between files)
 * unless ffarm_wr_set_direct(w, false); ffarm_wr_direct_bytes() counts the
 * bytes written that way. */
typedef struct ffarm_wr ffarm_wr_t;
int ffarm_wr_init(ffarm_wr_t **w, unsigned depth);
uint8_t *ffarm_wr_buf(ffarm_wr_t *w);
int ffarm_wr_put(ffarm_wr_t *w, uint8_t *buf, int fd, const uint8_t *data, size_t len,
                 uint64_t off);
int ffarm_wr_drain(ffarm_wr_t *w);
void ffarm_wr_trim(ffarm_wr_t *w);
void ffarm_wr_destroy(ffarm_wr_t *w);
void ffarm_wr_set_direct(ffarm_wr_t *w, bool on);
uint64_t ffarm_wr_direct_bytes(ffarm_wr_t *w);

/* Gives the decoder a new FFARM_DEC_BUF buffer (ffarm_big_alloc) once the frame
 * it handed out is no longer needed by it, and returns the old one, which
 * still holds that frame (its ffarm_frame_t pointers stay valid). Only right
 * after ffarm_dec_feed()/ffarm_dec_commit() returned 1. */
uint8_t *ffarm_dec_swap(ffarm_dec_t *d, uint8_t *buf);

#endif
