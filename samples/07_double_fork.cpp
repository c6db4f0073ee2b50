// 07_double_fork — the classic way to start a process you will never wait for: fork a child that forks
// the real worker and exits at once. We reap that middle child immediately; the grandchild is orphaned,
// re-parented to init (or the nearest subreaper), and is never our child, so never our zombie.
// mproc::spawn_detached() does exactly this.
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "mproc/posix.hpp"
#include "mproc/reaper.hpp"

// The parent pid of any process, from /proc/<pid>/stat ("pid (comm) state ppid ...").
pid_t ppid_of(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(stat, line);
  const auto after_comm = line.rfind(')');
  if (after_comm == std::string::npos) return -1;
  char state = 0;
  int ppid = -1;
  std::sscanf(line.c_str() + after_comm + 1, " %c %d", &state, &ppid);
  return ppid;
}

int main() {
  int go[2], done[2];  // go: we let the grandchild finish; done: closes when the grandchild has exited
  if (::pipe(go) != 0 || ::pipe(done) != 0) return 1;
  const pid_t me = mproc::posix::getpid();

  const pid_t grandchild = mproc::spawn_detached([=] {
    ::close(go[1]);
    ::close(done[0]);
    char c;
    (void)::read(go[0], &c, 1);
    std::printf("grandchild %d: still running after spawn_detached() returned; my parent is %d, not %d\n",
                mproc::posix::getpid(), mproc::posix::getppid(), me);
    std::fflush(stdout);
  });  // exits 0 when the lambda returns
  ::close(go[0]);
  ::close(done[1]);

  std::printf("main %d: spawn_detached() returned grandchild %d; its parent is %d\n", me, grandchild,
              ppid_of(grandchild));
  std::printf("main %d: my children: %zu (the middle child was reaped at once), zombies: %zu\n", me,
              mproc::list_children().size(), mproc::count_zombies());

  std::fflush(stdout);           // our lines first, then the grandchild's
  (void)::write(go[1], "x", 1);  // let the grandchild go on
  char c;
  while (::read(done[0], &c, 1) > 0) {
  }  // EOF: the grandchild has exited (its new parent reaps it, not us)
  std::printf("main %d: the grandchild has finished; my children: %zu, zombies: %zu\n", me,
              mproc::list_children().size(), mproc::count_zombies());
  return mproc::list_children().empty() && ppid_of(grandchild) != me ? 0 : 1;
}
