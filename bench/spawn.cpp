// bench/spawn — what one external-program launch costs: mproc::exec_file("/bin/true") against the floor,
// a raw posix_spawn() + waitpid(), measured in the same run; for information also a raw fork() + execv()
// + waitpid(), mproc::spawn() with every stream on /dev/null + wait(), and Python's
// subprocess.run(["/bin/true"]) when python3 is on PATH.
//
//   spawn [N = 200] [rounds = 5]
//
// The variants run interleaved, one batch of N launches per variant in each round (in a rotating order),
// so a drift of the machine's speed hits them alike. Each reports, per launch, the median and min–max of
// the wall-clock time over the rounds, and the median CPU time (user + system, parent and children, from
// getrusage). exec_file pays for more than the floor: two pipes (stdout, stderr) read to EOF, the exec
// check, the reaper. Python times itself (interpreter start-up is not counted) after a short warm-up.
// Target: mproc exec_file ≤ 1.3× raw posix_spawn + waitpid (wall clock). An exec costs milliseconds on
// some VMs, so N defaults to 200: five variants × 5 rounds × 200 launches stay well under a minute.
// The target is also printed as an `@row` summary line (bench_util.hpp). Nothing is pinned to a CPU:
// parent and children go where the scheduler puts them. Run it in Release on a quiet machine:
// ./scripts/bench.
#include <spawn.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <string>
#include <system_error>
#include <vector>

#include "bench_util.hpp"
#include "mproc/mproc.hpp"

extern char** environ;

namespace {

using Clock = std::chrono::steady_clock;

constexpr const char* kTrue = "/bin/true";

// One batch's cost per launch, in µs.
struct Cost {
  double wall;
  double cpu;
};

double tv_us(const timeval& tv) {
  return static_cast<double>(tv.tv_sec) * 1e6 + static_cast<double>(tv.tv_usec);
}

// User + system time of this process and of its reaped children, in µs.
double cpu_now_us() {
  rusage self{}, children{};
  ::getrusage(RUSAGE_SELF, &self);
  ::getrusage(RUSAGE_CHILDREN, &children);
  return tv_us(self.ru_utime) + tv_us(self.ru_stime) + tv_us(children.ru_utime) + tv_us(children.ru_stime);
}

// Measures a batch of n: construct it before the batch, call done() after it.
class Meter {
 public:
  explicit Meter(int n) : n_(n), wall0_(Clock::now()), cpu0_(cpu_now_us()) {}
  Cost done() const {
    const double wall = std::chrono::duration<double, std::micro>(Clock::now() - wall0_).count();
    return {wall / n_, (cpu_now_us() - cpu0_) / n_};
  }

 private:
  int n_;
  Clock::time_point wall0_;
  double cpu0_;
};

void reap(pid_t pid, const char* what) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) throw std::system_error(errno, std::system_category(), "waitpid");
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    throw std::runtime_error(
        std::string(what) + ": /bin/true failed: " + mproc::ExitStatus::from_wait_status(status).to_string());
  }
}

// The floor: posix_spawn (glibc's clone(CLONE_VM | CLONE_VFORK)) and waitpid, nothing else.
Cost bench_posix_spawn(int n) {
  char arg0[] = "/bin/true";
  char* const argv[] = {arg0, nullptr};
  const Meter meter(n);
  for (int i = 0; i < n; ++i) {
    pid_t pid = 0;
    const int rc = ::posix_spawn(&pid, kTrue, nullptr, nullptr, argv, environ);
    if (rc != 0) throw std::system_error(rc, std::system_category(), "posix_spawn");
    reap(pid, "posix_spawn");
  }
  return meter.done();
}

// The classic: fork, execv in the child, waitpid.
Cost bench_fork_exec(int n) {
  char arg0[] = "/bin/true";
  char* const argv[] = {arg0, nullptr};
  const Meter meter(n);
  for (int i = 0; i < n; ++i) {
    const pid_t pid = ::fork();
    if (pid < 0) throw std::system_error(errno, std::system_category(), "fork");
    if (pid == 0) {
      ::execv(kTrue, argv);
      ::_exit(127);
    }
    reap(pid, "fork + execv");
  }
  return meter.done();
}

// What a user writes to run a program: exec_file, check the exit code (output captured, here empty).
Cost bench_exec_file(int n) {
  const Meter meter(n);
  for (int i = 0; i < n; ++i) {
    const mproc::ExecResult r = mproc::exec_file(kTrue, {});
    if (r.status.exitcode() != 0)
      throw std::runtime_error("exec_file: /bin/true failed: " + r.status.to_string());
  }
  return meter.done();
}

// spawn with no pipes at all, then wait: the ChildProcess machinery without the capture.
Cost bench_spawn_wait(int n) {
  mproc::SpawnOptions quiet;
  quiet.in = quiet.out = quiet.err = mproc::Stdio::ignore;
  const Meter meter(n);
  for (int i = 0; i < n; ++i) {
    const mproc::ExitStatus st = mproc::spawn(kTrue, {}, quiet).wait();
    if (st.exitcode() != 0) throw std::runtime_error("spawn: /bin/true failed: " + st.to_string());
  }
  return meter.done();
}

// Python prints "<wall µs/launch> <cpu µs/launch>" on its last line.
constexpr const char* kPythonScript = R"(
import resource, subprocess, sys, time
def cpu():
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return (s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime) * 1e6
n = int(sys.argv[1])
for _ in range(min(n, 20)):
    subprocess.run(["/bin/true"])
