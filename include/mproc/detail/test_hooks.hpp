// mproc/detail/test_hooks.hpp — seams that let a test stop a process at an exact point inside the
// library, so that a SIGKILL lands there and not wherever the scheduler happened to be. Not part of the
// public API and not included by mproc.hpp; a program has no use for them.
#pragma once

#include <cstddef>

#include "mproc/export.hpp"

namespace mproc::detail {

/// A stop point inside a queue's put or get of a record that crosses the ring in several chunks. Called
/// with the index (0-based) of the chunk just handled, never after a record's last chunk and never for
/// a record that fits in one chunk. A test's hook may block there (on a pipe) until it is SIGKILLed,
/// which kills the producer or consumer mid-item, holding the queue's put or get lock.
using QueueChunkHook = void (*)(std::size_t index) noexcept;

/// Installs `hook` for gets in this process: called with the get lock held, after the chunk was copied
/// out and consumed, before the next is looked for. Null (the default) removes it. Process-wide and
/// inherited by forked children, so set it in the child that gets. Thread-safe: a release store that
/// the ring reads with acquire, so what the caller wrote before setting it is visible to the hook; a
/// get already past its load may still call the previous hook once.
MPROC_API void set_queue_get_chunk_hook(QueueChunkHook hook) noexcept;

/// The same for puts: called with the put lock held, after the chunk was published to consumers and
/// before room for the next is waited for.
MPROC_API void set_queue_put_chunk_hook(QueueChunkHook hook) noexcept;

}  // namespace mproc::detail
