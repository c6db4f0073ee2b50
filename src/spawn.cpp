// External programs (include/mproc/spawn.hpp): the launch is Boost.Process v2's vfork_launcher; what
// happens around it — pipes, reaping, the pipe pump, the IPC channel — is mproc's.
//
// Why Boost's launcher and not its process object: basic_process terminates the child in its
// destructor and would wait for it itself; mproc's reaper must be the only code that waits on our
// children (reaper.cpp). So we launch with Boost, detach the handle at once and hand the pid to the
// reaper, exactly as Process::start does after its fork.
//
// Boost 1.81's v2 launcher has rough edges that this file works around (docs/design/spawn.md):
//   * its hook detection for on_error/on_exec_error/on_fork_error checks a five-argument call, so an
//     ordinary four-argument hook is never called: our hooks are variadic templates;
//   * after a failed exec the child calls ::exit (atexit handlers of a copy of our program!): our
//     on_exec_error hook calls _exit(127) first;
//   * a failed launch returns an empty process and leaves the child unreaped: we reap launcher.pid;
//   * its close_range loop compares whitelist[idx] with itself, so fds *between* whitelisted ones stay
//     open: the IPC fd is therefore always 3 (the whitelist {0,1,2,3} has no gap) and we close fds
//     ourselves as well;
//   * its own stdio pipes are made with pipe() (no O_CLOEXEC on the child's end, so a thread forking
//     meanwhile could inherit it and keep our child's EOF from ever arriving): we make the pipes with
//     pipe2(O_CLOEXEC) and hand Boost plain fds.
//   * BOOST_PROCESS_USE_STD_FS does not compile in 1.81 (config.hpp names boost::optional without
//     including it), so Boost.Filesystem's headers are used; nothing we call needs its compiled part.
#include "mproc/spawn.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <system_error>
#include <utility>

#include <boost/process/v2.hpp>  // first: 1.81's v2 headers only compile in the umbrella header's order
#include <boost/asio/io_context.hpp>
#include <boost/process/v2/posix/vfork_launcher.hpp>
#include <boost/process/v2/stdio.hpp>

#include "posix/fd.hpp"
#include "posix/signals.hpp"
#include "posix/wait.hpp"
#include "reaper_internal.hpp"
#include "runtime.hpp"
#include "trace.hpp"

extern char** environ;

namespace mproc {
namespace {

namespace px = detail::posix;
namespace bp = boost::process::v2;

constexpr int kIpcFd = 3;
constexpr const char* kIpcEnv = "MPROC_IPC_FD";
constexpr std::size_t kReadChunk = 64 * 1024;

std::string errno_text(int err) { return std::error_code(err, std::system_category()).message(); }

// ---- finding the program -------------------------------------------------------------------------

struct Resolved {
  std::string path;
  int err = 0;  // 0: found
};

// execvp's rules: a name with '/' is used as it is; otherwise each PATH entry is tried (an empty entry
// is the current directory), a candidate that exists but cannot be executed is skipped and remembered
// (EACCES), and only if nothing executable is found is that reported instead of ENOENT.
Resolved resolve_program(const std::string& file, const std::optional<std::map<std::string, std::string>>& env) {
  if (file.find('/') != std::string::npos) return {file, 0};
  std::string path;
  if (env) {
    auto it = env->find("PATH");
    path = it != env->end() ? it->second : "/bin:/usr/bin";
  } else {
    const char* p = std::getenv("PATH");
    path = p ? p : "/bin:/usr/bin";
  }
  int seen = ENOENT;
  std::size_t begin = 0;
  for (;;) {
    const std::size_t end = path.find(':', begin);
    std::string dir = path.substr(begin, end == std::string::npos ? std::string::npos : end - begin);
    std::string candidate = dir.empty() ? file : dir + "/" + file;
    struct stat st {};
    if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
      if (::access(candidate.c_str(), X_OK) == 0) return {candidate, 0};
      seen = EACCES;
    }
    if (end == std::string::npos) break;
    begin = end + 1;
  }
  return {{}, seen};
}

// ---- the child's side of the launch --------------------------------------------------------------

// What the vfork child does between vfork and exec, as a Boost.Process v2 initializer. The child shares
// our memory until it execs, so everything here only reads this object and makes system calls: no
// allocation, no locks, no writes to shared memory (errors travel back through Boost's error_code).
struct ChildSetup {
  bool detached = false;
  int ipc_fd = -1;  // the child's end of the IPC socketpair in the parent's numbering, or -1

