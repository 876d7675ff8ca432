/* File helpers of the backup and restore commands. */
#define _XOPEN_SOURCE 700 /* nftw */
#include "cli/common.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "util/errors.h"

int cli_write_all(int fd, const void *p, size_t n)
{
    const char *b = p;
    while (n) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return ERR(ERR_IO);
        }
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

int cli_fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return ERR(ERR_IO);
    }
    int rc = fsync(fd) == 0 ? 0 : ERR(ERR_IO);
    close(fd);
    return rc;
}

int cli_fsync_parent(const char *path)
{
    char copy[4096];
    snprintf(copy, sizeof copy, "%s", path);
    return cli_fsync_dir(dirname(copy));
}

bool cli_dir_is_empty(const char *path)
{
    DIR *d = opendir(path);
    if (!d) {
        return false;
    }
    struct dirent *de;
    bool empty = true;
    while (empty && (de = readdir(d)) != NULL) {
        empty = strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0;
    }
    closedir(d);
    if (empty) {
        errno = 0;
    }
    return empty;
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)ftw;
    int rc = flag == FTW_DP ? rmdir(path) : unlink(path);
    return rc == 0 || errno == ENOENT ? 0 : 1;
}

int cli_remove_tree(const char *path)
{
    int rc = nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    return rc == 0 || (rc < 0 && errno == ENOENT) ? 0 : ERR(ERR_IO);
}

void cli_format_bytes(uint64_t n, char *out, size_t cap)
{
    static const char *const UNITS[] = {"KiB", "MiB", "GiB", "TiB"};
    if (n < 1024) {
        snprintf(out, cap, "%llu B", (unsigned long long)n);
        return;
    }
    double v = (double)n / 1024;
    size_t u = 0;
    while (v >= 1024 && u + 1 < sizeof UNITS / sizeof UNITS[0]) {
        v /= 1024;
        u++;
    }
    snprintf(out, cap, "%.1f %s", v, UNITS[u]);
}
