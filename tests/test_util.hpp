// tests/test_util.hpp — small tools shared by the test files: RAII fds and pipes, gates that hold a
// child until the test releases it, /proc readers, raw fork/exec of the helper program.
//
// Rules these tools exist to keep:
//   * Synchronize through pipes and sentinels, never by sleeping. Where no fd can announce a state (a
//     /proc entry turning into a zombie, or disappearing), wait_until() polls with a generous bound.
//   * Every child is cleaned up, also when a REQUIRE fails half-way: ScopeExit, kill_and_join, RawChild.
//   * Code that runs in a forked child uses only the noexcept, allocation-free calls marked "child-safe".
#pragma once

// MPROC_TEST_ASAN: 1 when this file is compiled with AddressSanitizer (GCC's or clang's spelling).
#if defined(__SANITIZE_ADDRESS__)
#define MPROC_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MPROC_TEST_ASAN 1
#endif
#endif
#ifndef MPROC_TEST_ASAN
#define MPROC_TEST_ASAN 0
#endif

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include <mproc/mproc.hpp>

#ifndef MPROC_TEST_HELPER
#error "MPROC_TEST_HELPER (path of the helper program) must be defined by tests/CMakeLists.txt"
#endif

extern char** environ;

namespace mproc_test {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using ms = std::chrono::milliseconds;

/// The test binary's argv, as main() received it (defined in main.cpp).
const std::vector<std::string>& test_argv();

inline double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

/// Runs f when the scope ends, whatever happened (cleanup in failure paths). Never throws.
template <class F>
class ScopeExit {
 public:
  explicit ScopeExit(F f) : f_(std::move(f)) {}
  ~ScopeExit() {
    try {
      f_();
    } catch (...) {
    }
  }
  ScopeExit(const ScopeExit&) = delete;
  ScopeExit& operator=(const ScopeExit&) = delete;

 private:
  F f_;
};

/// Move-only owner of a file descriptor; -1 is empty.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  int get() const { return fd_; }
  void reset() noexcept {
    if (fd_ >= 0) ::close(fd_);  // never retried on EINTR: the fd is gone either way
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

struct Pipe {
  Fd r, w;
};
inline Pipe make_pipe() {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) throw std::system_error(errno, std::system_category(), "pipe2");
  return {Fd(p[0]), Fd(p[1])};
}

/// child-safe: write all of buf, restarting on EINTR.
inline bool write_all(int fd, const void* buf, std::size_t n) noexcept {
  const char* p = static_cast<const char*>(buf);
  while (n > 0) {
    ssize_t k = ::write(fd, p, n);
    if (k < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += k;
    n -= static_cast<std::size_t>(k);
  }
  return true;
}
inline bool write_str(int fd, std::string_view s) noexcept { return write_all(fd, s.data(), s.size()); }

/// True once fd is readable (data or EOF) within timeout.
inline bool wait_readable(int fd, ms timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<ms>(deadline - Clock::now()).count();
    if (left < 0) left = 0;
    pollfd pfd{fd, POLLIN, 0};
    int r = ::poll(&pfd, 1, static_cast<int>(left));
    if (r > 0) return true;
    if (r == 0) return false;
    if (errno != EINTR) throw std::system_error(errno, std::system_category(), "poll");
  }
}

/// Reads until EOF or the deadline; returns what arrived.
inline std::string read_to_eof(int fd, ms timeout) {
  const auto deadline = Clock::now() + timeout;
  std::string out;
  char buf[4096];
  for (;;) {
    auto left = std::chrono::duration_cast<ms>(deadline - Clock::now());
    if (left.count() < 0 || !wait_readable(fd, left)) return out;
    ssize_t k = ::read(fd, buf, sizeof buf);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return out;
    out.append(buf, static_cast<std::size_t>(k));
  }
}

/// Reads exactly n bytes unless EOF or the deadline comes first.
inline std::string read_n(int fd, std::size_t n, ms timeout) {
  const auto deadline = Clock::now() + timeout;
  std::string out;
  while (out.size() < n) {
    auto left = std::chrono::duration_cast<ms>(deadline - Clock::now());
    if (left.count() < 0 || !wait_readable(fd, left)) break;
    char buf[256];
    ssize_t k = ::read(fd, buf, std::min(sizeof buf, n - out.size()));
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) break;
    out.append(buf, static_cast<std::size_t>(k));
  }
  return out;
}

