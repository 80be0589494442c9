/* Kolosal server: one line per request or event, to a file or stderr. */
#ifndef KSRV_LOG_H
#define KSRV_LOG_H

#include <stdio.h>

/* Opens path for appending ("" or NULL: stderr). 0 or -errno. */
int ksrv_log_open(const char *path);
/* Writes "<time> <formatted>\n". Buffered; see ksrv_log_flush. */
void ksrv_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void ksrv_log_flush(void);
void ksrv_log_close(void);

#endif
