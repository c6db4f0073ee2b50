// tests/fault/fault_driver.cpp — runs one mproc operation under one injected fault and checks what is
// left afterwards. Run with the shim preloaded (LD_PRELOAD=libmproc_fault_shim.so) and
// MPROC_FAULT=<call>:<N>:<errno>; without MPROC_FAULT it is a dry run that reports how many calls of
// each kind the operation makes (fault_sweep uses that to choose N).
//
//   fault_driver <mode>
//     process        a Process that ends with mproc::exit(7) (start, join) and a daemon Process that
//                    returns (start, join with a timeout): exit codes 7 and 0
//     queue          two Queues (a 4 KiB ring, so the 10 KB items stream) and a daemon child that
//                    answers each item; put/get both ways, then stop and join it
//     pool           Pool(5), map of 100 items, close, join
//     spawn          exec_file("/bin/echo", {"x"}); spawn("/bin/cat"), write a line, read it back,
//                    close stdin, wait
//     shared_memory  SharedMemory::create (named), opened by name in a child that writes to it and by
//                    the parent; an anonymous SharedMemory and a Value; unlink
//     reaper         in subreaper mode: Reaper::adopt of a raw posix::fork() child, a spawn_detached
//                    orphan re-parented to us, a Process; each one's exit status must be recorded
//     background     the background reaper: set_mode(background), a Process started and joined, a
//                    Process left to the reaper thread, set_mode(on_demand)
//     pool_partial   the Pool's partial construction: Pool(5) with the 4th worker's fork failing
//                    (MPROC_FAULT=fork:4:EAGAIN) must throw std::system_error(EAGAIN), and the 3
//                    workers already started must have been terminated and reaped by mproc
//
// With MPROC_FAULT_SCOPE=children the fault fires in the children instead (each forked child at its own
// N-th call: a pool worker's recvmsg, a child's shm_open). The child then fails as a program would, and
// the parent may see that as a wrong result (an exit code 1, a WorkerLost) as well as an error; still
// no crash (a child killed by SIGSEGV, SIGABRT, SIGBUS), hang or leak, and EINTR must be retried.
//
// Verdict (exit 0 only if all hold):
//   * the operation succeeded with the right result, or threw a clear error for the injected fault:
//     an mproc::Error (SpawnError with the injected errno), or a std::system_error with the injected
//     errno. Never UsageError or another type, never an error when no fault fired, and never an error
//     for EINTR on a call mproc must restart (read, write, sendmsg, recvmsg, poll, futex, waitpid,
//     waitid, ftruncate: "every blocking call restarts on EINTR", API.md);
//   * no child of ours is left (live or zombie) after a bounded wait in which the reaper may collect
//     children that are ending (Reaper::reap), no fd is open that was not open before, and the named
//     block of shared_memory mode (/dev/shm/mproc_fault_<pid>) is gone.
// A crash (signal) or a hang (the sweep's per-run timeout) fails as well. Output: one line
// "calls <kind>=<n> ..." with the armed counts, one "fired=<0|1>", one "outcome ..." and, on failure,
// "FAIL: ..." lines. Exit 1 on a failed check, 2 on a usage/setup error.
#include <dirent.h>
#include <dlfcn.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <mproc/mproc.hpp>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// ---- the shim's control functions ---------------------------------------------------------------

struct Shim {
  void (*arm)() = nullptr;
  void (*disarm)() = nullptr;
  int (*fired)() = nullptr;
  int (*kinds)() = nullptr;
  const char* (*kind_name)(int) = nullptr;
  long (*kind_count)(int) = nullptr;
  int (*forked)(pid_t*, int) = nullptr;
  void (*pause)() = nullptr;
  void (*resume)() = nullptr;
};

template <class F>
void lookup(F& f, const char* name) {
  f = reinterpret_cast<F>(::dlsym(RTLD_DEFAULT, name));
  if (!f) {
    std::fprintf(stderr, "fault_driver: %s not found: run with LD_PRELOAD=<libmproc_fault_shim.so>\n", name);
    std::exit(2);
  }
}

