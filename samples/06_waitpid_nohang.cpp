// 06_waitpid_nohang — waitpid(pid, WNOHANG) asks "has it ended?" without blocking: nullopt while the
// child runs, its status once it has ended (and it is reaped by that call). A parent can poll like this
// between units of its own work instead of blocking in waitpid().
#include <chrono>
#include <cstdio>
#include <thread>

#include "mproc/posix.hpp"
#include "mproc/reaper.hpp"

namespace posix = mproc::posix;
using namespace std::chrono_literals;

int main() {
  const pid_t pid = posix::fork();
  if (pid == 0) {
    std::this_thread::sleep_for(300ms);  // the child's "work"
    posix::exit_now(5);
  }
  std::printf("forked child %d; it works for 0.3 s and exits with code 5\n", pid);

  long sum = 0;
  for (int unit = 1; unit <= 1000; ++unit) {
    if (auto result = posix::waitpid(pid, /*nohang=*/true)) {
      std::printf("poll %d: child %d ended: %s; the parent did %d units of work meanwhile (sum %ld)\n", unit,
                  result->pid, result->status.to_string().c_str(), unit - 1, sum);
      std::printf("zombies left: %zu\n", mproc::count_zombies());
      return result->status.code() == 5 && mproc::count_zombies() == 0 ? 0 : 1;
    }
    std::printf("poll %d: child still running; doing a unit of the parent's own work\n", unit);
    for (int i = 0; i < 1000; ++i) sum += i % 7;  // the parent's work: a little computation,
    std::this_thread::sleep_for(50ms);            // and a pause so the output stays short
  }
  std::printf("the child did not end in time\n");
  return 1;
}
