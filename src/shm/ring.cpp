#include "shm/ring.hpp"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <new>
#include <stdexcept>

#include "mproc/detail/test_hooks.hpp"
#include "mproc/error.hpp"
#include "shm/futex.hpp"
#include "shm/robust_mutex.hpp"
#include "trace.hpp"

namespace mproc::detail::shm {

namespace {
using namespace ring_format;

constexpr u64 kMinCapacity = 4096;
constexpr u64 kMaxChunk = u64{1} << 30;
constexpr u64 kMaxRecord = u64{1} << 40;  // 1 TiB: a sanity bound on a header read from shared memory
// get() reserves a streamed record's announced length up front only up to this (address space, not
// touched): past it the buffer grows with the bytes that actually arrived.
constexpr u64 kMaxReserve = u64{64} << 20;
constexpr auto kSlice = std::chrono::milliseconds(100);

// A test's stop points inside a streamed record (mproc/detail/test_hooks.hpp): one acquire load (a
// plain move on x86) per chunk of a record larger than a chunk, nothing for records that fit in one.
std::atomic<QueueChunkHook> g_get_chunk_hook{nullptr}, g_put_chunk_hook{nullptr};

// RAII unlock for a robust mutex already acquired.
struct Unlock {
  RobustMutex& m;
  ~Unlock() { m.unlock(); }
};

}  // namespace

namespace {

// Wait until pred() holds or the deadline passes, sleeping on seq. `sleepers` is a flag, not a count:
// a waiter sets it before its last look at pred, and the waker that finds it set clears it, bumps seq
// and wakes everyone. So while a woken consumer is still getting back on a CPU, the producer's next
// puts find the flag clear and make no system call (with a count, every put until the sleeper had
// decremented it paid a futex_wake: the dominant cost of small items). Orders (all seq_cst): waiter:
// read seq, set sleepers, re-check pred, sleep while seq unchanged; waker: publish its state, then
// exchange sleepers. If the waiter's re-check missed the state, its flag store came before the
// waker's exchange, which therefore sees it (or another waker cleared it and bumped seq after our
// read of seq): no lost wake-up. A waiter that times out or dies leaves the flag set: it costs one
// spurious wake, never a missed one. Both sides put a seq_cst fence between their store and their
// load (the store-load order this needs): the waker's publishing stores are plain release stores
// (cheap), so the fence in wake() is what orders them before its look at the flag.
template <class Pred>
bool wait_until(std::atomic<u32>& seq, std::atomic<u32>& sleepers, Pred pred, const posix::Deadline& d) {
  // Spin briefly first: the other side is usually on another core and about to publish, and a futex
  // sleep plus wake costs two system calls per item. Bounded, so an oversubscribed machine loses
  // little. No spinning for a deadline that has passed already (put_nowait/get_nowait): one look only
  // (with the spin, get_nowait on an empty queue took 80 us; found by tests/fuzz/ring_fuzz.cpp).
  if (pred()) return true;
  if (d.expired()) return false;
  for (int i = 0; i < 2000; ++i) {
    if (pred()) return true;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  }
  for (;;) {
    if (pred()) return true;
    auto left = d.remaining();
    if (left && left->count() == 0) return false;
    const u32 s = seq.load();
    sleepers.store(1);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (pred()) return true;
    std::chrono::nanoseconds slice = kSlice;
    if (left && *left < slice) slice = *left;
    futex_wait(seq, s, slice);
  }
}

// One fence per put or get, and no system call unless the flag is set.
void wake(std::atomic<u32>& seq, std::atomic<u32>& sleepers) noexcept {
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (sleepers.load(std::memory_order_relaxed) == 0 || sleepers.exchange(0) == 0) return;
  seq.fetch_add(1);
  futex_wake_all(seq);
}

// Take a ring lock. Held only for a record's copy, so a lock found busy is usually free again within
// a few hundred nanoseconds: try again briefly before glibc's robust lock, which goes straight to a
// futex sleep (a system call each side, ~1 us apiece on this VM) when it finds the lock held. With 4
// producers on 2 cores that sleep and wake was the cost of every contended put. Bounded, and never
// for a deadline that has passed (put_nowait/get_nowait: one try, then the lock's own timed attempt).
LockResult lock(RobustMutex& m, const posix::Deadline& d) {
  for (int i = 0;; ++i) {
    const LockResult r = m.try_lock();
    if (r != LockResult::timed_out) return r;
    if (i == 64 || (i == 0 && d.expired())) break;
    for (int k = 0; k < 16; ++k) {
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
    }
  }
  return m.lock(d);
}

[[noreturn]] void corrupted(const char* what) {
  throw mproc::Error(std::string("queue ring corrupted: ") + what);
}

// The header's magic, checked once per put/get (one compare): a segment something else scribbled
// over fails clearly instead of being trusted.
void check_magic(const RingHeader& h) {
  if (h.magic != kMagic) corrupted("bad magic");
}

}  // namespace

Ring::Ring(std::size_t capacity_bytes, std::size_t maxsize)
    : seg_(sizeof(RingHeader) + std::max<u64>(capacity_bytes, kMinCapacity)),
      h_(nullptr),
      data_(nullptr),
      cap_(std::max<u64>(capacity_bytes, kMinCapacity)) {
  h_ = new (seg_.data()) RingHeader();
  h_->magic = kMagic;
  h_->capacity = cap_;
  h_->maxsize = maxsize;
  h_->put_lock.init();
  h_->get_lock.init();
  data_ = static_cast<std::byte*>(seg_.data()) + sizeof(RingHeader);
}

// The header is trivially destructible shared state; the mapping goes with seg_.
Ring::~Ring() = default;

// The copies take and return an offset into the data area (at < cap_, n <= cap_): the caller reduces
// a position modulo cap_ once per chunk, and each copy returns where the next one starts. (They used
// to take positions and reduce each one: a 64-bit division per copy, five per item, 20-40 cycles each.)
// n == 0 returns at once: an empty record's span (and an empty get buffer) may have a null data(),
// which memcpy must not be given even for 0 bytes (found by tests/fuzz/ring_fuzz.cpp under UBSan).
u64 Ring::copy_in(u64 at, const void* src, std::size_t n) noexcept {
  if (n == 0) return at;
  const std::size_t first = static_cast<std::size_t>(std::min<u64>(n, cap_ - at));
  std::memcpy(data_ + at, src, first);
  if (first < n) {
    std::memcpy(data_, static_cast<const std::byte*>(src) + first, n - first);
    return n - first;
  }
  at += n;
  return at == cap_ ? 0 : at;
}

// Bytes [off, off + n) of the record first + second, to offset at.
void Ring::copy_in(u64 at, std::span<const std::byte> first, std::span<const std::byte> second, u64 off,
                   u64 n) noexcept {
  if (off < first.size()) {
    const std::size_t k = static_cast<std::size_t>(std::min<u64>(n, first.size() - off));
    at = copy_in(at, first.data() + off, k);
    off += k;
    n -= k;
  }
  if (n != 0) copy_in(at, second.data() + (off - first.size()), static_cast<std::size_t>(n));
}

u64 Ring::copy_out(u64 at, void* dst, std::size_t n) const noexcept {
  if (n == 0) return at;
  const std::size_t first = static_cast<std::size_t>(std::min<u64>(n, cap_ - at));
  std::memcpy(dst, data_ + at, first);
  if (first < n) {
    std::memcpy(static_cast<std::byte*>(dst) + first, data_, n - first);
    return n - first;
  }
  at += n;
  return at == cap_ ? 0 : at;
}

void Ring::repair_put() noexcept {
  trace("queue: a producer died holding the put lock; repairing");
  auto& j = h_->put_journal;
  if (j.valid.load(std::memory_order_acquire)) {
    h_->items_put.store(j.b.load());
    h_->head.store(j.a.load());
    j.valid.store(0, std::memory_order_release);
  }
  // Bytes past head that the dead producer wrote are invisible and will be overwritten; a record it
  // left half-published is dropped by consumers (no LAST chunk follows).
  wake(h_->data_seq, h_->data_sleepers);
}

void Ring::repair_get() noexcept {
  trace("queue: a consumer died holding the get lock; repairing");
  auto& j = h_->get_journal;
  if (j.valid.load(std::memory_order_acquire)) {
    h_->tail.store(j.a.load());
    h_->items_got.store(j.b.load());
    j.valid.store(0, std::memory_order_release);
  }
  wake(h_->space_seq, h_->space_sleepers);
}

bool Ring::put(std::span<const std::byte> part1, std::span<const std::byte> part2, const posix::Deadline& d) {
  check_magic(*h_);
  const u64 maxsize = h_->maxsize;
  auto room_for_item = [&] { return maxsize == 0 || qsize() < maxsize; };
  // Wait for the item limit before queueing on the lock, so a full queue does not hold the lock.
  if (maxsize != 0 && !wait_until(h_->space_seq, h_->space_sleepers, room_for_item, d)) return false;
  auto r = lock(h_->put_lock, d);
  if (r == LockResult::timed_out) return false;
  if (r == LockResult::owner_died) {
    repair_put();
    h_->put_lock.make_consistent();
  }
  Unlock unlock{h_->put_lock};
  if (maxsize != 0 && !wait_until(h_->space_seq, h_->space_sleepers, room_for_item, d)) return false;

  const u64 total = u64{part1.size()} + part2.size();
  u64 off = 0, chunk = 0;
  bool first = true;
  while (first || off < total) {
    const u64 remaining = total - off;
    const u64 head = h_->head.load(std::memory_order_relaxed);
    // A record that fits goes in one chunk; a larger one streams in chunks of at least a quarter ring.
    const u64 want = std::min(remaining + kChunkHeader, cap_);
    const u64 need = remaining + kChunkHeader <= cap_ ? want : kChunkHeader + std::min(remaining, cap_ / 4);
    // Free space by the last tail this process saw (a lower bound, as tail only grows): `tail` itself,
    // on the consumers' line, is read only when that shows less than the whole rest of the record
    // (`want`), so small puts read it about once per ring's worth while the consumer keeps up. Bounds
    // check on the shared words: head - tail beyond cap_ from a fresh tail means head/tail were
    // corrupted (tail past head, or more than cap_ behind it); trusting them would let the copies
    // below run past the data area.
    u64 used = 0;
    auto room = [&] {
      used = head - tail_seen_.load(std::memory_order_relaxed);
      if (used <= cap_ && cap_ - used >= want) return true;
      tail_seen_.store(h_->tail.load(std::memory_order_acquire), std::memory_order_relaxed);
      used = head - tail_seen_.load(std::memory_order_relaxed);
      if (used > cap_) corrupted("head/tail out of range");
      return cap_ - used >= need;
    };
    if (!wait_until(h_->space_seq, h_->space_sleepers, room, d)) {
      // Timed out, possibly mid-record: what was published is dropped by consumers, since no LAST
      // chunk will follow and this put_lock is released.
      return false;
    }
    const u64 len = std::min({remaining, cap_ - used - kChunkHeader, kMaxChunk});
    const bool last = off + len == total;
    ChunkHeader ch{kChunkMagic | (first ? kFirst : 0) | (last ? kLast : 0), static_cast<u32>(len), total};
    copy_in(copy_in(head % cap_, &ch, sizeof ch), part1, part2, off, len);
    const u64 new_head = head + kChunkHeader + len;
    if (last) {
      // Release stores throughout: they keep their program order (no store moves past a later
      // release store), and program order is what a SIGKILL interrupts; the kernel's exit path makes
      // all of a dead process's stores visible before its robust lock reports EOWNERDEAD. They are
      // plain moves on x86, where the former seq_cst stores were locked exchanges.
      auto& j = h_->put_journal;
      const u64 n = h_->items_put.load(std::memory_order_relaxed) + 1;
      j.a.store(new_head, std::memory_order_release);
      j.b.store(n, std::memory_order_release);
      j.valid.store(1, std::memory_order_release);
      h_->items_put.store(n, std::memory_order_release);
      h_->head.store(new_head, std::memory_order_release);
      j.valid.store(0, std::memory_order_release);
    } else {
      h_->head.store(new_head, std::memory_order_release);
    }
    wake(h_->data_seq, h_->data_sleepers);
    if (!last)
      if (auto hook = g_put_chunk_hook.load(std::memory_order_acquire)) hook(static_cast<std::size_t>(chunk));
    ++chunk;
    off += len;
    first = false;
  }
  return true;
}

void Ring::consume(u64 tail, u64 bytes, bool last) noexcept {
  if (last) {
    // Release stores, as in put().
    auto& j = h_->get_journal;
    const u64 n = h_->items_got.load(std::memory_order_relaxed) + 1;
    j.a.store(tail + bytes, std::memory_order_release);
    j.b.store(n, std::memory_order_release);
    j.valid.store(1, std::memory_order_release);
    h_->tail.store(tail + bytes, std::memory_order_release);
    h_->items_got.store(n, std::memory_order_release);
    j.valid.store(0, std::memory_order_release);
  } else {
    h_->tail.store(tail + bytes, std::memory_order_release);
  }
  wake(h_->space_seq, h_->space_sleepers);
}

std::optional<std::size_t> Ring::get(std::vector<std::byte>& buf, const posix::Deadline& d) {
  check_magic(*h_);
  auto r = lock(h_->get_lock, d);
  if (r == LockResult::timed_out) return std::nullopt;
  if (r == LockResult::owner_died) {
    repair_get();
    h_->get_lock.make_consistent();
  }
  Unlock unlock{h_->get_lock};

  bool assembling = false;
  u64 got = 0, total = 0, chunk = 0;
  for (;;) {
    const u64 tail = h_->tail.load(std::memory_order_relaxed);
    // Data up to the last head this process saw (a lower bound, as head only grows), if that is
    // past tail: then `head` itself, on the producers' line, is not read. Another consumer process
    // may have moved tail past it; then (and when it shows nothing) head is read afresh.
    u64 head = head_seen_.load(std::memory_order_relaxed);
    auto has_data = [&] {
      if (head - tail - 1 < cap_) return true;  // 1 <= head - tail <= cap_
      head = h_->head.load(std::memory_order_acquire);
      head_seen_.store(head, std::memory_order_relaxed);
      return head != tail;
    };
    if (!has_data()) {
      if (!assembling) {
        if (!wait_until(h_->data_seq, h_->data_sleepers, has_data, d)) return std::nullopt;
        continue;
      }
      // Mid-record and nothing more yet: is its producer still there? A live producer holds the
      // put_lock from a record's first chunk to its last.
      auto pr = h_->put_lock.try_lock();
      if (pr != LockResult::timed_out) {
        if (pr == LockResult::owner_died) {
          repair_put();
          h_->put_lock.make_consistent();
        }
        bool more = has_data();
        h_->put_lock.unlock();
        if (!more) {
          trace("queue: dropping a partial record (%llu of %llu bytes): its producer is gone",
                static_cast<unsigned long long>(got), static_cast<unsigned long long>(total));
          assembling = false;
        }
        continue;
      }
      // The producer lives: keep receiving, re-checking at least every slice.
      wait_until(h_->data_seq, h_->data_sleepers, has_data, posix::Deadline(kSlice));
      continue;
    }
    if (head - tail < kChunkHeader || head - tail > cap_) corrupted("head/tail out of range");
    ChunkHeader ch;
    const u64 payload_at = copy_out(tail % cap_, &ch, sizeof ch);
    if ((ch.flags & kMagicMask) != kChunkMagic || ch.len > head - tail - kChunkHeader) corrupted("bad chunk header");
    const bool is_first = ch.flags & kFirst, is_last = ch.flags & kLast;
    if (is_first) {
      if (assembling)
        trace("queue: dropping a partial record (%llu of %llu bytes): a new record began",
              static_cast<unsigned long long>(got), static_cast<unsigned long long>(total));
      if (ch.total > kMaxRecord || ch.len > ch.total) corrupted("bad record length");
      assembling = true;
      got = 0;
      total = ch.total;
      chunk = 0;
      // Room for the announced total, up to kMaxReserve: a corrupt `total` must not allocate a TiB.
      if (buf.capacity() < total) buf.reserve(static_cast<std::size_t>(std::min(total, kMaxReserve)));
    } else if (!assembling) {
      // The rest of a record whose consumer died mid-way: it was taken, drop it.
      consume(tail, kChunkHeader + ch.len, is_last);
      continue;
    }
    if (got + ch.len > total) corrupted("chunk past the end of its record");
    // buf grows with the bytes that arrived (past kMaxReserve geometrically), not with `total`.
    if (buf.size() < got + ch.len) buf.resize(static_cast<std::size_t>(got + ch.len));
    copy_out(payload_at, buf.data() + got, ch.len);
    got += ch.len;
    if (is_last && got != total) corrupted("record shorter than announced");
    consume(tail, kChunkHeader + ch.len, is_last);
    if (is_last) return static_cast<std::size_t>(total);
    if (auto hook = g_get_chunk_hook.load(std::memory_order_acquire)) hook(static_cast<std::size_t>(chunk));
    ++chunk;
  }
}

std::size_t Ring::qsize() const noexcept {
  u64 got = h_->items_got.load(std::memory_order_acquire);
  u64 put = h_->items_put.load(std::memory_order_acquire);
  return put > got ? static_cast<std::size_t>(put - got) : 0;
}

std::size_t Ring::maxsize() const noexcept { return static_cast<std::size_t>(h_->maxsize); }
std::size_t Ring::capacity() const noexcept { return static_cast<std::size_t>(cap_); }

bool Ring::task_done() noexcept {
  u64 done = h_->tasks_done.load();
  for (;;) {
    if (done >= h_->items_put.load()) return false;
    if (h_->tasks_done.compare_exchange_weak(done, done + 1)) break;
  }
  wake(h_->done_seq, h_->done_sleepers);
  return true;
}

bool Ring::join(const posix::Deadline& d) {
  return wait_until(h_->done_seq, h_->done_sleepers,
                    [&] { return h_->tasks_done.load() >= h_->items_put.load(); }, d);
}

}  // namespace mproc::detail::shm

namespace mproc::detail {

void set_queue_get_chunk_hook(QueueChunkHook hook) noexcept {
  shm::g_get_chunk_hook.store(hook, std::memory_order_release);
}

void set_queue_put_chunk_hook(QueueChunkHook hook) noexcept {
  shm::g_put_chunk_hook.store(hook, std::memory_order_release);
}

}  // namespace mproc::detail
