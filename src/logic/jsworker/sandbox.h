/* The worker's confinement, in two steps: jsw_sandbox_prepare before the engine starts
 * (resource limits, no new privileges, no core dumps, only fds 0-3 open) and jsw_sandbox_lock
 * once it has (the address-space budget measured from the engine's start, no new files, and a
 * seccomp filter: docs/design/jsworker.md lists every system call it lets through). */
#ifndef LOGIC_JSWORKER_SANDBOX_H
#define LOGIC_JSWORKER_SANDBOX_H

#include <stddef.h>

/* What the engine reserves at start (2 GiB of PROT_NONE for JIT code, measured: with
 * RLIMIT_AS under that, JS_Init fails) plus room: the address-space ceiling before the engine
 * starts is this plus the module's budget. */
#define JSW_ENGINE_RESERVE_BYTES ((size_t)3 << 30)

/* Sets RLIMIT_CORE and RLIMIT_FSIZE to 0 and RLIMIT_AS to JSW_ENGINE_RESERVE_BYTES +
 * mem_bytes, forbids new privileges and ptrace by other processes, ignores SIGPIPE and
 * closes every fd above the socket. Returns 0 or ERR_IO. */
int jsw_sandbox_prepare(size_t mem_bytes);

/* Lowers RLIMIT_AS to the address space in use plus mem_bytes and RLIMIT_NOFILE to the fds
 * held, and installs the seccomp filter on every thread of the process (TSYNC: the engine's
 * helper threads already run) and every thread made later. Returns 0 or ERR_IO. */
int jsw_sandbox_lock(size_t mem_bytes);

/* Tries the system call called name ("open", "socket", "execve", "kill", "write") as the
 * sandbox would see it, for the tests: returns only when the filter let the call through or
 * refused it with an error (then 0 when it failed, 1 when it succeeded); a killed probe
 * never returns. */
int jsw_sandbox_probe(const char *name);

#endif
