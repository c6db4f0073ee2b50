// The registry of owned children and the only code in mproc that waits on a child.
//
// Design (after libuv's uv__wait_children): each owned child is one record keyed by pid; reaping is a
// waitpid(pid, WNOHANG) per owned pid, EINTR-restarted, ECHILD tolerated (the child was taken by a
// foreign waitpid(-1): we mark it lost instead of failing); statuses are collected under the lock and
// callbacks run after it is released. waitpid(-1) is used only in subreaper mode, where the process
// has declared itself the reaper of every orphan below it.
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>
#include <unordered_map>

#include "mproc/error.hpp"
#include "mproc/reaper.hpp"
#include "posix/fork.hpp"
#include "posix/wait.hpp"
#include "reaper_internal.hpp"
#include "runtime.hpp"
#include "trace.hpp"

namespace mproc {
namespace detail {
namespace {

constexpr std::size_t kHistory = 4096;

struct Record {
  std::shared_ptr<ChildHandle> handle;
  ChildInfo info;
  posix::UniqueFd lifeline;
  std::function<void(pid_t, ExitStatus)> on_exit;
};

struct Callback {
  std::function<void(pid_t, ExitStatus)> fn;
  pid_t pid;
  ExitStatus status;
};

struct Registry {
  mutable std::mutex mu;
  std::unordered_map<pid_t, Record> live;
  std::unordered_map<pid_t, int> history;  // pid -> raw status, for Reaper::status
  std::deque<pid_t> history_order;
  // In a forked child: the parent's records, set aside by after_fork_in_child and never used.
  std::unordered_map<pid_t, Record> inherited_live;
  std::unordered_map<pid_t, int> inherited_history;
  std::deque<pid_t> inherited_history_order;
  std::vector<int> close_in_children;
  std::atomic<ReapMode> mode{ReapMode::on_demand};
  bool subreaper = false;
  // Background thread. A raw pointer: in a forked child the thread does not exist, and a joinable
  // std::thread must neither be joined nor destroyed there, so the child simply drops the pointer.
  std::thread* bg = nullptr;
  posix::UniqueFd wake;  // eventfd: wakes the background thread (new child, stop)
  bool stop = false;

  Registry() {
    pthread_atfork([] { get().mu.lock(); }, [] { get().mu.unlock(); }, [] { get().after_fork_in_child(); });
    set_final_exit_hook(&cleanup_at_exit);
  }
  static Registry& get() {
    static Registry* r = new Registry;  // never destroyed: used from exit hooks and the reaper thread
    return *r;
  }

  void after_fork_in_child() noexcept {
    // The forking thread took the lock in prepare, so this thread may release it. The parent's children
    // are not ours: forget them, closing the lifelines and sentinels this copy of memory holds so no
    // daemon's lifeline stays open in a sibling.
    mu.unlock();
    for (int fd : close_in_children) ::close(fd);
    close_in_children.clear();
    for (auto& [pid, rec] : live) {
      rec.handle->sentinel.reset();
      rec.lifeline.reset();
    }
    // The records are set aside, not freed: freeing them would write to every page that holds them
    // (the allocator's chunk headers, the bucket array's memset), and in a child each such page is a
    // copy-on-write fault (~25 µs on a VM). A parent whose history is full (4,096 entries) would make
    // every child pay dozens of them before its target runs. A swap costs a few writes; what was set
    // aside in an earlier generation (a child's child) is freed now instead. They stay reachable.
    live.swap(inherited_live);
    history.swap(inherited_history);
    history_order.swap(inherited_history_order);
    live.clear();
    history.clear();
    history_order.clear();
    bg = nullptr;
    wake.reset();
    stop = false;
    subreaper = false;  // PR_SET_CHILD_SUBREAPER is not inherited by fork
  }

  // Record that rec's child ended with raw status; the caller erases it from live. Under mu.
  void finish_locked(Record& rec, int raw, std::vector<Callback>& out) {
    ChildHandle& h = *rec.handle;
    h.raw_status = raw;
    h.ended.store(true, std::memory_order_release);
    remember_locked(h.pid, raw);
    rec.lifeline.reset();
    if (rec.on_exit) out.push_back({std::move(rec.on_exit), h.pid, h.status()});
    if (trace_enabled()) {
      trace("exit pid=%d %s", h.pid, h.status().to_string().c_str());
      trace("reaped pid=%d", h.pid);
    }
  }

