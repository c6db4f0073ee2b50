// 09_nice_priority — niceness is a process's scheduling priority, from -20 (greedy) to 19 (polite); a
// child inherits its parent's. Here a child lowers its own priority with nice(+10), and both the
// child and the parent read it back with getpriority(); the parent's own priority is unchanged.
#include <unistd.h>

#include <cstdio>

#include "mproc/mproc.hpp"

namespace posix = mproc::posix;

int main() {
  int ready[2], finish[2];  // ready: the child has reniced itself; finish: the parent has looked
  if (::pipe(ready) != 0 || ::pipe(finish) != 0) return 1;
  const int parent_nice = posix::get_priority();
  std::printf("parent: my niceness is %d\n", parent_nice);

  mproc::Process child([=] {
    ::close(ready[0]);
    ::close(finish[1]);
    const int before = posix::get_priority();
    const int after = posix::nice(10);  // +10: lower priority; raising it back would need privilege
    std::printf("child:  niceness %d -> nice(10) -> %d (getpriority says %d)\n", before, after,
                posix::get_priority());
    std::fflush(stdout);
    ::close(ready[1]);  // tell the parent
    char c;
    (void)::read(finish[0], &c, 1);  // stay alive until the parent has read our priority
  });
  child.name("low-priority").start();
  ::close(ready[1]);
  ::close(finish[0]);
  char c;
  while (::read(ready[0], &c, 1) > 0) {
  }

  const int child_nice = posix::get_priority(*child.pid());
  std::printf("parent: getpriority(child %d) = %d; my own niceness is still %d\n", *child.pid(), child_nice,
              posix::get_priority());
  ::close(finish[1]);  // let the child end
  child.join();
  std::printf("parent: child exitcode=%d\n", *child.exitcode());
  const int expected = parent_nice + 10 > 19 ? 19 : parent_nice + 10;
  return child_nice == expected && posix::get_priority() == parent_nice && child.exitcode() == 0 ? 0 : 1;
}
