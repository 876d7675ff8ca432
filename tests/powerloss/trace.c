/* Power-loss test interposer (LD_PRELOAD, test only).
 *
 * Records every write and sync the server makes to files under $PL_DIR into a binary trace
 * ($PL_TRACE), passing each call through to the real function, so that tests/powerloss/run.py
 * can later rebuild, offline, the states a power cut could leave on disk at any point of the
 * run: the writes a file's last completed sync covered are kept, the writes not yet synced are
 * kept, dropped, torn or persisted out of order.
 *
 * PL_SKIP_SYNC=1 simulates a broken build: fsync/fdatasync of events.log return 0 without
 * syncing, and the trace records SKIP instead of SYNC_BEGIN/SYNC_END (so the replay treats them
 * as having made nothing durable).
 *
 * Trace records (little-endian, packed), each starting with
 *   u8 type, u64 monotonic ns (CLOCK_MONOTONIC), u32 file id
 * then by type:
 *   OPEN  (1): u32 open flags, u32 path length, path bytes (absolute)
 *   WRITE (2): u64 offset, u32 length, length data bytes
 *   ZERO  (3): u64 offset, u32 length            (a write of only zero bytes)
 *   SYNC_BEGIN (4): nothing                      (fsync/fdatasync called)
 *   SYNC_END   (5): i32 result                   (it returned; 0 = success)
 *   TRUNC (6): u64 length                        (ftruncate that succeeded)
 *   SKIP  (7): nothing                           (PL_SKIP_SYNC swallowed a sync)
 * A write through an fd opened with O_SYNC/O_DSYNC is followed by SYNC_BEGIN + SYNC_END.
 * Writes are recorded after the real call returns (only the bytes it wrote); SYNC_BEGIN before
 * the real sync starts, SYNC_END after it returns. So a write recorded before a SYNC_BEGIN
 * whose SYNC_END succeeded is durable; anything else may be lost or torn.
 *
 * Build: gcc -shared -fPIC -O2 -o build/pl_trace.so tests/powerloss/trace.c -ldl -pthread
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

enum { T_OPEN = 1, T_WRITE, T_ZERO, T_SYNC_BEGIN, T_SYNC_END, T_TRUNC, T_SKIP };

#define MAX_FD 65536
#define MAX_FILES 4096

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int trace_fd = -1;
static char dir[PATH_MAX];
static size_t dir_len;
static int skip_sync;
static int inited;
/* fd -> file id + 1 (0: not traced); fd -> opened with O_SYNC/O_DSYNC */
static uint32_t fd_file[MAX_FD];
static uint8_t fd_sync[MAX_FD];
static char *file_path[MAX_FILES];
static uint32_t n_files;

static int (*real_open)(const char *, int, ...);
static int (*real_open64)(const char *, int, ...);
static int (*real_openat)(int, const char *, int, ...);
static int (*real_openat64)(int, const char *, int, ...);
static int (*real_close)(int);
static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_pwrite64)(int, const void *, size_t, off_t);
static ssize_t (*real_writev)(int, const struct iovec *, int);
static ssize_t (*real_pwritev)(int, const struct iovec *, int, off_t);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_ftruncate)(int, off_t);
static int (*real_ftruncate64)(int, off_t);

