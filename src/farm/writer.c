/* ferry farm: file writer threads for one connection's incoming file.
 *
 * Why: on the receiving side a big DATA frame costs a socket read, the tag
 * check and a write() into the page cache, and the last is the largest part
 * (fresh page-cache pages; on a VM each one is a host fault too). Done on the
 * loop's thread, the three run one after the other; here the write runs on a
 * second core while the loop reads and checks the next frame.
 *
 * Direct I/O: the threads write the aligned part of each item through a
 * second open file description of the same file with O_DIRECT (opened from
 * /proc/self/fd/N at the file's first item, closed by ffarm_wr_drain()).
 * The bytes then go from our (reused, already faulted-in) buffer to the disk
 * without a page-cache copy: no fresh page-cache pages to allocate, touch
 * and later write back. Measured on the development VM (1 GiB, 1 MiB
 * writes): the page-cache copy into fresh pages costs 0.4-0.85 ms of CPU
 * per MiB, the direct write 0.07-0.1 ms while the disk takes 1.0-1.3 GB/s.
 * What is not aligned (a file's tail, a buffer or offset off the boundary)
 * and any file system without O_DIRECT go through the caller's descriptor
 * as before; so does the rest of a file whose direct write failed with
 * EINVAL. Durability does not change: the caller's fsync() before it
 * reports the file covers both (the device cache flush, the metadata).
 *
 * Ownership: buffers are ffarm_big_alloc(FFARM_DEC_BUF) blocks, so they are
 * interchangeable with the decoder's own (ffarm_dec_swap). ffarm_wr_buf()
 * hands one to the loop; ffarm_wr_put() gives one (holding a frame) to the
 * thread, which keeps it on the free list once its bytes are written. At
 * most `depth` writes are queued or running, so a connection's memory stays
 * bounded: when all are, ffarm_wr_buf() waits for the oldest write
 * (back-pressure on the loop, as a synchronous write would be). Writes go to explicit offsets
 * (pwrite), so the fd's file position is never shared with the thread. */
#define _GNU_SOURCE 1 /* O_DIRECT, statx */
#include "farm_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define WR_MAX 8             /* depth bound */
/* Writer threads. Two: with direct I/O each write waits for the disk, and
 * a second write in flight keeps the disk busy while the first completes
 * (1 GiB into a preallocated file on the shared development VM: 0.9-1.3 GB/s
 * with two, 0.8-1.3 GB/s with one: within that box's noise, never worse).
 * The second starts only once writes queue up. Through the page cache the
 * file's lock makes them take turns (no loss). */
#define WR_THREADS 2

typedef struct wr_item {
  uint8_t *buf;              /* the buffer (FFARM_DEC_BUF bytes, ffarm_big_alloc) */
  const uint8_t *data;       /* the bytes, inside buf */
  size_t len;                /* how many */
  uint64_t off;              /* file offset */
  int fd;                    /* where they go */
} wr_item_t;

struct ffarm_wr {
  pthread_mutex_t mu;        /* guards everything below */
  pthread_cond_t cv_work;    /* the threads wait for work or stop */
  pthread_cond_t cv_done;    /* the loop waits for a free buffer or an empty queue */
  pthread_t th[WR_THREADS];  /* the writer threads */
  unsigned started;          /* how many of th run */
  bool stop;                 /* destroy: the threads exit when the queue is empty */
  unsigned depth;            /* writes queued or running at most (<= WR_MAX) */
  wr_item_t q[WR_MAX];       /* ring of queued writes, in order */
  unsigned q_head, q_n;      /* its first slot and length */
  unsigned nbusy;            /* items taken off the ring and being written */
  uint8_t *free_bufs[WR_MAX + 2]; /* buffers ready for the loop */
  unsigned nfree;            /* how many */
  int err;                   /* first write error since the last ffarm_wr_drain() */
  /* The direct-I/O twin of the current file: looked up under mu for each
   * item, used outside it by the writing thread, closed only when nothing
   * is being written (drain, destroy), so no thread writes to a closed or
   * reused fd number. */
  bool direct;               /* try O_DIRECT at all (ffarm_wr_set_direct) */
  int dio_for;               /* the caller's fd the twin belongs to (-1 none yet) */
  int dio_fd;                /* the twin (-1: none, or O_DIRECT unavailable for this file) */
  bool dio_refused;          /* a direct write failed with EINVAL: page cache for the rest */
  dev_t dio_dev;             /* the file's device and inode, checked on every item */
  ino_t dio_ino;
  size_t dio_mem, dio_off;   /* alignment of memory and of offsets/lengths */
  uint64_t dio_bytes;        /* bytes written with O_DIRECT since init (for tests) */
};

static void dio_close(ffarm_wr_t *w) {
  if (w->dio_fd >= 0) close(w->dio_fd);
  w->dio_fd = -1;
  w->dio_for = -1;
  w->dio_refused = false;
}

