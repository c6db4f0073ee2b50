// 16_event_and_barrier — mproc::Event and mproc::Barrier, Python's multiprocessing.Event and Barrier.
// Three workers wait for one Event (the starting signal), then work in three phases in lockstep: nobody
// starts phase p+1 before all have finished phase p. The barrier's action runs once per phase, in the
// process of the last worker to arrive, before anyone is let go. Then a barrier that times out: a
// timeout breaks it for every party (BrokenBarrierError), and reset() makes it usable again.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <vector>

#include "mproc/mproc.hpp"

using namespace std::chrono_literals;

constexpr int kWorkers = 3;
constexpr int kPhases = 3;

int main() {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // one line at a time, also from the children

  mproc::Event start;
  mproc::Value<int> phase(1);
  // The action: the last worker of each phase to arrive runs it.
  mproc::Barrier barrier(kWorkers, [phase]() mutable {
    std::printf("== phase %d complete: all %d workers arrived (action run once, by pid %d)\n", phase.load(),
                kWorkers, ::getpid());
    phase.store(phase.load() + 1);
  });

  std::vector<mproc::Process> workers;
  for (int w = 1; w <= kWorkers; ++w) {
    workers.emplace_back(
        [w](mproc::Event s, mproc::Barrier b, mproc::Value<int> ph) {
          s.wait();  // blocks until main calls set()
          for (int p = 1; p <= kPhases; ++p) {
            std::printf("worker %d: phase %d done (phase counter says %d)\n", w, p, ph.load());
            const std::size_t index = b.wait(30s);
            if (index == 0) std::printf("worker %d: got index 0 in phase %d\n", w, p);
          }
        },
        start, barrier, phase);
    workers.back().start();
  }
  std::printf("main: %d workers started; they wait for the event: is_set() = %s\n", kWorkers,
              start.is_set() ? "true" : "false");
  start.set();
  for (auto& w : workers) w.join();
  std::printf("main: all workers joined after %d phases\n", phase.load() - 1);

  // A barrier for two parties, and only one comes: the timed wait breaks it.
  mproc::Barrier pair(2);
  try {
    pair.wait(200ms);
  } catch (const mproc::BrokenBarrierError& e) {
    std::printf("main: wait(200ms) with 1 of 2 parties: BrokenBarrierError (%s); broken() = %s\n", e.what(),
                pair.broken() ? "true" : "false");
  }
  pair.reset();
  std::printf("main: after reset(): broken() = %s\n", pair.broken() ? "true" : "false");
  mproc::Process partner([](mproc::Barrier b) { b.wait(30s); }, pair);
  partner.start();
  const std::size_t index = pair.wait(30s);
  partner.join();
  std::printf("main: with both parties the barrier passes again (my index %zu)\n", index);
  return 0;
}