static void init(void)
{
    if (__atomic_load_n(&inited, __ATOMIC_ACQUIRE)) {
        return;
    }
    pthread_mutex_lock(&mu);
    if (!inited) {
        real_open = dlsym(RTLD_NEXT, "open");
        real_open64 = dlsym(RTLD_NEXT, "open64");
        real_openat = dlsym(RTLD_NEXT, "openat");
        real_openat64 = dlsym(RTLD_NEXT, "openat64");
        real_close = dlsym(RTLD_NEXT, "close");
        real_write = dlsym(RTLD_NEXT, "write");
        real_pwrite = dlsym(RTLD_NEXT, "pwrite");
        real_pwrite64 = dlsym(RTLD_NEXT, "pwrite64");
        real_writev = dlsym(RTLD_NEXT, "writev");
        real_pwritev = dlsym(RTLD_NEXT, "pwritev");
        real_fsync = dlsym(RTLD_NEXT, "fsync");
        real_fdatasync = dlsym(RTLD_NEXT, "fdatasync");
        real_ftruncate = dlsym(RTLD_NEXT, "ftruncate");
        real_ftruncate64 = dlsym(RTLD_NEXT, "ftruncate64");
        const char *d = getenv("PL_DIR");
        const char *t = getenv("PL_TRACE");
        const char *s = getenv("PL_SKIP_SYNC");
        skip_sync = s && *s && strcmp(s, "0") != 0;
        if (d && t && realpath(d, dir)) {
            dir_len = strlen(dir);
            trace_fd = real_open(t, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_APPEND, 0644);
        }
        __atomic_store_n(&inited, 1, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&mu);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Appends bytes to the trace; called with mu held. A failure aborts: a silently incomplete
 * trace would make the replay wrong. */
static void out(const void *p, size_t n)
{
    const char *b = p;
    while (n) {
        ssize_t w = real_write(trace_fd, b, n);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            static const char msg[] = "pl_trace: cannot write the trace\n";
            (void)!real_write(2, msg, sizeof msg - 1);
            abort();
        }
        b += w;
        n -= (size_t)w;
    }
}

static void head(uint8_t type, uint32_t file)
{
    uint8_t h[13];
    uint64_t ts = now_ns();
    h[0] = type;
    memcpy(h + 1, &ts, 8);
    memcpy(h + 9, &file, 4);
    out(h, sizeof h);
}

static uint32_t traced(int fd)
{
    if (trace_fd < 0 || fd < 0 || fd >= MAX_FD) {
        return 0;
    }
    return __atomic_load_n(&fd_file[fd], __ATOMIC_ACQUIRE);
}

/* After a successful open: if the file lies under PL_DIR, map fd to its file id. */
static void note_open(int fd, int flags)
{
    if (fd < 0 || fd >= MAX_FD || trace_fd < 0) {
        return;
    }
    char link[64], path[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n <= 0) {
        return;
    }
    path[n] = 0;
    if ((size_t)n <= dir_len || strncmp(path, dir, dir_len) != 0 || path[dir_len] != '/') {
        __atomic_store_n(&fd_file[fd], 0, __ATOMIC_RELEASE);
        return;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        return;
    }
    pthread_mutex_lock(&mu);
    uint32_t id = 0;
    for (uint32_t i = 0; i < n_files; i++) {
        if (strcmp(file_path[i], path) == 0) {
            id = i + 1;
            break;
        }
    }
    if (!id && n_files < MAX_FILES) {
        file_path[n_files] = strdup(path);
        id = ++n_files;
    }
    if (id) {
        head(T_OPEN, id);
        uint32_t fl = (uint32_t)flags, len = (uint32_t)n;
        out(&fl, 4);
        out(&len, 4);
        out(path, (size_t)n);
        fd_sync[fd] = (flags & (O_SYNC | O_DSYNC)) != 0;
        __atomic_store_n(&fd_file[fd], id, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&mu);
}

static int all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i]) {
            return 0;
        }
    }
    return 1;
}

/* Records a completed write of n bytes at off, gathered from iov (called without mu). */
static void note_write(int fd, uint32_t id, const struct iovec *iov, int cnt, uint64_t off,
                       size_t n)
{
    if (n == 0) {
        return;
    }
    pthread_mutex_lock(&mu);
    int zero = 1;
    size_t left = n;
    for (int i = 0; i < cnt && left && zero; i++) {
        size_t k = iov[i].iov_len < left ? iov[i].iov_len : left;
        zero = all_zero(iov[i].iov_base, k);
        left -= k;
    }
    head(zero ? T_ZERO : T_WRITE, id);
    uint32_t len = (uint32_t)n;
    out(&off, 8);
    out(&len, 4);
    if (!zero) {
        left = n;
        for (int i = 0; i < cnt && left; i++) {
            size_t k = iov[i].iov_len < left ? iov[i].iov_len : left;
            out(iov[i].iov_base, k);
            left -= k;
        }
    }
    if (fd_sync[fd]) {
        int32_t r = 0;
        head(T_SYNC_BEGIN, id);
        head(T_SYNC_END, id);
        out(&r, 4);
    }
    pthread_mutex_unlock(&mu);
}

static int open_common(int (*fn)(const char *, int, ...), const char *path, int flags,
                       va_list ap)
{
    mode_t mode = 0;
    if (flags & (O_CREAT | O_TMPFILE)) {
        mode = va_arg(ap, mode_t);
    }
    int fd = fn(path, flags, mode);
    if (fd >= 0) {
        note_open(fd, flags);
    }
    return fd;
}

int open(const char *path, int flags, ...)
{
    init();
    va_list ap;
    va_start(ap, flags);
    int fd = open_common(real_open, path, flags, ap);
    va_end(ap);
    return fd;
}

int open64(const char *path, int flags, ...)
{
    init();
    va_list ap;
    va_start(ap, flags);
    int fd = open_common(real_open64 ? real_open64 : real_open, path, flags, ap);
    va_end(ap);
    return fd;
}

