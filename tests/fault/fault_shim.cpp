// tests/fault/fault_shim.cpp — the fault-injection shim: an LD_PRELOAD library that makes the N-th call of
// one system-call wrapper fail with a chosen errno, for tests/fault/fault_driver.cpp (see fault.cmake).
//
//   MPROC_FAULT=<call>:<N>:<errno>     e.g. fork:4:EAGAIN, write:2:EINTR, mmap:1:ENOMEM
//   MPROC_FAULT_SCOPE=parent|children  whose calls count (default: parent)
//
// Only calls made while the shim is *armed* count: the driver calls mproc_fault_arm() (looked up with
// dlsym(RTLD_DEFAULT)) after its own setup and mproc_fault_disarm() before its checks, so start-up
// noise (the loader, libc, libstdc++) never moves the count.
//   * scope parent: only the calls of the process that armed it count, from every thread (the Pool's
//     supervisor thread included); children (forked or vforked: another pid) never move the count.
//   * scope children: only the calls of processes fork()ed from the armed one (at any depth) count,
//     each process from zero (a pthread_atfork child handler resets the counts), so the fault fires in
//     every such child at its own N-th call: a pool worker's recvmsg, a child's shm_open. vfork children
//     share our memory and run no atfork handler; they never count.
// The N-th call fails once (per counting process), without reaching the kernel; every other call goes
// to the real function (dlsym(RTLD_NEXT)). Calls are counted per kind, so a run without MPROC_FAULT is
// a dry run that tells the sweep how many calls of each kind the operation makes (scope parent: the
// counts of the armed process; scope children: the largest count any child reached).
//
// Interposed: fork, vfork, pipe, pipe2, socketpair, eventfd, mmap, mmap64, shm_open, memfd_create,
// ftruncate, ftruncate64, write, read, sendmsg, recvmsg, poll, waitpid, waitid, and syscall(2) for
// SYS_pidfd_open and SYS_futex only (kinds "pidfd_open" and "futex": mproc and Boost.Process call them
// through syscall(), an ordinary exported function; every other syscall number passes straight through). Only calls that
// go through the dynamic symbol are seen: glibc's internal calls (malloc's mmap, stdio's write,
// posix_spawn's clone, system()'s waitpid) are not.
//
// vfork cannot be wrapped by a C function: the child would return through the wrapper's frame, which
// the parent still needs. On x86-64 the wrapper is a few instructions of assembly that decide and then
// either tail-jump to glibc's vfork (no frame of ours on the stack) or return -1 with errno set. On
// other architectures vfork is not interposed (the sweep then reports no vfork calls and skips it).
// Our definitions of read/write must not meet glibc's fortified inline wrappers.
#undef _FORTIFY_SOURCE
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define SHIM_API extern "C" __attribute__((visibility("default")))
#define SHIM_HIDDEN extern "C" __attribute__((visibility("hidden")))

