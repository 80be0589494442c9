/* farm writer thread (src/farm/writer.c): bytes land at their offsets
 * whatever the order of hand-over, the depth bounds the buffers in flight,
 * a write error is reported once by drain, and destroy writes what is
 * queued. The decoder's buffer swap keeps the handed-out frame intact. */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../src/farm/farm_internal.h"

static int tmpfile_fd(char *path, size_t cap) {
  snprintf(path, cap, "/tmp/ffarm-wr-%d-XXXXXX", (int)getpid());
  int fd = mkstemp(path);
  cr_assert(fd >= 0);
  return fd;
}

Test(writer, bytes_land_at_their_offsets, .timeout = 60) {
  char path[64];
  int fd = tmpfile_fd(path, sizeof(path));
  ffarm_wr_t *w;
  cr_assert_eq(ffarm_wr_init(&w, 3), 0);
  enum { CH = 300000, N = 40 };
  /* written back to front: only the offsets put them in order */
  for (int i = N - 1; i >= 0; i--) {
    uint8_t *b = ffarm_wr_buf(w);
    cr_assert_not_null(b);
    memset(b + 7, 'a' + i % 26, CH);
    cr_assert_eq(ffarm_wr_put(w, b, fd, b + 7, CH, (uint64_t)i * CH), 0);
  }
  cr_assert_eq(ffarm_wr_drain(w), 0);
  struct stat st;
  cr_assert_eq(fstat(fd, &st), 0);
  cr_assert_eq(st.st_size, (off_t)CH * N);
  uint8_t *got = malloc(CH);
  for (int i = 0; i < N; i++) {
    cr_assert_eq(pread(fd, got, CH, (off_t)i * CH), CH);
    for (size_t k = 0; k < CH; k += 997) cr_assert_eq(got[k], 'a' + i % 26, "chunk %d", i);
  }
  free(got);
  ffarm_wr_destroy(w);
  close(fd);
  unlink(path);
}

Test(writer, depth_bounds_the_buffers, .timeout = 60) {
  /* 60 frames through a depth-2 writer: never more than depth + 1 distinct
   * buffers (the one the loop holds, the ones in flight), so memory stays a
   * few MiB whatever the file size */
  char path[64];
  int fd = tmpfile_fd(path, sizeof(path));
  ffarm_wr_t *w;
  cr_assert_eq(ffarm_wr_init(&w, 2), 0);
  uint8_t *seen[16];
  int nseen = 0;
  for (int i = 0; i < 60; i++) {
    uint8_t *b = ffarm_wr_buf(w);
    cr_assert_not_null(b);
    bool known = false;
    for (int k = 0; k < nseen; k++) known = known || seen[k] == b;
    if (!known) {
      cr_assert_lt(nseen, 3, "a buffer beyond depth + 1");
      seen[nseen++] = b;
    }
    memset(b, 'y', 1 << 20);
    cr_assert_eq(ffarm_wr_put(w, b, fd, b, 1 << 20, (uint64_t)i << 20), 0);
  }
  cr_assert_eq(ffarm_wr_drain(w), 0);
  ffarm_wr_destroy(w);
  close(fd);
  unlink(path);
}

Test(writer, errors_reported_once_and_buffers_come_back, .timeout = 60) {
  int p[2];
  cr_assert_eq(pipe(p), 0);
  ffarm_wr_t *w;
  cr_assert_eq(ffarm_wr_init(&w, 2), 0);
  uint8_t *a = ffarm_wr_buf(w), *b = ffarm_wr_buf(w);
  cr_assert(a && b && a != b);
  /* pwrite on a pipe: ESPIPE; the second write of the failed file is skipped */
  cr_assert_eq(ffarm_wr_put(w, a, p[1], a, 100, 0), 0);
  cr_assert_eq(ffarm_wr_put(w, b, p[1], b, 100, 100), 0);
  cr_assert_eq(ffarm_wr_drain(w), -ESPIPE);
  cr_assert_eq(ffarm_wr_drain(w), 0);  /* reported once: the next file starts clean */
  /* both buffers are back: the same memory again, no new one */
  uint8_t *c = ffarm_wr_buf(w), *d = ffarm_wr_buf(w);
  cr_assert(c && d && c != d);
  cr_assert((c == a || c == b) && (d == a || d == b));
  cr_assert_eq(ffarm_wr_put(w, c, -1, c, 10, 0), -EINVAL);  /* bad fd: the buffer comes back */
  cr_assert_eq(ffarm_wr_put(w, d, 1, d + FFARM_FRAME_MAX - 5, 10, 0), -EINVAL);  /* outside */
  cr_assert_eq(ffarm_wr_drain(w), 0);
  ffarm_wr_destroy(w);
  close(p[0]);
  close(p[1]);
}