Shim load_shim() {
  Shim s;
  lookup(s.arm, "mproc_fault_arm");
  lookup(s.disarm, "mproc_fault_disarm");
  lookup(s.fired, "mproc_fault_fired");
  lookup(s.kinds, "mproc_fault_kinds");
  lookup(s.kind_name, "mproc_fault_kind_name");
  lookup(s.kind_count, "mproc_fault_kind_count");
  lookup(s.forked, "mproc_fault_forked");
  lookup(s.pause, "mproc_fault_pause");
  lookup(s.resume, "mproc_fault_resume");
  return s;
}
Shim g_shim;

struct Fault {
  std::string call;  // empty: dry run
  long n = 0;
  std::string err_name;
  int err = 0;
};

Fault parse_fault() {
  Fault f;
  const char* spec = std::getenv("MPROC_FAULT");
  if (!spec || !*spec) return f;
  std::string s(spec);
  auto a = s.find(':'), b = s.rfind(':');
  f.call = s.substr(0, a);
  f.n = std::strtol(s.c_str() + a + 1, nullptr, 10);
  f.err_name = s.substr(b + 1);
  static const std::map<std::string, int> names = {
      {"EAGAIN", EAGAIN}, {"ENOMEM", ENOMEM}, {"EINTR", EINTR}, {"ENOSPC", ENOSPC}, {"EMFILE", EMFILE},
      {"ENFILE", ENFILE}, {"ENOBUFS", ENOBUFS}, {"EIO", EIO},   {"EPIPE", EPIPE},   {"ECHILD", ECHILD},
      {"EINVAL", EINVAL}, {"ESRCH", ESRCH}};
  auto it = names.find(f.err_name);
  f.err = it != names.end() ? it->second : std::atoi(f.err_name.c_str());
  return f;
}

// ---- what the process holds ---------------------------------------------------------------------

std::map<int, std::string> open_fds() {
  std::map<int, std::string> out;
  DIR* d = ::opendir("/proc/self/fd");
  if (!d) return out;
  const int self = ::dirfd(d);
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    const int fd = std::atoi(e->d_name);
    if (fd == self) continue;
    char target[512] = {};
    const std::string link = std::string("/proc/self/fd/") + e->d_name;
    ssize_t n = ::readlink(link.c_str(), target, sizeof target - 1);
    out[fd] = n > 0 ? std::string(target, static_cast<std::size_t>(n)) : "?";
  }
  ::closedir(d);
  return out;
}

// What this run may leave in /dev/shm: the only named block any operation here creates is
// SharedMemory::create(shm_name()) (Queues, Values and anonymous SharedMemory are MAP_ANONYMOUS
// mappings, never in /dev/shm). Checking our own name exactly, instead of diffing the whole directory,
// keeps the tests that ctest runs beside us (their own /dev/shm entries) from being blamed on us.
std::string shm_name() { return "mproc_fault_" + std::to_string(::getpid()); }
bool shm_left() {
  std::error_code ec;
  return std::filesystem::exists("/dev/shm/" + shm_name(), ec);
}

// Our children, from /proc/self/task/*/children (every thread's), with their state ('Z': zombie).
std::vector<std::pair<pid_t, char>> children() {
  std::vector<std::pair<pid_t, char>> out;
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator("/proc/self/task", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    std::ifstream in(it->path() / "children");
    pid_t pid;
    while (in >> pid) {
      char state = '?';
      std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
      std::string line;
      if (std::getline(stat, line)) {
        auto close = line.rfind(')');
        if (close != std::string::npos && close + 2 < line.size()) state = line[close + 2];
      }
      out.emplace_back(pid, state);
    }
  }
  return out;
}

// ---- the operations -----------------------------------------------------------------------------