namespace {

enum Call {
  c_fork,
  c_vfork,
  c_pipe,
  c_pipe2,
  c_socketpair,
  c_eventfd,
  c_mmap,
  c_shm_open,
  c_memfd_create,
  c_ftruncate,
  c_write,
  c_read,
  c_sendmsg,
  c_recvmsg,
  c_waitpid,
  c_waitid,
  c_pidfd_open,
  c_futex,
  c_poll,
  c_count
};

// mmap64 and ftruncate64 count as mmap and ftruncate (the same function on 64-bit glibc).
const char* const kNames[c_count] = {"fork",      "vfork",     "pipe",   "pipe2", "socketpair", "eventfd",
                                     "mmap",      "shm_open",  "memfd_create",   "ftruncate",  "write",
                                     "read",      "sendmsg",   "recvmsg", "waitpid", "waitid",
                                     "pidfd_open", "futex",     "poll"};

struct Errno {
  const char* name;
  int value;
};
const Errno kErrnos[] = {{"EAGAIN", EAGAIN}, {"ENOMEM", ENOMEM}, {"EINTR", EINTR},   {"ENOSPC", ENOSPC},
                         {"EMFILE", EMFILE}, {"ENFILE", ENFILE}, {"ENOBUFS", ENOBUFS}, {"EIO", EIO},
                         {"EPIPE", EPIPE},   {"ECHILD", ECHILD}, {"EINVAL", EINVAL}, {"ESRCH", ESRCH}};

// State. Plain globals with __atomic builtins: no constructors to order, async-signal-safe.
pid_t g_armed_pid = 0;          // 0: not armed
pid_t g_counting_pid = 0;       // the process whose calls count (scope children: set in each child)
bool g_scope_children = false;
long g_counts[c_count];         // armed calls seen, per kind, by this process
// Shared by the armed process and all its forked children (MAP_SHARED, made before arming): whether
// the fault fired in any child, and the largest per-kind count any child reached (for dry runs).
struct Shared {
  int fired_in_child;
  long child_max[c_count];
};
Shared* g_shared = nullptr;
int g_fault_call = -1;          // the kind to fail, or -1 (dry run)
long g_fault_n = 0;             // which call (1-based) fails
int g_fault_errno = 0;
int g_fired = 0;                // the fault has been injected
pid_t g_forked[64];             // pids returned by fork() while armed (for the Pool partial-construction test)
int g_nforked = 0;
__thread int t_paused = 0;      // mproc_fault_pause(): this thread's calls are the driver's own

// glibc's getpid() is a real system call (no cache since 2.25), so it is right in fork and vfork children.
pid_t raw_getpid() { return ::getpid(); }

template <class F>
F next(const char* name) {
  void* p = ::dlsym(RTLD_NEXT, name);
  if (!p) {
    ::fprintf(stderr, "fault_shim: dlsym(RTLD_NEXT, \"%s\") failed\n", name);  // stdio: no interposed write
    ::abort();
  }
  return reinterpret_cast<F>(p);
}

void parse_config() {
  const char* spec = ::getenv("MPROC_FAULT");
  if (!spec || !*spec) return;
  char buf[128];
  ::snprintf(buf, sizeof buf, "%s", spec);
  char* call = buf;
  char* n = ::strchr(call, ':');
  char* err = n ? ::strchr(n + 1, ':') : nullptr;
  if (!n || !err) goto bad;
  *n++ = '\0';
  *err++ = '\0';
  for (int i = 0; i < c_count; ++i)
    if (::strcmp(call, kNames[i]) == 0) g_fault_call = i;
  g_fault_n = ::strtol(n, nullptr, 10);
  for (const auto& e : kErrnos)
    if (::strcmp(err, e.name) == 0) g_fault_errno = e.value;
  if (g_fault_errno == 0) g_fault_errno = static_cast<int>(::strtol(err, nullptr, 10));
  if (g_fault_call < 0 || g_fault_n < 1 || g_fault_errno <= 0) goto bad;
  return;
bad:
  ::fprintf(stderr, "fault_shim: bad MPROC_FAULT='%s' (want <call>:<N>:<errno>)\n", spec);
  ::_exit(2);
}

// Count one call of kind c; the errno to inject, or 0 to go on to the real function.
int check(Call c) {
  if (__atomic_load_n(&g_armed_pid, __ATOMIC_ACQUIRE) == 0 || t_paused) return 0;
  const pid_t counting = __atomic_load_n(&g_counting_pid, __ATOMIC_ACQUIRE);
  if (counting == 0 || counting != raw_getpid()) return 0;
  const long k = __atomic_add_fetch(&g_counts[c], 1, __ATOMIC_ACQ_REL);
  if (g_scope_children && g_shared) {
    long seen = __atomic_load_n(&g_shared->child_max[c], __ATOMIC_RELAXED);
    while (k > seen && !__atomic_compare_exchange_n(&g_shared->child_max[c], &seen, k, true, __ATOMIC_RELAXED,
                                                    __ATOMIC_RELAXED)) {
    }
  }
  if (c != g_fault_call || k != g_fault_n) return 0;
  __atomic_store_n(&g_fired, 1, __ATOMIC_RELEASE);
  if (g_scope_children && g_shared) __atomic_store_n(&g_shared->fired_in_child, 1, __ATOMIC_RELEASE);
  return g_fault_errno;
}

// In every fork()ed child: scope children counts this process from zero; scope parent counts nothing
// here (the pid check would say so too; this also covers a recycled pid).
void in_forked_child() {
  for (long& n : g_counts) __atomic_store_n(&n, 0, __ATOMIC_RELAXED);
  __atomic_store_n(&g_fired, 0, __ATOMIC_RELAXED);
  __atomic_store_n(&g_nforked, 0, __ATOMIC_RELAXED);
  const bool armed = __atomic_load_n(&g_armed_pid, __ATOMIC_ACQUIRE) != 0;
  __atomic_store_n(&g_counting_pid, armed && g_scope_children ? raw_getpid() : 0, __ATOMIC_RELEASE);
}

using fork_fn = pid_t (*)();
using pipe_fn = int (*)(int*);
using pipe2_fn = int (*)(int*, int);
using socketpair_fn = int (*)(int, int, int, int*);
using eventfd_fn = int (*)(unsigned, int);
using mmap_fn = void* (*)(void*, size_t, int, int, int, off_t);
using mmap64_fn = void* (*)(void*, size_t, int, int, int, off64_t);
using shm_open_fn = int (*)(const char*, int, mode_t);
using memfd_create_fn = int (*)(const char*, unsigned);
using ftruncate_fn = int (*)(int, off_t);
using ftruncate64_fn = int (*)(int, off64_t);
using write_fn = ssize_t (*)(int, const void*, size_t);
using read_fn = ssize_t (*)(int, void*, size_t);
using sendmsg_fn = ssize_t (*)(int, const struct msghdr*, int);
using recvmsg_fn = ssize_t (*)(int, struct msghdr*, int);
using waitpid_fn = pid_t (*)(pid_t, int*, int);
using waitid_fn = int (*)(idtype_t, id_t, siginfo_t*, int);
using syscall_fn = long (*)(long, ...);
using poll_fn = int (*)(struct pollfd*, nfds_t, int);

struct Real {
  fork_fn fork;
  pipe_fn pipe;
  pipe2_fn pipe2;
  socketpair_fn socketpair;
  eventfd_fn eventfd;
  mmap_fn mmap;
  mmap64_fn mmap64;
  shm_open_fn shm_open;
  memfd_create_fn memfd_create;
  ftruncate_fn ftruncate;
  ftruncate64_fn ftruncate64;
  write_fn write;
  read_fn read;
  sendmsg_fn sendmsg;
  recvmsg_fn recvmsg;
  waitpid_fn waitpid;
  waitid_fn waitid;
  syscall_fn syscall;
  poll_fn poll;
} real;

// Resolved once, before main (and before any interposed call can come from the program): the
// constructor of an LD_PRELOADed library runs first.
__attribute__((constructor)) void init() {
  real.fork = next<fork_fn>("fork");
  real.pipe = next<pipe_fn>("pipe");
  real.pipe2 = next<pipe2_fn>("pipe2");
  real.socketpair = next<socketpair_fn>("socketpair");
  real.eventfd = next<eventfd_fn>("eventfd");
  real.mmap = next<mmap_fn>("mmap");
  real.mmap64 = next<mmap64_fn>("mmap64");
  real.shm_open = next<shm_open_fn>("shm_open");
  real.memfd_create = next<memfd_create_fn>("memfd_create");
  real.ftruncate = next<ftruncate_fn>("ftruncate");
  real.ftruncate64 = next<ftruncate64_fn>("ftruncate64");
  real.write = next<write_fn>("write");
  real.read = next<read_fn>("read");
  real.sendmsg = next<sendmsg_fn>("sendmsg");
  real.recvmsg = next<recvmsg_fn>("recvmsg");
  real.waitpid = next<waitpid_fn>("waitpid");
  real.waitid = next<waitid_fn>("waitid");
  real.syscall = next<syscall_fn>("syscall");
  real.poll = next<poll_fn>("poll");
  parse_config();
  const char* scope = ::getenv("MPROC_FAULT_SCOPE");
  if (scope && ::strcmp(scope, "children") == 0) {
    g_scope_children = true;
  } else if (scope && *scope && ::strcmp(scope, "parent") != 0) {
    ::fprintf(stderr, "fault_shim: bad MPROC_FAULT_SCOPE='%s' (want parent or children)\n", scope);
    ::_exit(2);
  }
  void* p = real.mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p != MAP_FAILED) g_shared = static_cast<Shared*>(p);  // zero-filled
  ::pthread_atfork(nullptr, nullptr, in_forked_child);
}

}  // namespace

