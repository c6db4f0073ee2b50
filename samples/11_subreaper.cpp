// 11_subreaper — a process that calls mproc::become_subreaper() adopts every orphan below it: detached
// grandchildren re-parent to it instead of init, and become its zombies when they end. mproc's Reaper
// then reaps them too, as a supervisor (systemd, tini, a container's init) must.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include "mproc/posix.hpp"
#include "mproc/process.hpp"
#include "mproc/reaper.hpp"

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
  mproc::become_subreaper();
  std::printf("main: pid %d is a subreaper\n", mproc::posix::getpid());

  int go[2];  // each detached worker waits for one byte, so we can look at them while they run
  if (::pipe(go) != 0) return 1;
  pid_t workers[3];
  for (int i = 0; i < 3; ++i) {
    workers[i] = mproc::spawn_detached([=] {
      ::close(go[1]);
      char c;
      (void)::read(go[0], &c, 1);
      mproc::exit(10 + i);  // an exit code we can recognise
    });
  }
  std::printf("main: started 3 detached workers; their parents exited, so they are orphans\n");
  ps_children("our children now (orphans re-parented to us)");

  (void)::write(go[1], "xxx", 3);  // let all three finish
  for (int i = 0; i < 5000 && mproc::count_zombies() < 3; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  ps_children("after they exited, before reaping");

  const std::size_t reaped = mproc::Reaper::instance().reap();
  std::printf("Reaper::reap() reaped %zu orphans\n", reaped);
  for (pid_t pid : workers) {
    const auto status = mproc::Reaper::instance().status(pid);
    std::printf("  worker %d: %s\n", pid, status ? status->to_string().c_str() : "(no status)");
  }
  ps_children("after reaping");
  ::close(go[0]);
  ::close(go[1]);
  return reaped == 3 && mproc::list_children().empty() ? 0 : 1;
}
