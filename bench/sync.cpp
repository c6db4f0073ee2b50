// bench/sync — what an mproc::Lock acquire + release costs, against the floor: a raw robust,
// process-shared pthread mutex in anonymous shared memory (what Lock is built on), measured in the same
// run; and Python's multiprocessing.Lock when python3 is on PATH.
//
//   sync [N = 1000000] [rounds = 5]
//
// Two scenarios:
//   uncontended  one process, N acquire + release pairs in a loop;
//   contended    two processes (forked, released together by a start flag they spin on), N/2 pairs
//                each on the same lock; the time is from the first start to the last finish, per pair.
// The variants run interleaved, one batch per variant and scenario in each round (in a rotating order),
// so a drift of the machine's speed hits them alike; each reports the median and the min–max of its
// per-round ns/pair. Python runs min(N, 200000) pairs per round. Target: mproc within 1.5× of the raw
// mutex in both scenarios, each also printed as an `@row` summary line (bench_util.hpp). Nothing is
// pinned to a CPU: the two contending processes go where the scheduler puts them (on 2 cores, usually
// one each). Run it in Release: ./scripts/bench.
#include <pthread.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <new>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include "bench_util.hpp"
#include "mproc/mproc.hpp"

namespace {

using Clock = std::chrono::steady_clock;

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

// The floor: a robust, process-shared pthread mutex in anonymous shared memory.
class RawMutex {
 public:
  RawMutex() {
    void* p = ::mmap(nullptr, sizeof(pthread_mutex_t), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::system_error(errno, std::system_category(), "mmap");
    m_ = static_cast<pthread_mutex_t*>(p);
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(m_, &a);
    pthread_mutexattr_destroy(&a);
  }
  ~RawMutex() { ::munmap(m_, sizeof(pthread_mutex_t)); }
  RawMutex(const RawMutex&) = delete;
  RawMutex& operator=(const RawMutex&) = delete;
  void lock() {
    if (int rc = pthread_mutex_lock(m_); rc != 0) throw std::system_error(rc, std::system_category(), "lock");
  }
  void unlock() { pthread_mutex_unlock(m_); }

 private:
  pthread_mutex_t* m_;
};

template <class L>
double uncontended(L& lock, int n) {
  const auto t0 = now_ns();
  for (int i = 0; i < n; ++i) {
    lock.lock();
    lock.unlock();
  }
  return static_cast<double>(now_ns() - t0) / n;
}

// Start and finish times of the two contending children, and the start flag, in shared memory.
struct Race {
  std::atomic<int> ready{0};
  std::atomic<int> go{0};
  std::atomic<std::int64_t> start[2];
  std::atomic<std::int64_t> end[2];
};

// Two raw forked children, n/2 pairs each, released together; ns per pair over the whole race.
template <class L>
double contended(L& lock, int n) {
  void* mem = ::mmap(nullptr, sizeof(Race), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) throw std::system_error(errno, std::system_category(), "mmap");
  Race* race = new (mem) Race();
  const int each = n / 2;
  pid_t pids[2];
  std::fflush(nullptr);
  for (int k = 0; k < 2; ++k) {
    pids[k] = ::fork();
    if (pids[k] < 0) throw std::system_error(errno, std::system_category(), "fork");
    if (pids[k] == 0) {
      race->ready.fetch_add(1);
      while (race->go.load() == 0) {
      }
      race->start[k].store(now_ns());
      for (int i = 0; i < each; ++i) {
        lock.lock();
        lock.unlock();
      }
      race->end[k].store(now_ns());
      ::_exit(0);
    }
  }
  while (race->ready.load() < 2) {
  }
  race->go.store(1);
  for (pid_t pid : pids) {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0) {
      if (errno != EINTR) throw std::system_error(errno, std::system_category(), "waitpid");
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) throw std::runtime_error("contending child failed");
  }
  const auto t = std::max(race->end[0].load(), race->end[1].load()) - std::min(race->start[0].load(), race->start[1].load());
  ::munmap(mem, sizeof(Race));
  return static_cast<double>(t) / (2.0 * each);
}

// Python measures itself the same way (a warm-up, then the loop; contended: two forked processes
// released by an Event, times from time.monotonic_ns, the same clock as ours) and prints ns/pair.
constexpr const char* kPythonScript = R"(
import multiprocessing as mp, sys, time
def loop(lock, n):
    for _ in range(n):
        lock.acquire(); lock.release()
def racer(lock, n, go, times, k):
    go.wait()
    times[2 * k] = time.monotonic_ns()
    loop(lock, n)
    times[2 * k + 1] = time.monotonic_ns()
if __name__ == "__main__":
    ctx = mp.get_context("fork")
    n, mode = int(sys.argv[1]), sys.argv[2]
    lock = ctx.Lock()
    loop(lock, min(n, 1000))
    if mode == "uncontended":
        t = time.monotonic_ns(); loop(lock, n); print((time.monotonic_ns() - t) / n)
    else:
        go, times = ctx.Event(), ctx.Array("q", 4, lock=False)
        ps = [ctx.Process(target=racer, args=(lock, n // 2, go, times, k)) for k in range(2)]
        for p in ps: p.start()
        go.set()
        for p in ps: p.join(); assert p.exitcode == 0, p.exitcode
        print((max(times[1], times[3]) - min(times[0], times[2])) / (2 * (n // 2)))
)";

double bench_python(int n, const char* mode) {
  std::string out = bench::run_python(kPythonScript, std::to_string(n) + " " + mode);
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return std::stod(out.substr(out.find_last_of('\n') + 1));
}

struct Variant {
  std::string label;
  std::function<double(int)> run;
  std::vector<double> samples;  // ns per acquire+release pair, one per round

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
  if (end == s || *end != '\0' || v <= 0 || v > 1'000'000'000) {
    std::fprintf(stderr, "sync: bad %s '%s'\nusage: sync [N] [rounds]\n", what, s);
    std::exit(2);
  }
  return static_cast<int>(v);
}

}  // namespace

int main(int argc, char** argv) try {
  const int n = argc > 1 ? parse_positive(argv[1], "N") : 1'000'000;
  const int rounds = argc > 2 ? parse_positive(argv[2], "rounds") : 5;
  const bool python = bench::on_path("python3");
  const int python_n = std::min(n, 200'000);

  RawMutex raw;
  mproc::Lock lock;

  // Index 0/1: uncontended raw/mproc; 2/3: contended raw/mproc; then Python's, if any.
  std::vector<Variant> variants;
  variants.push_back({"uncontended: raw robust pshared pthread mutex", [&](int k) { return uncontended(raw, k); }, {}});
  variants.push_back({"uncontended: mproc::Lock", [&](int k) { return uncontended(lock, k); }, {}});
  variants.push_back({"contended (2 processes): raw robust pshared pthread mutex", [&](int k) { return contended(raw, k); }, {}});
  variants.push_back({"contended (2 processes): mproc::Lock", [&](int k) { return contended(lock, k); }, {}});
  if (python) {
    variants.push_back({"uncontended: Python multiprocessing.Lock",
                        [python_n](int) { return bench_python(python_n, "uncontended"); }, {}});
    variants.push_back({"contended (2 processes): Python multiprocessing.Lock",
                        [python_n](int) { return bench_python(python_n, "contended"); }, {}});
  }

  std::printf("sync: Lock acquire + release, N = %d pairs per round (contended: N/2 per process), %d rounds\n", n,
              rounds);
  if (python) {
    std::printf("Python: %d pairs per round (python3 on PATH)\n", python_n);
  } else {
    std::printf("python3 not on PATH: no Python figures\n");
  }
  std::fflush(stdout);

  // Warm-up: page faults, the lock's first use, the fork path.
  uncontended(raw, std::min(n, 10'000));
  uncontended(lock, std::min(n, 10'000));
  contended(raw, std::min(n, 10'000));
  contended(lock, std::min(n, 10'000));

  for (int r = 0; r < rounds; ++r) {
    for (std::size_t k = 0; k < variants.size(); ++k) {
      Variant& v = variants[(k + static_cast<std::size_t>(r)) % variants.size()];
      v.samples.push_back(v.run(n));
    }
  }

  auto floor_of = [&](std::size_t i) { return variants[i].label.rfind("uncontended", 0) == 0 ? variants[0].median() : variants[2].median(); };
  std::printf("\n| variant | ns per acquire+release (median) | min – max | vs raw |\n|---|---:|---:|---:|\n");
  for (std::size_t i = 0; i < variants.size(); ++i) {
    const Variant& v = variants[i];
    std::printf("| %s | %.1f | %.1f – %.1f | %.2f× |\n", v.label.c_str(), v.median(), v.min(), v.max(),
                v.median() / floor_of(i));
  }
  const double ru = variants[1].median() / variants[0].median();
  const double rc = variants[3].median() / variants[2].median();
  std::printf("\nratio mproc/raw uncontended = %.2f× (target ≤ 1.5×: %s)\n", ru, ru <= 1.5 ? "met" : "NOT met");
  std::printf("ratio mproc/raw contended   = %.2f× (target ≤ 1.5×: %s)\n", rc, rc <= 1.5 ? "met" : "NOT met");
  if (python) {
    std::printf("ratio python/mproc uncontended = %.1f×, contended = %.1f×\n", variants[4].median() / variants[1].median(),
                variants[5].median() / variants[3].median());
  }

  auto fig = [&](std::size_t i) { return bench::figure(bench::stats(variants[i].samples), "ns/pair"); };
  bench::row({"Lock acquire+release, uncontended", fig(1), "raw robust pshared pthread mutex: " + fig(0), ru,
              "mproc/raw", "×", true, 1.5});
  bench::row({"Lock acquire+release, contended (2 processes)", fig(3),
              "raw robust pshared pthread mutex: " + fig(2), rc, "mproc/raw", "×", true, 1.5});
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "sync: %s\n", e.what());
  return 1;
}