// ---- control, for the driver (dlsym(RTLD_DEFAULT, ...)) ----------------------------------------------

/// Start counting (from zero) the calls of this process; the configured fault fires at its N-th call.
SHIM_API void mproc_fault_arm() {
  for (long& c : g_counts) __atomic_store_n(&c, 0, __ATOMIC_RELAXED);
  if (g_shared) {
    __atomic_store_n(&g_shared->fired_in_child, 0, __ATOMIC_RELAXED);
    for (long& c : g_shared->child_max) __atomic_store_n(&c, 0, __ATOMIC_RELAXED);
  }
  __atomic_store_n(&g_fired, 0, __ATOMIC_RELAXED);
  __atomic_store_n(&g_nforked, 0, __ATOMIC_RELAXED);
  __atomic_store_n(&g_counting_pid, g_scope_children ? 0 : raw_getpid(), __ATOMIC_RELEASE);
  __atomic_store_n(&g_armed_pid, raw_getpid(), __ATOMIC_RELEASE);
}
/// While paused, the calling thread's calls neither count nor fail: for the driver's own system calls
/// in the middle of an operation (its pidfd_open to wait for a child).
SHIM_API void mproc_fault_pause() { t_paused = 1; }
SHIM_API void mproc_fault_resume() { t_paused = 0; }
/// Stop counting (here; children already forked go on counting in scope children); counts and the
/// fired flag stay readable.
SHIM_API void mproc_fault_disarm() { __atomic_store_n(&g_armed_pid, 0, __ATOMIC_RELEASE); }
/// Whether the configured fault has been injected since arming (scope children: in any child).
SHIM_API int mproc_fault_fired() {
  if (g_scope_children) return g_shared ? __atomic_load_n(&g_shared->fired_in_child, __ATOMIC_ACQUIRE) : 0;
  return __atomic_load_n(&g_fired, __ATOMIC_ACQUIRE);
}
/// Number of interposed kinds; name and count of kind i (scope children: the largest of any child).
SHIM_API int mproc_fault_kinds() { return c_count; }
SHIM_API const char* mproc_fault_kind_name(int i) { return i >= 0 && i < c_count ? kNames[i] : nullptr; }
SHIM_API long mproc_fault_kind_count(int i) {
  if (i < 0 || i >= c_count) return -1;
  if (g_scope_children) return g_shared ? __atomic_load_n(&g_shared->child_max[i], __ATOMIC_ACQUIRE) : 0;
  return __atomic_load_n(&g_counts[i], __ATOMIC_ACQUIRE);
}
/// Pids that fork() returned (successfully) while armed, in order; returns how many were stored.
SHIM_API int mproc_fault_forked(pid_t* out, int max) {
  int n = __atomic_load_n(&g_nforked, __ATOMIC_ACQUIRE);
  if (n > max) n = max;
  for (int i = 0; i < n; ++i) out[i] = g_forked[i];
  return n;
}

