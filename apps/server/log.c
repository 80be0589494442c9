/* Kolosal server log. Buffered (a line per request at tens of thousands of
 * requests per second must not cost a write(2) each); the server flushes on a
 * timer and at exit. */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>

static FILE *log_fp;           /* log stream */
static char log_buf[1 << 16];  /* its buffer */
static time_t stamp_sec = -1;  /* second the cached stamp is for */
static char stamp[32];         /* "2025-01-02T03:04:05" */

int ksrv_log_open(const char *path) {
  if (!path || !path[0]) {
    log_fp = stderr;
    return 0;
  }
  FILE *f = fopen(path, "a");
  if (!f) return -errno;
  setvbuf(f, log_buf, _IOFBF, sizeof(log_buf));
  log_fp = f;
  return 0;
}

void ksrv_log(const char *fmt, ...) {
  FILE *f = log_fp ? log_fp : stderr;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  if (ts.tv_sec != stamp_sec) {
    struct tm tm;
    localtime_r(&ts.tv_sec, &tm);
    strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
    stamp_sec = ts.tv_sec;
  }
  fprintf(f, "%s.%03ld ", stamp, ts.tv_nsec / 1000000);
  va_list ap;
  va_start(ap, fmt);
  vfprintf(f, fmt, ap);
  va_end(ap);
  fputc('\n', f);
}

void ksrv_log_flush(void) {
  if (log_fp) fflush(log_fp);
}

void ksrv_log_close(void) {
  if (log_fp && log_fp != stderr) fclose(log_fp);
  log_fp = NULL;
}
