/* Power-loss test interposer (LD_PRELOAD, test only).
 *
 * Records every write and sync the server makes to files under $PL_DIR into a binary trace
 * ($PL_TRACE), passing each call through to the real function, so that tests/powerloss/run.py
 * can later rebuild, offline, the states a power cut could leave on disk at any point of the
 * run: the writes a file's last completed sync covered are kept, the writes not yet synced are
 * kept, dropped, torn or persisted out of order. It also records the directory entries that
 * change (files created, unlinked, renamed) and the fsyncs of directories under $PL_DIR, so
 * the replay knows which files exist: an entry change not covered by a completed fsync of its
 * directory may or may not have reached the disk.
 *
 * PL_SKIP_SYNC=1 simulates a broken build: fsync/fdatasync of the event log (every generation:
 * events.log and events.<g>.log) return 0 without syncing, and the trace records SKIP instead
 * of SYNC_BEGIN/SYNC_END (so the replay treats them as having made nothing durable).
 * Directory fsyncs and data.mdb's syncs are never skipped.
 *
 * File ids: one per file (inode) the trace saw, in order of first sight, and one per directory.
 * A file created by an open gets a new id even when an earlier file had the same path (a log
 * generation removed, then made again), so the writes of one id are always one inode's.
 *
 * Trace records (little-endian, packed), each starting with
 *   u8 type, u64 monotonic ns (CLOCK_MONOTONIC), u32 file id
 * then by type:
 *   OPEN  (1): u32 open flags, u32 path length, path bytes (absolute, canonical)
 *   WRITE (2): u64 offset, u32 length, length data bytes
 *   ZERO  (3): u64 offset, u32 length            (a write of only zero bytes)
 *   SYNC_BEGIN (4): nothing                      (fsync/fdatasync called)
 *   SYNC_END   (5): i32 result                   (it returned; 0 = success)
 *   TRUNC (6): u64 length                        (ftruncate that succeeded)
 *   SKIP  (7): nothing                           (PL_SKIP_SYNC swallowed a sync)
 *   CREATE (8): nothing                          (the OPEN just before created the file)
 *   UNLINK (9): u32 path length, path            (unlink/unlinkat of a non-directory that
 *                                                 succeeded; file id 0 if never opened)
 *   RENAME (10): u32 length, old path, u32 length, new path  (succeeded; id of the old path's
 *                                                 file, or 0)
 *   DIR   (11): u32 path length, path            (a directory under PL_DIR, or PL_DIR itself,
 *                                                 was opened: its fsyncs carry this id)
 * An open with O_TRUNC of an existing file is recorded as OPEN + TRUNC 0. Entry changes are
 * recorded after the real call returned, so one recorded before the SYNC_BEGIN of a directory
 * fsync whose SYNC_END succeeded is durable.
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

enum {
    T_OPEN = 1,
    T_WRITE,
    T_ZERO,
    T_SYNC_BEGIN,
    T_SYNC_END,
    T_TRUNC,
    T_SKIP,
    T_CREATE,
    T_UNLINK,
    T_RENAME,
    T_DIR,
};

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
static uint8_t file_live[MAX_FILES]; /* the path names this id now (not unlinked, renamed over) */
static uint8_t file_dir[MAX_FILES];  /* a directory */
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
static int (*real_unlink)(const char *);
static int (*real_unlinkat)(int, const char *, int);
static int (*real_rename)(const char *, const char *);
static int (*real_renameat)(int, const char *, int, const char *);
static int (*real_renameat2)(int, const char *, int, const char *, unsigned);

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
        real_unlink = dlsym(RTLD_NEXT, "unlink");
        real_unlinkat = dlsym(RTLD_NEXT, "unlinkat");
        real_rename = dlsym(RTLD_NEXT, "rename");
        real_renameat = dlsym(RTLD_NEXT, "renameat");
        real_renameat2 = dlsym(RTLD_NEXT, "renameat2");
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

/* True when the canonical path p is PL_DIR or lies under it. */
static int under_dir(const char *p)
{
    return strncmp(p, dir, dir_len) == 0 && (p[dir_len] == '/' || p[dir_len] == 0);
}

/* The id the path names now (0: none); called with mu held. */
static uint32_t live_id(const char *path)
{
    for (uint32_t i = n_files; i > 0; i--) {
        if (file_live[i - 1] && strcmp(file_path[i - 1], path) == 0) {
            return i;
        }
    }
    return 0;
}

