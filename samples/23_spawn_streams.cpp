// 23_spawn_streams — mproc::spawn, Node's child_process.spawn: start a program and talk to it through its
// stdin, stdout and stderr while it runs. Here we feed `sort` a few lines, close its stdin so it sees EOF
// and prints, read the sorted lines back one by one, and wait for it. Then a program that writes to both
// streams, read whole with read_all_stdout / read_all_stderr.
#include <cstdio>
#include <string>

#include "mproc/mproc.hpp"

int main() {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);

  // 1. sort: its stdin, stdout and stderr are pipes to us (the default).
  mproc::ChildProcess sorter = mproc::spawn("sort", {});
  std::printf("spawned sort (pid %d), running() = %s\n", sorter.pid(), sorter.running() ? "true" : "false");
  for (const char* fruit : {"pear", "apple", "fig", "banana", "cherry"}) {
    std::printf("  write: %s\n", fruit);
    sorter.write(std::string(fruit) + "\n");
  }
  sorter.close_stdin();  // sort reads to EOF before it prints anything
  std::printf("close_stdin(); reading the answer:\n");
  while (std::optional<std::string> line = sorter.read_line_stdout()) {
    std::printf("  read:  %s\n", line->c_str());
  }
  const mproc::ExitStatus st = sorter.wait();
  std::printf("sort: %s, running() = %s\n", st.to_string().c_str(), sorter.running() ? "true" : "false");

  // 2. Both streams at once, read whole after the end: nothing is lost, the pipes never fill up.
  mproc::SpawnOptions no_stdin;
  no_stdin.in = mproc::Stdio::ignore;  // /dev/null: the program reads nothing
  mproc::ChildProcess noisy = mproc::spawn(
      "/bin/sh", {"-c", "echo to stdout; echo to stderr 1>&2; echo again to stdout; exit 4"}, no_stdin);
  const mproc::ExitStatus noisy_st = noisy.wait();  // waits, keeping both streams in memory meanwhile
  const std::string out = noisy.read_all_stdout();
  const std::string err = noisy.read_all_stderr();
  std::printf("sh: %s; read_all_stdout() gave %zu bytes, read_all_stderr() gave %zu bytes:\n",
              noisy_st.to_string().c_str(), out.size(), err.size());
  std::printf("stdout:\n%sstderr:\n%s", out.c_str(), err.c_str());

  // 3. Misuse is a UsageError: stdin of `noisy` is /dev/null, not a pipe.
  try {
    noisy.write("x");
  } catch (const mproc::UsageError& e) {
    std::printf("write() to a stdin that is not a pipe: mproc::UsageError: %s\n", e.what());
  }
  std::printf("zombies left: %zu\n", mproc::count_zombies());
  return 0;
}
