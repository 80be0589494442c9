/* ferry farm: a file writer thread for one connection's incoming file.
 *
 * Why: on the receiving side a big DATA frame costs a socket read, the tag
 * check and a write() into the page cache, and the last is the largest part
 * (fresh page-cache pages; on a VM each one is a host fault too). Done on the
 * loop's thread, the three run one after the other; here the write runs on a
 * second core while the loop reads and checks the next frame.
 *
 * Ownership: buffers are ffarm_big_alloc(FFARM_FRAME_MAX) blocks, so they are
 * interchangeable with the decoder's own (ffarm_dec_swap). ffarm_wr_buf()
 * hands one to the loop; ffarm_wr_put() gives one (holding a frame) to the
 * thread, which keeps it on the free list once its bytes are written. At
 * most `depth` writes are queued or running, so a connection's memory stays
 * bounded: when all are, ffarm_wr_buf() waits for the oldest write
 * (back-pressure on the loop, as a synchronous write would be). Writes go to explicit offsets
 * (pwrite), so the fd's file position is never shared with the thread. */
#include "farm_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#define WR_MAX 8             /* depth bound */

typedef struct wr_item {
  uint8_t *buf;              /* the buffer (FFARM_FRAME_MAX bytes, ffarm_big_alloc) */
  const uint8_t *data;       /* the bytes, inside buf */
  size_t len;                /* how many */
  uint64_t off;              /* file offset */
  int fd;                    /* where they go */
} wr_item_t;

struct ffarm_wr {
  pthread_mutex_t mu;        /* guards everything below */
  pthread_cond_t cv_work;    /* the thread waits for work or stop */
  pthread_cond_t cv_done;    /* the loop waits for a free buffer or an empty queue */
  pthread_t th;              /* the writer thread */
  bool started;              /* th runs */
  bool stop;                 /* destroy: the thread exits when the queue is empty */
  unsigned depth;            /* writes queued or running at most (<= WR_MAX) */
  wr_item_t q[WR_MAX];       /* ring of queued writes, in order */
  unsigned q_head, q_n;      /* its first slot and length */
  bool busy;                 /* the thread writes an item taken off the ring */
  uint8_t *free_bufs[WR_MAX + 2]; /* buffers ready for the loop */
  unsigned nfree;            /* how many */
  int err;                   /* first write error since the last ffarm_wr_drain() */
};

/* Writes it all at it->off; -errno on failure. */
static int write_all(const wr_item_t *it) {
  size_t done = 0;
  while (done < it->len) {
    ssize_t n = pwrite(it->fd, it->data + done, it->len - done, (off_t)(it->off + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -errno;
    if (n == 0) return -EIO;
    done += (size_t)n;
  }
  return 0;
}

/* Under mu: a buffer the loop no longer needs. */
static void give_back(ffarm_wr_t *w, uint8_t *buf) {
  if (w->nfree < WR_MAX + 2) w->free_bufs[w->nfree++] = buf;
  else ffarm_big_free(buf, FFARM_FRAME_MAX);
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
    w->busy = true;
    /* one error per file is enough: later writes of a failed file are skipped */
    bool skip = w->err < 0;
    pthread_mutex_unlock(&w->mu);
    int rc = skip ? 0 : write_all(&it);
    pthread_mutex_lock(&w->mu);
    if (rc < 0 && w->err == 0) w->err = rc;
    w->busy = false;
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
    if (w->q_n + (w->busy ? 1u : 0u) < w->depth) {
      buf = ffarm_big_alloc(FFARM_FRAME_MAX);
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
  if (fd < 0 || data < buf || data + len > buf + FFARM_FRAME_MAX) {
    pthread_mutex_lock(&w->mu);
    give_back(w, buf);
    pthread_mutex_unlock(&w->mu);
    return -EINVAL;
  }
  wr_item_t it = {.buf = buf, .data = data, .len = len, .off = off, .fd = fd};
  pthread_mutex_lock(&w->mu);
  if (!w->started && !w->stop) {
    if (pthread_create(&w->th, NULL, wr_main, w) == 0) w->started = true;
  }
  if (!w->started) {
    /* no thread: write here, as a plain write() would */
    int rc = w->err < 0 ? 0 : write_all(&it);
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
  while (w->q_n > 0 || w->busy) pthread_cond_wait(&w->cv_done, &w->mu);
  int rc = w->err;
  w->err = 0;
  pthread_mutex_unlock(&w->mu);
  return rc;
}

void ffarm_wr_trim(ffarm_wr_t *w) {
  if (!w) return;
  pthread_mutex_lock(&w->mu);
  while (w->nfree > 0) ffarm_big_free(w->free_bufs[--w->nfree], FFARM_FRAME_MAX);
  pthread_mutex_unlock(&w->mu);
}

void ffarm_wr_destroy(ffarm_wr_t *w) {
  if (!w) return;
  pthread_mutex_lock(&w->mu);
  w->stop = true;
  pthread_cond_signal(&w->cv_work);
  bool started = w->started;
  pthread_mutex_unlock(&w->mu);
  if (started) pthread_join(w->th, NULL);  /* the queue is written first */
  while (w->nfree > 0) ffarm_big_free(w->free_bufs[--w->nfree], FFARM_FRAME_MAX);
  pthread_cond_destroy(&w->cv_done);
  pthread_cond_destroy(&w->cv_work);
  pthread_mutex_destroy(&w->mu);
  free(w);
}