static int openat_common(int (*fn)(int, const char *, int, ...), int dfd, const char *path,
                         int flags, va_list ap)
{
    mode_t mode = 0;
    if (flags & (O_CREAT | O_TMPFILE)) {
        mode = va_arg(ap, mode_t);
    }
    int fd = fn(dfd, path, flags, mode);
    if (fd >= 0) {
        note_open(fd, flags);
    }
    return fd;
}

int openat(int dfd, const char *path, int flags, ...)
{
    init();
    va_list ap;
    va_start(ap, flags);
    int fd = openat_common(real_openat, dfd, path, flags, ap);
    va_end(ap);
    return fd;
}

int openat64(int dfd, const char *path, int flags, ...)
{
    init();
    va_list ap;
    va_start(ap, flags);
    int fd = openat_common(real_openat64 ? real_openat64 : real_openat, dfd, path, flags, ap);
    va_end(ap);
    return fd;
}

int close(int fd)
{
    init();
    if (fd >= 0 && fd < MAX_FD) {
        __atomic_store_n(&fd_file[fd], 0, __ATOMIC_RELEASE);
    }
    return real_close(fd);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
    init();
    ssize_t r = real_pwrite(fd, buf, n, off);
    uint32_t id = traced(fd);
    if (id && r > 0) {
        struct iovec v = {(void *)buf, (size_t)r};
        note_write(fd, id, &v, 1, (uint64_t)off, (size_t)r);
    }
    return r;
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off)
{
    init();
    ssize_t r = (real_pwrite64 ? real_pwrite64 : real_pwrite)(fd, buf, n, off);
    uint32_t id = traced(fd);
    if (id && r > 0) {
        struct iovec v = {(void *)buf, (size_t)r};
        note_write(fd, id, &v, 1, (uint64_t)off, (size_t)r);
    }
    return r;
}

ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
    init();
    ssize_t r = real_pwritev(fd, iov, cnt, off);
    uint32_t id = traced(fd);
    if (id && r > 0) {
        note_write(fd, id, iov, cnt, (uint64_t)off, (size_t)r);
    }
    return r;
}

ssize_t write(int fd, const void *buf, size_t n)
{
    init();
    uint32_t id = traced(fd);
    off_t off = id ? lseek(fd, 0, SEEK_CUR) : 0;
    ssize_t r = real_write(fd, buf, n);
    if (id && r > 0 && off >= 0) {
        struct iovec v = {(void *)buf, (size_t)r};
        note_write(fd, id, &v, 1, (uint64_t)off, (size_t)r);
    }
    return r;
}

ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
    init();
    uint32_t id = traced(fd);
    off_t off = id ? lseek(fd, 0, SEEK_CUR) : 0;
    ssize_t r = real_writev(fd, iov, cnt);
    if (id && r > 0 && off >= 0) {
        note_write(fd, id, iov, cnt, (uint64_t)off, (size_t)r);
    }
    return r;
}

static int is_log(uint32_t id)
{
    const char *p = file_path[id - 1];
    size_t n = strlen(p);
    return n >= 11 && strcmp(p + n - 11, "/events.log") == 0;
}

static int sync_common(int (*fn)(int), int fd)
{
    uint32_t id = traced(fd);
    if (!id) {
        return fn(fd);
    }
    if (skip_sync && is_log(id)) {
        pthread_mutex_lock(&mu);
        head(T_SKIP, id);
        pthread_mutex_unlock(&mu);
        return 0;
    }
    pthread_mutex_lock(&mu);
    head(T_SYNC_BEGIN, id);
    pthread_mutex_unlock(&mu);
    int r = fn(fd);
    int saved = errno;
    pthread_mutex_lock(&mu);
    head(T_SYNC_END, id);
    int32_t rr = r == 0 ? 0 : (saved ? saved : -1);
    out(&rr, 4);
    pthread_mutex_unlock(&mu);
    errno = saved;
    return r;
}

int fsync(int fd)
{
    init();
    return sync_common(real_fsync, fd);
}

int fdatasync(int fd)
{
    init();
    return sync_common(real_fdatasync, fd);
}

static int trunc_common(int (*fn)(int, off_t), int fd, off_t len)
{
    int r = fn(fd, len);
    uint32_t id = traced(fd);
    if (id && r == 0) {
        pthread_mutex_lock(&mu);
        head(T_TRUNC, id);
        uint64_t l = (uint64_t)len;
        out(&l, 8);
        pthread_mutex_unlock(&mu);
    }
    return r;
}

int ftruncate(int fd, off_t len)
{
    init();
    return trunc_common(real_ftruncate, fd, len);
}

int ftruncate64(int fd, off_t len)
{
    init();
    return trunc_common(real_ftruncate64 ? real_ftruncate64 : real_ftruncate, fd, len);
}
