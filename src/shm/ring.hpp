// src/shm/ring.hpp — the crash-safe, multi-producer/multi-consumer byte ring under the queues.
//
// Records of any size pass: a record that does not fit streams through the ring in chunks while a
// consumer drains it. Every process forked after construction shares the ring (anonymous shared
// memory, nothing in /dev/shm). A producer or consumer killed at any instant never blocks the others
// forever and never makes them see a torn record. docs/design/queue.md gives the protocol and its
// invariants; the short version:
//   * producers serialize whole records on a robust put_lock, consumers on a robust get_lock, so the
//     ring itself is single-producer/single-consumer between the current holders;
//   * bytes are written first and published by one release store of `head` (consumers: of `tail`);
//     multi-word updates (head + item count) go through a one-entry redo journal that the next
//     holder re-applies after EOWNERDEAD;
//   * chunks carry FIRST/LAST flags; a consumer drops a partial record when its producer is gone
//     (the put_lock is free or was owned by a dead process) or a new FIRST chunk shows up, and drops
//     chunks that do not start a record (left by a consumer that died mid-record);
//   * sleeping is on futexes, in slices of at most 100 ms, so a waker killed between publishing and
//     waking costs a waiter at most one slice.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "posix/fd.hpp"
#include "shm/robust_mutex.hpp"
#include "shm/segment.hpp"

namespace mproc::detail::shm {

// ---- The shared-memory layout (docs/design/queue.md) --------------------------------------------
// Here rather than in ring.cpp only so that tests/fuzz/ring_fuzz.cpp can play a corrupt or malicious
// peer writing into it. Everything read from it is validated by Ring before use.
namespace ring_format {
using u32 = std::uint32_t;
using u64 = std::uint64_t;

constexpr u64 kMagic = 0x6d70726f6352696eULL;  // "mprocRin"
constexpr u32 kChunkMagic = 0x4d500000u;
constexpr u32 kMagicMask = 0xfff00000u;
constexpr u32 kFirst = 1, kLast = 2;
constexpr u64 kChunkHeader = 16;

// Precedes each chunk's payload in the data area.
struct ChunkHeader {
  u32 flags;  // kChunkMagic | kFirst? | kLast?
  u32 len;    // payload bytes in this chunk
  u64 total;  // the whole record's length
};
static_assert(sizeof(ChunkHeader) == kChunkHeader);

// One-entry redo log for a two-word update. The values are written, then `valid` (release); a holder
// that dies with valid == 1 left an update the next holder re-applies (the stores are idempotent).
struct Journal {
  std::atomic<u32> valid{0};
  std::atomic<u64> a{0}, b{0};
};
}  // namespace ring_format

// At the start of the segment; the data area (capacity bytes) follows it.
// Laid out by who writes what, one cache line per writer and purpose: a line one side writes while the
// other side reads it moves between the cores on every access (on this 2-vCPU VM that, not the
// instruction count, was the cost of a small item: see docs/design/queue.md, "Cache lines").
struct alignas(64) RingHeader {
  using u32 = ring_format::u32;
  using u64 = ring_format::u64;
  // Read-only after construction (every put and get reads magic): shared by all cores, never moved.
  u64 magic;
  u64 capacity;
  u64 maxsize;
  // Each lock alone: a producer's lock and unlock must not take away a line consumers read.
  alignas(64) RobustMutex put_lock;
  alignas(64) RobustMutex get_lock;
  // Producer side: written only by the put_lock holder. head alone, since consumers poll it; the rest
  // (the item count and the journal, written on every put) on a line consumers do not poll.
  alignas(64) std::atomic<u64> head{0};
  alignas(64) std::atomic<u64> items_put{0};
  ring_format::Journal put_journal;
  // Consumer side: written only by the get_lock holder; the same split.
  alignas(64) std::atomic<u64> tail{0};
  alignas(64) std::atomic<u64> items_got{0};
  ring_format::Journal get_journal;
  // Wake-ups. data: head moved; space: tail or items_got moved; done: tasks_done moved.
  alignas(64) std::atomic<u32> data_seq{0};
  std::atomic<u32> data_sleepers{0};
  alignas(64) std::atomic<u32> space_seq{0};
  std::atomic<u32> space_sleepers{0};
  alignas(64) std::atomic<u64> tasks_done{0};
  std::atomic<u32> done_seq{0};
  std::atomic<u32> done_sleepers{0};
};
static_assert(sizeof(RobustMutex) <= 64, "each lock is meant to fill one cache line at most");

struct RingTestAccess;  // defined by tests/fuzz/ring_fuzz.cpp: reaches h_ and data_

class Ring {
 public:
  /// capacity_bytes: size of the data area (at least 4 KiB is used); maxsize: item limit, 0 = none.
  /// std::system_error if the shared mapping fails.
  Ring(std::size_t capacity_bytes, std::size_t maxsize);
  ~Ring();
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;

  /// Append one record. False if the deadline passed first (item limit reached or no room); nothing of
  /// the record is delivered then. Blocks while full.
  bool put(std::span<const std::byte> record, const posix::Deadline& deadline) {
    return put(record, {}, deadline);
  }
  /// As put(record), for the record made of `first` followed by `second` (copied into the ring from
  /// where they are: a caller whose encoding is a header plus a run of bytes needs no buffer).
  bool put(std::span<const std::byte> first, std::span<const std::byte> second, const posix::Deadline& deadline);
  /// Take one whole record into buf (grown as needed, never shrunk; its first n bytes are the record):
  /// n, or nullopt if none started arriving before the deadline. A record whose streaming has begun is
  /// received to its end as long as its producer lives.
  std::optional<std::size_t> get(std::vector<std::byte>& buf, const posix::Deadline& deadline);

  std::size_t qsize() const noexcept;
  std::size_t maxsize() const noexcept;
  std::size_t capacity() const noexcept;
  /// One more task done; false if that would exceed the items ever put (task_done too often).
  bool task_done() noexcept;
  /// Wait until every item ever put was marked done. False on deadline.
  bool join(const posix::Deadline& deadline);

 private:
  friend struct RingTestAccess;
  void repair_put() noexcept;
  void repair_get() noexcept;
  std::uint64_t copy_in(std::uint64_t at, const void* src, std::size_t n) noexcept;
  void copy_in(std::uint64_t at, std::span<const std::byte> first, std::span<const std::byte> second,
               std::uint64_t off, std::uint64_t n) noexcept;
  std::uint64_t copy_out(std::uint64_t at, void* dst, std::size_t n) const noexcept;
  void consume(std::uint64_t tail, std::uint64_t bytes, bool last) noexcept;

  AnonymousSegment seg_;
  RingHeader* h_;
  std::byte* data_;
  std::uint64_t cap_;
  // This process's last look at the other side's counter, so that a put does not read `tail` (and a
  // get `head`) while the cached value already shows room (data): each such read pulls the line the
  // other side writes. Only lower bounds (both counters only grow, and every process shares them), so
  // a stale value costs a re-read, never a wrong answer; see put() and get(). Accessed only by the
  // put_lock (tail_seen_) and get_lock (head_seen_) holder; atomics only so that a thread that took
  // over a lock from a dead thread of this process reads them without a data race.
  std::atomic<std::uint64_t> tail_seen_{0};
  std::atomic<std::uint64_t> head_seen_{0};
};

}  // namespace mproc::detail::shm
