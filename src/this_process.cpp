// this_process: Node's `process` object. The signal part uses the self-pipe trick: the handler only
// write()s the signal number (async-signal-safe) and a dispatcher thread runs the callbacks, so they
// may lock, allocate and log. A signalfd would need the signal blocked in every thread of the program,
// which a library cannot guarantee.
#include "mproc/this_process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "mproc/error.hpp"
#include "posix/fd.hpp"
#include "runtime.hpp"

extern char** environ;

namespace mproc::this_process {

namespace px = detail::posix;

pid_t pid() { return ::getpid(); }
pid_t ppid() { return ::getppid(); }

std::vector<std::string> argv() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  if (!in) px::throw_errno(ENOENT, "open(/proc/self/cmdline)");
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start < all.size()) {
    std::size_t end = all.find('\0', start);
    if (end == std::string::npos) end = all.size();
    out.push_back(all.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

std::filesystem::path exec_path() {
  std::error_code ec;
  auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) throw std::system_error(ec, "readlink(/proc/self/exe)");
  return p;
}

std::filesystem::path cwd() { return std::filesystem::current_path(); }

void chdir(const std::filesystem::path& dir) {
  if (::chdir(dir.c_str()) != 0) px::throw_errno(("chdir(" + dir.string() + ")").c_str());
}

std::optional<std::string> getenv(std::string_view name) {
  std::string n(name);
  const char* v = ::getenv(n.c_str());
  if (!v) return std::nullopt;
  return std::string(v);
}

void setenv(std::string_view name, std::string_view value) {
  std::string n(name), v(value);
  if (::setenv(n.c_str(), v.c_str(), 1) != 0) px::throw_errno(("setenv(" + n + ")").c_str());
}

std::map<std::string, std::string> env() {
  std::map<std::string, std::string> out;
  for (char** e = environ; e && *e; ++e) {
    std::string_view kv(*e);
    auto eq = kv.find('=');
    if (eq == std::string_view::npos) continue;
    out.emplace(std::string(kv.substr(0, eq)), std::string(kv.substr(eq + 1)));
  }
  return out;
}

MemoryUsage memory_usage() {
  std::ifstream in("/proc/self/statm");
  std::size_t size = 0, resident = 0, shared = 0;
  if (!(in >> size >> resident >> shared)) px::throw_errno(EIO, "read(/proc/self/statm)");
  const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  return MemoryUsage{resident * page, size * page, shared * page};
}

// ---------------------------------------------------------------------------------------------------
// Signals

namespace {

constexpr int kExit = 1, kSignal = 2;

struct SignalSub {
  int signo;
  std::function<void(int)> fn;
};

struct Dispatcher {
  std::mutex mu;
  std::unordered_map<std::uint64_t, SignalSub> subs;
  std::unordered_map<int, struct sigaction> previous;  // per handled signal: what to restore
  std::uint64_t next_id = 1;
  px::UniqueFd rd;
  std::atomic<int> wr{-1};  // read by the signal handler
  std::thread* thread = nullptr;

  Dispatcher() {
    pthread_atfork([] { get().mu.lock(); }, [] { get().mu.unlock(); }, [] { get().after_fork_in_child(); });
  }
  static Dispatcher& get() {
    static Dispatcher* d = new Dispatcher;
    return *d;
  }

  void after_fork_in_child() noexcept {
    // The child has no dispatcher thread: put the signals back to their defaults so the child can be
    // terminated, and forget the parent's subscriptions (they belong to the parent).
    mu.unlock();
    for (auto& [signo, old] : previous) {
      struct sigaction dfl {};
      dfl.sa_handler = SIG_DFL;
      ::sigaction(signo, &dfl, nullptr);
    }
    previous.clear();
    subs.clear();
    rd.reset();
    int w = wr.exchange(-1);
    if (w >= 0) ::close(w);
    thread = nullptr;
  }

  static void handler(int signo) {
    int saved = errno;
    int w = get().wr.load(std::memory_order_relaxed);
    if (w >= 0) {
      unsigned char b = static_cast<unsigned char>(signo);
      (void)!::write(w, &b, 1);  // pipe full: the signal is coalesced, as the kernel would do
    }
    errno = saved;
  }

  void run() {
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, nullptr);  // handlers run in other threads; we only read the pipe
    unsigned char buf[64];
    for (;;) {
      pollfd p{rd.get(), POLLIN, 0};
      int r = ::poll(&p, 1, -1);
      if (r < 0) continue;  // EINTR cannot happen with everything blocked; be safe anyway
      ssize_t n = px::read_some(rd.get(), buf, sizeof buf);
      if (n <= 0) continue;
      for (ssize_t i = 0; i < n; ++i) {
        if (buf[i] == 0) return;  // stop byte
        std::vector<std::function<void(int)>> fns;
        {
          std::lock_guard lock(mu);
          for (auto& [id, s] : subs)
            if (s.signo == buf[i]) fns.push_back(s.fn);
        }
        for (auto& fn : fns) {
          try {
            fn(buf[i]);
          } catch (...) {
            // A throwing callback must not kill the dispatcher (and with it every subscription).
          }
        }
      }
    }
  }
};

void unsubscribe_signal(std::uint64_t id) noexcept {
  auto& d = Dispatcher::get();
  std::thread* stop = nullptr;
  {
    std::lock_guard lock(d.mu);
    auto it = d.subs.find(id);
    if (it == d.subs.end()) return;
    int signo = it->second.signo;
    d.subs.erase(it);
    bool still = false;
    for (auto& [k, s] : d.subs) still = still || s.signo == signo;
    if (!still) {
      auto prev = d.previous.find(signo);
      if (prev != d.previous.end()) {
        ::sigaction(signo, &prev->second, nullptr);
        d.previous.erase(prev);
      }
    }
    if (d.subs.empty() && d.thread) {
      unsigned char zero = 0;
      px::write_all(d.wr.load(), &zero, 1);
      stop = d.thread;
      d.thread = nullptr;
    }
  }
  if (!stop) return;
  // The last subscription is gone: stop the thread and close the pipe, so an idle program holds no
  // thread and no fd of ours.
  if (stop->get_id() == std::this_thread::get_id()) {
    stop->detach();
  } else {
    stop->join();
  }
  delete stop;
  detail::internal_threads().fetch_sub(1);
  std::lock_guard lock(d.mu);
  if (!d.thread) {
    int w = d.wr.exchange(-1);
    if (w >= 0) ::close(w);
    d.rd.reset();
  }
}

}  // namespace

