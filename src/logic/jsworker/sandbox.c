/* The worker's confinement (sandbox.h): resource limits and a seccomp filter written by hand
 * as a classic BPF program (libseccomp is not assumed). The filter checks the architecture,
 * refuses the x32 system-call range, lets through the calls the engine needs once it runs
 * (some only with the arguments it uses), kills the process on the calls only an attacker
 * would make (files, sockets, exec, fork, signals to others, ptrace), and answers EPERM to
 * everything else.
 */
#define _GNU_SOURCE
#include "logic/jsworker/sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "logic/jsworker/proto.h"
#include "util/errors.h"

#if defined(__x86_64__)
#define JSW_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define JSW_AUDIT_ARCH AUDIT_ARCH_AARCH64
#else
#error "the worker's seccomp filter knows x86-64 and arm64"
#endif

enum {
    FILTER_MAX_INSNS = 256,      /* instructions of the program */
    X32_SYSCALL_BIT = 0x40000000, /* x32 numbers on x86-64: refused whole */
};

#define RET_ALLOW SECCOMP_RET_ALLOW
#define RET_KILL SECCOMP_RET_KILL_PROCESS
#define RET_EPERM (SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA))
#define RET_ENOSYS (SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA))
#define ARG_LO(i) (offsetof(struct seccomp_data, args) + 8 * (i))
#define ARG_HI(i) (offsetof(struct seccomp_data, args) + 8 * (i) + 4)

/* Let through whatever their arguments. */
static const int allowed[] = {
    SYS_close, SYS_mmap, SYS_munmap, SYS_mprotect, SYS_madvise, SYS_mremap, SYS_brk,
    SYS_futex, SYS_clock_gettime, SYS_clock_getres, SYS_gettimeofday, SYS_clock_nanosleep,
    SYS_nanosleep, SYS_sched_yield, SYS_getpid, SYS_gettid, SYS_getrandom, SYS_exit,
    SYS_exit_group, SYS_rt_sigreturn, SYS_rt_sigprocmask, SYS_rt_sigaction, SYS_sigaltstack,
    SYS_set_robust_list, SYS_rseq, SYS_sched_getaffinity, SYS_getrusage, SYS_membarrier,
    SYS_fstat, SYS_newfstatat, SYS_lseek,
};

/* Kill the process: nothing the engine does needs them. */
static const int fatal[] = {
    SYS_execve, SYS_execveat, SYS_openat, SYS_openat2, SYS_socket, SYS_socketpair,
    SYS_connect, SYS_bind, SYS_listen, SYS_accept, SYS_accept4, SYS_ptrace,
    SYS_process_vm_readv, SYS_process_vm_writev, SYS_mount, SYS_unshare, SYS_setns, SYS_bpf,
    SYS_perf_event_open, SYS_userfaultfd, SYS_io_uring_setup, SYS_keyctl, SYS_rt_sigqueueinfo,
    SYS_rt_tgsigqueueinfo, SYS_pidfd_open, SYS_pidfd_send_signal,
#ifdef SYS_open
    SYS_open, SYS_creat, SYS_fork, SYS_vfork,
#endif
};

struct filter {
    struct sock_filter insns[FILTER_MAX_INSNS];
    size_t n;
    bool overflow; /* the program did not fit (a build error, caught at start) */
};

static void emit(struct filter *f, struct sock_filter insn)
{
    if (f->n == FILTER_MAX_INSNS) {
        f->overflow = true;
        return;
    }
    f->insns[f->n++] = insn;
}

static void emit_ret_if(struct filter *f, int nr, uint32_t action)
{
    emit(f, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)nr, 0, 1));
    emit(f, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, action));
}

/* nr passes when its argument arg (64 bits) is one of values[0..count), else gets deny. */
static void emit_arg_in(struct filter *f, int nr, int arg, const uint32_t *values, size_t count,
                        uint32_t deny)
{
    uint8_t c = (uint8_t)count;
    emit(f, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)nr, 0, 5 + c));
    emit(f, (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG_HI(arg)));
    emit(f, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 1 + c));
    emit(f, (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LO(arg)));
    for (uint8_t j = 0; j < c; j++)
        emit(f, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, values[j], c - j, 0));
    emit(f, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, deny));
    emit(f, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, RET_ALLOW));
}

/* nr passes when its argument arg has every bit of mask set, else gets deny. */
static void emit_arg_has(struct filter *f, int nr, int arg, uint32_t mask, uint32_t deny)
{
    emit(f, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)nr, 0, 4));
    emit(f, (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LO(arg)));
    emit(f, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, mask, 1, 0));
    emit(f, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, deny));
    emit(f, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, RET_ALLOW));
}

