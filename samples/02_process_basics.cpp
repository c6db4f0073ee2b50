// 02_process_basics — mproc::Process, Python's multiprocessing.Process: give it a target and its
// arguments, start() forks a child that runs target(args...), join() waits for it; name, pid and
// exitcode describe it. The target's return means exit code 0; mproc::exit(n) ends the child with n.
#include <unistd.h>

#include <cstdio>
#include <string>

#include "mproc/mproc.hpp"

void greet(const std::string& who, int times) {
  const mproc::ProcessInfo me = mproc::current_process();
  for (int i = 1; i <= times; ++i) {
    std::printf("  [%s, pid %d] hello, %s (%d/%d)\n", me.name.c_str(), me.pid, who.c_str(), i, times);
  }
}

int main() {
  mproc::Process p(greet, std::string("world"), 2);  // arguments are copied now, like std::thread
  std::printf("before start: name=%s, pid=%s, alive=%s\n", p.name().c_str(), p.pid() ? "set" : "none",
              p.is_alive() ? "yes" : "no");

  p.start();
  std::printf("started %s as pid %d (parent pid %d)\n", p.name().c_str(), *p.pid(), ::getpid());
  p.join();
  std::printf("after join: %s exitcode=%d (%s)\n", p.name().c_str(), *p.exitcode(),
              p.exit_status()->to_string().c_str());

  // A named process that chooses its own exit code.
  mproc::Process q([] {
    std::printf("  [%s] finishing with mproc::exit(7)\n", mproc::current_process().name.c_str());
    mproc::exit(7);
  });
  q.name("worker-7").start();
  q.join();
  std::printf("after join: %s exitcode=%d (%s)\n", q.name().c_str(), *q.exitcode(),
              q.exit_status()->to_string().c_str());
  return p.exitcode() == 0 && q.exitcode() == 7 ? 0 : 1;
}