  void remember_locked(pid_t pid, int raw) {
    if (!history.count(pid)) history_order.push_back(pid);
    history[pid] = raw;
    while (history_order.size() > kHistory) {
      history.erase(history_order.front());
      history_order.pop_front();
    }
  }

  void lose_locked(Record& rec) {
    rec.handle->lost.store(true);
    rec.handle->ended.store(true, std::memory_order_release);
    rec.lifeline.reset();
    trace("lost pid=%d (reaped by a waitpid outside mproc)", rec.handle->pid);
  }

  static void run_callbacks(std::vector<Callback>& cbs) noexcept {
    for (auto& c : cbs) {
      try {
        c.fn(c.pid, c.status);
      } catch (...) {
        // A throwing adopt() callback must not break the reaper.
      }
    }
  }

  std::size_t sweep_locked(std::vector<Callback>& cbs) {
    std::size_t n = 0;
    for (auto it = live.begin(); it != live.end();) {
      auto w = posix::wait_nohang(it->first);
      if (w.kind == posix::WaitOutcome::running) {
        ++it;
        continue;
      }
      if (w.kind == posix::WaitOutcome::ended) {
        finish_locked(it->second, w.raw_status, cbs);
        ++n;
      } else {
        lose_locked(it->second);
      }
      it = live.erase(it);
    }
    if (subreaper) n += sweep_orphans_locked();
    return n;
  }

  // Subreaper mode: peek at ended children with WNOWAIT; the ones we don't own are orphans that were
  // re-parented to us, and we reap them (with waitpid(pid), never blindly waitpid(-1)).
  std::size_t sweep_orphans_locked() {
    std::size_t n = 0;
    for (int guard = 0; guard < 4096; ++guard) {
      siginfo_t si{};
      if (::waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) != 0) {
        if (errno == EINTR) continue;
        break;  // ECHILD: no children at all
      }
      pid_t pid = si.si_pid;
      if (pid == 0) break;
      if (live.count(pid)) break;  // an owned child that ended just now: the next sweep takes it
      auto w = posix::wait_nohang(pid);
      if (w.kind != posix::WaitOutcome::ended) break;
      remember_locked(pid, w.raw_status);
      if (trace_enabled()) {
        trace("orphan re-parented pid=%d", pid);
        trace("exit pid=%d %s", pid, ExitStatus::from_wait_status(w.raw_status).to_string().c_str());
        trace("reaped pid=%d", pid);
      }
      ++n;
    }
    return n;
  }

  void wake_thread_locked() {
    if (wake) {
      std::uint64_t one = 1;
      posix::write_all(wake.get(), &one, sizeof one);
    }
  }

  void ensure_thread_locked() {
    if (bg || mode.load() != ReapMode::background) return;
    int efd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (efd < 0) posix::throw_errno("eventfd");
    wake.reset(efd);
    stop = false;
    bg = new std::thread([this] { thread_main(); });
    internal_threads().fetch_add(1);
  }

  void thread_main() {
    // The reaper thread must not take signals meant for the program (on_signal, SIGINT, ...).
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, nullptr);
    std::vector<pollfd> fds;
    std::vector<std::shared_ptr<ChildHandle>> keep;  // keeps the polled sentinels open while we poll
    for (;;) {
      bool need_tick = false;
      {
        std::lock_guard lock(mu);
        if (stop) return;
        fds.assign(1, pollfd{wake.get(), POLLIN, 0});
        keep.clear();
        for (auto& [pid, rec] : live) {
          if (rec.handle->sentinel) {
            fds.push_back(pollfd{rec.handle->sentinel.get(), POLLIN, 0});
            keep.push_back(rec.handle);
          } else {
            need_tick = true;  // no pidfd for this child: fall back to a short periodic sweep
          }
        }
        if (subreaper) need_tick = true;  // orphans arrive without any fd to wake us
      }
      // 50 ms tick keeps the 100 ms promise even for children we cannot poll.
      int r = ::poll(fds.data(), fds.size(), need_tick ? 50 : -1);
      if (r < 0 && errno != EINTR) std::this_thread::sleep_for(std::chrono::milliseconds(10));
      std::uint64_t drain;
      while (::read(fds[0].fd, &drain, sizeof drain) > 0) {
      }
      std::vector<Callback> cbs;
      {
        std::lock_guard lock(mu);
        if (stop) return;
        try {
          sweep_locked(cbs);
        } catch (...) {
          // waitpid failing with something other than ECHILD/EINTR cannot happen for our own pids;
          // keep the thread alive rather than terminate the program.
        }
      }
      run_callbacks(cbs);
    }
  }

