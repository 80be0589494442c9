/* Error texts: fshm_strerror() for the codes, fshm_last_error() for the
 * detail of the calling thread's last failure (which field, which value). */
#include "segment.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char last_error[384];

int fshm__fail(int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof(last_error), fmt, ap);
    va_end(ap);
    return err;
}

const char *fshm_last_error(void)
{
    return last_error;
}

const char *fshm_strerror(int err)
{
    switch (err) {
    case 0: return "success";
    case -EINVAL: return "invalid argument";
    case -ENOENT: return "no such server or task";
    case -EEXIST: return "a live server owns this name";
    case -EPROTO: return "segment layout does not match this binary";
    case -ENOSPC: return "no space (worker table full, or /dev/shm too small for the segment)";
    case -EAGAIN: return "queue full";
    case -EMSGSIZE: return "message larger than payload_max";
    case -ETIME: return "timed out";
    case -ESHUTDOWN: return "server closed";
    case -EOWNERDEAD: return "worker died while running the task (attempts exhausted)";
    case -ENOLINK: return "worker entry reclaimed (declared dead)";
    case -EBUSY: return "a task is claimed and not yet answered";
    case -ECANCELED: return "task cancelled";
    default: return err < 0 ? strerror(-err) : "unknown error";
    }
}
