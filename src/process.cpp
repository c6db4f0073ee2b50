// Process: fork a target into a child, following CPython's process.py lifecycle rules (start
// preconditions, _bootstrap's exit codes, util._exit_function at parent exit) on top of the careful
// fork and the reaper.
#include "mproc/process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

#include "mproc/reaper.hpp"
#include "posix/fork.hpp"
#include "posix/wait.hpp"
#include "reaper_internal.hpp"
#include "runtime.hpp"
#include "trace.hpp"

namespace mproc {
namespace detail {

struct ProcessState {
  std::unique_ptr<Target> target;
  std::string name;
  bool daemon = false;
  std::vector<int> identity;  // Python's _identity: (1,) for Process-1, (1, 2) for Process-1:2
  bool started = false;
  bool closed = false;
  pid_t parent_pid = 0;
  std::shared_ptr<ChildHandle> child;
};

namespace {

// Who this process is. Written only in the main process before any child exists and in a child's
// bootstrap (single-threaded at that point), read from anywhere.
struct Self {
  std::string name = "MainProcess";
  bool daemon = false;
  std::vector<int> identity;
  std::atomic<int> counter{0};
  std::optional<ProcessInfo> parent;
};
Self& self() {
  static Self* s = new Self;  // never destroyed: read by exit hooks
  return *s;
}

std::string identity_name(const std::vector<int>& id) {
  std::string s = "Process-";
  for (std::size_t i = 0; i < id.size(); ++i) {
    if (i) s += ':';
    s += std::to_string(id[i]);
  }
  return s;
}

int count_threads() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("Threads:", 0) == 0) return std::atoi(line.c_str() + 8);
  return 1;
}

void warn_if_threaded() {
  static std::atomic<bool> warned{false};
  const char* v = std::getenv("MPROC_WARN_THREADS");
  if (!v || !*v || std::strcmp(v, "0") == 0 || warned.load()) return;
  int others = count_threads() - 1 - internal_threads().load();
  if (others > 0 && !warned.exchange(true)) {
    std::fprintf(stderr,
                 "mproc: warning: forking a process that has %d other thread(s); only async-signal-safe "
                 "work is guaranteed in the child before it reaches its target (see README, Fork-safety)\n",
                 others);
  }
}

// Arm the daemon's lifeline: when the last write end (held only by the parent) closes, the kernel
// sends us SIGKILL (O_ASYNC with F_SETSIG). Unlike PR_SET_PDEATHSIG this follows the parent process,
// not the thread that forked us. If the parent is already gone, end now.
void arm_lifeline(int fd) noexcept {
  if (::fcntl(fd, F_SETOWN, ::getpid()) != 0 || ::fcntl(fd, F_SETSIG, SIGKILL) != 0) ::_exit(70);
  int fl = ::fcntl(fd, F_GETFL);
  if (fl < 0 || ::fcntl(fd, F_SETFL, fl | O_ASYNC) != 0) ::_exit(70);
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, 0) > 0) ::_exit(70);  // EOF already: the parent died before we armed it
}

}  // namespace
}  // namespace detail

using detail::ProcessState;

Process::Process() : st_(std::make_unique<ProcessState>()) {
  auto& me = detail::self();
  st_->identity = me.identity;
  st_->identity.push_back(me.counter.fetch_add(1) + 1);
  st_->name = detail::identity_name(st_->identity);
}

Process::Process(Process&&) noexcept = default;
Process& Process::operator=(Process&& o) noexcept {
  if (this != &o) {
    release_child();  // what destroying this Process would do to its running child
    st_ = std::move(o.st_);
  }
  return *this;
}

Process::~Process() { release_child(); }

void Process::release_child() noexcept {
  if (!st_ || !st_->started || st_->closed || !st_->child) return;
  if (st_->parent_pid != ::getpid()) return;  // a copy of the parent's object inside a child
  try {
    auto& h = *st_->child;
    if (detail::poll_child(h)) return;
    if (st_->daemon) {
      detail::signal_child(h, SIGTERM);
      if (!detail::wait_child(h, detail::posix::Deadline(std::chrono::seconds(1)))) {
        detail::signal_child(h, SIGKILL);
        detail::wait_child(h, detail::posix::Deadline(std::nullopt));
      }
    }
    // Non-daemon: the reaper keeps owning it; it is reaped when it ends and joined at exit.
  } catch (...) {
  }
}