  bp::error_code on_exec_setup(bp::posix::default_launcher&, const bp::filesystem::path&, const char* const*) {
    // Handlers would run our code in the child (whose memory is ours until exec): back to SIG_DFL.
    // Ignored signals stay ignored across exec, as POSIX says, except SIGPIPE and SIGXFSZ, which a
    // program expects at their default (Python's restore_signals does the same).
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    for (int sig = 1; sig < NSIG; ++sig) {
      if (sig == SIGKILL || sig == SIGSTOP) continue;
      struct sigaction cur {};
      if (::sigaction(sig, nullptr, &cur) != 0) continue;  // glibc's internal signals (32, 33) refuse
      const bool ignored = !(cur.sa_flags & SA_SIGINFO) && cur.sa_handler == SIG_IGN;
      const bool handled = (cur.sa_flags & SA_SIGINFO) || (cur.sa_handler != SIG_DFL && cur.sa_handler != SIG_IGN);
      if (handled || (ignored && (sig == SIGPIPE || sig == SIGXFSZ))) ::sigaction(sig, &dfl, nullptr);
    }
    // The launching thread blocked every signal around vfork; the program starts with none blocked
    // (as libuv does), so that kill() and terminal signals work whatever mask the caller had.
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    if (detached && ::setsid() < 0) return {errno, bp::system_category()};
    if (ipc_fd >= 0) {
      if (ipc_fd != kIpcFd) {
        if (::dup2(ipc_fd, kIpcFd) < 0) return {errno, bp::system_category()};  // dup2 clears CLOEXEC
      } else if (::fcntl(kIpcFd, F_SETFD, 0) < 0) {
        return {errno, bp::system_category()};
      }
    }
    // dup2(fd, fd) is a no-op that keeps FD_CLOEXEC: make sure 0, 1, 2 survive the exec.
    for (int fd = 0; fd <= 2; ++fd) {
      const int flags = ::fcntl(fd, F_GETFD);
      if (flags >= 0 && (flags & FD_CLOEXEC)) ::fcntl(fd, F_SETFD, flags & ~FD_CLOEXEC);
    }
    close_from(ipc_fd >= 0 ? kIpcFd + 1 : kIpcFd);
    return {};
  }

  // Boost detects on_exec_error with five arguments and calls it with four: accept both. Runs in the
  // vfork child after a failed setup or exec; Boost would call ::exit next, which runs a copy of our
  // atexit handlers on our own memory. _exit instead (the error already travelled back in Boost's ec).
  template <class... A>
  void on_exec_error(A&&...) {
    ::_exit(127);
  }

  // Every fd from `first` up is closed, CLOEXEC or not, so nothing the parent opened leaks. close_range
  // (Linux 5.9); before that, one close per possible fd up to the soft limit.
  static void close_from(int first) noexcept {
#if defined(SYS_close_range)
    if (::syscall(SYS_close_range, static_cast<unsigned>(first), ~0U, 0U) == 0) return;
#endif
    struct rlimit rl {};
    long max = 65536;
    if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) max = static_cast<long>(rl.rlim_cur);
    for (long fd = first; fd < max; ++fd) ::close(static_cast<int>(fd));
  }
};

// ---- fds the launch hands to the child -----------------------------------------------------------

// A child-side fd must not be 0, 1 or 2: Boost dup2's in, out, err in that order, and a source fd in
// that range could be overwritten before it is used (it is, when our own stdin was closed).
px::UniqueFd above_stdio(px::UniqueFd fd) {
  if (fd.get() > 2) return fd;
  const int moved = ::fcntl(fd.get(), F_DUPFD_CLOEXEC, 3);
  if (moved < 0) px::throw_errno("spawn: fcntl(F_DUPFD_CLOEXEC)");
  return px::UniqueFd(moved);
}

px::UniqueFd open_dev_null(bool for_reading) {
  const int fd = ::open("/dev/null", (for_reading ? O_RDONLY : O_WRONLY) | O_CLOEXEC);
  if (fd < 0) px::throw_errno("spawn: open /dev/null");
  return above_stdio(px::UniqueFd(fd));
}

void set_nonblocking(int fd) {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) px::throw_errno("spawn: fcntl(O_NONBLOCK)");
}

