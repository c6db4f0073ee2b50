// 15_locks_and_values — mproc::Value and mproc::Lock, Python's multiprocessing.Value and Lock: four
// processes each add 1 to a shared counter many times. A read-modify-write is atomic only with the lock
// held around all of it; without that, increments made at the same moment overwrite each other and
// updates are lost, exactly as with Python's `counter.value += 1`. (A process preempted between its load
// and its store loses every increment the others made meanwhile: one CPU is enough to lose updates.)
#include <sched.h>
#include <unistd.h>

#include <cstdio>
#include <functional>
#include <mutex>
#include <vector>

#include "mproc/mproc.hpp"

constexpr int kProcesses = 4;

// Start kProcesses children running increment(counter) n times, all released at the same
// instant, and return the final count. The Semaphore counts the children that are ready; the Event is
// the starting gun. The children spin on is_set() instead of sleeping in wait(): a fork takes longer
// than the work, and processes woken together tend to be run one after another on the waker's CPU, so
// only spinning (running) children really start at the same time, on every CPU.
long run(bool with_lock, long n, void (*increment)(mproc::Value<long>&)) {
  mproc::Value<long> counter(0, with_lock);
  mproc::Semaphore ready(0);
  mproc::Event go;
  std::vector<mproc::Process> workers;
  for (int i = 0; i < kProcesses; ++i) {
    workers.emplace_back(
        [increment, n](mproc::Value<long> c, mproc::Semaphore r, mproc::Event g) {
          r.release();
          while (!g.is_set()) {
          }
          for (long k = 0; k < n; ++k) increment(c);
        },
        counter, ready, go);
    workers.back().start();
  }
  for (int i = 0; i < kProcesses; ++i) ready.acquire();
  go.set();
  for (auto& w : workers) w.join();
  return counter.load();
}

void report(const char* how, long n, long total) {
  std::printf("%s\n  %d x %ld increments: total %ld of %ld -> lost %ld updates\n", how, kProcesses, n, total,
              kProcesses * n, kProcesses * n - total);
}

int main() {
  std::printf("%d processes increment one shared counter at the same time\n", kProcesses);

  // The same increment in all three runs: read, a pause, write back. sched_yield() widens the window
  // between the read and the write so that the race shows on any machine, busy or idle: it stands for
  // whatever can happen between two instructions (preemption, a page fault, another CPU writing).
  constexpr long n = 10'000;

  // 1. No lock at all: Value<long>(0, false). load() and store() are single atomic accesses, but another
  //    process can store between our load and our store.
  report("1. without a lock (Value(0, false)): load, sched_yield, store", n,
         run(false, n, [](mproc::Value<long>& c) {
           const long v = c.load();
           ::sched_yield();
           c.store(v + 1);
         }));

  // 2. A Value with its lock, taken separately by load() and by store(): still two steps.
  report("2. load() and store() each take the lock, the increment does not", n,
         run(true, n, [](mproc::Value<long>& c) {
           const long v = c.load();
           ::sched_yield();
           c.store(v + 1);
         }));

  // 3. The lock held around the whole increment (Python: `with counter.get_lock(): counter.value += 1`).
  //    load() and store() see that this thread holds the lock and do not take it again.
  report("3. std::lock_guard on get_lock() around the whole increment", n, run(true, n, [](mproc::Value<long>& c) {
           std::lock_guard guard(c.get_lock());
           const long v = c.load();
           ::sched_yield();
           c.store(v + 1);
         }));
  return 0;
}
