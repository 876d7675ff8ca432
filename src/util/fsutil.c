#include "util/fsutil.h"

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include "util/errors.h"

int fs_write_atomic(const char *dir, const char *name, const void *data, size_t n, mode_t mode)
{
    char path[4200], tmp[4210];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) {
        return ERR(ERR_IO);
    }
    int rc = write(fd, data, n) == (ssize_t)n && fsync(fd) == 0 ? 0 : ERR(ERR_IO);
    if (close(fd) != 0 && !rc) {
        rc = ERR(ERR_IO);
    }
    if (!rc && rename(tmp, path) != 0) {
        rc = ERR(ERR_IO);
    }
    if (rc) {
        unlink(tmp);
        return rc;
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    rc = dfd >= 0 && fsync(dfd) == 0 ? 0 : ERR(ERR_IO);
    if (dfd >= 0) {
        close(dfd);
    }
    return rc;
}
