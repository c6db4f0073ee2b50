// 24_ipc_child — spawn() with ipc = true, Node's fork(): an extra message channel to a program we
// started, a Connection on both sides (ChildProcess::channel() here, mproc::parent_channel() there).
// This program is both: run without arguments it spawns itself with the argument "child", sends it a few
// requests (an MPROC_CODEC struct) and prints each answer; the child answers until it is told to stop.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <string>
#include <vector>

#include "mproc/mproc.hpp"

using namespace std::chrono_literals;

struct Request {
  std::string op;  // "sum", "max", "upper" or "stop"
  std::vector<long> numbers;
  std::string text;
};
MPROC_CODEC(Request, op, numbers, text);

struct Reply {
  std::string answer;
  pid_t pid;   // who answered
  pid_t ppid;  // and its parent
};
MPROC_CODEC(Reply, answer, pid, ppid);

namespace {

// The child: prints nothing (its stdout is ours, and the parent tells the story); answers until "stop".
int child_main() {
  std::optional<mproc::Connection> parent = mproc::parent_channel();
  if (!parent) {
    std::fprintf(stderr, "child: not started with ipc = true\n");
    return 2;
  }
  const pid_t me = mproc::this_process::pid(), my_parent = mproc::this_process::ppid();
  for (;;) {
    const Request req = parent->recv<Request>();
    std::string answer;
    if (req.op == "sum") {
      answer = std::to_string(std::accumulate(req.numbers.begin(), req.numbers.end(), 0L));
    } else if (req.op == "max") {
      long m = req.numbers.empty() ? 0 : req.numbers.front();
      for (const long v : req.numbers) m = v > m ? v : m;
      answer = std::to_string(m);
    } else if (req.op == "upper") {
      answer = req.text;
      for (char& c : answer) c = (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c;
    } else if (req.op == "stop") {
      parent->send(Reply{"bye", me, my_parent});
      return 0;
    } else {
      answer = "unknown op '" + req.op + "'";
    }
    parent->send(Reply{answer, me, my_parent});
  }
}

std::string describe(const Request& r) {
  std::string s = r.op + "(";
  for (std::size_t i = 0; i < r.numbers.size(); ++i) s += (i ? ", " : "") + std::to_string(r.numbers[i]);
  if (!r.text.empty()) s += "\"" + r.text + "\"";
  return s + ")";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "child") == 0) return child_main();

  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  std::printf("parent (pid %d): parent_channel() here -> %s\n", mproc::this_process::pid(),
              mproc::parent_channel() ? "a channel?!" : "none (we were not spawned with ipc)");

  // Ourselves again, with one argument; stdin is /dev/null, stdout and stderr are shared with us.
  const std::string self = mproc::this_process::exec_path().string();
  mproc::SpawnOptions options;
  options.in = mproc::Stdio::ignore;
  options.out = options.err = mproc::Stdio::inherit;
  options.ipc = true;  // the channel: fd 3 in the child, named by MPROC_IPC_FD
  mproc::ChildProcess child = mproc::spawn(self, {"child"}, options);
  std::printf("parent: spawned %s child (pid %d) with ipc = true\n",
              mproc::this_process::exec_path().filename().c_str(), child.pid());

  mproc::Connection& chan = child.channel();
  const std::vector<Request> requests = {
      {"sum", {1, 2, 3, 4, 5}, ""},
      {"max", {7, -3, 42, 19}, ""},
      {"upper", {}, "hello from the parent"},
      {"stop", {}, ""},
  };
  for (const Request& req : requests) {
    std::printf("parent -> child: %s\n", describe(req).c_str());
    chan.send(req);
    const Reply reply = chan.recv<Reply>();
    std::printf(
        "child  -> parent: %s (from pid %d, %s)\n", reply.answer.c_str(), reply.pid,
        reply.pid == child.pid() && reply.ppid == mproc::this_process::pid() ? "our child" : "a stranger?!");
  }

  const mproc::ExitStatus st = child.wait();
  std::printf("parent: child %s\n", st.to_string().c_str());
  // The child's end closed when it exited (we hold no copy of it), so the channel is at EOF.
  if (!chan.poll(5s)) {
    std::printf("parent: no EOF on the channel within 5 s?!\n");
  } else {
    try {
      chan.recv<Reply>();
      std::printf("parent: one more message?!\n");
    } catch (const mproc::EOFError&) {
      std::printf("parent: channel recv after the end -> EOFError\n");
    }
  }
  std::printf("zombies left: %zu\n", mproc::count_zombies());
  return st.exitcode();
}
