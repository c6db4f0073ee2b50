// src/posix/fork.hpp — the careful fork.
//
// careful_fork(): flush C stdio and iostreams (so buffered output is not written twice), block every
// signal, fork(), and in the child reset the signal state before anything else runs; the parent gets
// its mask back. glibc's fork() runs pthread_atfork handlers, which is how mproc's registries stay
// consistent in the child of a multi-threaded parent (their locks are taken around fork).
#pragma once

#include <sys/types.h>

namespace mproc::detail::posix {

/// Flush stdout/stderr through both stdio and iostreams. Never throws.
void flush_stdio() noexcept;

/// 0 in the child (signal state reset), the child's pid in the parent. std::system_error on failure.
pid_t careful_fork();

/// End the calling (child) process: flush stdio, then _exit(code). Never returns, never throws.
[[noreturn]] void child_exit(int code) noexcept;

}  // namespace mproc::detail::posix
