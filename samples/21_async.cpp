// 21_async — mproc::async(f, args...): run one call in a freshly forked child process and get its result
// later, like std::async but in another process. Unlike a Pool task, f may capture anything: the child is a
// copy of the parent made right now. You get an mproc::AsyncResult<R>: get() waits for the value,
// get(timeout) gives up with mproc::TimeoutError, an exception in the child comes back as mproc::RemoteError
// and a crashed child as mproc::WorkerLost.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <thread>

#include "mproc/mproc.hpp"

using namespace std::chrono_literals;

int main() {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  const std::string who = "student";
  const int base = 100;

  // 1. A capturing lambda with an argument; the result (a std::string) travels back through the codec.
  auto greeting = mproc::async(
      [who, base](int x) {
        return "hello " + who + ", " + std::to_string(base + x) + " from pid " + std::to_string(::getpid());
      },
      23);
  std::printf("main (pid %d): %s\n", ::getpid(), greeting.get().c_str());

  // 2. A slow call: get(timeout) gives up, the call goes on, a later get() has the value.
  auto slow = mproc::async([] {
    std::this_thread::sleep_for(300ms);
    return 42;
  });
  try {
    slow.get(50ms);
  } catch (const mproc::TimeoutError&) {
    std::printf("slow.get(50ms): mproc::TimeoutError, ready() = %s\n", slow.ready() ? "true" : "false");
  }
  std::printf("slow.get() = %d\n", slow.get());

  // 3. An exception in the child: its type and message come back in a RemoteError.
  auto bad = mproc::async([]() -> int { throw std::invalid_argument("no negative numbers"); });
  try {
    bad.get();
  } catch (const mproc::RemoteError& e) {
    std::printf("bad.get(): mproc::RemoteError: %s: %s\n", e.type_name().c_str(), e.what());
  }

  // 4. A child that dies: WorkerLost says how.
  auto doomed = mproc::async([] { ::_exit(3); });
  try {
    doomed.get();
  } catch (const mproc::WorkerLost& e) {
    std::printf("doomed.get(): mproc::WorkerLost: %s (exitcode %d)\n", e.what(), e.exitcode());
  }
  std::printf("zombies left: %zu\n", mproc::count_zombies());
  return 0;
}
