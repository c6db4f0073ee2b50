#include "trace.hpp"

#include <unistd.h>

#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "posix/fd.hpp"

namespace mproc::detail {
namespace {
std::atomic<int>& trace_state() {
  // -1: not decided yet (read MPROC_TRACE on first use), 0 off, 1 on.
  static std::atomic<int> state{-1};
  return state;
}
}  // namespace

bool trace_enabled() noexcept {
  int s = trace_state().load(std::memory_order_relaxed);
  if (s < 0) {
    const char* v = std::getenv("MPROC_TRACE");
    s = (v && *v && std::strcmp(v, "0") != 0) ? 1 : 0;
    trace_state().store(s, std::memory_order_relaxed);
  }
  return s == 1;
}

void set_trace_enabled(bool on) noexcept { trace_state().store(on ? 1 : 0, std::memory_order_relaxed); }

void trace(const char* fmt, ...) noexcept {
  if (!trace_enabled()) return;
  char buf[512];
  int n = std::snprintf(buf, sizeof buf, "[mproc %d] ", static_cast<int>(::getpid()));
  va_list ap;
  va_start(ap, fmt);
  int m = std::vsnprintf(buf + n, sizeof buf - static_cast<std::size_t>(n) - 1, fmt, ap);
  va_end(ap);
  std::size_t len = static_cast<std::size_t>(n) + (m < 0 ? 0 : static_cast<std::size_t>(m));
  if (len > sizeof buf - 2) len = sizeof buf - 2;
  buf[len++] = '\n';
  posix::write_all(STDERR_FILENO, buf, len);
}

}  // namespace mproc::detail
