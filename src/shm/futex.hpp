// src/shm/futex.hpp — process-shared futex waits and wakes on 32-bit words in shared memory.
// A futex keeps no state of its own, so a waiter or waker killed at any instant leaves nothing behind:
// the reason the ring uses futexes instead of process-shared condition variables (a glibc condvar
// whose waiter dies mid-wait can block later waiters).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace mproc::detail::shm {

/// Sleep while *word == expected, at most `slice` (restarted on EINTR by the caller's loop: this
/// returns on wake, timeout, EINTR or value change alike; callers re-check their condition).
void futex_wait(std::atomic<std::uint32_t>& word, std::uint32_t expected, std::chrono::nanoseconds slice) noexcept;
/// Wake every waiter on word.
void futex_wake_all(std::atomic<std::uint32_t>& word) noexcept;
/// Wake at most n waiters on word (n is clamped to INT_MAX).
void futex_wake(std::atomic<std::uint32_t>& word, std::uint32_t n) noexcept;

}  // namespace mproc::detail::shm
