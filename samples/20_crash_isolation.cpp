// 20_crash_isolation — a task that crashes its worker process (here a segmentation fault) does not take
// the pool down. Only that task fails, with mproc::WorkerLost saying which worker died and how; the pool
// starts a replacement worker and keeps serving. (Python's multiprocessing.Pool waits forever for the
// lost result in this situation; concurrent.futures' ProcessPoolExecutor marks the whole pool broken.)
#include <sys/resource.h>

#include <csignal>
#include <cstdio>
#include <numeric>
#include <vector>

#include "mproc/mproc.hpp"

// Crashes on 13, like a bug that only some inputs trigger.
int risky(int x) {
  if (x == 13) {
    std::signal(SIGSEGV, SIG_DFL);  // (a sanitizer build catches SIGSEGV itself; let it kill us)
    std::raise(SIGSEGV);            // what dereferencing a bad pointer would do
  }
  return x * x;
}

int main() {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  mproc::PoolOptions options;
  options.processes = 2;
  // The initializer runs once in every worker, replacements included: no core files, please.
  options.initializer = [] {
    rlimit no_core{0, 0};
    ::setrlimit(RLIMIT_CORE, &no_core);
  };
  mproc::Pool pool(options);

  // imap gives the results one by one, in order; a failed item throws, and the next one carries on.
  auto results = pool.imap(risky, std::vector<int>{10, 11, 12, 13, 14, 15});
  for (int x = 10; x <= 15; ++x) {
    try {
      std::printf("risky(%d) = %d\n", x, results.next().value());
    } catch (const mproc::WorkerLost& e) {
      std::printf("risky(%d) failed: mproc::WorkerLost: %s (exitcode %d)\n", x, e.what(), e.exitcode());
    }
  }

  // The pool has replaced the dead worker and works as before.
  std::vector<int> xs(100);
  std::iota(xs.begin(), xs.end(), 20);
  const auto squares = pool.map(risky, xs);
  std::printf("after the crash: map over 100 more inputs gave %zu results, the last %d\n", squares.size(),
              squares.back());

  // map() reports the crash too: it throws the error of the first failed input.
  try {
    pool.map(risky, std::vector<int>{12, 13, 14});
  } catch (const mproc::WorkerLost& e) {
    std::printf("map over {12, 13, 14}: mproc::WorkerLost: %s\n", e.what());
  }
  pool.close();
  pool.join();
  std::printf("pool closed and joined, zombies left: %zu\n", mproc::count_zombies());
  return 0;
}
