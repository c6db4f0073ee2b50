// 03_join_timeout_and_is_alive — join(timeout) waits at most that long and says whether the child
// ended; is_alive() asks without waiting. Neither ever leaves a zombie: once the child has ended,
// whichever call notices it reaps it.
#include <chrono>
#include <cstdio>
#include <thread>

#include "mproc/mproc.hpp"

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

long ms_since(Clock::time_point t) {
  return static_cast<long>(std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t).count());
}

int main() {
  mproc::Process worker([] { std::this_thread::sleep_for(600ms); });  // "work" that takes 0.6 s
  worker.name("slow-worker").start();
  std::printf("started %s (pid %d); is_alive() -> %s\n", worker.name().c_str(), *worker.pid(),
              worker.is_alive() ? "true" : "false");

  auto t = Clock::now();
  bool ended = worker.join(0ms);  // a poll: returns at once
  std::printf("join(0ms)   -> %s after %ld ms\n", ended ? "true" : "false", ms_since(t));

  t = Clock::now();
  ended = worker.join(100ms);  // waits 100 ms, then gives up; the child keeps running
  std::printf("join(100ms) -> %s after ~%ld ms; is_alive() -> %s, exitcode: %s\n", ended ? "true" : "false",
              ms_since(t), worker.is_alive() ? "true" : "false", worker.exitcode() ? "set" : "none yet");

  t = Clock::now();
  ended = worker.join(10s);  // the child ends well within this
  std::printf("join(10s)   -> %s after ~%ld ms; is_alive() -> %s, exitcode=%d\n", ended ? "true" : "false",
              ms_since(t), worker.is_alive() ? "true" : "false", worker.exitcode().value_or(-1000));
  std::printf("zombies left: %zu\n", mproc::count_zombies());
  return ended && worker.exitcode() == 0 && mproc::count_zombies() == 0 ? 0 : 1;
}