// Registers fd with the reaper's close-in-children list for its lifetime: a Process forked by another
// thread meanwhile closes it first thing, so it cannot hold our child's pipe open (and keep EOF away).
class HiddenFromForks {
 public:
  explicit HiddenFromForks(int fd = -1) : fd_(fd) {
    if (fd_ >= 0) detail::close_in_children(fd_);
  }
  HiddenFromForks(HiddenFromForks&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  HiddenFromForks& operator=(HiddenFromForks&& o) noexcept {
    std::swap(fd_, o.fd_);
    return *this;
  }
  ~HiddenFromForks() { release(); }
  void release() noexcept {
    if (fd_ >= 0) detail::forget_in_children(std::exchange(fd_, -1));
  }

 private:
  int fd_;
};

struct Stdio3 {
  px::UniqueFd child_in, child_out, child_err;  // what the child gets as 0, 1, 2 (-1: inherit ours)
  px::UniqueFd in, out, err;                    // our ends of the pipes
};

// One stream: inherit (our fd number, or /dev/null when ours is closed), ignore, or a new pipe.
void make_stream(Stdio kind, int target, px::UniqueFd& child_end, px::UniqueFd& our_end) {
  const bool child_reads = target == STDIN_FILENO;
  switch (kind) {
    case Stdio::inherit:
      if (::fcntl(target, F_GETFD) < 0) child_end = open_dev_null(child_reads);
      return;
    case Stdio::ignore:
      child_end = open_dev_null(child_reads);
      return;
    case Stdio::pipe: {
      px::Pipe p = px::make_pipe();
      child_end = above_stdio(std::move(child_reads ? p.read : p.write));
      our_end = std::move(child_reads ? p.write : p.read);
      set_nonblocking(our_end.get());
      return;
    }
  }
}

std::vector<std::string> child_environment(const SpawnOptions& o) {
  std::vector<std::string> env;
  if (o.env) {
    for (const auto& [k, v] : *o.env) {
      if (k.empty() || k.find('=') != std::string::npos || k.find('\0') != std::string::npos)
        throw UsageError("spawn: invalid environment variable name '" + k + "'");
      if (o.ipc && k == kIpcEnv) continue;
      env.push_back(k + "=" + v);
    }
  } else {
    const std::string prefix = std::string(kIpcEnv) + "=";
    for (char** e = environ; e && *e; ++e)
      if (std::strncmp(*e, prefix.c_str(), prefix.size()) != 0) env.emplace_back(*e);
  }
  if (o.ipc) env.push_back(std::string(kIpcEnv) + "=" + std::to_string(kIpcFd));
  return env;
}

}  // namespace

// ---- ChildProcess --------------------------------------------------------------------------------

namespace {
struct Stream {
  px::UniqueFd fd;  // our (read) end; empty once at EOF or closed
  bool is_pipe = false;
  std::string buf;  // arrived, not yet returned; buf[pos..] is unread
  std::size_t pos = 0;

  std::string take_all() {
    std::string s = buf.substr(pos);
    buf.clear();
    pos = 0;
    return s;
  }
};
}  // namespace

struct ChildProcess::Impl {
  std::string file;
  std::shared_ptr<detail::ChildHandle> child;
  px::UniqueFd in;
  HiddenFromForks in_hidden;
  bool in_is_pipe = false;
  Stream out, err;
  std::optional<Connection> chan;
  // exec(): bytes beyond this per stream are read and dropped; capped is set when that happened.
  std::optional<std::size_t> cap;
  bool capped = false;

  ~Impl() { in_hidden.release(); }

  bool ended() { return detail::poll_child(*child); }

