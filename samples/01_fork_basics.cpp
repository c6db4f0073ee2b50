// 01_fork_basics — fork() is called once and returns twice: 0 in the new child, the child's pid in the
// parent. Both processes go on from the same line; getpid()/getppid() tell them apart, and the parent
// collects the child's exit status with waitpid().
#include <cstdio>

#include "mproc/posix.hpp"

namespace posix = mproc::posix;

int main() {
  const pid_t parent = posix::getpid();
  std::printf("parent: my pid is %d; calling fork()\n", parent);

  const pid_t pid = posix::fork();  // from here on, two processes run this code
  if (pid == 0) {
    // The child: a copy of the parent, with its own pid.
    std::printf("child:  fork() returned 0; my pid is %d, my parent's pid is %d\n", posix::getpid(),
                posix::getppid());
    std::printf("child:  my parent is the process that called fork(): %s\n",
                posix::getppid() == parent ? "yes" : "NO");
    std::fflush(stdout);  // exit_now() is _exit(): it does not flush stdio for us
    posix::exit_now(3);   // the exit code the parent will read
  }

  // The parent: fork() returned the child's pid. waitpid() blocks until the child ends and reaps it.
  std::printf("parent: fork() returned %d, the child's pid\n", pid);
  const auto result = posix::waitpid(pid);
  std::printf("parent: waitpid(%d) -> pid %d %s\n", pid, result->pid, result->status.to_string().c_str());
  return result->pid == pid && result->status.exited() && result->status.code() == 3 ? 0 : 1;
}
