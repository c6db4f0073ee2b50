#include "runtime.hpp"

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include <cxxabi.h>

#include <cstdlib>
#include <exception>
#include <mutex>
#include <typeinfo>

#include "posix/fd.hpp"
#include "posix/fork.hpp"
#include <vector>

namespace mproc::detail {
namespace {

struct Hook {
  std::uint64_t id;
  pid_t owner;
  std::function<void(int)> fn;
};

struct Hooks {
  std::mutex mu;
  std::vector<Hook> hooks;
  std::uint64_t next_id = 1;
  void (*final_hook)() = nullptr;
  pid_t installed_in = 0;
  pid_t ran_in = 0;

  Hooks() {
    // The lock is held across fork() so a child of a multi-threaded parent never inherits it locked.
    pthread_atfork([] { get().mu.lock(); }, [] { get().mu.unlock(); }, [] { get().mu.unlock(); });
  }
  static Hooks& get() {
    static Hooks* h = new Hooks;  // never destroyed: exit hooks run after static destructors start
    return *h;
  }
};

void dispatch_at_exit(int code, void*) { run_exit_hooks(code); }

bool g_in_child = false;

}  // namespace

std::uint64_t add_exit_hook(std::function<void(int)> fn) {
  install_exit_dispatch();
  auto& h = Hooks::get();
  std::lock_guard lock(h.mu);
  std::uint64_t id = h.next_id++;
  h.hooks.push_back({id, ::getpid(), std::move(fn)});
  return id;
}

void remove_exit_hook(std::uint64_t id) noexcept {
  auto& h = Hooks::get();
  std::lock_guard lock(h.mu);
  std::erase_if(h.hooks, [id](const Hook& k) { return k.id == id; });
}

void set_final_exit_hook(void (*fn)()) noexcept {
  auto& h = Hooks::get();
  std::lock_guard lock(h.mu);
  h.final_hook = fn;
}

void install_exit_dispatch() {
  auto& h = Hooks::get();
  std::lock_guard lock(h.mu);
  // A registration made by a parent is inherited through fork, so once per process image is enough;
  // a child that exec()s starts afresh and registers again.
  if (h.installed_in != 0) return;
  h.installed_in = ::getpid();
  ::on_exit(dispatch_at_exit, nullptr);
}

void run_exit_hooks(int code) noexcept {
  auto& h = Hooks::get();
  std::vector<std::function<void(int)>> mine;
  void (*final_hook)() = nullptr;
  {
    std::lock_guard lock(h.mu);
    const pid_t me = ::getpid();
    if (h.ran_in == me) return;
    h.ran_in = me;
    for (auto& k : h.hooks)
      if (k.owner == me) mine.push_back(k.fn);
    final_hook = h.final_hook;
  }
  // Run outside the lock: a hook may subscribe or unsubscribe.
  for (auto& fn : mine) {
    try {
      fn(code);
    } catch (...) {
      // An exit hook that throws must not stop the others or turn exit into terminate().
    }
  }
  if (final_hook) final_hook();
}

std::atomic<int>& internal_threads() noexcept {
  static std::atomic<int> n{0};
  return n;
}

namespace {
std::string demangle(const char* mangled) {
  int status = 0;
  char* d = abi::__cxa_demangle(mangled, nullptr, nullptr, &status);
  std::string out = (status == 0 && d) ? d : mangled;
  std::free(d);
  return out;
}
}  // namespace

ExceptionText describe_current_exception() {
  ExceptionText e{"unknown exception", {}};
  if (auto* t = abi::__cxa_current_exception_type()) e.type = demangle(t->name());
  try {
    throw;
  } catch (const std::exception& x) {
    e.what = x.what();
  } catch (...) {
    e.what = "(an exception not derived from std::exception)";
  }
  return e;
}

namespace {
// Called inside a catch(...) block: what Python prints for an exception escaping run().
void report_current_exception(const std::string& name) noexcept {
  try {
    const ExceptionText e = describe_current_exception();
    posix::flush_stdio();
    std::string msg = "Process " + name + ":\n" + e.type + ": " + e.what + "\n";
    posix::write_all(2, msg.data(), msg.size());
  } catch (...) {
    static const char fallback[] = "Process: uncaught exception\n";
    posix::write_all(2, fallback, sizeof fallback - 1);
  }
}
}  // namespace

void run_child_and_exit(const std::string& name, const std::function<void()>& body) noexcept {
  int code = 0;
  try {
    body();
  } catch (...) {
    report_current_exception(name);
    code = 1;
  }
  finish_child(code);
}

void finish_child(int code) noexcept {
  run_exit_hooks(code);
  posix::child_exit(code);
}

namespace {
std::atomic<pid_t> g_pid{0};
}

pid_t current_pid() noexcept {
  pid_t p = g_pid.load(std::memory_order_relaxed);
  if (p == 0) {
    static const bool registered = [] {
      pthread_atfork(nullptr, nullptr, [] { g_pid.store(::getpid(), std::memory_order_relaxed); });
      return true;
    }();
    (void)registered;
    p = ::getpid();
    g_pid.store(p, std::memory_order_relaxed);
  }
  return p;
}

bool in_child() noexcept { return g_in_child; }
void set_in_child() noexcept { g_in_child = true; }

}  // namespace mproc::detail