  // Read what stdout and stderr have, one poll round: wait up to deadline for one of the open streams
  // (or stdin's room, when `pending` has bytes left to write; or the end of the child, when
  // watch_end) and serve what is ready. Returns false if the deadline passed with nothing ready.
  bool pump(const px::Deadline& deadline, std::string_view* pending = nullptr, bool watch_end = false) {
    pollfd fds[4];
    Stream* streams[4] = {};
    std::size_t n = 0;
    for (Stream* s : {&out, &err}) {
      if (s->fd) {
        fds[n] = {s->fd.get(), POLLIN, 0};
        streams[n++] = s;
      }
    }
    const std::size_t in_slot = n;
    if (pending && !pending->empty() && in) fds[n++] = {in.get(), POLLOUT, 0};
    const std::size_t end_slot = n;
    const bool sentinel = watch_end && child->sentinel;
    if (sentinel) fds[n++] = {child->sentinel.get(), POLLIN, 0};
    // Without a pidfd (old kernels) the end of the child has no fd: look every 10 ms.
    std::optional<px::Deadline> slice;
    if (watch_end && !sentinel) slice.emplace(std::chrono::milliseconds(10));
    const px::Deadline& wait_until =
        slice && (deadline.infinite() || *slice->remaining() < *deadline.remaining()) ? *slice : deadline;
    if (n == 0) {
      if (wait_until.infinite()) return true;  // nothing to wait for (the caller re-checks)
      px::poll_until(nullptr, 0, wait_until);
      return !deadline.expired();
    }
    const int ready = px::poll_until(fds, n, wait_until);
    if (ready == 0) return !deadline.expired();
    for (std::size_t i = 0; i < in_slot; ++i)
      if (fds[i].revents) read_some(*streams[i]);
    if (in_slot < end_slot && fds[in_slot].revents) write_some(*pending);
    return true;
  }

  void read_some(Stream& s) {
    char chunk[kReadChunk];
    const ssize_t r = px::read_some(s.fd.get(), chunk, sizeof chunk);
    if (r < 0) {
      if (errno == EAGAIN) return;
      px::throw_errno("ChildProcess: read");
    }
    if (r == 0) {
      s.fd.reset();  // EOF
      return;
    }
    std::size_t keep = static_cast<std::size_t>(r);
    if (cap) {
      const std::size_t have = s.buf.size() - s.pos;
      if (have + keep > *cap) {
        keep = have < *cap ? *cap - have : 0;
        capped = true;
      }
    }
    if (s.pos > 0 && s.pos * 2 >= s.buf.size()) {  // drop what was returned before growing
      s.buf.erase(0, s.pos);
      s.pos = 0;
    }
    s.buf.append(chunk, keep);
  }

  void write_some(std::string_view& pending) {
    px::SigpipeGuard guard;
    const ssize_t w = ::write(in.get(), pending.data(), pending.size());
    if (w < 0) {
      if (errno == EAGAIN || errno == EINTR) return;
      const int e = errno;
      if (e == EPIPE) guard.epipe();
      px::throw_errno(e, "ChildProcess::write");
    }
    pending.remove_prefix(static_cast<std::size_t>(w));
  }

  Stream& readable(Stream& s, const char* what) {
    if (!s.is_pipe) throw UsageError(std::string("ChildProcess::") + what + ": the stream is not a pipe (Stdio::pipe)");
    return s;
  }

  std::optional<std::string> read_line(Stream& s) {
    px::Deadline forever(std::nullopt);
    std::size_t scanned = 0;  // bytes after s.pos known to hold no '\n' (pump may move buf, not this)
    for (;;) {
      const std::size_t nl = s.buf.find('\n', s.pos + scanned);
      if (nl != std::string::npos) {
        std::string line = s.buf.substr(s.pos, nl - s.pos);
        s.pos = nl + 1;
        return line;
      }
      if (!s.fd) {
        if (s.pos == s.buf.size()) return std::nullopt;
        return s.take_all();
      }
      scanned = s.buf.size() - s.pos;
      pump(forever);
    }
  }

  // After the child was killed: take what the pipes already hold, without waiting for EOF (bounded, in
  // case a program it left behind keeps writing).
  void drain() {
    for (int round = 0; round < 64 && (out.fd || err.fd); ++round)
      if (!pump(px::Deadline(std::chrono::nanoseconds::zero()))) break;
  }

  std::string read_all(Stream& s) {
    px::Deadline forever(std::nullopt);
    while (s.fd) pump(forever);
    return s.take_all();
  }

  bool wait_until(const px::Deadline& deadline) {
    for (;;) {
      if (ended()) return true;
      if (!pump(deadline, nullptr, true)) return ended();
    }
  }
};

ChildProcess::ChildProcess() noexcept = default;
ChildProcess::ChildProcess(std::unique_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}
ChildProcess::ChildProcess(ChildProcess&&) noexcept = default;
ChildProcess& ChildProcess::operator=(ChildProcess&&) noexcept = default;
ChildProcess::~ChildProcess() = default;  // closes our ends; the reaper keeps the child's record

