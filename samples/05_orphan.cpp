// 05_orphan — when a parent exits before its child, the child is an orphan and the kernel gives it a
// new parent: init (pid 1), or the nearest ancestor that declared itself a "subreaper". This program
// makes itself a subreaper (mproc::become_subreaper()), so the orphan lands here, where we can reap it.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include "mproc/posix.hpp"
#include "mproc/reaper.hpp"

namespace posix = mproc::posix;

int main() {
  mproc::become_subreaper();
  const pid_t top = posix::getpid();
  std::printf("main:   pid %d, a subreaper: orphans below us re-parent to us\n", top);

  int ready[2];  // the orphan-to-be tells its parent "I have seen you" through this pipe
  if (::pipe(ready) != 0) return 1;

  const pid_t parent = posix::fork();
  if (parent == 0) {
    // The middle process: start a child, wait until it has noted its parent, then exit first.
    const pid_t child = posix::fork();
    if (child == 0) {
      ::close(ready[0]);
      const pid_t first = posix::getppid();
      std::printf("child:  pid %d, my parent is %d\n", posix::getpid(), first);
      std::fflush(stdout);
      ::close(ready[1]);  // EOF for the parent: "go ahead and exit"
      // Wait (bounded) until the kernel re-parents us; it happens as our parent exits.
      for (int i = 0; i < 5000 && posix::getppid() == first; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
      const pid_t now = posix::getppid();
      std::printf("child:  my parent %d is gone; my parent is now %d (%s)\n", first, now,
                  now == top ? "main, the subreaper" : "NOT main");
      std::fflush(stdout);
      posix::exit_now(now == top ? 0 : 1);
    }
    ::close(ready[1]);
    char c;
    while (::read(ready[0], &c, 1) > 0) {
    }
    std::printf("parent: pid %d, exiting before my child %d\n", posix::getpid(), child);
    std::fflush(stdout);
    posix::exit_now(0);  // no waitpid for the child: it becomes an orphan
  }
  ::close(ready[0]);
  ::close(ready[1]);

  // Reap the middle process; then the orphan, which is our child now, is found by wait() for any child.
  const auto p = posix::waitpid(parent);
  std::printf("main:   reaped the parent %d (%s)\n", p->pid, p->status.to_string().c_str());
  const auto orphan = posix::wait();
  std::printf("main:   reaped the orphan %d (%s)\n", orphan.pid, orphan.status.to_string().c_str());
  std::printf("main:   children left: %zu\n", mproc::list_children().size());
  return orphan.status.exited() && orphan.status.code() == 0 && mproc::list_children().empty() ? 0 : 1;
}
