/* Locating a segment when its primary name "/ferry-<uid>-<name>" belongs to
 * another user.
 *
 * /dev/shm is shared by every user, so anyone can create our primary name
 * before us and stop the server from starting. The server then creates
 * "/ferry-<uid>-<name>.<16 random hex>" with O_EXCL (unguessable, so it
 * cannot be planted in advance). Nothing needs to record that name:
 * workers list /dev/shm and take only files owned by their own uid with
 * mode 0600 whose owner lock is held. The kernel never lets another user
 * create a file owned by us, so the listing cannot be fed a fake; a name
 * read from the directory is used only if it has exactly the shape we
 * would have built ourselves. */
#define _GNU_SOURCE
#include "segment.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

/* Where glibc's shm_open() keeps its objects on Linux. */
#define FSHM_SHM_DIR "/dev/shm"
#define FSHM_ALT_HEX 16 /* hex digits of an alternate suffix */

int fshm__alt_path(const char *name, char *buf, size_t size)
{
    char primary[64];
    int rc = fshm_segment_name(name, primary, sizeof(primary));
    if (rc < 0)
        return rc;
    uint64_t r;
    ssize_t n;
    while ((n = getrandom(&r, sizeof(r), 0)) < 0 && errno == EINTR)
        ;
    if (n != (ssize_t)sizeof(r))
        return fshm__fail(n < 0 ? -errno : -EIO, "getrandom: %s", strerror(n < 0 ? errno : EIO));
    int len = snprintf(buf, size, "%s.%016llx", primary, (unsigned long long)r);
    if (len < 0 || (size_t)len >= size)
        return -ENAMETOOLONG;
    return 0;
}

/* d is "<prefix>.<16 lowercase hex>" and nothing else. */
static bool is_alt(const char *d, const char *prefix, size_t plen)
{
    if (strncmp(d, prefix, plen) != 0 || d[plen] != '.')
        return false;
    const char *h = d + plen + 1;
    for (int i = 0; i < FSHM_ALT_HEX; i++)
        if (!((h[i] >= '0' && h[i] <= '9') || (h[i] >= 'a' && h[i] <= 'f')))
            return false;
    return h[FSHM_ALT_HEX] == '\0';
}

int fshm__alt_scan(const char *name, int (*fn)(void *arg, const char *path, int fd), void *arg)
{
    char primary[64];
    int rc = fshm_segment_name(name, primary, sizeof(primary));
    if (rc < 0)
        return rc;
    const char *prefix = primary + 1; /* without the leading '/' */
    size_t plen = strlen(prefix);
    DIR *d = opendir(FSHM_SHM_DIR);
    if (!d)
        return fshm__fail(-errno, "%s: %s", FSHM_SHM_DIR, strerror(errno));
    int ret = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!is_alt(de->d_name, prefix, plen))
            continue;
        char path[96];
        size_t n = strlen(de->d_name); /* is_alt() bounded it: plen + 17 */
        if (n + 2 > sizeof(path))
            continue;
        path[0] = '/';
        memcpy(path + 1, de->d_name, n + 1);
        int fd = shm_open(path, O_RDWR | O_CLOEXEC, 0);
        if (fd < 0)
            continue; /* another user's, or gone meanwhile */
        struct stat st;
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid() ||
            (st.st_mode & 077)) {
            close(fd);
            continue;
        }
        rc = fn(arg, path, fd);
        if (rc == 0) {
            close(fd);
            continue;
        }
        if (rc < 0)
            close(fd);
        ret = rc;
        break;
    }
    closedir(d);
    return ret;
}

void fshm__describe_owner(const char *path, char *buf, size_t size)
{
    char full[128];
    struct stat st;
    snprintf(full, sizeof(full), "%s%s", FSHM_SHM_DIR, path);
    if (stat(full, &st) < 0)
        snprintf(buf, size, "an unknown owner");
    else
        snprintf(buf, size, "uid %u (mode %o)", (unsigned)st.st_uid,
                 (unsigned)(st.st_mode & 0777));
}
