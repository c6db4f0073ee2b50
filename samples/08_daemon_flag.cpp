// 08_daemon_flag — what happens to running children when the parent's main() returns, as in Python:
// daemon children are terminated (SIGTERM), non-daemon children are waited for. Here main returns
// while both still run: the daemon "ticker" is stopped, the non-daemon "worker" finishes its work.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include "mproc/mproc.hpp"

using namespace std::chrono_literals;

int ready[2];  // the ticker says "my SIGTERM handler is installed" by closing its write end

// Runs in the ticker when the parent's exit terminates it: say so (write(2) is async-signal-safe;
// printf is not), then die of SIGTERM as the default action would.
void on_sigterm(int) {
  const char msg[] = "ticker: got SIGTERM: my parent is exiting and I am a daemon\n";
  (void)::write(STDOUT_FILENO, msg, sizeof msg - 1);
  ::signal(SIGTERM, SIG_DFL);
  ::raise(SIGTERM);
}

void ticker() {
  ::signal(SIGTERM, on_sigterm);
  for (int tick = 1;; ++tick) {  // runs forever: only its parent's exit ends it
    std::printf("ticker: tick %d\n", tick);
    std::fflush(stdout);
    if (tick == 1) ::close(ready[1]);  // handler installed, first tick printed: the parent may go on
    std::this_thread::sleep_for(100ms);
  }
}

void worker() {
  for (int step = 1; step <= 3; ++step) {
    std::this_thread::sleep_for(200ms);
    std::printf("worker: step %d/3 done\n", step);
    std::fflush(stdout);
  }
  std::printf("worker: all work done, exiting normally\n");
}

int main() {
  if (::pipe(ready) != 0) return 1;
  mproc::Process t(ticker);
  t.name("ticker").daemon(true).start();
  ::close(ready[1]);
  char c;
  while (::read(ready[0], &c, 1) > 0) {
  }  // EOF: the ticker is ticking with its handler in place
  ::close(ready[0]);

  mproc::Process w(worker);
  w.name("worker").start();  // daemon(false) is the default

  std::printf("main: started ticker (daemon, pid %d) and worker (non-daemon, pid %d)\n", *t.pid(), *w.pid());
  std::printf(
      "main: returning from main() without join(): the ticker will be terminated, the worker "
      "waited for\n");
  std::fflush(stdout);
  return 0;  // the Process objects are destroyed here: the daemon is terminated, the worker is
             // handed to the reaper, and at exit mproc joins it before the process ends
}