namespace detail {
struct ChildProcessAccess {
  static ChildProcess::Impl& usable(const ChildProcess& c, const char* what) {
    if (!c.impl_) throw UsageError(std::string("ChildProcess::") + what + ": empty ChildProcess (default-constructed or moved from)");
    return *c.impl_;
  }
  static ChildProcess make(std::unique_ptr<ChildProcess::Impl> impl) { return ChildProcess(std::move(impl)); }
  static std::unique_ptr<ChildProcess::Impl> new_impl() { return std::make_unique<ChildProcess::Impl>(); }
};
}  // namespace detail

namespace {
auto& usable(const ChildProcess& c, const char* what) { return detail::ChildProcessAccess::usable(c, what); }
}  // namespace

pid_t ChildProcess::pid() const { return usable(*this, "pid").child->pid; }

void ChildProcess::write(std::string_view data) {
  auto& im = usable(*this, "write");
  if (!im.in_is_pipe) throw UsageError("ChildProcess::write: stdin is not a pipe (Stdio::pipe)");
  if (!im.in) throw UsageError("ChildProcess::write: stdin was closed (close_stdin)");
  px::Deadline forever(std::nullopt);
  while (!data.empty()) im.pump(forever, &data);
}

void ChildProcess::close_stdin() {
  auto& im = usable(*this, "close_stdin");
  if (!im.in_is_pipe) throw UsageError("ChildProcess::close_stdin: stdin is not a pipe (Stdio::pipe)");
  im.in_hidden.release();
  im.in.reset();
}

std::optional<std::string> ChildProcess::read_line_stdout() {
  auto& im = usable(*this, "read_line_stdout");
  return im.read_line(im.readable(im.out, "read_line_stdout"));
}

std::optional<std::string> ChildProcess::read_line_stderr() {
  auto& im = usable(*this, "read_line_stderr");
  return im.read_line(im.readable(im.err, "read_line_stderr"));
}

std::string ChildProcess::read_all_stdout() {
  auto& im = usable(*this, "read_all_stdout");
  return im.read_all(im.readable(im.out, "read_all_stdout"));
}

std::string ChildProcess::read_all_stderr() {
  auto& im = usable(*this, "read_all_stderr");
  return im.read_all(im.readable(im.err, "read_all_stderr"));
}

ExitStatus ChildProcess::wait() {
  auto& im = usable(*this, "wait");
  im.wait_until(px::Deadline(std::nullopt));
  return im.child->status();
}

std::optional<ExitStatus> ChildProcess::wait_for(std::chrono::nanoseconds timeout) {
  auto& im = usable(*this, "wait");
  const px::Deadline deadline(timeout == std::chrono::nanoseconds::max()
                                  ? std::nullopt
                                  : std::optional<std::chrono::nanoseconds>(timeout));
  if (!im.wait_until(deadline)) return std::nullopt;
  return im.child->status();
}

bool ChildProcess::running() { return !usable(*this, "running").ended(); }

void ChildProcess::kill(int signo) { detail::signal_child(*usable(*this, "kill").child, signo); }

Connection& ChildProcess::channel() {
  auto& im = usable(*this, "channel");
  if (!im.chan) throw UsageError("ChildProcess::channel: the program was not spawned with ipc = true");
  return *im.chan;
}

// ---- spawn ---------------------------------------------------------------------------------------