void Process::set_target(std::unique_ptr<detail::Target> t) { st_->target = std::move(t); }

void Process::run() {
  if (st_->target) st_->target->run();
}

Process& Process::name(std::string n) {
  if (!st_) throw UsageError("Process: use of a moved-from object");
  st_->name = std::move(n);
  return *this;
}
const std::string& Process::name() const {
  if (!st_) throw UsageError("Process: use of a moved-from object");
  return st_->name;
}

Process& Process::daemon(bool d) {
  if (!st_) throw UsageError("Process: use of a moved-from object");
  if (st_->started) throw UsageError("Process::daemon: cannot set the daemon flag of a started process");
  st_->daemon = d;
  return *this;
}
bool Process::daemon() const {
  if (!st_) throw UsageError("Process: use of a moved-from object");
  return st_->daemon;
}

namespace {
ProcessState& usable(const std::unique_ptr<ProcessState>& st, const char* what) {
  if (!st) throw UsageError(std::string("Process::") + what + ": use of a moved-from object");
  if (st->closed) throw UsageError(std::string("Process::") + what + ": process object is closed");
  return *st;
}
ProcessState& started_child(const std::unique_ptr<ProcessState>& st, const char* what) {
  auto& s = usable(st, what);
  if (!s.started) throw UsageError(std::string("Process::") + what + ": process has not been started");
  if (s.parent_pid != ::getpid())
    throw UsageError(std::string("Process::") + what + ": can only be called by the process that started it");
  return s;
}
void check_not_lost(const detail::ChildHandle& h) {
  if (h.lost.load())
    throw std::system_error(ECHILD, std::system_category(),
                            "child " + std::to_string(h.pid) + " was reaped outside mproc (a foreign waitpid)");
}
}  // namespace

void Process::start() {
  auto& st = usable(st_, "start");
  if (st.started) throw UsageError("Process::start: cannot start a process twice");
  auto& me = detail::self();
  if (me.daemon) throw UsageError("Process::start: daemonic processes are not allowed to have children");

  detail::sweep();  // on-demand reaping: every start collects children that ended meanwhile
  detail::warn_if_threaded();
  detail::install_exit_dispatch();

  namespace px = detail::posix;
  px::Pipe lifeline;
  if (st.daemon) {
    lifeline = px::make_pipe();
    detail::close_in_children(lifeline.write.get());
  }
  struct Forget {
    int fd;
    ~Forget() {
      if (fd >= 0) detail::forget_in_children(fd);
    }
  } forget{st.daemon ? lifeline.write.get() : -1};
  const bool use_pidfd = px::have_pidfd();
  px::Pipe sentinel_pipe;
  if (!use_pidfd) sentinel_pipe = px::make_pipe();

  const pid_t parent = ::getpid();
  const pid_t pid = px::careful_fork();
  if (pid == 0) {
    // ---- the child. Never returns. ----
    if (st.daemon) (void)lifeline.write.release();  // already closed by the registry's atfork handler
    forget.fd = -1;
    sentinel_pipe.read.reset();
    if (sentinel_pipe.write) {
      // Held until we exit: its EOF is the parent's sentinel. Our own children must not inherit it, or
      // the parent would wait for our descendants too.
      detail::close_in_children(sentinel_pipe.write.release());
    }
    detail::set_in_child();
    try {
      ProcessInfo parent_info{me.name, parent, me.daemon};
      me.parent = parent_info;
      me.name = st.name;
      me.daemon = st.daemon;
      // Taken, not copied: this copy of the parent's state is not read again in the child, and a copy
      // would be a malloc (with default names, the child's only one before its target: code and arena
      // pages faulted in).
      me.identity.swap(st.identity);
      me.counter.store(0);
    } catch (...) {
      detail::posix::child_exit(1);
    }
    ::prctl(PR_SET_NAME, st.name.c_str(), 0, 0, 0);  // the kernel cuts it to 15 bytes
    if (st.daemon) detail::arm_lifeline(lifeline.read.release());
    detail::run_child_and_exit(st.name, [this] { run(); });
  }

  // ---- the parent ----
  lifeline.read.reset();
  sentinel_pipe.write.reset();
  px::UniqueFd sentinel;
  if (use_pidfd) {
    // Race-free: the child cannot be reaped (and its pid reused) before we own it.
    sentinel.reset(px::pidfd_open(pid));
    if (!sentinel) {
      int err = errno;
      ::kill(pid, SIGKILL);
      px::wait_blocking(pid);
      px::throw_errno(err, "pidfd_open");
    }
  } else {
    sentinel = std::move(sentinel_pipe.read);
  }
  st.child = detail::own_child(pid, detail::ChildInfo{st.name, st.daemon, true}, std::move(sentinel), use_pidfd,
                               std::move(lifeline.write));
  st.started = true;
  st.parent_pid = parent;
  detail::trace("fork pid=%d name=%s%s", pid, st.name.c_str(), st.daemon ? " daemon" : "");
}

