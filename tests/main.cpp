// tests/main.cpp — the Catch2 runner for mproc_tests, with a leak guard.
//
// The leak guard is a Catch2 event listener. Before each test case it records this process's open fds
// and the entries of /dev/shm; after the test case it checks that the test left behind no child
// process (live or zombie), no new fd and nothing new in /dev/shm. A leak is printed on stderr with the
// details and makes the run exit non-zero (ctest runs each test case as its own process, so the
// offending test case is the one that fails).
//
// Allowances, all deliberate:
//   * /dev/shm is shared with whatever ctest runs beside this test (-j2): a new entry that another
//     process still maps belongs to that process (a named SharedMemory test, sample 17, the Boost
//     queue of bench_queue_throughput) and is not counted; ours would be mapped by nobody. A new
//     entry nobody maps counts only if it is still there after up to 2 s (another test's planted file
//     is gone by then; a leak of ours stays).
//   * Grace period: a child may have ended an instant ago and be about to be reaped (background mode,
//     or a child handed to the reaper). If children remain, the guard calls Reaper::reap() and looks
//     again, for up to 2 s, before calling them leaked. Tests themselves never sleep to synchronize.
//   * Warm-up: things the library creates once per process, lazily (the daemons' lifeline pipe, the
//     background reaper's wake-up fd, the signal dispatcher's self-pipe), are not leaks. Before the
//     first test case the guard uses each feature once, so that those exist before any baseline is
//     taken; a per-use leak still shows in every test that uses the feature.
//
// The hang guard (the watchdog) is armed by the same listener at the start of each test case and
// disarmed at its end. A test case still running after MPROC_TEST_WATCHDOG_SECONDS (default 50 s, below
// ctest's TIMEOUT of 60 s; 0 turns it off) makes it print "WATCHDOG: test '<name>' still running after
// N s" on stderr and, when gdb is on PATH, the stacks of every thread of this process and of each
// descendant (`gdb -batch -p <pid> -ex "thread apply all bt"`, its output on stderr). Then the test is
// left alone: ctest's TIMEOUT ends it, and the log says where it was stuck. One thread per process,
// started with the first test case: it blocks every signal, holds no fd, takes no lock and allocates
// nothing while idle (it sleeps on a futex word), so the tests' forks (the child has no such thread
// and no lock to inherit), signals and fd counts do not see it. It runs gdb with posix_spawn, not fork.
#define MPROC_TESTS_MAIN
#include "catch.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <mproc/mproc.hpp>

#include "test_util.hpp"

namespace {

std::vector<std::string> g_argv;
std::atomic<bool> g_leaked{false};
// The guard acts only in the test runner itself, never in a forked child that happens to run Catch code.
const pid_t g_runner_pid = ::getpid();

#if MPROC_CATCH_V3
using ListenerBase = Catch::EventListenerBase;
#else
using ListenerBase = Catch::TestEventListenerBase;
#endif

void warm_up() {
  try {
    mproc::Process p([] {});
    p.daemon(true);
    p.start();
    p.join();
    auto& reaper = mproc::Reaper::instance();
    reaper.set_mode(mproc::ReapMode::background);
    reaper.set_mode(mproc::ReapMode::on_demand);
    { auto s = mproc::this_process::on_signal(SIGUSR2, [](int) {}); }
    { auto s = mproc::this_process::on_exit([](int) {}); }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "leak guard: warm-up failed: %s\n", e.what());
  }
}

// ---- the watchdog ---------------------------------------------------------------------------------
namespace watchdog {

// All state is plain atomics and fixed arrays: nothing to lock, nothing a forked child could inherit
// in a bad state. `seq` is the futex word the thread sleeps on; arm/disarm bump it and wake the thread.
std::atomic<std::uint32_t> g_seq{0};
std::atomic<std::int64_t> g_deadline{0};  // CLOCK_MONOTONIC ns; 0: disarmed
std::atomic<bool> g_firing{false};        // printing stacks right now
std::atomic<int> g_seconds{-1};           // -1: not started yet; 0: off
std::atomic<int> g_fired{0};              // how many times it fired (for the demo test)
char g_name[512];                         // the running test case (written before arming)

std::int64_t now_ns() {
  timespec t{};
  ::clock_gettime(CLOCK_MONOTONIC, &t);
  return std::int64_t{t.tv_sec} * 1'000'000'000 + t.tv_nsec;
}

void futex_wait(std::uint32_t expected, std::int64_t timeout_ns) {
  timespec rel{static_cast<time_t>(timeout_ns / 1'000'000'000), static_cast<long>(timeout_ns % 1'000'000'000)};
  ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&g_seq), FUTEX_WAIT_PRIVATE, expected,
            timeout_ns >= 0 ? &rel : nullptr, nullptr, 0);
}

