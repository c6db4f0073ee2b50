// bench/process_lifecycle — what one Process costs: start() + join() of a no-op mproc::Process against
// the floor, a raw fork() + _exit(0) + waitpid(), measured in the same run; and Python's
// multiprocessing.Process (start method "fork", no-op target) when python3 is on PATH.
//
//   process_lifecycle [N = 2000] [rounds = 5]
//
// The variants run interleaved, one batch of N per variant in each round (in a rotating order), so a
// drift of the machine's speed hits them alike. Each reports the median and the min–max of its
// per-round µs/process. Target: mproc ≤ 1.3× raw fork+waitpid. Run it in Release: ./scripts/bench.
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
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "mproc/mproc.hpp"

namespace {

using Clock = std::chrono::steady_clock;

double us_per_process(Clock::duration d, int n) {
  return std::chrono::duration<double, std::micro>(d).count() / n;
}

// The floor: the system calls and nothing else.
double bench_raw(int n) {
  const auto t0 = Clock::now();
  for (int i = 0; i < n; ++i) {
    const pid_t pid = ::fork();
    if (pid < 0) throw std::system_error(errno, std::system_category(), "fork");
    if (pid == 0) ::_exit(0);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0) {
      if (errno != EINTR) throw std::system_error(errno, std::system_category(), "waitpid");
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) throw std::runtime_error("raw child failed");
  }
  return us_per_process(Clock::now() - t0, n);
}

// What a user writes: a Process object, start, join, check the exit code.
double bench_mproc(int n) {
  const auto t0 = Clock::now();
  for (int i = 0; i < n; ++i) {
    mproc::Process p([] {});
    p.start();
    p.join();
    if (p.exitcode() != 0) throw std::runtime_error("mproc child failed: " + p.exit_status()->to_string());
  }
  return us_per_process(Clock::now() - t0, n);
}

bool on_path(const char* program) {
  const char* path = std::getenv("PATH");
  if (path == nullptr) return false;
  std::string dirs = path;
  std::size_t begin = 0;
  while (begin <= dirs.size()) {
    std::size_t end = dirs.find(':', begin);
    if (end == std::string::npos) end = dirs.size();
    std::string dir = dirs.substr(begin, end - begin);
    if (dir.empty()) dir = ".";
    if (::access((dir + "/" + program).c_str(), X_OK) == 0) return true;
    begin = end + 1;
  }
  return false;
}

// Python times itself (interpreter start-up is not counted) after a short warm-up, and prints
// µs/process on its last line.
constexpr const char* kPythonScript = R"(
import multiprocessing as mp, sys, time
def noop():
    pass
if __name__ == "__main__":
    ctx = mp.get_context("fork")
    n = int(sys.argv[1])
    for _ in range(min(n, 20)):
        p = ctx.Process(target=noop); p.start(); p.join()
    t = time.perf_counter()
    for _ in range(n):
        p = ctx.Process(target=noop); p.start(); p.join()
        assert p.exitcode == 0, p.exitcode
    print((time.perf_counter() - t) / n * 1e6)
)";

double bench_python(int n) {
  const std::string cmd = "python3 -c '" + std::string(kPythonScript) + "' " + std::to_string(n) + " 2>&1";
  std::fflush(nullptr);
  FILE* pipe = ::popen(cmd.c_str(), "r");
  if (pipe == nullptr) throw std::system_error(errno, std::system_category(), "popen python3");
  std::string out;
  char buf[4096];
  std::size_t got = 0;
  while ((got = std::fread(buf, 1, sizeof buf, pipe)) > 0) out.append(buf, got);
  const int status = ::pclose(pipe);
  if (status != 0) throw std::runtime_error("python3 failed (status " + std::to_string(status) + "):\n" + out);
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return std::stod(out.substr(out.find_last_of('\n') + 1));
}

struct Variant {
  const char* label;
  std::function<double(int)> run;
  std::vector<double> samples;  // µs/process, one per round

  double median() const {
    std::vector<double> s = samples;
    std::sort(s.begin(), s.end());
    const std::size_t m = s.size() / 2;
    return s.size() % 2 == 1 ? s[m] : (s[m - 1] + s[m]) / 2;
  }
  double min() const { return *std::min_element(samples.begin(), samples.end()); }
  double max() const { return *std::max_element(samples.begin(), samples.end()); }
};

int parse_positive(const char* s, const char* what) {
  char* end = nullptr;
  const long v = std::strtol(s, &end, 10);
  if (end == s || *end != '\0' || v <= 0 || v > 10'000'000) {
    std::fprintf(stderr, "process_lifecycle: bad %s '%s'\nusage: process_lifecycle [N] [rounds]\n", what, s);
    std::exit(2);
  }
  return static_cast<int>(v);
}

}  // namespace

int main(int argc, char** argv) try {
  const int n = argc > 1 ? parse_positive(argv[1], "N") : 2000;
  const int rounds = argc > 2 ? parse_positive(argv[2], "rounds") : 5;
  const bool python = on_path("python3");

  std::vector<Variant> variants;
  variants.push_back({"raw fork + _exit + waitpid", bench_raw, {}});
  variants.push_back({"mproc::Process start + join", bench_mproc, {}});
  if (python) variants.push_back({"Python multiprocessing.Process (fork)", bench_python, {}});

  std::printf("process_lifecycle: start + join of a no-op child, N = %d per round, %d rounds%s\n", n, rounds,
              python ? "" : " (python3 not on PATH: no Python figures)");
  std::fflush(stdout);

  // Warm-up: the first forks pay for page faults and mproc's first-use set-up.
  bench_raw(std::min(n, 50));
  bench_mproc(std::min(n, 50));

  for (int r = 0; r < rounds; ++r) {
    for (std::size_t k = 0; k < variants.size(); ++k) {
      Variant& v = variants[(k + static_cast<std::size_t>(r)) % variants.size()];
      v.samples.push_back(v.run(n));
    }
  }

  const double raw = variants[0].median();
  std::printf("\n| variant | µs/process (median) | min – max | vs raw |\n|---|---:|---:|---:|\n");
  for (const Variant& v : variants) {
    std::printf("| %s | %.1f | %.1f – %.1f | %.2f× |\n", v.label, v.median(), v.min(), v.max(),
                v.median() / raw);
  }
  const double ratio = variants[1].median() / raw;
  std::printf("\nratio mproc/raw = %.2f× (target ≤ 1.3×: %s)\n", ratio, ratio <= 1.3 ? "met" : "NOT met");
  if (python) {
    std::printf("ratio python/raw = %.2f×, python/mproc = %.2f×\n", variants[2].median() / raw,
                variants[2].median() / variants[1].median());
  }
  // No zombie may be left: every variant reaps what it started.
  const std::size_t zombies = mproc::count_zombies();
  if (zombies != 0) {
    std::fprintf(stderr, "process_lifecycle: %zu zombie(s) left\n", zombies);
    return 1;
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "process_lifecycle: %s\n", e.what());
  return 1;
}
