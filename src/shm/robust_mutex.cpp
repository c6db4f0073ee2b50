#include "shm/robust_mutex.hpp"

#include <cerrno>
#include <ctime>

namespace mproc::detail::shm {

static void init_mutex(pthread_mutex_t* m, int type) {
  pthread_mutexattr_t a;
  int rc = pthread_mutexattr_init(&a);
  if (rc == 0) rc = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
  if (rc == 0) rc = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
  if (rc == 0) rc = pthread_mutexattr_settype(&a, type);
  if (rc == 0) rc = pthread_mutex_init(m, &a);
  pthread_mutexattr_destroy(&a);
  if (rc != 0) posix::throw_errno(rc, "pthread_mutex_init(robust, pshared)");
}

void RobustMutex::init() { init_mutex(&m_, PTHREAD_MUTEX_DEFAULT); }

void RobustMutex::init_recursive() { init_mutex(&m_, PTHREAD_MUTEX_RECURSIVE); }

static LockResult translate(int rc, const char* what) {
  if (rc == 0) return LockResult::acquired;
  if (rc == EOWNERDEAD) return LockResult::owner_died;
  if (rc == ETIMEDOUT || rc == EBUSY) return LockResult::timed_out;
  posix::throw_errno(rc, what);  // ENOTRECOVERABLE: someone unlocked without repairing (a bug of ours)
}

LockResult RobustMutex::lock(const posix::Deadline& deadline) {
  auto left = deadline.remaining();
  if (!left) return translate(pthread_mutex_lock(&m_), "pthread_mutex_lock");
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  // Absolute monotonic deadline; pthread functions restart internally on signals.
  long long ns = static_cast<long long>(now.tv_nsec) + left->count() % 1'000'000'000;
  timespec abs{now.tv_sec + static_cast<time_t>(left->count() / 1'000'000'000) + static_cast<time_t>(ns / 1'000'000'000),
               static_cast<long>(ns % 1'000'000'000)};
  return translate(pthread_mutex_clocklock(&m_, CLOCK_MONOTONIC, &abs), "pthread_mutex_clocklock");
}

LockResult RobustMutex::lock() { return translate(pthread_mutex_lock(&m_), "pthread_mutex_lock"); }

LockResult RobustMutex::try_lock() { return translate(pthread_mutex_trylock(&m_), "pthread_mutex_trylock"); }

void RobustMutex::make_consistent() noexcept { pthread_mutex_consistent(&m_); }

void RobustMutex::unlock() noexcept { pthread_mutex_unlock(&m_); }

bool RobustMutex::unlock_checked() noexcept { return pthread_mutex_unlock(&m_) == 0; }

}  // namespace mproc::detail::shm