void futex_wake() {
  g_seq.fetch_add(1);
  ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&g_seq), FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
}

// printf to stderr (fd 2) without stdio's lock: the test's main thread may be stuck holding it.
__attribute__((format(printf, 1, 2))) void say(const char* fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  const int n = std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n > 0) {
    const std::size_t len = std::min(static_cast<std::size_t>(n), sizeof buf - 1);
    [[maybe_unused]] ssize_t w = ::write(2, buf, len);
  }
}

// Whole small file into buf (NUL-terminated): its length, or -1.
ssize_t read_file(const char* path, char* buf, std::size_t size) {
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  std::size_t got = 0;
  while (got + 1 < size) {
    const ssize_t r = ::read(fd, buf + got, size - 1 - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    got += static_cast<std::size_t>(r);
  }
  ::close(fd);
  buf[got] = '\0';
  return static_cast<ssize_t>(got);
}

// This process and its descendants (breadth first, from /proc/<pid>/task/<tid>/children).
constexpr int kMaxPids = 128;
int collect_pids(pid_t* pids) {
  int n = 0;
  pids[n++] = ::getpid();
  for (int i = 0; i < n; ++i) {
    char path[64];
    std::snprintf(path, sizeof path, "/proc/%d/task", static_cast<int>(pids[i]));
    DIR* d = ::opendir(path);
    if (!d) continue;
    while (dirent* e = ::readdir(d)) {
      if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
      char file[400], text[4096];
      std::snprintf(file, sizeof file, "%s/%.255s/children", path, e->d_name);
      if (read_file(file, text, sizeof text) <= 0) continue;
      for (char* p = text; *p;) {
        char* end = nullptr;
        const long pid = std::strtol(p, &end, 10);
        if (end == p) break;
        if (n < kMaxPids) pids[n++] = static_cast<pid_t>(pid);
        p = end;
      }
    }
    ::closedir(d);
  }
  return n;
}

// gdb's full path on PATH, or false.
bool find_gdb(char* out, std::size_t size) {
  const char* path = std::getenv("PATH");
  if (!path) path = "/usr/bin:/bin";
  while (*path) {
    const char* colon = std::strchr(path, ':');
    const std::size_t len = colon ? static_cast<std::size_t>(colon - path) : std::strlen(path);
    std::snprintf(out, size, "%.*s/gdb", static_cast<int>(len), path);
    if (len > 0 && ::access(out, X_OK) == 0) return true;
    path += len + (colon ? 1 : 0);
  }
  return false;
}

// gdb -batch -p pid -ex "thread apply all bt", stdout on stderr; killed if it takes more than 30 s.
void print_stacks(const char* gdb, pid_t pid) {
  char pid_text[16];
  std::snprintf(pid_text, sizeof pid_text, "%d", static_cast<int>(pid));
  // Under coreutils' timeout when there is one: gdb stops every thread of the process it attaches to,
  // this watchdog included, so a gdb that hangs while attached to *us* can only be killed from outside.
  const bool has_timeout = ::access("/usr/bin/timeout", X_OK) == 0;
  const char* argv[] = {"/usr/bin/timeout", "-s", "KILL", "25", gdb, "-nx", "-batch", "-iex",
                        "set debuginfod enabled off", "-p", pid_text, "-ex", "thread apply all bt", nullptr};
  const char* const* args = has_timeout ? argv : argv + 4;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, 2, 1);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  pid_t child = -1;
  const int rc = ::posix_spawn(&child, args[0], &fa, nullptr, const_cast<char**>(args), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) {
    say("WATCHDOG: cannot run %s: %s\n", gdb, std::strerror(rc));
    return;
  }
  const std::int64_t give_up = now_ns() + std::int64_t{30} * 1'000'000'000;
  for (;;) {
    int st = 0;
    const pid_t r = ::waitpid(child, &st, WNOHANG);
    if (r == child || (r < 0 && errno != EINTR)) return;  // done (ECHILD: reaped by someone else)
    if (now_ns() > give_up) {
      say("WATCHDOG: gdb on pid %d takes more than 30 s; killed\n", static_cast<int>(pid));
      ::kill(child, SIGKILL);
      ::waitpid(child, &st, 0);
      return;
    }
    ::usleep(20'000);
  }
}

void fire(const char* name, int seconds) {
  say("\nWATCHDOG: test '%s' still running after %d s\n", name, seconds);
  pid_t pids[kMaxPids];
  const int n = collect_pids(pids);
  char gdb[4096];
  if (!find_gdb(gdb, sizeof gdb)) {
    say("WATCHDOG: gdb is not on PATH: no stacks (processes:");
    for (int i = 0; i < n; ++i) say(" %d", static_cast<int>(pids[i]));
    say(")\n");
    return;
  }
  char scope[16] = "0";
  read_file("/proc/sys/kernel/yama/ptrace_scope", scope, sizeof scope);
  const int ptrace_scope = std::atoi(scope);
  if (ptrace_scope >= 3 || (ptrace_scope == 2 && ::geteuid() != 0)) {
    say("WATCHDOG: ptrace is not allowed here (kernel.yama.ptrace_scope=%d): no stacks\n", ptrace_scope);
    return;
  }
  // Yama's scope 1 lets only ancestors trace us; gdb is our child. (Our own children stay out of reach
  // unless we are root; gdb says so then.)
  if (ptrace_scope == 1) ::prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0);
  for (int i = 0; i < n; ++i) {
    char comm[64] = "?";
    char path[64];
    std::snprintf(path, sizeof path, "/proc/%d/comm", static_cast<int>(pids[i]));
    if (read_file(path, comm, sizeof comm) > 0) comm[std::strcspn(comm, "\n")] = '\0';
    say("WATCHDOG: stacks of pid %d (%s)%s:\n", static_cast<int>(pids[i]), comm,
        i == 0 ? ", the test process" : ", a descendant");
    print_stacks(gdb, pids[i]);
  }
  say("WATCHDOG: end of stacks; the test is left running (ctest's TIMEOUT ends it)\n");
}

