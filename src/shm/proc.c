/* Process liveness from /proc: kill(pid, 0) alone says yes to a zombie and to
 * an unrelated process that reused the pid; the start time tells both. */
#include "segment.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <unistd.h>

/* Reads a stat file (/proc/<pid>/stat or /proc/<pid>/task/<tid>/stat). */
static int stat_file(const char *path, uint64_t *start_time, char *state)
{
    char buf[1024];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? -ESRCH : -errno;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return -ESRCH; /* vanished between open and read */
    buf[n] = '\0';
    /* comm (field 2) may hold spaces and ')': fields resume after the last ')'. */
    char *p = strrchr(buf, ')');
    if (!p || p[1] != ' ')
        return -EIO;
    p += 2; /* field 3: state */
    char st = *p;
    /* Skip to field 22 (starttime): 19 more separators. */
    for (int field = 3; field < 22; field++) {
        p = strchr(p, ' ');
        if (!p)
            return -EIO;
        p++;
    }
    if (start_time)
        *start_time = strtoull(p, NULL, 10);
    if (state)
        *state = st;
    return 0;
}

int fshm__proc_stat(pid_t pid, uint64_t *start_time, char *state)
{
    char path[64];
    if (pid <= 0)
        return -ESRCH;
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    return stat_file(path, start_time, state);
}

char fshm__proc_thread_state(pid_t pid, pid_t tid)
{
    char path[80], st = '?';
    if (pid <= 0)
        return st;
    if (tid > 0)
        snprintf(path, sizeof(path), "/proc/%d/task/%d/stat", (int)pid, (int)tid);
    else
        snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    if (stat_file(path, NULL, &st) < 0)
        return '?';
    return st;
}

bool fshm__proc_alive(pid_t pid, uint64_t start_time)
{
    uint64_t st;
    char state;
    int rc = fshm__proc_stat(pid, &st, &state);
    if (rc == -ESRCH)
        return false;
    if (rc < 0) /* /proc unreadable here (hidepid?): fall back to kill(pid, 0) */
        return kill(pid, 0) == 0 || errno == EPERM;
    if (state == 'Z' || state == 'X')
        return false;
    return start_time == 0 || st == start_time;
}