Subscription::Subscription(Subscription&& o) noexcept : kind_(o.kind_), id_(o.id_) { o.id_ = 0; }
Subscription& Subscription::operator=(Subscription&& o) noexcept {
  if (this != &o) {
    reset();
    kind_ = o.kind_;
    id_ = o.id_;
    o.id_ = 0;
  }
  return *this;
}
Subscription::~Subscription() { reset(); }

void Subscription::reset() noexcept {
  if (id_ == 0) return;
  if (kind_ == kExit) detail::remove_exit_hook(id_);
  if (kind_ == kSignal) unsubscribe_signal(id_);
  id_ = 0;
}

Subscription on_exit(std::function<void(int)> fn) {
  if (!fn) throw UsageError("this_process::on_exit: empty function");
  return Subscription(kExit, detail::add_exit_hook(std::move(fn)));
}

Subscription on_signal(int signo, std::function<void(int)> fn) {
  if (signo <= 0 || signo >= NSIG || signo > 255 || signo == SIGKILL || signo == SIGSTOP)
    throw UsageError("this_process::on_signal: cannot handle signal " + std::to_string(signo));
  if (!fn) throw UsageError("this_process::on_signal: empty function");
  auto& d = Dispatcher::get();
  std::lock_guard lock(d.mu);
  if (!d.rd) {
    auto p = px::make_pipe(O_NONBLOCK);
    d.rd = std::move(p.read);
    d.wr.store(p.write.release());
  }
  if (!d.thread) {
    d.thread = new std::thread([&d] { d.run(); });
    detail::internal_threads().fetch_add(1);
  }
  if (!d.previous.count(signo)) {
    struct sigaction sa {}, old{};
    sa.sa_handler = &Dispatcher::handler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    if (::sigaction(signo, &sa, &old) != 0) px::throw_errno("sigaction");
    d.previous.emplace(signo, old);
  }
  std::uint64_t id = d.next_id++;
  d.subs.emplace(id, SignalSub{signo, std::move(fn)});
  return Subscription(kSignal, id);
}

}  // namespace mproc::this_process