struct WrongResult : std::runtime_error {
  using std::runtime_error::runtime_error;
};
void expect(bool ok, const std::string& what) {
  if (!ok) throw WrongResult(what);
}
std::string status_text(const std::optional<mproc::ExitStatus>& st) { return st ? st->to_string() : "no status"; }

void op_process() {
  mproc::Process a([] { mproc::exit(7); });
  a.start();
  a.join();
  expect(a.exitcode() == 7, "Process: " + status_text(a.exit_status()) + ", want exit code 7");

  mproc::Process b([](int x) { (void)x; }, 1);
  b.daemon(true);
  b.start();
  expect(b.join(30s), "daemon Process: not ended within 30 s");
  expect(b.exitcode() == 0, "daemon Process: " + status_text(b.exit_status()) + ", want exit code 0");
}

void op_queue() {
  mproc::QueueOptions small;
  small.capacity_bytes = 4096;  // 10 KB items stream through the ring in chunks
  mproc::Queue<std::string> to_child(0, small), from_child(0, small);
  mproc::Process p(
      [](mproc::Queue<std::string> in, mproc::Queue<std::string> out) {
        for (;;) {
          std::string s = in.get();
          if (s == "stop") return;
          out.put(s + "!");
        }
      },
      to_child, from_child);
  p.daemon(true);  // if the parent fails half-way, destroying p terminates and reaps the child
  p.start();
  std::vector<std::string> items;
  for (int i = 0; i < 8; ++i) items.push_back("item-" + std::to_string(i));
  items.push_back(std::string(10'000, 'a'));
  items.push_back(std::string(10'000, 'b'));
  // One item at a time: with 4 KiB rings, putting them all first would fill both queues (a deadlock of
  // the program, not of mproc).
  for (const auto& s : items) {
    to_child.put(s);
    std::string r = from_child.get(30s);
    expect(r == s + "!", "Queue: got '" + r.substr(0, 40) + "', want '" + s.substr(0, 40) + "!'");
  }
  to_child.put("stop");
  expect(p.join(30s), "Queue child: not ended within 30 s");
  expect(p.exitcode() == 0, "Queue child: " + status_text(p.exit_status()) + ", want exit code 0");
}

int square(int x) { return x * x; }

void op_pool() {
  std::vector<int> in(100);
  for (int i = 0; i < 100; ++i) in[static_cast<std::size_t>(i)] = i;
  mproc::Pool pool(5);
  auto out = pool.map(&square, in);
  expect(out.size() == 100, "Pool::map: " + std::to_string(out.size()) + " results, want 100");
  for (int i = 0; i < 100; ++i)
    expect(out[static_cast<std::size_t>(i)] == i * i, "Pool::map: result " + std::to_string(i) + " wrong");
  pool.close();
  pool.join();
}

void op_spawn() {
  auto r = mproc::exec_file("/bin/echo", {"x"});
  expect(r.status.exited() && r.status.code() == 0, "exec_file(echo): " + r.status.to_string());
  expect(r.out == "x\n", "exec_file(echo): out '" + r.out + "', want 'x\\n'");

  auto cat = mproc::spawn("/bin/cat", {});
  cat.write("hello\n");
  auto line = cat.read_line_stdout();
  expect(line == std::optional<std::string>("hello"), "spawn(cat): read_line_stdout gave '" + line.value_or("<EOF>") + "'");
  cat.close_stdin();
  auto st = cat.wait();
  expect(st.exited() && st.code() == 0, "spawn(cat): " + st.to_string());
}

void op_shared_memory() {
  const std::string name = shm_name();
  auto shm = mproc::SharedMemory::create(name, 8192);
  struct Unlink {  // the program's cleanup when it fails half-way (shm_unlink is not interposed)
    mproc::SharedMemory* shm;
    ~Unlink() {
      try {
        if (shm) shm->unlink();
      } catch (...) {
      }
    }
  } unlink_on_failure{&shm};
  mproc::Process p(
      [](std::string n) {
        auto m = mproc::SharedMemory::open(n);
        m.buf()[0] = std::byte{42};
        m.buf()[8191] = std::byte{43};
      },
      name);
  p.daemon(true);
  p.start();
  expect(p.join(30s), "SharedMemory child: not ended within 30 s");
  expect(p.exitcode() == 0, "SharedMemory child: " + status_text(p.exit_status()) + ", want exit code 0");
  auto again = mproc::SharedMemory::open(name);
  expect(again.size() == 8192 && again.buf()[0] == std::byte{42} && shm.buf()[8191] == std::byte{43},
         "SharedMemory: the child's bytes are not there");
  mproc::SharedMemory anon(4096);
  anon.buf()[0] = std::byte{1};
  mproc::Value<int> v(5);
  expect(v.load() == 5, "Value: wrong initial value");
  unlink_on_failure.shm = nullptr;
  shm.unlink();
}

// Block until pid has ended (a zombie is enough), by its pidfd: no polling. The driver's own calls,
// so the shim neither counts nor fails them.
void wait_ended(pid_t pid) {
  g_shim.pause();
  const int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (fd >= 0) {  // else gone already (or no pidfds: the caller's check then fails loudly)
    pollfd p{fd, POLLIN, 0};
    while (::poll(&p, 1, 30'000) < 0 && errno == EINTR) {
    }
    ::close(fd);
  }
  g_shim.resume();
}

void op_reaper() {
  mproc::become_subreaper();
  auto& reaper = mproc::Reaper::instance();
  // A raw fork child, adopted.
  const pid_t raw = mproc::posix::fork();
  if (raw == 0) mproc::posix::exit_now(5);
  reaper.adopt(raw);
  wait_ended(raw);
  reaper.reap();
  auto st = reaper.status(raw);
  expect(st && st->exited() && st->code() == 5, "adopted child: " + status_text(st) + ", want exit code 5");
  // An orphan: spawn_detached's grandchild is re-parented to us (a subreaper) and reaped by the sweep.
  const pid_t orphan = mproc::spawn_detached([] { mproc::exit(6); });
  wait_ended(orphan);
  reaper.reap();
  st = reaper.status(orphan);
  expect(st && st->exited() && st->code() == 6, "orphan: " + status_text(st) + ", want exit code 6");
  // A Process: start() sweeps (orphans included), join() reaps it.
  mproc::Process p([] { mproc::exit(7); });
  p.start();
  p.join();
  expect(p.exitcode() == 7, "Process: " + status_text(p.exit_status()) + ", want exit code 7");
}

void op_background() {
  auto& reaper = mproc::Reaper::instance();
  struct OnDemand {  // back to on_demand (stops the thread, closes its eventfd) also on failure
    ~OnDemand() {
      try {
        mproc::Reaper::instance().set_mode(mproc::ReapMode::on_demand);
      } catch (...) {
      }
    }
  } restore;
  reaper.set_mode(mproc::ReapMode::background);
  mproc::Process a([] { mproc::exit(3); });
  a.start();
  a.join();
  expect(a.exitcode() == 3, "Process a: " + status_text(a.exit_status()) + ", want exit code 3");
  mproc::Process b([] {});
  b.start();
  const pid_t pid = *b.pid();
  wait_ended(pid);
  // Left to the reaper thread (reaped within 100 ms of its end); join() then finds it reaped.
  expect(b.join(30s), "Process b: not ended within 30 s");
  expect(b.exitcode() == 0, "Process b: " + status_text(b.exit_status()) + ", want exit code 0");
  reaper.set_mode(mproc::ReapMode::on_demand);
}

const std::map<std::string, std::function<void()>> kOps = {
    {"process", op_process}, {"queue", op_queue},   {"pool", op_pool},
    {"spawn", op_spawn},     {"shared_memory", op_shared_memory},
    {"reaper", op_reaper},   {"background", op_background}};

// ---- verdict ------------------------------------------------------------------------------------

bool restart_on_eintr(const std::string& call) {
  static const std::set<std::string> calls = {"read",  "write",   "sendmsg", "recvmsg",  "poll",
                                              "futex", "waitpid", "waitid",  "ftruncate"};
  return calls.count(call) != 0;
}

std::vector<std::string> g_failures;
void fail(const std::string& what) { g_failures.push_back(what); }
bool g_scope_children = false;

// A child that crashed rather than failed: what a fault must never cause.
bool mentions_crash(const std::string& s) {
  for (const char* sig : {"SIGSEGV", "SIGABRT", "SIGBUS", "SIGILL", "SIGFPE"})
    if (s.find(sig) != std::string::npos) return true;
  return false;
}

// The exception in flight, judged against the fault. Returns a one-line description.
std::string judge_exception(const Fault& f, bool fired) {
  std::string desc;
  bool acceptable = false;
  int code = -1;
  try {
    throw;
  } catch (const mproc::SpawnError& e) {
    desc = std::string("SpawnError(") + std::to_string(e.code().value()) + "): " + e.what();
    code = e.code().value();
    acceptable = true;
  } catch (const mproc::Error& e) {
    desc = std::string("mproc::Error: ") + e.what();
    acceptable = true;
  } catch (const std::system_error& e) {
    desc = "std::system_error(" + std::to_string(e.code().value()) + "): " + e.what();
    code = e.code().value();
    acceptable = true;
  } catch (const WrongResult& e) {
    desc = std::string("wrong result: ") + e.what();
    // A child that failed because of its own fault: the parent sees the consequence.
    acceptable = g_scope_children;
  } catch (const mproc::UsageError& e) {
    desc = std::string("UsageError: ") + e.what();
  } catch (const std::exception& e) {
    desc = std::string("unexpected exception type: ") + e.what();
  } catch (...) {
    desc = "unexpected exception (not a std::exception)";
  }
  if (mentions_crash(desc)) {
    fail(desc + " (a child crashed)");
  } else if (!acceptable) {
    fail(desc + " (an OS fault must be a std::system_error or an mproc::Error)");
  } else if (!fired) {
    fail(desc + " (but no fault was injected)");
  } else if (code >= 0 && code != f.err && !g_scope_children) {
    fail(desc + " (error code " + std::to_string(code) + ", but the injected errno was " + f.err_name + ")");
  } else if (f.err == EINTR && restart_on_eintr(f.call)) {
    fail(desc + " (EINTR from " + f.call + " must be retried, and the operation succeed)");
  }
  return desc;
}

// Wait (bounded) for our children to be gone: the reaper may still collect ones that are ending.
std::vector<std::pair<pid_t, char>> settle_children() {
  auto kids = children();
  for (const auto end = Clock::now() + 5s; !kids.empty() && Clock::now() < end;) {
    try {
      mproc::Reaper::instance().reap();
    } catch (...) {
    }
    std::this_thread::sleep_for(10ms);  // polling a /proc state that no fd announces, bounded
    kids = children();
  }
  return kids;
}

void check_leftovers(const std::map<int, std::string>& fds_before) {
  for (auto& [pid, state] : settle_children())
    fail("child left: pid " + std::to_string(pid) + " state " + state + (state == 'Z' ? " (zombie)" : " (running)"));
  for (auto& [fd, target] : open_fds())
    if (!fds_before.count(fd)) fail("fd leaked: " + std::to_string(fd) + " -> " + target);
  if (shm_left()) fail("/dev/shm entry left: " + shm_name());
}

void print_counts(const Shim& shim) {
  std::string line = "calls";
  for (int i = 0; i < shim.kinds(); ++i)
    line += std::string(" ") + shim.kind_name(i) + "=" + std::to_string(shim.kind_count(i));
  std::printf("%s\nfired=%d\n", line.c_str(), shim.fired());
}

// Clean up what a failed run left (so our own exit does not wait for it), report, and end.
[[noreturn]] void finish() {
  std::fflush(stdout);
  if (g_failures.empty()) {
    std::printf("PASS\n");
    std::fflush(stdout);
    std::exit(0);
  }
  for (auto& f : g_failures) std::printf("FAIL: %s\n", f.c_str());
  std::fflush(stdout);
  for (auto& [pid, state] : children()) ::kill(pid, SIGKILL);
  try {
    mproc::Reaper::instance().reap();
  } catch (...) {
  }
  ::_exit(1);  // not exit(): mproc's exit hooks would join a child that may never end
}

// Pool(5) whose 4th worker cannot be forked: the constructor throws, the 3 started workers are gone.
void pool_partial(const Shim& shim, const Fault& f) {
  if (f.call != "fork" || f.n != 4) {
    std::fprintf(stderr, "pool_partial needs MPROC_FAULT=fork:4:<errno>\n");
    std::exit(2);
  }
  if (!children().empty()) fail("children before the Pool");
  bool threw = false;
  shim.arm();
  try {
    mproc::Pool pool(5);
  } catch (...) {
    threw = true;
    shim.disarm();
    std::printf("outcome error %s\n", judge_exception(f, shim.fired() != 0).c_str());
  }
  shim.disarm();
  print_counts(shim);
  if (!threw) fail("Pool(5) did not throw although its 4th fork failed");
  pid_t pids[64];
  const int started = shim.forked(pids, 64);
  if (started != 3) fail("expected 3 workers started before the failing fork, saw " + std::to_string(started));
  // Immediately after the constructor threw (no grace): the started workers must already be reaped by
  // mproc, with their status recorded, and not be our children any more.
  auto kids = children();
  if (!kids.empty()) fail(std::to_string(kids.size()) + " children right after Pool's constructor threw");
  for (int i = 0; i < started; ++i) {
    auto st = mproc::Reaper::instance().status(pids[i]);
    if (!st)
      fail("worker pid " + std::to_string(pids[i]) + " has no status recorded by the reaper (not reaped by mproc)");
    else
      std::printf("worker %d: %s\n", pids[i], st->to_string().c_str());
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: fault_driver <process|queue|pool|spawn|shared_memory|pool_partial>\n");
    return 2;
  }
  const std::string mode = argv[1];
  g_shim = load_shim();
  const Shim& shim = g_shim;
  const Fault f = parse_fault();
  const char* scope = std::getenv("MPROC_FAULT_SCOPE");
  g_scope_children = scope && std::strcmp(scope, "children") == 0;
  // The shim is loaded and configured already; programs we exec (spawn mode) must not load it too.
  ::unsetenv("LD_PRELOAD");
  ::unsetenv("MPROC_FAULT");
  ::unsetenv("MPROC_FAULT_SCOPE");
  // Never killed by a write to a pipe whose reader is gone; an EPIPE is then an error we judge.
  std::signal(SIGPIPE, SIG_IGN);

  const auto fds_before = open_fds();
  if (shm_left()) {
    std::fprintf(stderr, "fault_driver: /dev/shm/%s exists before the operation\n", shm_name().c_str());
    return 2;
  }
  if (!children().empty()) {
    std::fprintf(stderr, "fault_driver: children before the operation\n");
    return 2;
  }

  if (mode == "pool_partial") {
    pool_partial(shim, f);
    check_leftovers(fds_before);
    finish();
  }

  auto op = kOps.find(mode);
  if (op == kOps.end()) {
    std::fprintf(stderr, "fault_driver: unknown mode '%s'\n", mode.c_str());
    return 2;
  }
  shim.arm();
  try {
    op->second();
    shim.disarm();
    std::printf("outcome ok\n");
  } catch (...) {
    shim.disarm();
    std::printf("outcome error %s\n", judge_exception(f, shim.fired() != 0).c_str());
  }
  print_counts(shim);
  check_leftovers(fds_before);
  finish();
}
