// src/trace.hpp — MPROC_TRACE lifecycle lines. One write(2) per line, so lines from several processes
// never interleave mid-line.
#pragma once

namespace mproc::detail {

bool trace_enabled() noexcept;
void set_trace_enabled(bool on) noexcept;
/// printf-style; prints "[mproc <pid>] <message>\n" to stderr when tracing is on.
void trace(const char* fmt, ...) noexcept __attribute__((format(printf, 1, 2)));

}  // namespace mproc::detail
