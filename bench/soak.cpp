// bench/soak — does anything grow when mproc runs for a long time? Not a speed benchmark and not run in
// CI (it takes minutes): run it by hand or with ./scripts/bench --soak.
//
//   soak [tasks = 1000000] [cycles = 100000] [spawns = 10000]
//
// Three phases, each reporting at every 10% of its work the parent's RSS (VmRSS from /proc/self/status),
// its open fds (/proc/self/fd), its live children and zombies (from /proc/<pid>/task/*/children and each
// child's state), and the entries in /dev/shm:
//   1. `tasks` tiny tasks through one Pool(2) (map in ten slices of tasks/10, chunksize 1000);
//   2. `cycles` Process start()+join() cycles of a no-op target;
//   3. `spawns` exec_file("/bin/true") runs.
// The verdict: after the first 20% (warm-up: allocator arenas growing to the size of one slice's
// buffers, the reaper's status history filling up, the page cache) RSS may not grow by more than 10%,
// and fds, children, zombies and /dev/shm entries must be exactly flat. Exit code 0 if every phase
// holds, 1 otherwise. Nothing is pinned to a CPU. It prints no `@row` line: it has no target of issue 8's
// table (./scripts/bench runs it only with --soak).
#include <dirent.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <ranges>
#include <sstream>
#include <string>
#include <vector>

#include "mproc/mproc.hpp"

namespace {

struct Sample {
  long rss_kib = 0;
  int fds = 0;
  int children = 0;
  int zombies = 0;
  int shm = 0;
};

long rss_kib() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
  return -1;
}

int count_dir(const char* path) {
  DIR* d = ::opendir(path);
  if (!d) return -1;
  int n = 0;
  while (dirent* e = ::readdir(d))
    if (e->d_name[0] != '.') ++n;
  ::closedir(d);
  return n - (std::string(path) == "/proc/self/fd" ? 1 : 0);  // the DIR's own fd
}

// Children of every thread of this process, and how many of them are zombies.
void children(int& live, int& zombies) {
  live = zombies = 0;
  DIR* d = ::opendir("/proc/self/task");
  if (!d) return;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    std::ifstream f(std::string("/proc/self/task/") + e->d_name + "/children");
    pid_t pid;
    while (f >> pid) {
      ++live;
      std::ifstream st("/proc/" + std::to_string(pid) + "/stat");
      std::string all((std::istreambuf_iterator<char>(st)), std::istreambuf_iterator<char>());
      const auto close = all.rfind(')');
      if (close != std::string::npos && close + 2 < all.size() && all[close + 2] == 'Z') ++zombies;
    }
  }
  ::closedir(d);
}

Sample sample() {
  Sample s;
  s.rss_kib = rss_kib();
  s.fds = count_dir("/proc/self/fd");
  children(s.children, s.zombies);
  s.shm = count_dir("/dev/shm");
  return s;
}

int square(int x) { return x * x; }
void nothing() {}

// Runs step(i) for i in [0, 10) (each a tenth of the phase), printing a sample after each; returns
// whether the phase held (RSS growth after the first two tenths < 10%, everything else flat).
bool phase(const char* name, long total, const std::function<void(int)>& step) {
  std::printf("\n== %s (%ld)\n%6s %10s %6s %9s %8s %6s %9s\n", name, total, "done", "RSS KiB", "fds", "children",
              "zombies", "shm", "seconds");
  const auto t0 = std::chrono::steady_clock::now();
  Sample warm{};
  bool ok = true;
  for (int i = 0; i < 10; ++i) {
    step(i);
    mproc::Reaper::instance().reap();  // a Process destroyed without join may still be a zombie for a moment
    const Sample s = sample();
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("%5d%% %10ld %6d %9d %8d %6d %9.1f\n", (i + 1) * 10, s.rss_kib, s.fds, s.children, s.zombies, s.shm,
                secs);
    std::fflush(stdout);
    if (i <= 1) {  // warm-up: the first 20%
      warm = s;
      continue;
    }
    if (s.rss_kib > warm.rss_kib + warm.rss_kib / 10) ok = false;
    if (s.fds != warm.fds || s.zombies != 0 || s.shm != warm.shm) ok = false;
  }
  const Sample last = sample();
  const double growth = 100.0 * static_cast<double>(last.rss_kib - warm.rss_kib) / static_cast<double>(warm.rss_kib);
  std::printf("%s: RSS %+.1f%% after warm-up (limit +10%%), fds %d -> %d, zombies %d, /dev/shm %d -> %d: %s\n", name,
              growth, warm.fds, last.fds, last.zombies, warm.shm, last.shm, ok ? "FLAT" : "GROWS");
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  const long tasks = argc > 1 ? std::atol(argv[1]) : 1'000'000;
  const long cycles = argc > 2 ? std::atol(argv[2]) : 100'000;
  const long spawns = argc > 3 ? std::atol(argv[3]) : 10'000;
  std::printf("soak: %ld pool tasks, %ld Process cycles, %ld exec_file runs; pid %d\n", tasks, cycles, spawns,
              static_cast<int>(::getpid()));
  bool ok = true;
  {
    mproc::Pool pool(2u);
    ok &= phase("Pool(2).map, tiny tasks", tasks, [&](int) {
      const int n = static_cast<int>(tasks / 10);
      auto out = pool.map(square, std::views::iota(0, n), 1000);
      if (static_cast<long>(out.size()) != n || out[static_cast<std::size_t>(n - 1)] != (n - 1) * (n - 1)) {
        std::fprintf(stderr, "wrong result\n");
        std::exit(2);
      }
    });
    pool.close();
    pool.join();
  }
  ok &= phase("Process start+join", cycles, [&](int) {
    for (long i = 0; i < cycles / 10; ++i) {
      mproc::Process p(nothing);
      p.start();
      p.join();
      if (p.exitcode() != 0) std::exit(2);
    }
  });
  ok &= phase("exec_file(/bin/true)", spawns, [&](int) {
    for (long i = 0; i < spawns / 10; ++i)
      if (mproc::exec_file("/bin/true", {}).status.exitcode() != 0) std::exit(2);
  });
  std::printf("\nsoak: %s\n", ok ? "everything flat" : "SOMETHING GREW");
  return ok ? 0 : 1;
}