static void build_filter(struct filter *f)
{
    uint32_t pid = (uint32_t)getpid();
    const uint32_t sock_fd[] = {JSW_SOCKET_FD};
    const uint32_t out_fds[] = {STDERR_FILENO, JSW_SOCKET_FD};
    const uint32_t self[] = {pid};
    const uint32_t names[] = {PR_SET_NAME, PR_GET_NAME};
    emit(f, (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
                                         offsetof(struct seccomp_data, arch)));
    emit(f, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, JSW_AUDIT_ARCH, 1, 0));
    emit(f, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, RET_KILL));
    emit(f, (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
                                         offsetof(struct seccomp_data, nr)));
    emit(f, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, X32_SYSCALL_BIT, 0, 1));
    emit(f, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, RET_KILL));
    for (size_t i = 0; i < sizeof allowed / sizeof allowed[0]; i++)
        emit_ret_if(f, allowed[i], RET_ALLOW);
    for (size_t i = 0; i < sizeof fatal / sizeof fatal[0]; i++)
        emit_ret_if(f, fatal[i], RET_KILL);
    emit_ret_if(f, SYS_clone3, RET_ENOSYS); /* glibc then uses clone, whose flags we see */
    emit_arg_in(f, SYS_read, 0, sock_fd, 1, RET_EPERM);
    emit_arg_in(f, SYS_write, 0, out_fds, 2, RET_EPERM);
    emit_arg_in(f, SYS_writev, 0, out_fds, 2, RET_EPERM);
    emit_arg_in(f, SYS_prctl, 0, names, 2, RET_EPERM);
    emit_arg_in(f, SYS_tgkill, 0, self, 1, RET_KILL);
    emit_arg_in(f, SYS_kill, 0, self, 1, RET_KILL);
    emit_arg_has(f, SYS_clone, 0, CLONE_THREAD, RET_KILL);
    emit(f, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, RET_EPERM));
}

static int set_limit(int resource, rlim_t value)
{
    struct rlimit r = {value, value};
    return setrlimit(resource, &r) == 0 ? 0 : ERR_IO;
}

int jsw_sandbox_prepare(size_t mem_bytes)
{
    if (set_limit(RLIMIT_CORE, 0) < 0 ||
        set_limit(RLIMIT_AS, (rlim_t)JSW_ENGINE_RESERVE_BYTES + mem_bytes) < 0)
        return ERR_IO;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
        return ERR_IO;
    signal(SIGPIPE, SIG_IGN);
    return syscall(SYS_close_range, JSW_SOCKET_FD + 1, ~0u, 0) == 0 ? 0 : ERR_IO;
}

/* Bytes of address space mapped now (/proc/self/statm, before the filter forbids opening). */
static int address_space_bytes(size_t *out)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long pages = 0;
    if (!f) return ERR_IO;
    int got = fscanf(f, "%lu", &pages);
    fclose(f);
    if (got != 1) return ERR_IO;
    *out = (size_t)pages * (size_t)sysconf(_SC_PAGESIZE);
    return 0;
}

int jsw_sandbox_lock(size_t mem_bytes)
{
    struct filter f = {.n = 0};
    size_t in_use = 0;
    if (address_space_bytes(&in_use) < 0 || set_limit(RLIMIT_AS, in_use + mem_bytes) < 0 ||
        set_limit(RLIMIT_NOFILE, JSW_SOCKET_FD + 1) < 0)
        return ERR_IO;
    build_filter(&f);
    if (f.overflow) return ERR_IO;
    struct sock_fprog prog = {.len = (unsigned short)f.n, .filter = f.insns};
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &prog) != 0)
        return ERR_IO;
    return 0;
}

int jsw_sandbox_probe(const char *name)
{
    char *const argv[] = {"true", NULL};
    long rc = -1;
    if (!strcmp(name, "open")) rc = syscall(SYS_openat, AT_FDCWD, "/etc/hostname", O_RDONLY);
    else if (!strcmp(name, "socket")) rc = syscall(SYS_socket, AF_INET, SOCK_STREAM, 0);
    else if (!strcmp(name, "execve")) rc = syscall(SYS_execve, "/bin/true", argv, argv + 1);
    else if (!strcmp(name, "kill")) rc = syscall(SYS_kill, getppid(), 0);
    else if (!strcmp(name, "write")) rc = syscall(SYS_write, STDOUT_FILENO, "x", 1);
    else if (!strcmp(name, "fork")) rc = syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
    return rc >= 0 ? 1 : 0;
}