  void stop_thread() {
    std::thread* t = nullptr;
    {
      std::lock_guard lock(mu);
      if (!bg) return;
      stop = true;
      wake_thread_locked();
      t = bg;
      bg = nullptr;
    }
    if (t->get_id() == std::this_thread::get_id()) {
      t->detach();  // set_mode(on_demand) from an adopt() callback: the thread ends by itself
    } else {
      t->join();
    }
    delete t;
    internal_threads().fetch_sub(1);
    std::lock_guard lock(mu);
    if (!bg) wake.reset();
  }

  static void cleanup_at_exit();
};

// Normal exit of this process: terminate daemon children and spawned programs that are not detached
// (SIGTERM, SIGKILL after 1 s) and reap them, then join non-daemon ones: Python's util._exit_function.
void Registry::cleanup_at_exit() {
  auto& r = get();
  std::vector<std::shared_ptr<ChildHandle>> daemons, others;
  {
    std::lock_guard lock(r.mu);
    for (auto& [pid, rec] : r.live) {
      if (rec.info.process)
        (rec.info.daemon ? daemons : others).push_back(rec.handle);
      else if (rec.info.terminate_at_exit)
        daemons.push_back(rec.handle);  // a spawned program dies with its parent, like a daemon
    }
  }
  try {
    if (!daemons.empty()) {  // no clock read otherwise: every Process child passes here on its way out
      for (auto& h : daemons) signal_child(*h, SIGTERM);
      posix::Deadline grace(std::chrono::seconds(1));
      for (auto& h : daemons) {
        if (!wait_child(*h, grace)) {
          signal_child(*h, SIGKILL);
          wait_child(*h, posix::Deadline(std::nullopt));
        }
      }
    }
    for (auto& h : others) wait_child(*h, posix::Deadline(std::nullopt));
  } catch (...) {
    // At exit there is no one left to report to.
  }
  r.stop_thread();
}

}  // namespace

std::shared_ptr<ChildHandle> own_child(pid_t pid, ChildInfo info, posix::UniqueFd sentinel, bool is_pidfd,
                                       posix::UniqueFd lifeline, std::function<void(pid_t, ExitStatus)> on_exit) {
  auto h = std::make_shared<ChildHandle>(pid);
  h->sentinel = std::move(sentinel);
  h->sentinel_is_pidfd = is_pidfd;
  auto& r = Registry::get();
  std::lock_guard lock(r.mu);
  r.history.erase(pid);  // a recycled pid: the old status belongs to another process
  r.live.insert_or_assign(pid, Record{h, std::move(info), std::move(lifeline), std::move(on_exit)});
  try {
    r.ensure_thread_locked();
    r.wake_thread_locked();
  } catch (...) {
    // No background thread (eventfd/thread creation failed): the child is still owned and reaped on
    // demand; do not throw with a child we already own.
  }
  return h;
}

void close_in_children(int fd) {
  auto& r = Registry::get();
  std::lock_guard lock(r.mu);
  r.close_in_children.push_back(fd);
}

void forget_in_children(int fd) {
  auto& r = Registry::get();
  std::lock_guard lock(r.mu);
  std::erase(r.close_in_children, fd);
}

bool poll_child(ChildHandle& h) {
  if (h.ended.load(std::memory_order_acquire)) return true;
  auto& r = Registry::get();
  std::vector<Callback> cbs;
  bool ended = false;
  {
    std::lock_guard lock(r.mu);
    auto it = r.live.find(h.pid);
    if (it == r.live.end() || it->second.handle.get() != &h) {
      // Reaped meanwhile by another thread (it set ended under this lock), or never owned.
      return h.ended.load(std::memory_order_acquire);
    }
    auto w = posix::wait_nohang(h.pid);
    if (w.kind == posix::WaitOutcome::running) return false;
    if (w.kind == posix::WaitOutcome::ended)
      r.finish_locked(it->second, w.raw_status, cbs);
    else
      r.lose_locked(it->second);
    r.live.erase(it);
    ended = true;
  }
  Registry::run_callbacks(cbs);
  return ended;
}