/// Line-by-line reading of a pipe with a timeout per line.
class LineReader {
 public:
  explicit LineReader(int fd) : fd_(fd) {}
  /// The next line without its '\n'; nullopt at EOF (nothing left) or when timeout passes.
  std::optional<std::string> next(ms timeout) {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      auto nl = buf_.find('\n');
      if (nl != std::string::npos) {
        std::string line = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        return line;
      }
      if (eof_) {
        if (buf_.empty()) return std::nullopt;
        return std::exchange(buf_, {});
      }
      auto left = std::chrono::duration_cast<ms>(deadline - Clock::now());
      if (left.count() < 0 || !wait_readable(fd_, left)) return std::nullopt;
      char b[4096];
      ssize_t k = ::read(fd_, b, sizeof b);
      if (k < 0 && errno == EINTR) continue;
      if (k <= 0)
        eof_ = true;
      else
        buf_.append(b, static_cast<std::size_t>(k));
    }
  }

 private:
  int fd_;
  std::string buf_;
  bool eof_ = false;
};

inline std::vector<std::string> split_lines(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

/// The child side of a Gate: copyable, holds raw fds (the Gate owns them).
struct ChildGate {
  int ready_w = -1;
  int go_r = -1;
  /// child-safe: tell the parent we are running.
  void arrive() const noexcept {
    char c = 'r';
    write_all(ready_w, &c, 1);
  }
  /// child-safe: block until the parent releases us (one byte per released child).
  void wait() const noexcept {
    char c;
    while (::read(go_r, &c, 1) < 0 && errno == EINTR) {
    }
  }
  void arrive_and_wait() const noexcept {
    arrive();
    wait();
  }
};

/// Holds children at a known point: each child arrive()s (the parent counts the arrivals with
/// wait_ready) and then blocks until the parent release()s it. No sleeping anywhere.
class Gate {
 public:
  Gate() : ready_(make_pipe()), go_(make_pipe()) {}
  ChildGate child() const { return {ready_.w.get(), go_.r.get()}; }
  /// True once n children have arrived (within timeout).
  bool wait_ready(std::size_t n = 1, ms timeout = 10s) { return read_n(ready_.r.get(), n, timeout).size() == n; }
  /// Let n waiting children go.
  void release(std::size_t n = 1) {
    std::string s(n, 'g');
    write_all(go_.w.get(), s.data(), s.size());
  }

 private:
  Pipe ready_, go_;
};

/// One process as /proc/<pid>/stat shows it.
struct ProcStat {
  char state;
  pid_t ppid;
  std::string comm;
};
inline std::optional<ProcStat> proc_stat(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string s;
  if (!f || !std::getline(f, s)) return std::nullopt;
  auto l = s.find('('), r = s.rfind(')');
  if (l == std::string::npos || r == std::string::npos || r + 2 > s.size()) return std::nullopt;
  ProcStat st{};
  st.comm = s.substr(l + 1, r - l - 1);
  std::istringstream rest(s.substr(r + 2));
  if (!(rest >> st.state >> st.ppid)) return std::nullopt;
  return st;
}
/// No such process any more (reaped).
inline bool is_gone(pid_t pid) { return !proc_stat(pid); }
/// Not live: gone, or a zombie / dead entry (an orphan's zombie counts: pid 1 of a sandbox may not
/// reap orphans).
inline bool is_ended(pid_t pid) {
  auto st = proc_stat(pid);
  return !st || st->state == 'Z' || st->state == 'X';
}
inline std::string read_comm(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/comm");
  std::string s;
  std::getline(f, s);
  return s;
}

struct RawChildEntry {
  pid_t pid;
  char state;
  std::string comm;
};
/// The children of parent (zombies included), scanning /proc/*/stat: independent of the library.
inline std::vector<RawChildEntry> raw_children(pid_t parent = ::getpid()) {
  std::vector<RawChildEntry> out;
  DIR* d = ::opendir("/proc");
  if (!d) return out;
  while (dirent* e = ::readdir(d)) {
    char* end = nullptr;
    long pid = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0') continue;
    auto st = proc_stat(static_cast<pid_t>(pid));
    if (st && st->ppid == parent) out.push_back({static_cast<pid_t>(pid), st->state, st->comm});
  }
  ::closedir(d);
  return out;
}
inline std::size_t raw_zombies(pid_t parent = ::getpid()) {
  std::size_t n = 0;
  for (auto& c : raw_children(parent)) n += (c.state == 'Z');
  return n;
}

/// The names in /dev/shm.
inline std::set<std::string> shm_entries() {
  std::set<std::string> out;
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator("/dev/shm", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec))
    out.insert(it->path().filename().string());
  return out;
}

