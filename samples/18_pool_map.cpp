// 18_pool_map — mproc::Pool, Python's multiprocessing.Pool: a fixed team of worker processes that run
// your function on many inputs. map() cuts the input into chunks, hands them to the workers and returns
// the results in input order. First a warm-up (squares), then a CPU-bound job timed twice: in a plain loop
// and on the pool. With N cores the pool can be up to N times faster (no shared state, no locks).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <numeric>
#include <vector>

#include "mproc/mproc.hpp"

// A task is a plain function (or a lambda without captures): the workers are forked before it is called.
int square(int x) { return x * x; }

// CPU-bound work: how many primes below n, by trial division.
long count_primes_below(long n) {
  long count = 0;
  for (long k = 2; k < n; ++k) {
    bool prime = true;
    for (long d = 2; d * d <= k && prime; ++d) prime = k % d != 0;
    count += prime;
  }
  return count;
}

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

int main() {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  const unsigned workers = std::max(2u, mproc::process_cpu_count());
  mproc::Pool pool(workers);  // forks PoolWorker-1 .. PoolWorker-<workers> now

  std::vector<int> xs(10);
  std::iota(xs.begin(), xs.end(), 0);
  std::printf("map(square, 0..9) ->");
  for (int s : pool.map(square, xs)) std::printf(" %d", s);  // in input order, always
  std::printf("\n");

  std::vector<long> limits(24, 60'000);  // 24 equal jobs
  auto t0 = std::chrono::steady_clock::now();
  std::vector<long> serial;
  for (long n : limits) serial.push_back(count_primes_below(n));  // one core
  const double serial_ms = ms_since(t0);

  t0 = std::chrono::steady_clock::now();
  std::vector<long> parallel = pool.map(count_primes_below, limits);  // all the workers
  const double pool_ms = ms_since(t0);

  std::printf("%zu jobs of count_primes_below(60000), each finds %ld primes\n", limits.size(), serial[0]);
  std::printf("serial loop:       %8.1f ms\n", serial_ms);
  std::printf(
      "pool of %u workers: %8.1f ms (speed-up %.2fx; the ideal is %ux on a machine with that many free "
      "cores)\n",
      workers, pool_ms, serial_ms / pool_ms, workers);
  std::printf("same answers: %s\n", serial == parallel ? "yes" : "no");

  pool.close();  // no more tasks
  pool.join();   // wait for the workers to finish and exit
  std::printf("pool closed and joined, zombies left: %zu\n", mproc::count_zombies());
  return serial == parallel ? 0 : 1;
}
