/* Disk-fault injection interposer (LD_PRELOAD, test only).
 *
 * Makes the Nth write or sync call on files under $FI_DIR fail, once or from then on, without
 * doing the I/O, so tests/faults/run.py can check how the server handles EIO/ENOSPC.
 *
 * Environment:
 *   FI_DIR         only files (and directories) at or under this directory are affected and
 *                  counted; without it the interposer passes everything through
 *   FI_OP          write | sync   (write: write, pwrite, pwrite64, writev, pwritev, pwritev64;
 *                                  sync: fsync, fdatasync, msync)
 *   FI_N           fail the Nth call of that class, counting from 1 (0 or unset: never fail)
 *   FI_MODE        once | persist (persist: the Nth and every later call fail)
 *   FI_ERRNO       EIO (default) | ENOSPC | EDQUOT | numeric
 *   FI_TRACE       appended one line per counted call: "<write|sync> <k> <call> <path> <bytes>"
 *   FI_COUNT_FILE  rewritten after every counted call with "write=W sync=S failed=F\n"
 *                  (calls seen so far), so the driver knows how many N values exist even if the
 *                  process is killed
 * Each injected failure logs one line "fi_inject: failing <call> #<k> on <path> (<errno>)" to
 * stderr. Which fd is under FI_DIR is found through /proc/self/fd and cached per fd (the cache
 * entry is dropped by close and by every open hooked here). msync is attributed through
 * /proc/self/maps.
 *
 * Build: gcc -shared -fPIC -O2 -o build/fi_inject.so tests/faults/inject.c -ldl -pthread
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
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define MAX_FD 65536

enum { OP_NONE, OP_WRITE, OP_SYNC };

static int inited;
static pthread_mutex_t init_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t count_mu = PTHREAD_MUTEX_INITIALIZER;
static char dir[PATH_MAX];
static size_t dir_len;
static int fault_op = OP_NONE;
static unsigned long fault_n;
static int persist;
static int fault_errno = EIO;
static int count_fd = -1;
static int trace_fd = -1;
static unsigned long n_write, n_sync, n_failed; /* atomics */
/* per fd: 0 unknown, 1 under FI_DIR, 2 not */
static uint8_t fd_class[MAX_FD];

static int (*real_open)(const char *, int, ...);
static int (*real_open64)(const char *, int, ...);
static int (*real_openat)(int, const char *, int, ...);
static int (*real_openat64)(int, const char *, int, ...);
static int (*real_creat)(const char *, mode_t);
static int (*real_close)(int);
static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_pwrite64)(int, const void *, size_t, off_t);
static ssize_t (*real_writev)(int, const struct iovec *, int);
static ssize_t (*real_pwritev)(int, const struct iovec *, int, off_t);
static ssize_t (*real_pwritev64)(int, const struct iovec *, int, off_t);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_msync)(void *, size_t, int);

static int parse_errno(const char *s)
{
    if (!s || !*s || strcmp(s, "EIO") == 0) {
        return EIO;
    }
    if (strcmp(s, "ENOSPC") == 0) {
        return ENOSPC;
    }
    if (strcmp(s, "EDQUOT") == 0) {
        return EDQUOT;
    }
    int v = atoi(s);
    return v > 0 ? v : EIO;
}