/* The twin of fd, opened on first use; -1 if O_DIRECT is not to be had. */
static int dio_twin(ffarm_wr_t *w, int fd) {
  if (!w->direct) return -1;
  struct stat st;
  if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) return -1;
  if (w->dio_for == fd && st.st_dev == w->dio_dev && st.st_ino == w->dio_ino)
    return w->dio_refused ? -1 : w->dio_fd;
  if (w->nbusy > 1) return -1;  /* another thread may be writing through the old twin */
  dio_close(w);
  w->dio_for = fd;
  w->dio_dev = st.st_dev;
  w->dio_ino = st.st_ino;
  char path[64];
  snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
  int d = open(path, O_WRONLY | O_DIRECT | O_CLOEXEC);
  struct stat st2;
  if (d >= 0 && (fstat(d, &st2) < 0 || st2.st_dev != st.st_dev || st2.st_ino != st.st_ino)) {
    close(d);
    d = -1;
  }
  if (d < 0) return -1;
  /* the alignment the file system asks for (Linux 6.1+), else the page */
  w->dio_mem = FFARM_DATA_ALIGN;
  w->dio_off = FFARM_DATA_ALIGN;
#ifdef STATX_DIOALIGN
  struct statx sx;
  if (statx(d, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) == 0 && (sx.stx_mask & STATX_DIOALIGN)) {
    if (sx.stx_dio_mem_align == 0 || sx.stx_dio_offset_align == 0) {
      close(d);  /* the file system says: no direct I/O on this file */
      return -1;
    }
    w->dio_mem = sx.stx_dio_mem_align;
    w->dio_off = sx.stx_dio_offset_align;
  }
#endif
  w->dio_fd = d;
  return d;
}

/* How to write one item: the twin (or -1) and its alignments, from mu. */
typedef struct wr_how {
  int dio;                   /* O_DIRECT twin of the item's fd, -1 none */
  size_t mem, off;           /* its memory and offset/length alignment */
  uint64_t dio_bytes;        /* out: bytes written through it */
  bool refused;              /* out: it failed with EINVAL */
} wr_how_t;

/* Under mu: how the next item goes. */
static wr_how_t how_for(ffarm_wr_t *w, int fd) {
  wr_how_t h = {.dio = dio_twin(w, fd), .mem = w->dio_mem, .off = w->dio_off};
  return h;
}

/* Under mu: what a write learnt. */
static void learn(ffarm_wr_t *w, const wr_how_t *h) {
  w->dio_bytes += h->dio_bytes;
  if (h->refused) w->dio_refused = true;
}

/* Writes it all at it->off, the aligned part with O_DIRECT where it can;
 * -errno on failure. Touches nothing shared (runs outside mu). */
static int write_all(const wr_item_t *it, wr_how_t *h) {
  size_t done = 0;
  while (done < it->len) {
    const uint8_t *p = it->data + done;
    size_t n = it->len - done;
    uint64_t off = it->off + done;
    int fd = it->fd;
    bool direct = h->dio >= 0 && (uintptr_t)p % h->mem == 0 && off % h->off == 0 && n >= h->off;
    if (direct) {
      fd = h->dio;
      n -= n % h->off;
    }
    ssize_t r = pwrite(fd, p, n, (off_t)off);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && direct && errno == EINVAL) {
      h->refused = true;  /* refused after all: the rest of this file goes through the page cache */
      h->dio = -1;
      continue;
    }
    if (r < 0) return -errno;
    if (r == 0) return -EIO;
    if (direct) h->dio_bytes += (uint64_t)r;
    done += (size_t)r;
  }
  return 0;
}

/* Under mu: a buffer the loop no longer needs. */
static void give_back(ffarm_wr_t *w, uint8_t *buf) {
  if (w->nfree < WR_MAX + 2) w->free_bufs[w->nfree++] = buf;
  else ffarm_big_free(buf, FFARM_DEC_BUF);
}

static void *wr_main(void *arg) {
  ffarm_wr_t *w = arg;
  pthread_mutex_lock(&w->mu);
  for (;;) {
    while (w->q_n == 0 && !w->stop) pthread_cond_wait(&w->cv_work, &w->mu);
    if (w->q_n == 0) break;  /* stop, nothing left */
    wr_item_t it = w->q[w->q_head];
    w->q_head = (w->q_head + 1) % WR_MAX;
    w->q_n--;
    w->nbusy++;
    /* one error per file is enough: later writes of a failed file are skipped */
    bool skip = w->err < 0;
    wr_how_t h = how_for(w, it.fd);
    pthread_mutex_unlock(&w->mu);
    int rc = skip ? 0 : write_all(&it, &h);
    pthread_mutex_lock(&w->mu);
    learn(w, &h);
    if (rc < 0 && w->err == 0) w->err = rc;
    w->nbusy--;
    give_back(w, it.buf);
    pthread_cond_broadcast(&w->cv_done);
  }
  pthread_mutex_unlock(&w->mu);
  return NULL;
}