bool wait_child(ChildHandle& h, const posix::Deadline& deadline) {
  for (;;) {
    if (poll_child(h)) return true;
    if (h.sentinel) {
      if (!posix::wait_readable(h.sentinel.get(), deadline)) return false;
      if (poll_child(h)) return true;
      // A sentinel pipe reports EOF a moment before the kernel turns the child into a zombie (files
      // are closed before exit_notify); a pidfd never does this. Bridge that window briefly.
    }
    if (deadline.expired()) return false;
    ::usleep(500);
  }
}

void signal_child(ChildHandle& h, int sig) {
  auto& r = Registry::get();
  std::lock_guard lock(r.mu);  // excludes a concurrent reap, so a plain kill() cannot hit a recycled pid
  if (h.ended.load(std::memory_order_acquire)) return;
  int rc = (h.sentinel && h.sentinel_is_pidfd) ? posix::pidfd_send_signal(h.sentinel.get(), sig)
                                                : ::kill(h.pid, sig);
  if (rc != 0 && errno != ESRCH) posix::throw_errno("kill");
}

std::size_t sweep() {
  auto& r = Registry::get();
  std::vector<Callback> cbs;
  std::size_t n;
  {
    std::lock_guard lock(r.mu);
    n = r.sweep_locked(cbs);
  }
  Registry::run_callbacks(cbs);
  return n;
}

std::vector<LiveChild> live_children() {
  sweep();
  auto& r = Registry::get();
  std::lock_guard lock(r.mu);
  std::vector<LiveChild> out;
  for (auto& [pid, rec] : r.live) out.push_back({pid, rec.info});
  std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return a.pid < b.pid; });
  return out;
}

int reaper_threads() noexcept {
  auto& r = Registry::get();
  std::lock_guard lock(r.mu);
  return r.bg ? 1 : 0;
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------------
// Public API

Reaper& Reaper::instance() {
  static Reaper* r = new Reaper;
  detail::Registry::get();
  return *r;
}

void Reaper::set_mode(ReapMode m) {
  auto& r = detail::Registry::get();
  if (m == ReapMode::background) {
    std::lock_guard lock(r.mu);
    r.mode.store(m);
    r.ensure_thread_locked();
  } else {
    r.mode.store(m);
    r.stop_thread();
  }
}

ReapMode Reaper::mode() const { return detail::Registry::get().mode.load(); }

std::size_t Reaper::reap() { return detail::sweep(); }

void Reaper::adopt(pid_t pid, std::function<void(pid_t, ExitStatus)> on_exit) {
  // Only a child of ours can be waited for; WNOWAIT checks that without consuming anything.
  siginfo_t si{};
  for (;;) {
    if (::waitid(P_PID, static_cast<id_t>(pid), &si, WEXITED | WNOHANG | WNOWAIT) == 0) break;
    if (errno == EINTR) continue;
    if (errno == ECHILD) throw UsageError("Reaper::adopt: pid " + std::to_string(pid) + " is not a child of this process");
    detail::posix::throw_errno("waitid");
  }
  {
    // Already ours (a Process, or adopted before): keep its record, which the owner shares, and only
    // replace the callback.
    auto& r = detail::Registry::get();
    std::lock_guard lock(r.mu);
    auto it = r.live.find(pid);
    if (it != r.live.end()) {
      it->second.on_exit = std::move(on_exit);
      return;
    }
  }
  detail::posix::UniqueFd fd;
  bool is_pidfd = false;
  if (detail::posix::have_pidfd()) {
    fd.reset(detail::posix::pidfd_open(pid));
    is_pidfd = static_cast<bool>(fd);
  }
  detail::own_child(pid, detail::ChildInfo{}, std::move(fd), is_pidfd, {}, std::move(on_exit));
  detail::trace("adopted pid=%d", pid);
}

std::optional<ExitStatus> Reaper::status(pid_t pid) const {
  auto& r = detail::Registry::get();
  std::lock_guard lock(r.mu);
  auto it = r.history.find(pid);
  if (it == r.history.end()) return std::nullopt;
  return ExitStatus::from_wait_status(it->second);
}

std::size_t Reaper::owned() const {
  auto& r = detail::Registry::get();
  std::lock_guard lock(r.mu);
  return r.live.size();
}

void become_subreaper() {
  if (::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0) detail::posix::throw_errno("prctl(PR_SET_CHILD_SUBREAPER)");
  auto& r = detail::Registry::get();
  std::lock_guard lock(r.mu);
  r.subreaper = true;
  r.wake_thread_locked();
}

namespace {
// Parse /proc/<pid>/stat: "pid (comm) state ppid ...". comm may hold spaces and ')', so the state
// follows the *last* ')'.
bool read_stat(pid_t pid, ChildEntry& e) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  std::ifstream in(path);
  std::string line;
  if (!std::getline(in, line)) return false;
  auto open = line.find('(');
  auto close = line.rfind(')');
  if (open == std::string::npos || close == std::string::npos || close + 4 > line.size()) return false;
  e.pid = pid;
  e.comm = line.substr(open + 1, close - open - 1);
  std::istringstream rest(line.substr(close + 2));
  int ppid = 0;
  rest >> e.state >> ppid;
  if (!rest) return false;
  e.ppid = ppid;
  return true;
}
}  // namespace