void run() {
  ::pthread_setname_np(::pthread_self(), "test-watchdog");  // how gdb and ps show it
  for (;;) {
    const std::uint32_t seq = g_seq.load();
    const std::int64_t deadline = g_deadline.load();
    if (deadline == 0) {
      futex_wait(seq, -1);
      continue;
    }
    const std::int64_t left = deadline - now_ns();
    if (left > 0) {
      futex_wait(seq, left);
      continue;
    }
    char name[sizeof g_name];
    std::memcpy(name, g_name, sizeof name);
    name[sizeof name - 1] = '\0';
    g_firing.store(true);
    // Still the same arming (the test did not end meanwhile)? Then fire, once.
    std::int64_t expected = deadline;
    if (g_seq.load() == seq && g_deadline.compare_exchange_strong(expected, 0)) {
      fire(name, g_seconds.load());
      g_fired.fetch_add(1);
    }
    g_firing.store(false);
  }
}

void arm(const std::string& name) {
  if (g_seconds.load() < 0) {
    int seconds = 50;
    if (const char* v = std::getenv("MPROC_TEST_WATCHDOG_SECONDS"); v && *v) seconds = std::atoi(v);
    g_seconds.store(seconds > 0 ? seconds : 0);
    if (seconds > 0) {
      // The thread inherits a mask that blocks everything: the tests' signals never land on it.
      sigset_t all, old;
      sigfillset(&all);
      pthread_sigmask(SIG_SETMASK, &all, &old);
      std::thread(run).detach();
      pthread_sigmask(SIG_SETMASK, &old, nullptr);
    }
  }
  const int seconds = g_seconds.load();
  if (seconds == 0) return;
  std::snprintf(g_name, sizeof g_name, "%s", name.c_str());
  g_deadline.store(now_ns() + std::int64_t{seconds} * 1'000'000'000);
  futex_wake();
}

void disarm() {
  if (g_seconds.load() <= 0) return;
  g_deadline.store(0);
  futex_wake();
  // Stacks being printed: let gdb finish (and be reaped) before the leak guard counts children.
  while (g_firing.load()) ::usleep(10'000);
}

}  // namespace watchdog

class LeakGuard : public ListenerBase {
 public:
  using ListenerBase::ListenerBase;

  void testCaseStarting(Catch::TestCaseInfo const& info) override {
    ListenerBase::testCaseStarting(info);
    if (::getpid() != g_runner_pid) return;
    watchdog::arm(info.name);
    static bool warmed = false;
    if (!warmed) {
      warmed = true;
      warm_up();
    }
    name_ = info.name;
    fds_ = mproc_test::open_fds();
    shm_ = mproc_test::shm_entries();
  }

  void testCaseEnded(Catch::TestCaseStats const& stats) override {
    if (::getpid() == g_runner_pid) {
      watchdog::disarm();
      check();
    }
    ListenerBase::testCaseEnded(stats);
  }

 private:
  void check() {
    using namespace std::chrono_literals;
    std::string report;

    // Children: give the reaper up to 2 s for children that are ending right now.
    auto kids = mproc_test::raw_children();
    const auto deadline = mproc_test::Clock::now() + 2s;
    while (!kids.empty() && mproc_test::Clock::now() < deadline) {
      try {
        mproc::Reaper::instance().reap();
      } catch (...) {
      }
      std::this_thread::sleep_for(50ms);
      kids = mproc_test::raw_children();
    }
    for (auto& k : kids)
      report += "  child pid=" + std::to_string(k.pid) + " state=" + k.state + " comm=" + k.comm +
                (k.state == 'Z' ? "  (zombie: never reaped)\n" : "  (still running)\n");

    // Fds: compared after the children settled (reaping may close a pidfd).
    for (auto& [fd, target] : mproc_test::open_fds())
      if (!fds_.count(fd)) report += "  fd " + std::to_string(fd) + " -> " + target + "\n";

    const std::vector<std::string> fresh = mproc_test::shm_left_since(shm_);
    for (auto& e : fresh) report += "  /dev/shm/" + e + "\n";

    if (report.empty()) return;
    g_leaked = true;
    std::fprintf(stderr, "\n*** leak guard: test case \"%s\" left behind:\n%s", name_.c_str(), report.c_str());
    std::fflush(stderr);

    // Clean up what we can, so later test cases in the same run start clean.
    for (auto& k : kids) ::kill(k.pid, SIGKILL);
    mproc_test::wait_until(
        [&] {
          try {
            mproc::Reaper::instance().reap();
          } catch (...) {
          }
          return mproc_test::raw_children().empty();
        },
        1s, 10ms);
    for (auto& k : mproc_test::raw_children()) {
      int st;
      ::waitpid(k.pid, &st, WNOHANG);
    }
  }

  std::string name_;
  std::map<int, std::string> fds_;
  std::set<std::string> shm_;
};

}  // namespace