// ---- the interposed functions ----------------------------------------------------------------------

#define FAIL_IF(kind, failval)         \
  do {                                 \
    if (int e_ = check(kind)) {        \
      errno = e_;                      \
      return failval;                  \
    }                                  \
  } while (0)

SHIM_API pid_t fork() noexcept {
  FAIL_IF(c_fork, -1);
  const pid_t counting = __atomic_load_n(&g_counting_pid, __ATOMIC_ACQUIRE);
  const pid_t p = real.fork();
  if (p > 0 && counting != 0 && counting == raw_getpid() && __atomic_load_n(&g_armed_pid, __ATOMIC_ACQUIRE) != 0) {
    int i = __atomic_fetch_add(&g_nforked, 1, __ATOMIC_ACQ_REL);
    if (i < 64) g_forked[i] = p;
  }
  return p;
}

#if defined(__x86_64__)
// See the file comment: no C frame may be live across the real vfork.
SHIM_HIDDEN int mproc_fault_vfork_check() { return check(c_vfork); }
SHIM_HIDDEN int mproc_fault_fail_errno(int e) {
  errno = e;
  return -1;
}
extern "C" {
__attribute__((visibility("hidden"))) void* mproc_fault_real_vfork = nullptr;
}
__attribute__((constructor)) static void init_vfork() { mproc_fault_real_vfork = next<void*>("vfork"); }
__asm__(
    ".text\n"
    ".globl vfork\n"
    ".type vfork, @function\n"
    "vfork:\n"
    "  sub $8, %rsp\n"                       // keep the stack 16-byte aligned for the call
    "  call mproc_fault_vfork_check\n"
    "  add $8, %rsp\n"
    "  test %eax, %eax\n"
    "  jnz 1f\n"
    "  jmp *mproc_fault_real_vfork(%rip)\n"  // tail jump: glibc's vfork returns straight to our caller
    "1:\n"
    "  mov %eax, %edi\n"
    "  jmp mproc_fault_fail_errno\n"         // errno = e, return -1 (to our caller)
    ".size vfork, .-vfork\n");