std::vector<ChildEntry> list_children(pid_t parent) {
  std::vector<ChildEntry> out;
  DIR* d = ::opendir("/proc");
  if (!d) detail::posix::throw_errno("opendir(/proc)");
  while (dirent* de = ::readdir(d)) {
    char* end = nullptr;
    long pid = std::strtol(de->d_name, &end, 10);
    if (*end != '\0' || pid <= 0) continue;
    ChildEntry e{};
    if (!read_stat(static_cast<pid_t>(pid), e)) continue;  // vanished meanwhile
    if (e.ppid != parent) continue;
    if (e.state == 'Z') detail::trace("zombie seen pid=%d", e.pid);
    out.push_back(std::move(e));
  }
  ::closedir(d);
  std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return a.pid < b.pid; });
  return out;
}

std::size_t count_zombies(pid_t parent) {
  auto kids = list_children(parent);
  return static_cast<std::size_t>(std::count_if(kids.begin(), kids.end(), [](auto& e) { return e.state == 'Z'; }));
}

namespace detail {

pid_t spawn_detached(std::unique_ptr<Target> fn) {
  auto p = posix::make_pipe();
  pid_t middle = posix::careful_fork();
  if (middle == 0) {
    p.read.reset();
    pid_t grandchild;
    try {
      grandchild = posix::careful_fork();
    } catch (const std::system_error& e) {
      int err = -e.code().value();
      posix::write_all(p.write.get(), &err, sizeof err);
      ::_exit(1);
    }
    if (grandchild == 0) {
      p.write.reset();
      set_in_child();
      run_child_and_exit("Detached", [&] { fn->run(); });
    }
    int g = grandchild;
    if (!posix::write_all(p.write.get(), &g, sizeof g)) {
      // The caller will hear "intermediate child died" and cannot know the grandchild: it must not run
      // on unseen. (Found by fault injection: tests/fault, scope children, write:1.)
      ::kill(grandchild, SIGKILL);
      ::_exit(1);
    }
    ::_exit(0);  // the grandchild is orphaned from here on
  }
  p.write.reset();
  int got = 0;
  const bool ok = posix::read_exact(p.read.get(), &got, sizeof got);
  const int read_err = ok ? 0 : errno;  // 0: EOF, the middle child ended without writing
  posix::wait_blocking(middle);  // the middle child is ours: reap it at once, never a zombie
  trace("fork pid=%d (intermediate, reaped) detached pid=%d", middle, got);
  // A failed read is reported with its own errno, not as a dead middle child (fault injection showed
  // read:1:EAGAIN surfacing as EIO "intermediate child died").
  if (!ok && read_err != 0) posix::throw_errno(read_err, "spawn_detached: read (the grandchild's pid)");
  if (!ok) throw std::system_error(EIO, std::system_category(), "spawn_detached: intermediate child died");
  if (got < 0) posix::throw_errno(-got, "fork (spawn_detached grandchild)");
  return got;
}

}  // namespace detail

void daemonize() {
  pid_t pid = detail::posix::careful_fork();
  if (pid > 0) ::_exit(0);
  if (::setsid() < 0) detail::posix::throw_errno("setsid");
  pid = detail::posix::careful_fork();
  if (pid > 0) ::_exit(0);  // the session leader goes, so the daemon can never reacquire a terminal
  if (::chdir("/") != 0) detail::posix::throw_errno("chdir(/)");
  ::umask(0);
  int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null < 0) detail::posix::throw_errno("open(/dev/null)");
  for (int fd = 0; fd <= 2; ++fd)
    if (::dup2(null, fd) < 0) detail::posix::throw_errno("dup2");
  if (null > 2) ::close(null);
  detail::trace("daemonized pid=%d", ::getpid());
}

}  // namespace mproc
