// mproc/shared.hpp — data shared between processes: Python's multiprocessing.Value and Array, and
// shared_memory.SharedMemory.
//
//     mproc::Value<long> counter;                       // 0, with its own Lock
//     mproc::Array<double> results(8);                  // eight zeros
//     mproc::Process p([](mproc::Value<long> c, mproc::Array<double> r) {
//       std::lock_guard g(c.get_lock());
//       c.store(c.load() + 1);                          // a read-modify-write: hold the lock around it
//       r[3] = 2.5;
//     }, counter, results);
//     p.start(); p.join();                              // counter.load() == 1, results[3] == 2.5
//
// Value<T> and Array<T> are handles: copies (also into children forked after construction, passed by
// value) refer to the same memory, anonymous shared memory that is zero-filled at first, never appears in
// /dev/shm, and is gone when the last process holding a handle ends (SIGKILL included). T must be
// trivially copyable (no pointers into one process's heap: std::string will not do; use char arrays).
// A Value or Array created in a child is shared only with that child's own children.
//
// Locking: by default each has a Lock (mproc/synchronize.hpp), get_lock(). Value::load() and store()
// take it for the copy (so a T of any size is never torn), unless the calling thread already holds it,
// as in `std::lock_guard g(v.get_lock()); v.store(v.load() + 1);` — the way to make a read-modify-write
// atomic. load() then store() without holding the lock loses updates under contention, exactly like
// Python's `v.value += 1`. With lock = false there is no lock (get_lock() throws UsageError); load() and
// store() are then atomic (std::atomic_ref) for a T the hardware handles lock-free, and plain copies
// otherwise. raw(), operator[] and span() give direct references into the shared memory: no locking.
//
// SharedMemory is a block of bytes: anonymous (inherited by forked children) or named, under
// `/dev/shm/<name>`, so that unrelated programs can share it. Named blocks are created with mode 0600 (only
// this user, whatever the umask) and O_EXCL; open() refuses a block owned by another user or accessible
// to group or others, which someone else could have planted or could tamper with. A named block lives
// until unlink() (or reboot), also after every handle is gone: call unlink() when done, as in Python.
//
// Blocking: load()/store() block while another thread holds the lock; nothing else here blocks.
// Threads: handles may be used from several threads; SharedMemory::close() must not race with other
// uses of the same block in this process. Errors: std::system_error when the OS refuses (mmap, shm_open:
// code() carries errno, what() names the object), mproc::UsageError for misuse.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "mproc/detail/shared_core.hpp"
#include "mproc/error.hpp"
#include "mproc/export.hpp"
#include "mproc/synchronize.hpp"

namespace mproc {

namespace detail {
template <class T>
bool all_zero_bytes(const T& v) noexcept {
  unsigned char bytes[sizeof(T)];
  std::memcpy(bytes, &v, sizeof(T));
  for (unsigned char b : bytes)
    if (b != 0) return false;
  return true;
}
}  // namespace detail

/// Python's multiprocessing.Value: one T in shared memory, with an optional Lock.
template <class T>
class Value {
  static_assert(std::is_trivially_copyable_v<T>, "mproc::Value<T> needs a trivially copyable T");
  static_assert(alignof(T) <= 4096, "mproc::Value<T>: alignment above a page is not supported");

 public:
  /// A new shared T, initialized to init, with a Lock unless lock is false.
  /// std::system_error if the shared memory cannot be mapped.
  explicit Value(T init = {}, bool lock = true)
      : block_(std::make_shared<detail::SharedBlock>(sizeof(T))), p_(static_cast<T*>(block_->data())) {
    ::new (static_cast<void*>(p_)) T(init);
    if (lock) lock_.emplace();
  }

  /// A copy of the value, taken under the lock (unless this thread holds it already).
  T load() const {
    if (!lock_) return unlocked_load();
    if (lock_->is_owned()) return *p_;
    std::lock_guard g(*lock_);
    return *p_;
  }
  /// Replace the value, under the lock (unless this thread holds it already).
  void store(T v) {
    if (!lock_) return unlocked_store(v);
    if (lock_->is_owned()) {
      *p_ = v;
      return;
    }
    std::lock_guard g(*lock_);
    *p_ = v;
  }
  /// The Lock (UsageError if the Value was created with lock = false). A reference to this handle's
  /// Lock, so that `std::lock_guard g(v.get_lock());` compiles; copy it (`Lock l = v.get_lock();`) to
  /// keep a handle of your own.
  Lock& get_lock() const {
    if (!lock_) throw UsageError("Value::get_lock: this Value was created with lock = false");
    return *lock_;
  }
  /// Direct reference into the shared memory (no locking).
  T& raw() noexcept { return *p_; }
  /// As raw(), read-only.
  const T& raw() const noexcept { return *p_; }

 private:
  T unlocked_load() const {
    if constexpr (std::atomic_ref<T>::is_always_lock_free) {
      return std::atomic_ref<T>(*p_).load();
    } else {
      std::atomic_signal_fence(std::memory_order_seq_cst);  // a fresh read each call
      T v = *p_;
      std::atomic_signal_fence(std::memory_order_seq_cst);
      return v;
    }
  }
  void unlocked_store(T v) {
    if constexpr (std::atomic_ref<T>::is_always_lock_free) {
      std::atomic_ref<T>(*p_).store(v);
    } else {
      std::atomic_signal_fence(std::memory_order_seq_cst);
      *p_ = v;
      std::atomic_signal_fence(std::memory_order_seq_cst);
    }
  }

