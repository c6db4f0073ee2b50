// 13_pipe_ping_pong — mproc::Pipe, Python's multiprocessing.Pipe: two connected ends that carry whole
// messages (any value the codec knows, here a user struct) between processes. Parent and child bounce a
// ball; the parent closes the end it gave away, so it sees EOFError once the child has exited.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>

#include "mproc/mproc.hpp"

struct Ball {
  int round;
  std::string says;
};
MPROC_CODEC(Ball, round, says);

constexpr int kRounds = 3;

// Runs in the child, with its own copy of one end of the pipe.
void player(mproc::Connection table) {
  for (int i = 0; i < kRounds; ++i) {
    Ball ball = table.recv<Ball>();  // blocks until the parent's message has arrived, whole
    std::printf("  child  (pid %d): got \"%s\" #%d, answering pong\n", ::getpid(), ball.says.c_str(), ball.round);
    table.send(Ball{ball.round, "pong"});
  }
  // Returning ends the child; the kernel closes its end of the pipe.
}

int main() {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // one line at a time, so both processes' lines interleave in order

  auto [mine, theirs] = mproc::Pipe();  // duplex: both ends can send and receive
  mproc::Process child(player, theirs);
  child.start();
  // The child has its own copy of `theirs` (fork duplicated the fd). Close ours, or the parent itself
  // would keep that end open and never see EOF.
  theirs.close();

  for (int i = 1; i <= kRounds; ++i) {
    std::printf("parent (pid %d): sending ping #%d\n", ::getpid(), i);
    mine.send(Ball{i, "ping"});
    Ball back = mine.recv<Ball>();
    std::printf("parent (pid %d): got \"%s\" #%d\n", ::getpid(), back.says.c_str(), back.round);
  }

  // Nothing more will come: poll() waits for a message or EOF, recv() then reports EOF.
  std::printf("parent: poll(5s) -> %s\n", mine.poll(std::chrono::seconds(5)) ? "ready" : "timed out");
  try {
    mine.recv<Ball>();
  } catch (const mproc::EOFError& e) {
    std::printf("parent: recv -> EOFError (%s)\n", e.what());
  }
  child.join();
  std::printf("parent: child exitcode=%d\n", *child.exitcode());
  return child.exitcode() == 0 ? 0 : 1;
}