/* A new id for path (which it now names); called with mu held. 0 when the table is full. */
static uint32_t new_id(const char *path, int is_dir)
{
    if (n_files >= MAX_FILES) {
        return 0;
    }
    uint32_t old = live_id(path);
    if (old) {
        file_live[old - 1] = 0;
    }
    file_path[n_files] = strdup(path);
    file_live[n_files] = 1;
    file_dir[n_files] = (uint8_t)is_dir;
    return ++n_files;
}

static void out_path(const char *p)
{
    uint32_t len = (uint32_t)strlen(p);
    out(&len, 4);
    out(p, len);
}

/* After a successful open: if the file (or directory) lies under PL_DIR, map fd to its id.
 * created: the open made the file. */
static void note_open(int fd, int flags, int created)
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
    if ((size_t)n < dir_len || !under_dir(path)) {
        __atomic_store_n(&fd_file[fd], 0, __ATOMIC_RELEASE);
        return;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        return;
    }
    int is_dir = S_ISDIR(sb.st_mode);
    if (!is_dir && (!S_ISREG(sb.st_mode) || (size_t)n == dir_len)) {
        return;
    }
    pthread_mutex_lock(&mu);
    uint32_t id = created ? 0 : live_id(path);
    if (id && file_dir[id - 1] != is_dir) {
        id = 0;
    }
    int fresh = !id;
    if (!id) {
        id = new_id(path, is_dir);
    }
    if (id && is_dir) {
        head(T_DIR, id);
        out_path(path);
        fd_sync[fd] = 0;
        __atomic_store_n(&fd_file[fd], id, __ATOMIC_RELEASE);
    } else if (id) {
        head(T_OPEN, id);
        uint32_t fl = (uint32_t)flags;
        out(&fl, 4);
        out_path(path);
        if (created && fresh) {
            head(T_CREATE, id);
        } else if (flags & O_TRUNC) {
            head(T_TRUNC, id);
            uint64_t zero = 0;
            out(&zero, 8);
        }
        fd_sync[fd] = (flags & (O_SYNC | O_DSYNC)) != 0;
        __atomic_store_n(&fd_file[fd], id, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&mu);
}

/* The canonical absolute path of (dfd, path) — its directory resolved, its last component
 * kept — into out. Returns 1 when it lies under PL_DIR (and is not PL_DIR itself), else 0. */
