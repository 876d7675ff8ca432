/* Log file I/O. Invariants: end <= alloc <= map_bytes; bytes in [end, alloc) are zeros or the
 * remains of a write that was never acknowledged (recovery wipes them). */
#include "store/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/buf.h"
#include "util/errors.h"
#include "util/log.h"

struct log {
    int fd;                /* owned */
    const uint8_t *map;    /* read-only shared mapping of map_bytes */
    uint64_t map_bytes;    /* size of the mapping: the largest the log may grow */
    uint64_t end;          /* logical end (writer-owned) */
    uint64_t alloc;        /* atomic: file size (allocated, zero-filled bytes) */
};

static int io_err(void)
{
    return errno == ENOSPC || errno == EDQUOT ? ERR(ERR_NOSPACE) : ERR(ERR_IO);
}

int log_open(const char *path, uint64_t map_bytes, struct log **out)
{
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0) {
        log_error("cannot open %s: %s", path, strerror(errno));
        return ERR(ERR_IO);
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        close(fd);
        return ERR(ERR_IO);
    }
    void *map = mmap(NULL, (size_t)map_bytes, PROT_READ, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
        close(fd);
        return ERR(ERR_NOMEM);
    }
    struct log *lg = xcalloc(1, sizeof(*lg));
    lg->fd = fd;
    lg->map = map;
    lg->map_bytes = map_bytes;
    lg->alloc = (uint64_t)sb.st_size;
    *out = lg;
    return 0;
}

void log_close(struct log *lg)
{
    if (!lg) {
        return;
    }
    munmap((void *)lg->map, (size_t)lg->map_bytes);
    close(lg->fd);
    free(lg);
}

uint64_t log_end(const struct log *lg)
{
    return lg->end;
}

void log_set_end(struct log *lg, uint64_t end)
{
    lg->end = end;
}

uint64_t log_file_bytes(const struct log *lg)
{
    return __atomic_load_n(&lg->alloc, __ATOMIC_ACQUIRE);
}

static int write_all(int fd, const void *p, size_t n, uint64_t off)
{
    const uint8_t *b = p;
    while (n) {
        ssize_t w = pwrite(fd, b, n, (off_t)off);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            return io_err();
        }
        b += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

int log_zero(struct log *lg, uint64_t from, uint64_t n)
{
    static const uint8_t zeros[64 * 1024];
    while (n) {
        size_t k = n < sizeof zeros ? (size_t)n : sizeof zeros;
        int rc = write_all(lg->fd, zeros, k, from);
        if (rc) {
            return rc;
        }
        from += k;
        n -= k;
    }
    return 0;
}

/* Extends the file with zeros to target bytes and makes the new size durable; on failure the
 * file is cut back to its old size. */
static int extend_to(struct log *lg, uint64_t target)
{
    int rc = log_zero(lg, lg->alloc, target - lg->alloc);
    if (rc == 0 && fdatasync(lg->fd) != 0) {
        rc = io_err();
    }
    if (rc) {
        if (ftruncate(lg->fd, (off_t)lg->alloc) != 0) {
            log_warn("cannot shrink the log back after a failed grow");
        }
        return rc;
    }
    __atomic_store_n(&lg->alloc, target, __ATOMIC_RELEASE);
    return 0;
}

/* Makes room for need bytes: a whole growth step when the disk has it, else (disk nearly
 * full) just what this write needs, rounded up to 64 KiB, so small appends keep working until
 * the disk is really full. */
static int grow(struct log *lg, uint64_t need)
{
    uint64_t target = lg->alloc;
    while (target < need) {
        target += LOG_GROW_BYTES;
    }
    if (target > lg->map_bytes) {
        target = lg->map_bytes;
    }
    if (target < need) {
        return ERR(ERR_NOSPACE);
    }
    int rc = extend_to(lg, target);
    uint64_t small = (need + 65535) & ~(uint64_t)65535;
    if (rc == ERR_NOSPACE && small < target) {
        rc = extend_to(lg, small < lg->map_bytes ? small : need);
    }
    return rc;
}

int log_write(struct log *lg, const void *p, size_t n, uint64_t *out_offset)
{
    if (lg->end + n > lg->alloc) {
        int rc = grow(lg, lg->end + n);
        if (rc) {
            return rc;
        }
    }
    int rc = write_all(lg->fd, p, n, lg->end);
    if (rc) {
        return rc;
    }
    *out_offset = lg->end;
    lg->end += n;
    return 0;
}

int log_sync(struct log *lg)
{
    return fdatasync(lg->fd) == 0 ? 0 : io_err();
}

const uint8_t *log_at(const struct log *lg, uint64_t off, size_t n)
{
    if (off + n > __atomic_load_n(&lg->alloc, __ATOMIC_ACQUIRE)) {
        return NULL;
    }
    return lg->map + off;
}