#endif

SHIM_API int pipe(int fds[2]) noexcept {
  FAIL_IF(c_pipe, -1);
  return real.pipe(fds);
}
SHIM_API int pipe2(int fds[2], int flags) noexcept {
  FAIL_IF(c_pipe2, -1);
  return real.pipe2(fds, flags);
}
SHIM_API int socketpair(int domain, int type, int protocol, int sv[2]) noexcept {
  FAIL_IF(c_socketpair, -1);
  return real.socketpair(domain, type, protocol, sv);
}
SHIM_API int eventfd(unsigned initval, int flags) noexcept {
  FAIL_IF(c_eventfd, -1);
  return real.eventfd(initval, flags);
}
SHIM_API void* mmap(void* addr, size_t len, int prot, int flags, int fd, off_t off) noexcept {
  FAIL_IF(c_mmap, MAP_FAILED);
  return real.mmap(addr, len, prot, flags, fd, off);
}
SHIM_API void* mmap64(void* addr, size_t len, int prot, int flags, int fd, off64_t off) noexcept {
  FAIL_IF(c_mmap, MAP_FAILED);
  return real.mmap64(addr, len, prot, flags, fd, off);
}
SHIM_API int shm_open(const char* name, int oflag, mode_t mode) {
  FAIL_IF(c_shm_open, -1);
  return real.shm_open(name, oflag, mode);
}
SHIM_API int memfd_create(const char* name, unsigned flags) noexcept {
  FAIL_IF(c_memfd_create, -1);
  return real.memfd_create(name, flags);
}
SHIM_API int ftruncate(int fd, off_t len) noexcept {
  FAIL_IF(c_ftruncate, -1);
  return real.ftruncate(fd, len);
}
SHIM_API int ftruncate64(int fd, off64_t len) noexcept {
  FAIL_IF(c_ftruncate, -1);
  return real.ftruncate64(fd, len);
}
SHIM_API ssize_t write(int fd, const void* buf, size_t n) {
  FAIL_IF(c_write, -1);
  return real.write(fd, buf, n);
}
SHIM_API ssize_t read(int fd, void* buf, size_t n) {
  FAIL_IF(c_read, -1);
  return real.read(fd, buf, n);
}
SHIM_API ssize_t sendmsg(int fd, const struct msghdr* m, int flags) {
  FAIL_IF(c_sendmsg, -1);
  return real.sendmsg(fd, m, flags);
}
SHIM_API ssize_t recvmsg(int fd, struct msghdr* m, int flags) {
  FAIL_IF(c_recvmsg, -1);
  return real.recvmsg(fd, m, flags);
}
SHIM_API int poll(struct pollfd* fds, nfds_t n, int timeout) {
  FAIL_IF(c_poll, -1);
  return real.poll(fds, n, timeout);
}
SHIM_API pid_t waitpid(pid_t pid, int* status, int options) {
  FAIL_IF(c_waitpid, -1);
  return real.waitpid(pid, status, options);
}
SHIM_API int waitid(idtype_t idtype, id_t id, siginfo_t* info, int options) {
  FAIL_IF(c_waitid, -1);
  return real.waitid(idtype, id, info, options);
}

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
// syscall(2) takes up to six arguments in registers; like glibc's own syscall(), forward six whatever
// the caller passed (the extra ones are unused by the kernel for shorter calls). Counted: pidfd_open
// and futex (the queue ring's sleeps and wake-ups; glibc's own futex calls do not come through here).
SHIM_API long syscall(long number, ...) noexcept {
  va_list ap;
  va_start(ap, number);
  const long a1 = va_arg(ap, long), a2 = va_arg(ap, long), a3 = va_arg(ap, long);
  const long a4 = va_arg(ap, long), a5 = va_arg(ap, long), a6 = va_arg(ap, long);
  va_end(ap);
  if (number == SYS_pidfd_open) FAIL_IF(c_pidfd_open, -1);
  if (number == SYS_futex) FAIL_IF(c_futex, -1);
  return real.syscall(number, a1, a2, a3, a4, a5, a6);
}
