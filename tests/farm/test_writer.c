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
  cr_assert_eq(ffarm_wr_put(w, d, 1, d + FFARM_DEC_BUF - 5, 10, 0), -EINVAL);  /* outside */
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
  uint8_t *fresh = ffarm_big_alloc(FFARM_DEC_BUF);
  uint8_t *old = ffarm_dec_swap(&d, fresh);
  cr_assert_eq(memcmp(f.payload, "12345", 5), 0);
  cr_assert(f.payload >= old && f.payload < old + FFARM_DEC_BUF);
  ffarm_frame_t g;
  size_t used2;
  cr_assert_eq(ffarm_dec_feed(&d, wire + used, sizeof(wire) - used, &used2, &g), 1);
  cr_assert_eq(memcmp(g.payload, "67890", 5), 0);
  cr_assert(g.payload >= fresh && g.payload < fresh + FFARM_DEC_BUF);
  cr_assert_eq(memcmp(f.payload, "12345", 5), 0);  /* the old frame is untouched */
  ffarm_big_free(old, FFARM_DEC_BUF);
  ffarm_dec_destroy(&d);
}

/* Frames of every id length, fed in pieces of several sizes and read
 * zero-copy: the payload always starts on an FFARM_DATA_ALIGN boundary (what
 * lets the writer send it to the disk with O_DIRECT) and the header and id
 * stay intact before it. */
Test(writer, decoder_puts_every_payload_on_the_alignment, .timeout = 60) {
  ffarm_dec_t d;
  cr_assert_eq(ffarm_dec_init(&d), 0);
  enum { PL = 70000 };
  uint8_t *wire = malloc(FFARM_HDR_LEN + FFARM_ID_MAX + PL);
  char id[FFARM_ID_MAX];
  memset(id, 'q', sizeof(id));
  const size_t pieces[] = {1, 7, 16, 100, 4096, 65536, 1 << 20};
  for (unsigned idl = 1; idl <= FFARM_ID_MAX; idl += 9) {
    for (size_t pi = 0; pi < sizeof(pieces) / sizeof(pieces[0]); pi++) {
      ffarm_hdr_t h = {.type = FFARM_T_DATA, .id_len = (uint16_t)idl, .payload_len = PL};
      ffarm_hdr_put(wire, &h);
      memcpy(wire + FFARM_HDR_LEN, id, idl);
      size_t n = FFARM_HDR_LEN + idl + PL;
      for (size_t k = FFARM_HDR_LEN + idl; k < n; k++) wire[k] = (uint8_t)(k * 31 + idl);
      size_t off = 0;
      int got = 0;
      ffarm_frame_t f;
      while (off < n && !got) {
        uint8_t *p;
        size_t room = ffarm_dec_space(&d, &p);
        size_t step = pieces[pi] < n - off ? pieces[pi] : n - off;
        if (room > 0 && pi % 2 == 0) {  /* the connection's zero-copy path */
          if (step > room) step = room;
          memcpy(p, wire + off, step);
          got = ffarm_dec_commit(&d, step, &f);
          off += step;
        } else {
          size_t used;
          got = ffarm_dec_feed(&d, wire + off, step, &used, &f);
          off += used;
        }
        cr_assert_geq(got, 0);
      }
      cr_assert_eq(got, 1, "id %u piece %zu", idl, pieces[pi]);
      cr_assert_eq(off, n);
      cr_assert_eq((uintptr_t)f.payload % FFARM_DATA_ALIGN, 0, "id %u piece %zu", idl, pieces[pi]);
      cr_assert_eq(f.len, (size_t)PL);
      cr_assert_eq(f.id_len, idl);
      cr_assert_eq(memcmp(f.hdr, wire, FFARM_HDR_LEN + idl), 0);
      cr_assert_eq(memcmp(f.payload, wire + FFARM_HDR_LEN + idl, PL), 0);
    }
  }
  free(wire);
  ffarm_dec_destroy(&d);
}

/* Whether the file system under path takes O_DIRECT at all. */
static bool direct_io_works(const char *path) {
  int fd = open(path, O_WRONLY | O_DIRECT);
  if (fd < 0) return false;
  void *b = ffarm_big_alloc(FFARM_DEC_BUF);
  bool ok = b && pwrite(fd, b, FFARM_DATA_ALIGN, 0) == (ssize_t)FFARM_DATA_ALIGN;
  ffarm_big_free(b, FFARM_DEC_BUF);
  close(fd);
  return ok && truncate(path, 0) == 0;
}