static void init(void)
{
    if (__atomic_load_n(&inited, __ATOMIC_ACQUIRE)) {
        return;
    }
    pthread_mutex_lock(&init_mu);
    if (!inited) {
        real_open = dlsym(RTLD_NEXT, "open");
        real_open64 = dlsym(RTLD_NEXT, "open64");
        real_openat = dlsym(RTLD_NEXT, "openat");
        real_openat64 = dlsym(RTLD_NEXT, "openat64");
        real_creat = dlsym(RTLD_NEXT, "creat");
        real_close = dlsym(RTLD_NEXT, "close");
        real_write = dlsym(RTLD_NEXT, "write");
        real_pwrite = dlsym(RTLD_NEXT, "pwrite");
        real_pwrite64 = dlsym(RTLD_NEXT, "pwrite64");
        real_writev = dlsym(RTLD_NEXT, "writev");
        real_pwritev = dlsym(RTLD_NEXT, "pwritev");
        real_pwritev64 = dlsym(RTLD_NEXT, "pwritev64");
        real_fsync = dlsym(RTLD_NEXT, "fsync");
        real_fdatasync = dlsym(RTLD_NEXT, "fdatasync");
        real_msync = dlsym(RTLD_NEXT, "msync");
        const char *d = getenv("FI_DIR");
        if (d && realpath(d, dir)) {
            dir_len = strlen(dir);
        }
        const char *op = getenv("FI_OP");
        if (op && strcmp(op, "write") == 0) {
            fault_op = OP_WRITE;
        } else if (op && strcmp(op, "sync") == 0) {
            fault_op = OP_SYNC;
        }
        const char *n = getenv("FI_N");
        fault_n = n ? strtoul(n, NULL, 10) : 0;
        const char *m = getenv("FI_MODE");
        persist = m && strcmp(m, "persist") == 0;
        fault_errno = parse_errno(getenv("FI_ERRNO"));
        const char *cf = getenv("FI_COUNT_FILE");
        if (cf && *cf) {
            count_fd = real_open(cf, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        }
        const char *tf = getenv("FI_TRACE");
        if (tf && *tf) {
            trace_fd = real_open(tf, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
        }
        __atomic_store_n(&inited, 1, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&init_mu);
}

__attribute__((constructor)) static void fi_ctor(void)
{
    init();
}

static int path_in_dir(const char *path, size_t n)
{
    if (!dir_len || n < dir_len || strncmp(path, dir, dir_len) != 0) {
        return 0;
    }
    return n == dir_len || path[dir_len] == '/';
}

static int fd_in_dir(int fd)
{
    if (!dir_len || fd < 0) {
        return 0;
    }
    if (fd >= MAX_FD) {
        return 0;
    }
    uint8_t c = __atomic_load_n(&fd_class[fd], __ATOMIC_ACQUIRE);
    if (c) {
        return c == 1;
    }
    char link[64], path[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    int in = 0;
    if (n > 0) {
        path[n] = 0;
        in = path_in_dir(path, (size_t)n);
    }
    __atomic_store_n(&fd_class[fd], in ? 1 : 2, __ATOMIC_RELEASE);
    return in;
}

static void forget_fd(int fd)
{
    if (fd >= 0 && fd < MAX_FD) {
        __atomic_store_n(&fd_class[fd], 0, __ATOMIC_RELEASE);
    }
}

/* Is [addr, addr+len) (its first page) a mapping of a file under FI_DIR? */
static int addr_in_dir(void *addr, char *out, size_t outsz)
{
    if (!dir_len) {
        return 0;
    }
    int fd = real_open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return 0;
    }
    static char buf[1 << 20];
    static pthread_mutex_t maps_mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&maps_mu);
    size_t len = 0;
    ssize_t r;
    while (len < sizeof buf - 1 && (r = read(fd, buf + len, sizeof buf - 1 - len)) > 0) {
        len += (size_t)r;
    }
    buf[len] = 0;
    real_close(fd);
    uintptr_t a = (uintptr_t)addr;
    int in = 0;
    for (char *line = buf; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl) {
            *nl = 0;
        }
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx", &lo, &hi) == 2 && a >= lo && a < hi) {
            char *p = strchr(line, '/');
            if (p && path_in_dir(p, strlen(p))) {
                in = 1;
                snprintf(out, outsz, "%s", p);
            }
            break;
        }
        line = nl ? nl + 1 : NULL;
    }
    pthread_mutex_unlock(&maps_mu);
    return in;
}

static void write_count(void)
{
    if (count_fd < 0) {
        return;
    }
    pthread_mutex_lock(&count_mu);
    char b[128];
    int n = snprintf(b, sizeof b, "write=%lu sync=%lu failed=%lu\n",
                     __atomic_load_n(&n_write, __ATOMIC_RELAXED),
                     __atomic_load_n(&n_sync, __ATOMIC_RELAXED),
                     __atomic_load_n(&n_failed, __ATOMIC_RELAXED));
    if (real_pwrite(count_fd, b, (size_t)n, 0) == n) {
        if (ftruncate(count_fd, n) != 0) {
            /* best effort */
        }
    }
    pthread_mutex_unlock(&count_mu);
}

/* Counts one call of class op on path (bytes: its size, -1 for syncs); returns 1 if it must
 * fail. */
static int should_fail(int op, const char *call, const char *path, long bytes)
{
    pthread_mutex_lock(&count_mu);
    unsigned long k = __atomic_add_fetch(op == OP_WRITE ? &n_write : &n_sync, 1,
                                         __ATOMIC_SEQ_CST);
    if (trace_fd >= 0) {
        char t[PATH_MAX + 128];
        int tn = snprintf(t, sizeof t, "%s %lu %s %s %ld\n", op == OP_WRITE ? "write" : "sync", k,
                          call, path ? path : "?", bytes);
        if (tn > 0) {
            (void)!real_write(trace_fd, t, (size_t)tn < sizeof t ? (size_t)tn : sizeof t - 1);
        }
    }
    pthread_mutex_unlock(&count_mu);
    int fail = op == fault_op && fault_n && (persist ? k >= fault_n : k == fault_n);
    if (fail) {
        __atomic_add_fetch(&n_failed, 1, __ATOMIC_SEQ_CST);
        char b[PATH_MAX + 128];
        int n = snprintf(b, sizeof b, "fi_inject: failing %s #%lu on %s (%s)\n", call, k,
                         path ? path : "?", strerror(fault_errno));
        if (n > 0) {
            (void)!real_write(2, b, (size_t)n < sizeof b ? (size_t)n : sizeof b - 1);
        }
    }
    write_count();
    return fail;
}