int ffarm_wr_init(ffarm_wr_t **out, unsigned depth) {
  ffarm_wr_t *w = calloc(1, sizeof(*w));
  if (!w) return -ENOMEM;
  w->depth = depth < 1 ? 1 : depth > WR_MAX ? WR_MAX : depth;
  w->direct = true;
  w->dio_fd = -1;
  w->dio_for = -1;
  pthread_mutex_init(&w->mu, NULL);
  pthread_cond_init(&w->cv_work, NULL);
  pthread_cond_init(&w->cv_done, NULL);
  *out = w;
  return 0;
}

uint8_t *ffarm_wr_buf(ffarm_wr_t *w) {
  pthread_mutex_lock(&w->mu);
  uint8_t *buf = NULL;
  for (;;) {
    if (w->nfree > 0) {
      buf = w->free_bufs[--w->nfree];
      break;
    }
    if (w->q_n + w->nbusy < w->depth) {
      buf = ffarm_big_alloc(FFARM_DEC_BUF);
      break;
    }
    /* all in flight: wait for the oldest write (back-pressure) */
    pthread_cond_wait(&w->cv_done, &w->mu);
  }
  pthread_mutex_unlock(&w->mu);
  return buf;
}

int ffarm_wr_put(ffarm_wr_t *w, uint8_t *buf, int fd, const uint8_t *data, size_t len,
                 uint64_t off) {
  if (fd < 0 || data < buf || data + len > buf + FFARM_DEC_BUF) {
    pthread_mutex_lock(&w->mu);
    give_back(w, buf);
    pthread_mutex_unlock(&w->mu);
    return -EINVAL;
  }
  wr_item_t it = {.buf = buf, .data = data, .len = len, .off = off, .fd = fd};
  pthread_mutex_lock(&w->mu);
  while (w->started < WR_THREADS && !w->stop && w->q_n >= w->started &&
         pthread_create(&w->th[w->started], NULL, wr_main, w) == 0)
    w->started++;
  if (!w->started) {
    /* no thread: write here, as a plain write() would */
    wr_how_t h = how_for(w, fd);
    int rc = w->err < 0 ? 0 : write_all(&it, &h);
    learn(w, &h);
    if (rc < 0 && w->err == 0) w->err = rc;
    give_back(w, buf);
    pthread_mutex_unlock(&w->mu);
    return 0;
  }
  while (w->q_n == WR_MAX) pthread_cond_wait(&w->cv_done, &w->mu);
  w->q[(w->q_head + w->q_n) % WR_MAX] = it;
  w->q_n++;
  pthread_cond_signal(&w->cv_work);
  pthread_mutex_unlock(&w->mu);
  return 0;
}

int ffarm_wr_drain(ffarm_wr_t *w) {
  if (!w) return 0;
  pthread_mutex_lock(&w->mu);
  while (w->q_n > 0 || w->nbusy > 0) pthread_cond_wait(&w->cv_done, &w->mu);
  int rc = w->err;
  w->err = 0;
  dio_close(w);  /* the file is done: its fd number may name another file next */
  pthread_mutex_unlock(&w->mu);
  return rc;
}

void ffarm_wr_trim(ffarm_wr_t *w) {
  if (!w) return;
  pthread_mutex_lock(&w->mu);
  while (w->nfree > 0) ffarm_big_free(w->free_bufs[--w->nfree], FFARM_DEC_BUF);
  pthread_mutex_unlock(&w->mu);
}

void ffarm_wr_set_direct(ffarm_wr_t *w, bool on) {
  pthread_mutex_lock(&w->mu);
  w->direct = on;
  pthread_mutex_unlock(&w->mu);
}

uint64_t ffarm_wr_direct_bytes(ffarm_wr_t *w) {
  pthread_mutex_lock(&w->mu);
  uint64_t n = w->dio_bytes;
  pthread_mutex_unlock(&w->mu);
  return n;
}

void ffarm_wr_destroy(ffarm_wr_t *w) {
  if (!w) return;
  pthread_mutex_lock(&w->mu);
  w->stop = true;
  pthread_cond_broadcast(&w->cv_work);
  unsigned started = w->started;
  pthread_mutex_unlock(&w->mu);
  for (unsigned i = 0; i < started; i++) pthread_join(w->th[i], NULL);  /* the queue is written first */
  dio_close(w);
  while (w->nfree > 0) ffarm_big_free(w->free_bufs[--w->nfree], FFARM_DEC_BUF);
  pthread_cond_destroy(&w->cv_done);
  pthread_cond_destroy(&w->cv_work);
  pthread_mutex_destroy(&w->mu);
  free(w);
}