CATCH_REGISTER_LISTENER(LeakGuard)

// Hidden ([.]): the ctest test watchdog_demo (tests/CMakeLists.txt) runs it with
// MPROC_TEST_WATCHDOG_SECONDS=2 and checks the output for the WATCHDOG line and gdb's backtraces of this
// process and of the child. It looks like a hung test (waiting on a child that never ends); once the
// watchdog has printed, it ends the child and passes, instead of waiting for a TIMEOUT.
TEST_CASE("watchdog demo: a test stuck joining a child that never ends", "[.watchdog]") {
  using namespace std::chrono_literals;
  if (watchdog::g_seconds.load() <= 0) FAIL("set MPROC_TEST_WATCHDOG_SECONDS to a few seconds to run this");
  mproc::Process p([] {
    for (;;) ::pause();
  });
  p.start();
  const int fired = watchdog::g_fired.load();
  const auto give_up = mproc_test::Clock::now() + 120s;
  while (watchdog::g_fired.load() == fired && mproc_test::Clock::now() < give_up) p.join(100ms);
  p.kill();
  p.join();
  CHECK(watchdog::g_fired.load() > fired);
}

const std::vector<std::string>& mproc_test::test_argv() { return g_argv; }

int main(int argc, char* argv[]) {
  g_argv.assign(argv, argv + argc);
  Catch::Session session;
  int rc = session.run(argc, argv);
  if (g_leaked) {
    std::fprintf(stderr, "leak guard: a test case leaked children, fds or /dev/shm entries (see above)\n");
    return rc != 0 ? rc : 3;
  }
  return rc;
}