void Process::join() {
  auto& st = started_child(st_, "join");
  detail::wait_child(*st.child, detail::posix::Deadline(std::nullopt));
  check_not_lost(*st.child);
}

bool Process::join_for(std::chrono::nanoseconds timeout) {
  auto& st = started_child(st_, "join");
  bool ended = detail::wait_child(*st.child, detail::posix::Deadline(timeout));
  if (ended) check_not_lost(*st.child);
  return ended;
}

bool Process::is_alive() {
  auto& st = usable(st_, "is_alive");
  if (!st.started) return false;
  if (st.parent_pid != ::getpid()) throw UsageError("Process::is_alive: can only test a child process");
  return !detail::poll_child(*st.child);
}

std::optional<pid_t> Process::pid() const {
  auto& st = usable(st_, "pid");
  if (!st.started) return std::nullopt;
  return st.child->pid;
}

std::optional<ExitStatus> Process::exit_status() {
  auto& st = usable(st_, "exit_status");
  if (!st.started || st.parent_pid != ::getpid()) return std::nullopt;
  if (!detail::poll_child(*st.child)) return std::nullopt;
  check_not_lost(*st.child);
  return st.child->status();
}

std::optional<int> Process::exitcode() {
  auto s = exit_status();
  if (!s) return std::nullopt;
  return s->exitcode();
}

void Process::terminate() {
  auto& st = started_child(st_, "terminate");
  detail::signal_child(*st.child, SIGTERM);
}

void Process::kill() {
  auto& st = started_child(st_, "kill");
  detail::signal_child(*st.child, SIGKILL);
}

void Process::close() {
  if (!st_) throw UsageError("Process::close: use of a moved-from object");
  if (st_->closed) return;
  if (st_->started && st_->parent_pid == ::getpid() && !detail::poll_child(*st_->child))
    throw UsageError("Process::close: cannot close a process while it is still running; join or terminate it first");
  st_->child.reset();  // drops our share of the sentinel fd
  st_->target.reset();
  st_->closed = true;
}

int Process::sentinel() const {
  auto& st = usable(st_, "sentinel");
  if (!st.started) throw UsageError("Process::sentinel: process has not been started");
  return st.child->sentinel.get();
}

ProcessInfo current_process() {
  auto& me = detail::self();
  return ProcessInfo{me.name, ::getpid(), me.daemon};
}

std::optional<ProcessInfo> parent_process() { return detail::self().parent; }

std::vector<ProcessInfo> active_children() {
  std::vector<ProcessInfo> out;
  for (auto& c : detail::live_children())
    if (c.info.process) out.push_back(ProcessInfo{c.info.name, c.pid, c.info.daemon});
  return out;
}

unsigned cpu_count() {
  long n = ::sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<unsigned>(n) : 1u;
}

unsigned process_cpu_count() {
  // The affinity mask may be larger than the default cpu_set_t on big machines: grow until it fits.
  for (std::size_t ncpu = 1024; ncpu <= (1u << 20); ncpu *= 2) {
    cpu_set_t* set = CPU_ALLOC(ncpu);
    if (!set) break;
    std::size_t size = CPU_ALLOC_SIZE(ncpu);
    CPU_ZERO_S(size, set);
    if (::sched_getaffinity(0, size, set) == 0) {
      int n = CPU_COUNT_S(size, set);
      CPU_FREE(set);
      return n > 0 ? static_cast<unsigned>(n) : 1u;
    }
    CPU_FREE(set);
    if (errno != EINVAL) break;
  }
  return cpu_count();
}

void exit(int code) {
  if (detail::in_child()) detail::finish_child(code);
  std::exit(code);
}

void set_trace(bool on) { detail::set_trace_enabled(on); }

}  // namespace mproc