ChildProcess spawn(const std::string& file, const std::vector<std::string>& args, SpawnOptions options) {
  if (file.empty()) throw UsageError("spawn: empty program name");
  detail::install_exit_dispatch();  // non-detached programs are terminated at our exit

  const Resolved program = resolve_program(file, options.env);
  if (program.err) {
    throw SpawnError("spawn '" + file + "': " + errno_text(program.err) + " (searched PATH)",
                     std::error_code(program.err, std::system_category()));
  }

  std::vector<const char*> argv;
  argv.reserve(args.size() + 2);
  argv.push_back(file.c_str());
  for (const auto& a : args) argv.push_back(a.c_str());
  argv.push_back(nullptr);

  const bool custom_env = options.env || options.ipc;
  std::vector<std::string> env_strings;
  std::vector<const char*> envp;
  if (custom_env) {
    env_strings = child_environment(options);
    envp.reserve(env_strings.size() + 1);
    for (const auto& e : env_strings) envp.push_back(e.c_str());
    envp.push_back(nullptr);
  }

  Stdio3 io;
  make_stream(options.in, STDIN_FILENO, io.child_in, io.in);
  make_stream(options.out, STDOUT_FILENO, io.child_out, io.out);
  make_stream(options.err, STDERR_FILENO, io.child_err, io.err);
  HiddenFromForks hidden[] = {HiddenFromForks(io.child_in.get()), HiddenFromForks(io.child_out.get()),
                              HiddenFromForks(io.child_err.get()), HiddenFromForks(io.in.get())};

  std::optional<Connection> ours, theirs;
  px::UniqueFd ipc_child;
  if (options.ipc) {
    auto [a, b] = Pipe();
    ours = std::move(a);
    ipc_child = above_stdio(px::UniqueFd(::fcntl(b.fileno(), F_DUPFD_CLOEXEC, 3)));
    if (!ipc_child) px::throw_errno("spawn: fcntl(F_DUPFD_CLOEXEC)");
    b.close();
  }
  HiddenFromForks ipc_hidden(ipc_child.get());

  ChildSetup setup{options.detached, ipc_child ? ipc_child.get() : -1};
  bp::posix::vfork_launcher launcher;
  if (custom_env) launcher.env = envp.data();
  if (ipc_child) launcher.fd_whitelist.push_back(kIpcFd);
  bp::error_code ec;
  pid_t pid = -1;
  {
    // A fresh io_context per launch: Boost notifies the context of the fork in the vfork child, which
    // shares our memory; a context with a reactor would rebuild it there, on top of ours.
    boost::asio::io_context ctx;
    bp::process_stdio stdio{io.child_in ? io.child_in.get() : STDIN_FILENO,
                            io.child_out ? io.child_out.get() : STDOUT_FILENO,
                            io.child_err ? io.child_err.get() : STDERR_FILENO};
    // Every signal is blocked while the child shares our memory: a handler must not run in it. The
    // child unblocks them (ChildSetup) once its dispositions are back to the defaults.
    px::BlockAllSignals blocked;
    try {
      auto proc = options.cwd.empty()
                      ? launcher(ctx.get_executor(), ec, program.path, argv.data(), stdio, setup)
                      : launcher(ctx.get_executor(), ec, program.path, argv.data(), stdio,
                                 bp::process_start_dir{options.cwd.string()}, setup);
      pid = launcher.pid;
      if (!ec) proc.detach();  // the reaper owns it from here; Boost's handle must not terminate it
    } catch (const boost::system::system_error& e) {
      // Boost builds its process handle only after a successful exec, and that is what threw here:
      // its own pidfd_open failed (EMFILE, ENOMEM) and asio refused fd -1. The program runs, and we
      // never needed Boost's handle: carry on with the pid (our own pidfd_open below may work, and
      // without one the reaper falls back to polling). Before the vfork (no pid) it is an OS error.
      if (launcher.pid <= 0) throw std::system_error(e.code().value(), std::system_category(), "spawn '" + file + "'");
      pid = launcher.pid;
      ec.clear();
    } catch (...) {
      // Anything else after the child started: do not leave it behind.
      if (launcher.pid > 0) {
        ::kill(launcher.pid, SIGKILL);
        px::wait_blocking(launcher.pid);
      }
      throw;
    }
  }
  if (ec) {
    // The child ran _exit(127) after its setup or exec failed: reap it at once (no zombie).
    if (pid > 0) px::wait_blocking(pid);
    std::string where;
    if (!options.cwd.empty() && ::access(options.cwd.c_str(), X_OK) != 0) where = " in '" + options.cwd.string() + "'";
    throw SpawnError("spawn '" + file + "'" + where + ": " + ec.message(),
                     std::error_code(ec.value(), std::system_category()));
  }

  auto impl = detail::ChildProcessAccess::new_impl();
  impl->file = file;
  px::UniqueFd sentinel;
  const bool use_pidfd = px::have_pidfd();
  // Race-free: nobody but us reaps this pid, so it cannot have been recycled yet.
  if (use_pidfd) sentinel.reset(px::pidfd_open(pid));
  const bool is_pidfd = static_cast<bool>(sentinel);
  impl->child = detail::own_child(pid, detail::ChildInfo{file, false, false, !options.detached}, std::move(sentinel),
                                  is_pidfd);
  detail::trace("spawn pid=%d file=%s%s", pid, file.c_str(), options.detached ? " detached" : "");

  for (auto& h : hidden) h.release();
  ipc_hidden.release();
  impl->in = std::move(io.in);
  impl->in_is_pipe = options.in == Stdio::pipe;
  if (impl->in) impl->in_hidden = HiddenFromForks(impl->in.get());
  impl->out.fd = std::move(io.out);
  impl->out.is_pipe = options.out == Stdio::pipe;
  impl->err.fd = std::move(io.err);
  impl->err.is_pipe = options.err == Stdio::pipe;
  impl->chan = std::move(ours);
  return detail::ChildProcessAccess::make(std::move(impl));
}