t, c = time.perf_counter(), cpu()
for _ in range(n):
    r = subprocess.run(["/bin/true"])
    assert r.returncode == 0, r.returncode
print((time.perf_counter() - t) / n * 1e6, (cpu() - c) / n)
)";

Cost bench_python(int n) {
  std::string out = bench::run_python(kPythonScript, std::to_string(n));
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  Cost cost{};
  const std::string last = out.substr(out.find_last_of('\n') + 1);
  if (std::sscanf(last.c_str(), "%lf %lf", &cost.wall, &cost.cpu) != 2) {
    throw std::runtime_error("python3 printed no figures:\n" + out);
  }
  return cost;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t m = v.size() / 2;
  return v.size() % 2 == 1 ? v[m] : (v[m - 1] + v[m]) / 2;
}

struct Variant {
  const char* label;
  std::function<Cost(int)> run;
  std::vector<double> wall, cpu;  // µs/launch, one per round

  double wall_median() const { return median(wall); }
  double wall_min() const { return *std::min_element(wall.begin(), wall.end()); }
  double wall_max() const { return *std::max_element(wall.begin(), wall.end()); }
  double cpu_median() const { return median(cpu); }
};

int parse_positive(const char* s, const char* what) {
  char* end = nullptr;
  const long v = std::strtol(s, &end, 10);
  if (end == s || *end != '\0' || v <= 0 || v > 10'000'000) {
    std::fprintf(stderr, "spawn: bad %s '%s'\nusage: spawn [N] [rounds]\n", what, s);
    std::exit(2);
  }
  return static_cast<int>(v);
}

}  // namespace

int main(int argc, char** argv) try {
  const int n = argc > 1 ? parse_positive(argv[1], "N") : 200;
  const int rounds = argc > 2 ? parse_positive(argv[2], "rounds") : 5;
  const bool python = bench::on_path("python3");

  std::vector<Variant> variants;
  variants.push_back({"raw posix_spawn + waitpid", bench_posix_spawn, {}, {}});
  variants.push_back({"mproc::exec_file", bench_exec_file, {}, {}});
  variants.push_back({"raw fork + execv + waitpid", bench_fork_exec, {}, {}});
  variants.push_back({"mproc::spawn (Stdio::ignore) + wait", bench_spawn_wait, {}, {}});
  if (python) variants.push_back({"Python subprocess.run", bench_python, {}, {}});

  std::printf("spawn: launch + wait of %s, N = %d per round, %d rounds\n", kTrue, n, rounds);
  if (python) {
    std::printf("Python: %d per round (python3 on PATH)\n", n);
  } else {
    std::printf("python3 not on PATH: no Python figures\n");
  }
  std::fflush(stdout);

  // Warm-up: the first launches pay for page faults and mproc's first-use set-up (the reaper).
  const int warm = std::min(n, 30);
  bench_posix_spawn(warm);
  bench_exec_file(warm);
  bench_fork_exec(warm);
  bench_spawn_wait(warm);

  for (int r = 0; r < rounds; ++r) {
    for (std::size_t k = 0; k < variants.size(); ++k) {
      Variant& v = variants[(k + static_cast<std::size_t>(r)) % variants.size()];
      const Cost c = v.run(n);
      v.wall.push_back(c.wall);
      v.cpu.push_back(c.cpu);
    }
  }

  const Variant& raw = variants[0];
  const Variant& mp = variants[1];
  std::printf(
      "\n| variant | wall µs/launch (median) | wall min – max | vs posix_spawn (wall) | CPU µs/launch "
      "(median) | "
      "vs posix_spawn (CPU) |\n|---|---:|---:|---:|---:|---:|\n");
  for (const Variant& v : variants) {
    std::printf("| %s | %.1f | %.1f – %.1f | %.2f× | %.1f | %.2f× |\n", v.label, v.wall_median(),
                v.wall_min(), v.wall_max(), v.wall_median() / raw.wall_median(), v.cpu_median(),
                v.cpu_median() / raw.cpu_median());
  }
  const double ratio = mp.wall_median() / raw.wall_median();
  std::printf(
      "\nratio mproc exec_file/posix_spawn = %.2f× wall clock (target ≤ 1.3×: %s), "
      "%.2f× CPU time\n",
      ratio, ratio <= 1.3 ? "met" : "NOT met", mp.cpu_median() / raw.cpu_median());
  bench::row({"exec_file(/bin/true) vs posix_spawn", bench::figure(bench::stats(mp.wall), "µs"),
              "raw posix_spawn+waitpid: " + bench::figure(bench::stats(raw.wall), "µs"), ratio, "mproc/raw",
              "×", true, 1.3});
  std::printf("ratio mproc spawn+wait/posix_spawn = %.2f×, fork+execv/posix_spawn = %.2f× (wall clock)\n",
              variants[3].wall_median() / raw.wall_median(), variants[2].wall_median() / raw.wall_median());
  if (python) {
    const Variant& py = variants[4];
    std::printf("ratio python/posix_spawn = %.2f×, python/mproc exec_file = %.2f× (wall clock)\n",
                py.wall_median() / raw.wall_median(), py.wall_median() / mp.wall_median());
  }
  // No zombie may be left: every variant reaps what it started.
  const std::size_t zombies = mproc::count_zombies();
  if (zombies != 0) {
    std::fprintf(stderr, "spawn: %zu zombie(s) left\n", zombies);
    return 1;
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "spawn: %s\n", e.what());
  return 1;
}