/* Aligned frames of a file go to the disk with O_DIRECT, the rest of a tail
 * and an unaligned buffer through the page cache, and the file holds exactly the
 * bytes in both cases; with direct I/O off nothing goes direct. The second
 * file on the same fd number after a drain is written right too (the twin
 * descriptor belongs to one file). */
static void write_mixed(bool direct) {
  char path[64], path2[64];
  int fd = tmpfile_fd(path, sizeof(path));
  if (direct && !direct_io_works(path)) {
    close(fd);
    unlink(path);
    cr_skip_test("no O_DIRECT on /tmp");
  }
  ffarm_wr_t *w;
  cr_assert_eq(ffarm_wr_init(&w, 3), 0);
  ffarm_wr_set_direct(w, direct);
  enum { MB = 1 << 20, N = 6, TAIL = 5000 };
  /* N aligned MiB frames (from page-aligned buffers), one of them handed
   * over at an odd address, then a tail that is not a whole block */
  for (int i = 0; i < N; i++) {
    uint8_t *b = ffarm_wr_buf(w);
    cr_assert_not_null(b);
    uint8_t *data = i == 2 ? b + 16 : b;
    for (size_t k = 0; k < MB; k += 512) memset(data + k, 'A' + (i * 7 + (int)(k >> 9)) % 26, 512);
    cr_assert_eq(ffarm_wr_put(w, b, fd, data, MB, (uint64_t)i * MB), 0);
  }
  uint8_t *b = ffarm_wr_buf(w);
  memset(b, 'z', TAIL);
  cr_assert_eq(ffarm_wr_put(w, b, fd, b, TAIL, (uint64_t)N * MB), 0);
  cr_assert_eq(ffarm_wr_drain(w), 0);
  uint64_t dio = ffarm_wr_direct_bytes(w);
  /* direct: the five aligned frames and the tail's whole blocks (the block
   * size is the file system's direct-I/O alignment, 512 to 4096), not the
   * frame at the odd address */
  if (direct)
    cr_assert(dio >= (uint64_t)(N - 1) * MB && dio < (uint64_t)(N - 1) * MB + TAIL && dio % 512 == 0,
              "direct bytes %llu", (unsigned long long)dio);
  else
    cr_assert_eq(dio, 0);
  struct stat st;
  cr_assert_eq(fstat(fd, &st), 0);
  cr_assert_eq(st.st_size, (off_t)N * MB + TAIL);
  uint8_t *got = malloc(MB);
  for (int i = 0; i < N; i++) {
    cr_assert_eq(pread(fd, got, MB, (off_t)i * MB), MB);
    for (size_t k = 0; k < MB; k += 512)
      cr_assert_eq(got[k + 511], 'A' + (i * 7 + (int)(k >> 9)) % 26, "frame %d at %zu", i, k);
  }
  cr_assert_eq(pread(fd, got, MB, (off_t)N * MB), TAIL);
  for (size_t k = 0; k < TAIL; k++) cr_assert_eq(got[k], 'z');
  /* the next file gets the same fd number: its bytes must land in it */
  close(fd);
  int fd2 = tmpfile_fd(path2, sizeof(path2));
  uint8_t *c = ffarm_wr_buf(w);
  memset(c, 'k', MB);
  cr_assert_eq(ffarm_wr_put(w, c, fd2, c, MB, 0), 0);
  cr_assert_eq(ffarm_wr_drain(w), 0);
  cr_assert_eq(pread(fd2, got, MB, 0), MB);
  for (size_t k = 0; k < MB; k += 4093) cr_assert_eq(got[k], 'k');
  cr_assert_eq(stat(path, &st), 0);
  cr_assert_eq(st.st_size, (off_t)N * MB + TAIL, "the first file was not touched again");
  free(got);
  ffarm_wr_destroy(w);
  close(fd2);
  unlink(path);
  unlink(path2);
}

Test(writer, aligned_frames_go_direct_the_rest_through_the_page_cache, .timeout = 60) {
  write_mixed(true);
}

Test(writer, direct_io_off_writes_everything_through_the_page_cache, .timeout = 60) {
  write_mixed(false);
}