// ---- exec / exec_file ----------------------------------------------------------------------------

namespace {

ExecResult run_to_end(const std::string& file, const std::vector<std::string>& args, ExecOptions o) {
  SpawnOptions so;
  so.cwd = std::move(o.cwd);
  so.env = std::move(o.env);
  so.in = o.input.empty() ? Stdio::ignore : Stdio::pipe;  // ignore: /dev/null, EOF at once
  ChildProcess child = spawn(file, args, std::move(so));
  auto& im = detail::ChildProcessAccess::usable(child, "exec");
  im.cap = o.max_buffer;

  ExecResult r;
  const px::Deadline deadline(o.timeout ? std::optional<std::chrono::nanoseconds>(*o.timeout) : std::nullopt);
  std::string_view pending(o.input);
  bool killed = false;
  auto kill_once = [&] {
    if (!killed) detail::signal_child(*im.child, o.kill_signal);
    killed = true;
  };
  // Write the input and read both streams until both are at EOF, the cap is passed, or time runs out.
  while (im.out.fd || im.err.fd || (!pending.empty() && im.in)) {
    if (im.capped && !r.truncated) {
      r.truncated = true;
      kill_once();
    }
    if (killed) {
      // Once we killed it, its end is what we wait for, not EOF: a program it left behind (sh -c "x &")
      // may hold the pipes open for as long as it likes.
      if (im.ended()) {
        im.drain();
        break;
      }
      im.pump(px::Deadline(std::nullopt), nullptr, true);
      continue;
    }
    try {
      if (!im.pump(deadline, &pending)) {
        r.timed_out = true;
        kill_once();
        continue;
      }
    } catch (const std::system_error& e) {
      if (e.code().value() != EPIPE) throw;
      pending = {};  // it closed its stdin: the rest of the input is not wanted (Python does the same)
    }
    if (pending.empty() && im.in) {
      im.in_hidden.release();
      im.in.reset();  // all written: EOF for the child
    }
  }
  if (im.in) {
    im.in_hidden.release();
    im.in.reset();
  }
  // The streams are closed: now its end (still within the timeout).
  if (!killed && !im.wait_until(deadline)) {
    r.timed_out = true;
    kill_once();
  }
  im.wait_until(px::Deadline(std::nullopt));
  if (im.capped) r.truncated = true;
  r.status = im.child->status();
  r.out = im.out.take_all();
  r.err = im.err.take_all();
  return r;
}

}  // namespace

ExecResult exec(const std::string& command, ExecOptions options) {
  return run_to_end("/bin/sh", {"-c", command}, std::move(options));
}

ExecResult exec_file(const std::string& file, const std::vector<std::string>& args, ExecOptions options) {
  return run_to_end(file, args, std::move(options));
}

// ---- the child's side of the IPC channel ---------------------------------------------------------

std::optional<Connection> parent_channel() {
  static std::mutex mu;
  static std::optional<Connection> channel;
  static bool taken = false;
  std::lock_guard lock(mu);
  if (taken) return channel;
  const char* v = std::getenv(kIpcEnv);
  if (!v) return std::nullopt;
  char* end = nullptr;
  errno = 0;
  const long fd = std::strtol(v, &end, 10);
  if (errno != 0 || end == v || *end != '\0' || fd < 0 || fd > 1 << 20)
    throw Error(std::string("parent_channel: ") + kIpcEnv + "='" + v + "' is not an fd number");
  struct stat st {};
  if (::fstat(static_cast<int>(fd), &st) != 0 || !S_ISSOCK(st.st_mode))
    throw Error(std::string("parent_channel: ") + kIpcEnv + "=" + v + " names no open socket");
  // Ours alone: the program's own children must neither inherit it nor see the variable.
  ::fcntl(static_cast<int>(fd), F_SETFD, FD_CLOEXEC);
  ::unsetenv(kIpcEnv);
  channel.emplace(static_cast<int>(fd));
  taken = true;
  return channel;
}

}  // namespace mproc
