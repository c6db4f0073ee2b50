// 04_zombie — a child that has ended but was not yet waited for is a zombie: ps shows it in state Z,
// <defunct>. It holds no memory, only its process-table slot and exit status, kept for its parent;
// waitpid() collects the status and the zombie is gone. A parent that never waits leaks these slots.
#include <chrono>
#include <cstdio>
#include <thread>

#include "mproc/posix.hpp"
#include "mproc/reaper.hpp"

namespace posix = mproc::posix;

// Our children, as `ps -o pid,ppid,stat,comm --ppid <us>` would show them (read from /proc).
void ps_children(const char* when) {
  std::printf("%s:\n    PID   PPID S COMMAND\n", when);
  const auto children = mproc::list_children();
  for (const mproc::ChildEntry& c : children) {
    std::printf("  %5d  %5d %c %s%s\n", c.pid, c.ppid, c.state, c.comm.c_str(),
                c.state == 'Z' ? " <defunct>" : "");
  }
  if (children.empty()) std::printf("  (no children)\n");
}

int main() {
  const pid_t pid = posix::fork();
  if (pid == 0) posix::exit_now(0);  // the child ends at once
  std::printf("forked child %d; it exits at once, and we do not wait for it yet\n", pid);

  // The child needs a moment to finish exiting. Watch /proc until it shows up as a zombie (bounded).
  for (int i = 0; i < 5000 && mproc::count_zombies() == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  ps_children("our children before waitpid");
  std::printf("zombies: %zu\n", mproc::count_zombies());

  const auto result = posix::waitpid(pid);  // reap: read the status, free the slot
  std::printf("waitpid(%d) -> %s\n", result->pid, result->status.to_string().c_str());
  ps_children("our children after waitpid");
  std::printf("zombies: %zu\n", mproc::count_zombies());
  return mproc::list_children().empty() ? 0 : 1;
}