Test(writer, a_full_disk_is_reported_by_drain, .timeout = 60) {
  int fd = open("/dev/full", O_WRONLY);
  if (fd < 0) cr_skip_test("no /dev/full");
  ffarm_wr_t *w;
  cr_assert_eq(ffarm_wr_init(&w, 3), 0);
  for (int i = 0; i < 5; i++) {
    uint8_t *b = ffarm_wr_buf(w);
    cr_assert_not_null(b);
    cr_assert_eq(ffarm_wr_put(w, b, fd, b, 4096, (uint64_t)i * 4096), 0);
  }
  cr_assert_eq(ffarm_wr_drain(w), -ENOSPC);
  ffarm_wr_destroy(w);
  close(fd);
}

Test(writer, destroy_writes_what_is_queued, .timeout = 60) {
  char path[64];
  int fd = tmpfile_fd(path, sizeof(path));
  ffarm_wr_t *w;
  cr_assert_eq(ffarm_wr_init(&w, 3), 0);
  for (int i = 0; i < 3; i++) {
    uint8_t *b = ffarm_wr_buf(w);
    memset(b, 'x', 1 << 20);
    cr_assert_eq(ffarm_wr_put(w, b, fd, b, 1 << 20, (uint64_t)i << 20), 0);
  }
  ffarm_wr_destroy(w);  /* no drain first */
  struct stat st;
  cr_assert_eq(fstat(fd, &st), 0);
  cr_assert_eq(st.st_size, 3 << 20);
  ffarm_wr_destroy(NULL);
  cr_assert_eq(ffarm_wr_drain(NULL), 0);
  close(fd);
  unlink(path);
}

Test(writer, decoder_swap_keeps_the_frame_and_goes_on, .timeout = 60) {
  ffarm_dec_t d;
  cr_assert_eq(ffarm_dec_init(&d), 0);
  uint8_t wire[2 * (FFARM_HDR_LEN + 3 + 5)];
  for (int i = 0; i < 2; i++) {
    ffarm_hdr_t h = {.type = FFARM_T_DATA, .id_len = 3, .payload_len = 5};
    uint8_t *p = wire + i * (FFARM_HDR_LEN + 8);
    ffarm_hdr_put(p, &h);
    memcpy(p + FFARM_HDR_LEN, "abc", 3);
    memcpy(p + FFARM_HDR_LEN + 3, i ? "67890" : "12345", 5);
  }
  ffarm_frame_t f;
  size_t used;
  cr_assert_eq(ffarm_dec_feed(&d, wire, sizeof(wire), &used, &f), 1);
  uint8_t *fresh = ffarm_big_alloc(FFARM_FRAME_MAX);
  uint8_t *old = ffarm_dec_swap(&d, fresh);
  cr_assert_eq(memcmp(f.payload, "12345", 5), 0);
  cr_assert(f.payload >= old && f.payload < old + FFARM_FRAME_MAX);
  ffarm_frame_t g;
  size_t used2;
  cr_assert_eq(ffarm_dec_feed(&d, wire + used, sizeof(wire) - used, &used2, &g), 1);
  cr_assert_eq(memcmp(g.payload, "67890", 5), 0);
  cr_assert(g.payload >= fresh && g.payload < fresh + FFARM_FRAME_MAX);
  cr_assert_eq(memcmp(f.payload, "12345", 5), 0);  /* the old frame is untouched */
  ffarm_big_free(old, FFARM_FRAME_MAX);
  ffarm_dec_destroy(&d);
}