/// Whether a process other than this one maps /dev/shm/<name>. ctest runs two test processes at once
/// (-j2), and a test, sample or benchmark running beside this one may hold a named segment of its own
/// (a named SharedMemory test, sample 17, the Boost queue of bench_queue_throughput): not our leak.
/// Ours would be mapped by nobody (our children are gone by then) or by this process only.
inline bool shm_mapped_by_another_process(const std::string& name) {
  const std::string needle = " /dev/shm/" + name;
  const std::string self = std::to_string(::getpid());
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator("/proc", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    const std::string pid = it->path().filename().string();
    if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos || pid == self) continue;
    std::ifstream maps(it->path() / "maps");
    for (std::string line; std::getline(maps, line);)
      if (line.size() >= needle.size() && line.compare(line.size() - needle.size(), needle.size(), needle) == 0)
        return true;
  }
  return false;
}

/// The /dev/shm entries this process's test left behind since `before`: new ones that no other process
/// maps and that are still there after up to `grace` (another test's short-lived file, planted and
/// removed a moment later, is gone by then; a leak of ours stays). /dev/shm is shared with whatever
/// ctest runs beside this test, so a plain before/after comparison would blame us for its entries.
inline std::vector<std::string> shm_left_since(const std::set<std::string>& before, ms grace = ms(2000)) {
  std::vector<std::string> fresh;
  for (auto& e : shm_entries())
    if (!before.count(e) && !shm_mapped_by_another_process(e)) fresh.push_back(e);
  for (const auto deadline = Clock::now() + grace; !fresh.empty();) {
    const auto now_there = shm_entries();
    std::erase_if(fresh, [&](const std::string& e) { return !now_there.count(e) || shm_mapped_by_another_process(e); });
    if (fresh.empty() || Clock::now() >= deadline) break;
    std::this_thread::sleep_for(ms(50));
  }
  return fresh;
}

/// The /dev/shm names that pid maps or holds open (exact: read from its /proc/<pid>/maps and fd links).
inline std::vector<std::string> shm_used_by(pid_t pid) {
  std::vector<std::string> out;
  const std::string proc = "/proc/" + std::to_string(pid);
  std::ifstream maps(proc + "/maps");
  for (std::string line; std::getline(maps, line);)
    if (auto at = line.find("/dev/shm/"); at != std::string::npos) out.push_back(line.substr(at + 9));
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator(proc + "/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    const auto target = std::filesystem::read_symlink(it->path(), ec).string();
    if (!ec && target.rfind("/dev/shm/", 0) == 0) out.push_back(target.substr(9));
  }
  return out;
}

/// This process's open fds and what they point to (the directory's own fd excluded).
inline std::map<int, std::string> open_fds() {
  std::map<int, std::string> out;
  DIR* d = ::opendir("/proc/self/fd");
  if (!d) return out;
  const int self = ::dirfd(d);
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    int fd = std::atoi(e->d_name);
    if (fd == self) continue;
    char buf[512];
    std::string path = std::string("/proc/self/fd/") + e->d_name;
    ssize_t k = ::readlink(path.c_str(), buf, sizeof buf - 1);
    out[fd] = k > 0 ? std::string(buf, static_cast<std::size_t>(k)) : std::string("?");
  }
  ::closedir(d);
  return out;
}

/// Polls pred every `every` until it holds or `bound` passes; returns its last value. Only for states
/// that no fd announces (/proc entries); never in place of a pipe or a sentinel.
template <class Pred>
bool wait_until(Pred pred, ms bound, std::chrono::microseconds every = 1ms) {
  const auto deadline = Clock::now() + bound;
  for (;;) {
    if (pred()) return true;
    if (Clock::now() >= deadline) return pred();
    std::this_thread::sleep_for(every);
  }
}

/// Cleanup for failure paths: if p is running, SIGKILL and join it. Never throws.
inline void kill_and_join(mproc::Process& p) noexcept {
  try {
    if (p.pid() && p.is_alive()) {
      p.kill();
      p.join();
    }
  } catch (...) {
  }
}
inline void kill_and_join(std::vector<mproc::Process>& ps) noexcept {
  for (auto& p : ps) kill_and_join(p);
}
/// Cleanup for an owned child whose Process object is gone: SIGKILL it and let the reaper collect it.
inline void kill_owned(pid_t pid) noexcept {
  try {
    if (pid <= 0 || is_ended(pid)) return;
    ::kill(pid, SIGKILL);
    wait_until(
        [&] {
          mproc::Reaper::instance().reap();
          return is_gone(pid);
        },
        2s);
  } catch (...) {
  }
}