static int resolve(int dfd, const char *path, char *out_p)
{
    if (trace_fd < 0 || !path || !*path) {
        return 0;
    }
    char full[PATH_MAX * 2], base[PATH_MAX];
    if (path[0] == '/') {
        snprintf(full, sizeof full, "%s", path);
    } else {
        if (dfd == AT_FDCWD) {
            if (!getcwd(base, sizeof base)) {
                return 0;
            }
        } else {
            char link[64];
            snprintf(link, sizeof link, "/proc/self/fd/%d", dfd);
            ssize_t n = readlink(link, base, sizeof base - 1);
            if (n <= 0) {
                return 0;
            }
            base[n] = 0;
        }
        snprintf(full, sizeof full, "%s/%s", base, path);
    }
    size_t len = strlen(full);
    while (len > 1 && full[len - 1] == '/') {
        full[--len] = 0;
    }
    char *slash = strrchr(full, '/');
    if (!slash) {
        return 0;
    }
    const char *name = slash + 1;
    if (!*name || strcmp(name, ".") == 0 || strcmp(name, "..") == 0) {
        return 0;
    }
    char dpath[PATH_MAX];
    if (slash == full) {
        strcpy(dpath, "/");
    } else {
        *slash = 0;
        if (!realpath(full, dpath)) {
            return 0;
        }
    }
    int n = snprintf(out_p, PATH_MAX, "%s/%s", strcmp(dpath, "/") == 0 ? "" : dpath, name);
    if (n <= 0 || n >= PATH_MAX) {
        return 0;
    }
    return (size_t)n > dir_len && under_dir(out_p);
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

/* Before an open with O_CREAT: does the file exist already? (1: no, the open will create it) */
static int will_create(int dfd, const char *path, int flags)
{
    if (trace_fd < 0 || !(flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE) {
        return 0;
    }
    if (flags & O_EXCL) {
        return 1;
    }
    struct stat sb;
    return fstatat(dfd, path, &sb, 0) != 0 && errno == ENOENT;
}

static int open_common(int (*fn)(const char *, int, ...), const char *path, int flags,
                       va_list ap)
{
    mode_t mode = 0;
    if (flags & (O_CREAT | O_TMPFILE)) {
        mode = va_arg(ap, mode_t);
    }
    int saved = errno;
    int create = will_create(AT_FDCWD, path, flags);
    errno = saved;
    int fd = fn(path, flags, mode);
    if (fd >= 0) {
        saved = errno;
        note_open(fd, flags, create);
        errno = saved;
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
    int saved = errno;
    int create = will_create(dfd, path, flags);
    errno = saved;
    int fd = fn(dfd, path, flags, mode);
    if (fd >= 0) {
        saved = errno;
        note_open(fd, flags, create);
        errno = saved;
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

/* A log file of any generation: events.log or events.<digits>.log. */
static int is_log(uint32_t id)
{
    if (file_dir[id - 1]) {
        return 0;
    }
    const char *slash = strrchr(file_path[id - 1], '/');
    const char *b = slash ? slash + 1 : file_path[id - 1];
    if (strcmp(b, "events.log") == 0) {
        return 1;
    }
    if (strncmp(b, "events.", 7) != 0) {
        return 0;
    }
    const char *d = b + 7;
    size_t nd = strspn(d, "0123456789");
    return nd > 0 && strcmp(d + nd, ".log") == 0;
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

/* ---- directory entries ---- */

static int unlink_common(int dfd, const char *path, int flags)
{
    char p[PATH_MAX];
    int saved = errno;
    int traced_path = !(flags & AT_REMOVEDIR) && resolve(dfd, path, p);
    errno = saved;
    int r = dfd == AT_FDCWD && !flags && real_unlink ? real_unlink(path)
                                                     : real_unlinkat(dfd, path, flags);
    if (r == 0 && traced_path) {
        saved = errno;
        pthread_mutex_lock(&mu);
        uint32_t id = live_id(p);
        if (id) {
            file_live[id - 1] = 0;
        }
        head(T_UNLINK, id);
        out_path(p);
        pthread_mutex_unlock(&mu);
        errno = saved;
    }
    return r;
}

int unlink(const char *path)
{
    init();
    return unlink_common(AT_FDCWD, path, 0);
}

int unlinkat(int dfd, const char *path, int flags)
{
    init();
    return unlink_common(dfd, path, flags);
}

static int rename_common(int odfd, const char *oldp, int ndfd, const char *newp,
                         unsigned flags, int which)
{
    char po[PATH_MAX], pn[PATH_MAX];
    int saved = errno;
    int to = resolve(odfd, oldp, po), tn = resolve(ndfd, newp, pn);
    errno = saved;
    int r = which == 0   ? real_rename(oldp, newp)
            : which == 1 ? real_renameat(odfd, oldp, ndfd, newp)
                         : real_renameat2(odfd, oldp, ndfd, newp, flags);
    if (r == 0 && (to || tn)) {
        saved = errno;
        pthread_mutex_lock(&mu);
        uint32_t id = to ? live_id(po) : 0;
        if (!to) {
            po[0] = 0;
        }
        if (!tn) {
            pn[0] = 0;
        }
        uint32_t over = tn ? live_id(pn) : 0;
        if (over && over != id) {
            file_live[over - 1] = 0;
        }
        if (id) {
            if (tn) {
                /* the old string is left allocated: is_log may read it without mu */
                file_path[id - 1] = strdup(pn);
            } else {
                file_live[id - 1] = 0;
            }
        }
        head(T_RENAME, id);
        out_path(po);
        out_path(pn);
        pthread_mutex_unlock(&mu);
        errno = saved;
    }
    return r;
}

int rename(const char *oldp, const char *newp)
{
    init();
    return rename_common(AT_FDCWD, oldp, AT_FDCWD, newp, 0, 0);
}

int renameat(int odfd, const char *oldp, int ndfd, const char *newp)
{
    init();
    return rename_common(odfd, oldp, ndfd, newp, 0, 1);
}

int renameat2(int odfd, const char *oldp, int ndfd, const char *newp, unsigned flags)
{
    init();
    return rename_common(odfd, oldp, ndfd, newp, flags, real_renameat2 ? 2 : 1);
}