static int fd_should_fail(int fd, int op, const char *call, long bytes)
{
    init();
    if (!fd_in_dir(fd)) {
        return 0;
    }
    char link[64], path[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    path[n > 0 ? n : 0] = 0;
    return should_fail(op, call, path, bytes);
}

/* ---- opens and close: keep the fd cache right ---- */

#define OPEN_MODE(flags, ap, mode)                                                               \
    do {                                                                                         \
        if ((flags) & (O_CREAT | O_TMPFILE)) {                                                   \
            va_start(ap, flags);                                                                 \
            mode = va_arg(ap, mode_t);                                                           \
            va_end(ap);                                                                          \
        }                                                                                        \
    } while (0)

int open(const char *path, int flags, ...)
{
    init();
    va_list ap;
    mode_t mode = 0;
    OPEN_MODE(flags, ap, mode);
    int fd = real_open(path, flags, mode);
    forget_fd(fd);
    return fd;
}

int open64(const char *path, int flags, ...)
{
    init();
    va_list ap;
    mode_t mode = 0;
    OPEN_MODE(flags, ap, mode);
    int fd = (real_open64 ? real_open64 : real_open)(path, flags, mode);
    forget_fd(fd);
    return fd;
}

int openat(int dfd, const char *path, int flags, ...)
{
    init();
    va_list ap;
    mode_t mode = 0;
    OPEN_MODE(flags, ap, mode);
    int fd = real_openat(dfd, path, flags, mode);
    forget_fd(fd);
    return fd;
}

int openat64(int dfd, const char *path, int flags, ...)
{
    init();
    va_list ap;
    mode_t mode = 0;
    OPEN_MODE(flags, ap, mode);
    int fd = (real_openat64 ? real_openat64 : real_openat)(dfd, path, flags, mode);
    forget_fd(fd);
    return fd;
}

int creat(const char *path, mode_t mode)
{
    init();
    int fd = real_creat(path, mode);
    forget_fd(fd);
    return fd;
}

int close(int fd)
{
    init();
    forget_fd(fd);
    return real_close(fd);
}

/* ---- writes ---- */

static long iov_bytes(const struct iovec *iov, int cnt)
{
    long n = 0;
    for (int i = 0; i < cnt; i++) {
        n += (long)iov[i].iov_len;
    }
    return n;
}

ssize_t write(int fd, const void *b, size_t n)
{
    if (fd_should_fail(fd, OP_WRITE, "write", (long)n)) {
        errno = fault_errno;
        return -1;
    }
    return real_write(fd, b, n);
}

ssize_t pwrite(int fd, const void *b, size_t n, off_t off)
{
    if (fd_should_fail(fd, OP_WRITE, "pwrite", (long)n)) {
        errno = fault_errno;
        return -1;
    }
    return real_pwrite(fd, b, n, off);
}

ssize_t pwrite64(int fd, const void *b, size_t n, off_t off)
{
    if (fd_should_fail(fd, OP_WRITE, "pwrite64", (long)n)) {
        errno = fault_errno;
        return -1;
    }
    return (real_pwrite64 ? real_pwrite64 : real_pwrite)(fd, b, n, off);
}

ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
    if (fd_should_fail(fd, OP_WRITE, "writev", iov_bytes(iov, cnt))) {
        errno = fault_errno;
        return -1;
    }
    return real_writev(fd, iov, cnt);
}

ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
    if (fd_should_fail(fd, OP_WRITE, "pwritev", iov_bytes(iov, cnt))) {
        errno = fault_errno;
        return -1;
    }
    return real_pwritev(fd, iov, cnt, off);
}

ssize_t pwritev64(int fd, const struct iovec *iov, int cnt, off_t off)
{
    if (fd_should_fail(fd, OP_WRITE, "pwritev64", iov_bytes(iov, cnt))) {
        errno = fault_errno;
        return -1;
    }
    return (real_pwritev64 ? real_pwritev64 : real_pwritev)(fd, iov, cnt, off);
}

/* ---- syncs ---- */

int fsync(int fd)
{
    if (fd_should_fail(fd, OP_SYNC, "fsync", -1)) {
        errno = fault_errno;
        return -1;
    }
    return real_fsync(fd);
}

int fdatasync(int fd)
{
    if (fd_should_fail(fd, OP_SYNC, "fdatasync", -1)) {
        errno = fault_errno;
        return -1;
    }
    return real_fdatasync(fd);
}

int msync(void *addr, size_t len, int flags)
{
    init();
    char path[PATH_MAX] = "";
    if (addr_in_dir(addr, path, sizeof path) && should_fail(OP_SYNC, "msync", path, (long)len)) {
        errno = fault_errno;
        return -1;
    }
    return real_msync(addr, len, flags);
}