/// A raw fork() child that the test waits for itself (mproc does not own it). The destructor kills and
/// reaps it if the test did not, so a failed REQUIRE leaves nothing behind.
class RawChild {
 public:
  RawChild() = default;
  explicit RawChild(pid_t pid) : pid_(pid) {}
  RawChild(RawChild&& o) noexcept : pid_(std::exchange(o.pid_, -1)) {}
  RawChild& operator=(RawChild&&) = delete;
  ~RawChild() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      int st;
      while (::waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
      }
    }
  }

  /// fork(); the child runs f() (an int-returning callable) and _exits with its value (250 if it
  /// threw). _exit: the test binary's atexit handlers and static destructors never run in the child.
  template <class F>
  static RawChild fork(F&& f) {
    std::fflush(nullptr);
    pid_t pid = ::fork();
    if (pid < 0) throw std::system_error(errno, std::system_category(), "fork");
    if (pid == 0) {
      int code = 250;
      try {
        code = f();
      } catch (...) {
      }
      std::fflush(nullptr);
      ::_exit(code);
    }
    return RawChild(pid);
  }

  pid_t pid() const { return pid_; }

  /// Waits up to timeout for the child to end, then reaps it: its raw wait status, or nullopt on
  /// timeout (the child is left running; the destructor kills it).
  std::optional<int> wait_for(ms timeout) {
    if (pid_ <= 0) return std::nullopt;
    int pfd = static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0));
    if (pfd >= 0) {
      Fd owner(pfd);
      if (!wait_readable(pfd, timeout)) return std::nullopt;
    } else {  // kernel without pidfd_open: poll with WNOHANG
      int st = 0;
      bool done = wait_until(
          [&] {
            pid_t r = ::waitpid(pid_, &st, WNOHANG);
            return r == pid_;
          },
          timeout);
      if (!done) return std::nullopt;
      pid_ = -1;
      return st;
    }
    int st = 0;
    while (::waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
    return st;
  }

 private:
  pid_t pid_ = -1;
};

/// "exited 3", "signal 9": a raw wait status for test messages.
inline std::string describe_status(int st) {
  if (WIFEXITED(st)) return "exited " + std::to_string(WEXITSTATUS(st));
  if (WIFSIGNALED(st)) return "signal " + std::to_string(WTERMSIG(st));
  return "raw " + std::to_string(st);
}

/// The helper program (tests/helpers/mproc_test_helper.cpp) started by raw fork+execve, with its
/// stdout and stderr on pipes. spawn() comes in a later issue; raw fork keeps the helper out of the
/// reaper (it never takes children it does not own).
struct Helper {
  RawChild proc;
  Fd out, err;
};
inline Helper launch_helper(const std::vector<std::string>& args,
                            const std::vector<std::pair<std::string, std::string>>& set_env = {},
                            const std::vector<std::string>& unset_env = {"MPROC_TRACE"}) {
  // Everything execve needs is built before fork: the child only dup2s and execs.
  std::vector<std::string> argv_s{MPROC_TEST_HELPER};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<std::string> env_s;
  for (char** e = environ; *e; ++e) {
    std::string_view kv(*e);
    std::string_view key = kv.substr(0, kv.find('='));
    bool drop = false;
    for (auto& u : unset_env) drop = drop || key == u;
    for (auto& s : set_env) drop = drop || key == s.first;
    if (!drop) env_s.emplace_back(kv);
  }
  for (auto& s : set_env) env_s.push_back(s.first + "=" + s.second);
  std::vector<char*> argv_p, env_p;
  for (auto& s : argv_s) argv_p.push_back(s.data());
  argv_p.push_back(nullptr);
  for (auto& s : env_s) env_p.push_back(s.data());
  env_p.push_back(nullptr);

  Pipe out = make_pipe(), err = make_pipe();
  std::fflush(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) throw std::system_error(errno, std::system_category(), "fork");
  if (pid == 0) {
    ::dup2(out.w.get(), 1);  // dup2 clears O_CLOEXEC on the new fd
    ::dup2(err.w.get(), 2);
    ::execve(argv_p[0], argv_p.data(), env_p.data());
    ::_exit(127);
  }
  return Helper{RawChild(pid), std::move(out.r), std::move(err.r)};
}

/// Points this process's stderr (fd 2) at a pipe until restore(), so that a child forked in between
/// writes its stderr there. Restored by the destructor at the latest.
class StderrCapture {
 public:
  StderrCapture() : pipe_(make_pipe()), saved_(::fcntl(2, F_DUPFD_CLOEXEC, 3)) {
    std::fflush(stderr);
    ::dup2(pipe_.w.get(), 2);
  }
  ~StderrCapture() { restore(); }
  StderrCapture(const StderrCapture&) = delete;
  StderrCapture& operator=(const StderrCapture&) = delete;
  void restore() {
    if (saved_.get() >= 0) {
      std::fflush(stderr);
      ::dup2(saved_.get(), 2);
      saved_.reset();
      pipe_.w.reset();
    }
  }
  /// Everything written to the captured stderr, up to EOF (all children holding it have ended).
  std::string read_all(ms timeout) {
    restore();
    return read_to_eof(pipe_.r.get(), timeout);
  }

 private:
  Pipe pipe_;
  Fd saved_;
};

}  // namespace mproc_test