  std::shared_ptr<detail::SharedBlock> block_;
  T* p_;
  mutable std::optional<Lock> lock_;
};

/// Python's multiprocessing.Array: n T's in shared memory, zero-filled unless given an init value, with
/// an optional Lock. Element access is direct (no locking): hold get_lock() where it matters.
template <class T>
class Array {
  static_assert(std::is_trivially_copyable_v<T>, "mproc::Array<T> needs a trivially copyable T");
  static_assert(alignof(T) <= 4096, "mproc::Array<T>: alignment above a page is not supported");

 public:
  /// n elements, each a copy of init (zero bytes by default). std::system_error if the mapping fails.
  explicit Array(std::size_t n, T init = {}, bool lock = true) : Array(Zeroed{}, n, lock) {
    // Fresh shared memory is zero-filled: only a non-zero init needs writing (large arrays stay
    // untouched, and cost no memory, until used).
    if (!detail::all_zero_bytes(init))
      for (std::size_t i = 0; i < n_; ++i) ::new (static_cast<void*>(p_ + i)) T(init);
  }
  /// A copy of values.
  explicit Array(std::span<const T> values, bool lock = true) : Array(Zeroed{}, values.size(), lock) {
    if (!values.empty()) std::memcpy(static_cast<void*>(p_), values.data(), values.size_bytes());
  }

  /// The number of elements.
  std::size_t size() const noexcept { return n_; }
  /// Direct reference to element i (unchecked, like std::vector's).
  T& operator[](std::size_t i) noexcept { return p_[i]; }
  /// As operator[], read-only.
  const T& operator[](std::size_t i) const noexcept { return p_[i]; }
  /// As operator[], but std::out_of_range past the end.
  T& at(std::size_t i) {
    if (i >= n_) throw std::out_of_range("Array::at: index " + std::to_string(i) + " >= size " + std::to_string(n_));
    return p_[i];
  }
  /// All the elements, directly in the shared memory (no locking).
  std::span<T> span() noexcept { return {p_, n_}; }
  /// As span(), read-only.
  std::span<const T> span() const noexcept { return {p_, n_}; }
  /// The first element, for range-for and algorithms (no locking).
  T* begin() noexcept { return p_; }
  /// One past the last element.
  T* end() noexcept { return p_ + n_; }
  /// The Lock (UsageError if created with lock = false); a reference, as Value::get_lock().
  Lock& get_lock() const {
    if (!lock_) throw UsageError("Array::get_lock: this Array was created with lock = false");
    return *lock_;
  }

 private:
  struct Zeroed {};
  Array(Zeroed, std::size_t n, bool lock)
      : n_(n),
        block_(std::make_shared<detail::SharedBlock>(checked_bytes(n))),
        p_(static_cast<T*>(block_->data())) {
    if (lock) lock_.emplace();
  }
  static std::size_t checked_bytes(std::size_t n) {
    if (n > static_cast<std::size_t>(-1) / sizeof(T)) throw std::length_error("mproc::Array: too many elements");
    return n * sizeof(T);
  }

  std::size_t n_;
  std::shared_ptr<detail::SharedBlock> block_;
  T* p_;
  mutable std::optional<Lock> lock_;
};

/// Python's multiprocessing.shared_memory.SharedMemory: a block of bytes shared between processes. A
/// handle: copies share the mapping. Names are given without a leading '/' and appear as
/// `/dev/shm/<name>`.
class MPROC_API SharedMemory {
 public:
  /// An anonymous block of size bytes, zero-filled, shared with children forked after this. It has no
  /// name (name() is empty) and is freed with the last mapping. UsageError if size is 0;
  /// std::system_error if the mapping fails.
  explicit SharedMemory(std::size_t size);

  /// A new named block of size bytes, zero-filled, mode 0600 whatever the umask (shm_open with
  /// O_CREAT|O_EXCL|O_CLOEXEC, then fchmod). An empty name picks a fresh one, "mproc_" and 16 random hex
  /// digits (64 bits from getrandom). Throws std::system_error with EEXIST if the name exists (nothing is
  /// touched), other errno values if shm_open/ftruncate/mmap fail (nothing is left behind);
  /// UsageError if size is 0 or the name is not a valid file name (contains '/', "." or "..", too long).
  static SharedMemory create(std::string name, std::size_t size);
  /// Open an existing named block (read-write), its size taken from the object. Throws
  /// std::system_error: ENOENT if there is no such name; EACCES if it is owned by another user or its
  /// mode gives group or others any access (e.g. 0666 from someone else's shm_open), refused because
  /// others could read or change it; EINVAL if it is empty (size 0: its creator has not sized it yet).
  static SharedMemory open(std::string name);

  /// The bytes. UsageError after close().
  std::span<std::byte> buf();
  /// The size in bytes (also after close()).
  std::size_t size() const noexcept;
  /// The name without '/' ("" for an anonymous block).
  const std::string& name() const noexcept;

  /// Unmap the block in this process, for every copy of this handle here (buf() then throws
  /// UsageError). Other processes are unaffected; a named block stays until unlink(). A second close()
  /// does nothing.
  void close() noexcept;
  /// Remove the name from /dev/shm (processes that have it mapped keep their mapping; the memory goes
  /// with the last one). std::system_error (ENOENT) if the name is already gone; UsageError for an
  /// anonymous block.
  void unlink();

 private:
  struct Impl;
  explicit SharedMemory(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

}  // namespace mproc
