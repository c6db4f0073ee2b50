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
#define MPROC_TESTS_MAIN
#include "catch.hpp"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
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

std::set<std::string> shm_entries() {
  std::set<std::string> out;
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator("/dev/shm", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec))
    out.insert(it->path().filename().string());
  return out;
}

// Whether a process other than this one maps /dev/shm/<name>. ctest runs two test processes at once
// (-j2), and a test, sample or benchmark running beside this one may hold a named segment of its
// own while our check runs: that is not our leak. Ours would be mapped by nobody (our children are
// gone by then) or by this process only.
bool mapped_by_another_process(const std::string& name) {
  const std::string needle = " /dev/shm/" + name;
  const std::string self = std::to_string(::getpid());
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator("/proc", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    const std::string pid = it->path().filename().string();
    if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos || pid == self) continue;
    std::ifstream maps(it->path() / "maps");
    std::string line;
    while (std::getline(maps, line))
      if (line.size() >= needle.size() && line.compare(line.size() - needle.size(), needle.size(), needle) == 0)
        return true;
  }
  return false;
}

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

class LeakGuard : public ListenerBase {
 public:
  using ListenerBase::ListenerBase;

  void testCaseStarting(Catch::TestCaseInfo const& info) override {
    ListenerBase::testCaseStarting(info);
    if (::getpid() != g_runner_pid) return;
    static bool warmed = false;
    if (!warmed) {
      warmed = true;
      warm_up();
    }
    name_ = info.name;
    fds_ = mproc_test::open_fds();
    shm_ = shm_entries();
  }

  void testCaseEnded(Catch::TestCaseStats const& stats) override {
    if (::getpid() == g_runner_pid) check();
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

    // A new entry nobody else maps may still be another test's short-lived one (a file planted and
    // removed a moment later): ours stays, so look again for up to 2 s before calling it leaked.
    std::vector<std::string> fresh;
    for (auto& e : shm_entries())
      if (!shm_.count(e) && !mapped_by_another_process(e)) fresh.push_back(e);
    for (const auto shm_deadline = mproc_test::Clock::now() + 2s; !fresh.empty();) {
      const auto now_there = shm_entries();
      std::erase_if(fresh, [&](const std::string& e) { return !now_there.count(e) || mapped_by_another_process(e); });
      if (fresh.empty() || mproc_test::Clock::now() >= shm_deadline) break;
      std::this_thread::sleep_for(50ms);
    }
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
