/* /proc/<pid>/stat parsing, shared by the liveness check (is the owner of a
 * registration still the same live process?) and the sampler. */
#define _GNU_SOURCE
#include "segment.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int fmon_parse_stat(const char *line, fmon_stat_t *st)
{
    /* comm (field 2) may hold spaces and ')': it ends at the last ')'. */
    const char *open = strchr(line, '(');
    const char *close = strrchr(line, ')');
    if (!open || !close || close < open || close[1] != ' ' || !close[2])
        return -EIO;
    size_t n = (size_t)(close - open - 1);
    if (n >= sizeof(st->comm))
        n = sizeof(st->comm) - 1;
    memcpy(st->comm, open + 1, n);
    st->comm[n] = '\0';
    const char *p = close + 2; /* field 3 */
    st->state = *p;
    uint64_t v[40] = {0};
    int field = 3;
    while (field < 39) {
        p = strchr(p, ' ');
        if (!p)
            return -EIO;
        p++;
        field++;
        char *end;
        errno = 0;
        unsigned long long x = strtoull(p, &end, 10);
        if (end == p) /* negative fields (priority, ...) are not ones we use */
            x = 0;
        v[field] = x;
    }
    st->utime = v[14];
    st->stime = v[15];
    st->start_time = v[22];
    st->rss_pages = v[24];
    st->cpu = (uint32_t)v[39];
    return 0;
}

/* Reads a stat file into buf (NUL-terminated). -ESRCH if it is gone. */
static int read_stat(const char *path, char *buf, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? -ESRCH : -errno;
    ssize_t n = read(fd, buf, len - 1);
    close(fd);
    if (n <= 0)
        return -ESRCH; /* vanished between open and read */
    buf[n] = '\0';
    return 0;
}

int fmon_proc_start_time(pid_t pid, uint64_t *start_time)
{
    char path[64], buf[1024];
    fmon_stat_t st;
    if (pid <= 0)
        return -ESRCH;
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    int rc = read_stat(path, buf, sizeof(buf));
    if (rc < 0)
        return rc;
    if (fmon_parse_stat(buf, &st) < 0)
        return -EIO;
    if (st.state == 'Z' || st.state == 'X')
        return -ESRCH; /* dead, not yet reaped: its registrations are free */
    *start_time = st.start_time;
    return 0;
}

bool fmon_proc_alive(pid_t pid, uint64_t start_time)
{
    uint64_t st;
    int rc = fmon_proc_start_time(pid, &st);
    if (rc == -ESRCH)
        return false;
    if (rc < 0) /* /proc unreadable (hidepid?): fall back to kill(pid, 0) */
        return kill(pid, 0) == 0 || errno == EPERM;
    return start_time == 0 || st == start_time;
}
