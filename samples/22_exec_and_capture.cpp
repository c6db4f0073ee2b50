// 22_exec_and_capture — mproc::exec and mproc::exec_file, Node's exec/execFile: run an external program
// to the end and get back what it printed (stdout and stderr apart) and how it ended. exec goes through
// /bin/sh -c; exec_file runs the program itself, found in PATH, with its arguments as they are. A non-zero
// exit is not an exception; a program that cannot be started at all is an mproc::SpawnError.
#include <chrono>
#include <cstdio>
#include <string>

#include "mproc/mproc.hpp"

using namespace std::chrono_literals;

namespace {

// "a\nb\n" -> "a\\nb\\n": captured output printed on one line, so its newlines show.
std::string shown(const std::string& s) {
  std::string out = "\"";
  for (const char c : s) {
    if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out + "\"";
}

}  // namespace

int main() {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);

  // 1. A shell command: both streams captured apart, the exit code in status.
  const mproc::ExecResult sh = mproc::exec("echo out; echo err 1>&2; exit 3");
  std::printf("exec(\"echo out; echo err 1>&2; exit 3\"): out=%s err=%s, %s (exitcode %d)\n",
              shown(sh.out).c_str(), shown(sh.err).c_str(), sh.status.to_string().c_str(),
              sh.status.exitcode());

  // 2. A program found in PATH, with arguments: no shell, so "two words" stays one argument.
  const mproc::ExecResult echo = mproc::exec_file("echo", {"one", "two words", "$HOME"});
  std::printf("exec_file(\"echo\", {\"one\", \"two words\", \"$HOME\"}): out=%s, %s\n",
              shown(echo.out).c_str(), echo.status.to_string().c_str());

  // 3. input is written to the program's stdin, which is then closed.
  mproc::ExecOptions with_input;
  with_input.input = "hello, world\n";
  const mproc::ExecResult upper = mproc::exec_file("tr", {"a-z", "A-Z"}, with_input);
  std::printf("exec_file(\"tr\", {\"a-z\", \"A-Z\"}, input = \"hello, world\\n\"): out=%s\n",
              shown(upper.out).c_str());

  // 4. A timeout: past it the program gets kill_signal (SIGTERM by default) and exec returns.
  const auto t0 = std::chrono::steady_clock::now();
  mproc::ExecOptions with_timeout;
  with_timeout.timeout = 200ms;
  const mproc::ExecResult slow = mproc::exec_file("sleep", {"10"}, with_timeout);
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  std::printf("exec_file(\"sleep\", {\"10\"}, timeout = 200ms): timed_out=%s, %s (signal %d), returned %s\n",
              slow.timed_out ? "true" : "false", slow.status.to_string().c_str(), slow.status.signal(),
              ms < 5s ? "well before 10 s" : "late");

  // 5. A command the shell cannot find is exit code 127 (the shell ran) ...
  const mproc::ExecResult missing_cmd = mproc::exec("no-such-program-mproc-sample 2>/dev/null");
  std::printf("exec(\"no-such-program-mproc-sample\"): %s (the shell's \"not found\")\n",
              missing_cmd.status.to_string().c_str());
  // ... while a program exec_file cannot start is a SpawnError, whose code() is the errno.
  try {
    mproc::exec_file("no-such-program-mproc-sample", {});
    std::printf("exec_file(\"no-such-program-mproc-sample\"): started?!\n");
  } catch (const mproc::SpawnError& e) {
    std::printf("exec_file(\"no-such-program-mproc-sample\"): mproc::SpawnError: code %d (%s): %s\n",
                e.code().value(), e.code().message().c_str(), e.what());
  }
  std::printf("zombies left: %zu\n", mproc::count_zombies());
  return 0;
}
