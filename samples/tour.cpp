// tour — mproc in about 30 lines: start processes, watch one that has ended stay a zombie until join()
// reaps it, and print our process tree from /proc along the way. The numbered samples go deeper.
#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

#include "mproc/mproc.hpp"

void tree(const char* when) {
  std::printf("%s\n  %d MainProcess\n", when, mproc::current_process().pid);
  for (const auto& c : mproc::list_children())
    std::printf("  └─ %d %-12s state %c%s\n", c.pid, c.comm.c_str(), c.state,
                c.state == 'Z' ? " (zombie)" : "");
}

int main() {
  std::vector<mproc::Process> sleepers;
  for (int i = 1; i <= 2; ++i)
    sleepers.emplace_back([i] { std::this_thread::sleep_for(std::chrono::milliseconds(300 * i)); });
  for (auto& p : sleepers) p.start();
  mproc::Process quick(
      [] { std::printf("  (quick, pid %d: hello and goodbye)\n", mproc::current_process().pid); });
  quick.name("quick").start();
  for (int i = 0; i < 5000 && mproc::count_zombies() == 0; ++i)  // until quick has ended (at most 5 s)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  tree("quick has ended; nobody has waited for it yet:");
  quick.join();  // reaps it
  std::printf("quick.join(): %s\n", quick.exit_status()->to_string().c_str());
  tree("after join, the zombie is gone:");
  for (auto& p : sleepers) p.join();
  for (auto& p : sleepers) std::printf("%s exitcode=%d\n", p.name().c_str(), *p.exitcode());
  tree("all joined:");
  return mproc::list_children().empty() ? 0 : 1;
}
