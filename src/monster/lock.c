/* The segment lock (registrations, wait states, log: cold paths) is a
 * robust process-shared mutex: a process killed while holding it does not
 * wedge it; the next locker gets EOWNERDEAD and carries on, because every
 * critical section publishes its change last (a registration by setting its
 * kind, a wait state by setting `used`), so the data is consistent at any
 * point a holder can die. The pipe locks are plock.h. Also the liveness
 * slice every blocked call sleeps in. */
#define _GNU_SOURCE
#include "segment.h"

#include <errno.h>
#include <time.h>

int fmon_mutex_init(pthread_mutex_t *m)
{
    pthread_mutexattr_t a;
    int rc = pthread_mutexattr_init(&a);
    if (rc)
        return -rc;
    rc = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    if (!rc)
        rc = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    if (!rc)
        rc = pthread_mutex_init(m, &a);
    pthread_mutexattr_destroy(&a);
    return -rc;
}

int fmon_lock(pthread_mutex_t *m)
{
    int rc = pthread_mutex_lock(m);
    if (rc == EOWNERDEAD) {
        pthread_mutex_consistent(m);
        return 0;
    }
    return rc ? fmon_fail(-EIO, "shared lock unusable (error %d)", rc) : 0;
}

void fmon_unlock(pthread_mutex_t *m)
{
    pthread_mutex_unlock(m);
}

const struct timespec *fmon_slice(struct timespec *slice, const struct timespec *deadline)
{
    fshm__deadline(slice, ZKPROLOGML_LIVENESS_MS);
    if (deadline && (deadline->tv_sec < slice->tv_sec ||
                     (deadline->tv_sec == slice->tv_sec && deadline->tv_nsec < slice->tv_nsec)))
        *slice = *deadline;
    return slice;
}
