// mproc/pool.hpp — Python's multiprocessing.Pool, AsyncResult and mproc::async for C++.
//
// A Pool is a fixed set of forked worker processes that run tasks for the parent:
//
//     int square(int x) { return x * x; }
//     mproc::Pool pool(4);                                  // 4 workers, forked now
//     std::vector<int> sq = pool.map(square, std::views::iota(0, 1000));
//     auto r = pool.apply_async([](int a, int b) { return a + b; }, 2, 3);
//     int five = r.get();
//     for (int v : pool.imap(square, std::views::iota(0, 10'000'000)))  // lazy: reads input as it goes
//       if (v > 100) break;
//     pool.close(); pool.join();                            // or let ~Pool terminate it
//
// Task functions: a function pointer, a captureless lambda, or a default-constructible function-object
// type (it is default-constructed in the worker; member values the caller set do not travel). Workers
// are forked before a task exists, so captured state cannot reach them: pass state as arguments, or use
// mproc::async, which forks a fresh child per call and allows captures. Arguments and results travel
// through the codec (mproc/codec.hpp). Code dlopen()ed after the workers started is not visible to
// them (the task function's address must exist in the worker, which is a fork of the parent).
//
// Errors: an exception escaping a task reaches the caller as RemoteError (its demangled type name and
// what()), from get(), map and iteration; the pool stays usable. A worker that dies mid-task (a signal,
// abort, _exit) fails exactly the tasks of the chunk it was running with WorkerLost (exitcode() is
// -signal or the exit code; what() names the worker, its pid and "killed by SIGKILL" / "exited with
// code 3"), is replaced, and the pool keeps serving; chunks not yet started are never lost. With
// PoolOptions::task_timeout a chunk running longer than task_timeout × its task count has its worker
// killed and replaced and its tasks fail with TimeoutError. After terminate(), results not yet ready
// throw mproc::Error("pool terminated").
//
// Blocking: apply, map, starmap and join block until done; AsyncResult::get/wait block until ready
// (or the timeout); imap's next()/iteration blocks for the next result. Submitting (apply_async,
// map_async, creating an imap) never waits for workers. close() never blocks; terminate() blocks for
// at most ~100 ms plus a kill (SIGTERM, then SIGKILL) and reaps every worker.
//
// Threads: every Pool method and AsyncResult may be used from any thread of the parent at once. An
// imap object (like an iterator) belongs to one thread at a time. The Pool runs one supervisor thread
// ("pool thread") in the parent; it is stopped and joined by join()/terminate()/~Pool.
//
// Fork-safety: workers (replacements too) are started through Process::start, mproc's careful fork;
// the parent's pool fds are closed in every child mproc forks. The worker only runs the worker loop
// (codec, socket I/O, malloc) and your functions: a task must not need a lock that another thread of
// the parent may have held at the moment of the fork. A Pool object copied into a child by fork is
// inert there: using it throws UsageError. Workers are daemon processes: they die with the parent
// (also by SIGKILL) and may not start processes of their own (UsageError), as in Python. See
// docs/design/pool.md.
//
// mproc::async (declared here, listed in API.md §3) forks one fresh child per call.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <ranges>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "mproc/codec.hpp"
#include "mproc/connection.hpp"
#include "mproc/detail/pool_core.hpp"
#include "mproc/detail/target.hpp"
#include "mproc/error.hpp"
#include "mproc/export.hpp"
#include "mproc/process.hpp"

namespace mproc {

/// How a Pool is set up (Pool(PoolOptions)); every field has a default.
struct PoolOptions {
  unsigned processes = 0;                  ///< 0: process_cpu_count()
  std::function<void()> initializer{};     ///< runs once in every worker, replacements included; if it
                                           ///< throws, the worker exits 1 (and the chunk it was given
                                           ///< fails with WorkerLost) and is replaced
  std::size_t maxtasksperchild = 0;        ///< 0: workers live as long as the pool
  std::string name_prefix = "PoolWorker";  ///< workers are "<prefix>-1", "<prefix>-2", ... (ps, top)
  std::optional<std::chrono::milliseconds> task_timeout{};  ///< a task running longer: its worker is
                                                          ///< killed and replaced, it fails with TimeoutError
};

namespace detail {

template <class R>
using ValueOf = std::conditional_t<std::is_void_v<R>, std::monostate, R>;

template <class R>
using Assemble = void (*)(ResultSource&, std::optional<ValueOf<R>>&, std::exception_ptr&);

template <class R>
struct ResultState {
  std::shared_ptr<ResultSource> src;
  Assemble<R> assemble = nullptr;
  std::mutex m;
  bool assembled = false;
  std::optional<ValueOf<R>> value;
  std::exception_ptr error;
  void finish() {
    std::lock_guard lk(m);
    if (assembled) return;
    try {
      assemble(*src, value, error);
    } catch (...) {
      error = std::current_exception();
    }
    assembled = true;
  }
};

// One task record -> value or error.
template <class R>
void decode_task(ByteReader& r, std::optional<ValueOf<R>>& value, std::exception_ptr& err) {
  if (!task_succeeded(r, err)) return;
  value.emplace();
  if constexpr (!std::is_void_v<R>) decode_from(r, *value);
}

inline std::span<const std::byte> records(const ChunkOutcome& c) {
  return std::span<const std::byte>(c.bytes).subspan(c.offset);
}

template <class R>
void assemble_one(ResultSource& src, std::optional<ValueOf<R>>& value, std::exception_ptr& err) {
  ChunkOutcome& c = src.chunk(0);
  if (c.error) {
    err = c.error;
    return;
  }
  ByteReader r(records(c));
  decode_task<R>(r, value, err);
}

// The results of a whole map in input order; the first failure in input order is thrown.
template <class R>
std::vector<R> collect(ResultSource& src) {
  std::vector<R> out;
  const std::size_t n = src.chunk_count();
  std::size_t total = 0;
  for (std::size_t i = 0; i < n; ++i) total += src.chunk(i).count;
  out.reserve(total);
  for (std::size_t i = 0; i < n; ++i) {
    ChunkOutcome& c = src.chunk(i);
    if (c.error) std::rethrow_exception(c.error);
    ByteReader r(records(c));
    for (std::size_t k = 0; k < c.count; ++k) {
      std::exception_ptr e;
      if constexpr (memcpy_v<R> && std::is_default_constructible_v<R>) {
        // A value that is its bytes: no optional, no copy through it (a million-task map reads a
        // million of these in this thread after the workers are done).
        if (!task_succeeded(r, e)) std::rethrow_exception(e);
        R& v = out.emplace_back();
        r.read(std::addressof(v), sizeof(R));
      } else {
        std::optional<R> v;
        decode_task<R>(r, v, e);
        if (e) std::rethrow_exception(e);
        out.push_back(std::move(*v));
      }
    }
  }
  return out;
}

template <class R>
void assemble_vector(ResultSource& src, std::optional<std::vector<R>>& value, std::exception_ptr&) {
  value.emplace(collect<R>(src));
}

// One chunk -> per-task items, for imap.
template <class R>
void decode_items(ChunkOutcome& c, std::deque<std::pair<std::optional<R>, std::exception_ptr>>& out) {
  std::exception_ptr broken = c.error;
  ByteReader r(records(c));
  for (std::size_t k = 0; k < c.count; ++k) {
    std::optional<R> v;
    std::exception_ptr e = broken;
    if (!e) {
      try {
        decode_task<R>(r, v, e);
      } catch (...) {  // a malformed record: the rest of the chunk cannot be found any more
        broken = e = std::current_exception();
        v.reset();
      }
    }
    out.emplace_back(std::move(v), std::move(e));
  }
}

// ---- task functions ----

template <class F>
inline constexpr bool pool_function_ok = (std::is_pointer_v<F> && std::is_function_v<std::remove_pointer_t<F>>) ||
                                         (std::is_class_v<F> && std::is_default_constructible_v<F>);

template <class F>
std::uintptr_t fn_address(F f) noexcept {
  if constexpr (std::is_pointer_v<F>) {
    return reinterpret_cast<std::uintptr_t>(f);
  } else {
    (void)f;
    return 0;
  }
}

template <class F>
F make_function(std::uintptr_t fn) {
  if constexpr (std::is_pointer_v<F>) {
    return reinterpret_cast<F>(fn);
  } else {
    (void)fn;
    return F{};
  }
}

template <bool Spread, class F, class A>
decltype(auto) call_task(F& f, A&& a) {
  if constexpr (Spread) {
    return std::apply(f, std::forward<A>(a));
  } else {
    return std::invoke(f, std::forward<A>(a));
  }
}

template <class F, class T, std::size_t... I>
constexpr bool applicable_impl(std::index_sequence<I...>) {
  return std::is_invocable_v<F&, std::tuple_element_t<I, T>&&...>;
}
template <class F, class T>
constexpr bool applicable() {
  if constexpr (requires { std::tuple_size<T>::value; }) {
    return applicable_impl<F, T>(std::make_index_sequence<std::tuple_size_v<T>>{});
  } else {
    return false;
  }
}
template <class F, class Arg, bool Spread>
constexpr bool task_callable() {
  if constexpr (Spread) {
    return applicable<F, Arg>();
  } else {
    return std::is_invocable_v<F&, Arg&&>;
  }
}

template <class F, class Arg, bool Spread>
using task_result_t = std::remove_cvref_t<decltype(call_task<Spread>(std::declval<F&>(), std::declval<Arg&&>()))>;

// The Invoker (see pool_core.hpp) for task function F with decoded argument type Arg; Spread: Arg is a
// tuple whose elements are the arguments (apply, starmap), else Arg is the one argument (map, imap).
template <class F, class Arg, bool Spread>
void invoke_chunk(std::uintptr_t fn, ByteReader& in, std::size_t count, ByteWriter& out) {
  using R = task_result_t<F, Arg, Spread>;
  F f = make_function<F>(fn);
  for (std::size_t i = 0; i < count; ++i) {
    Arg arg{};
    try {
      decode_from(in, arg);
    } catch (...) {
      for (; i < count; ++i) write_current_exception(out);  // the rest cannot be found any more
      return;
    }
    try {
      if constexpr (std::is_void_v<R>) {
        call_task<Spread>(f, std::move(arg));
        out.write_byte(std::byte{1});
      } else if constexpr (memcpy_v<R> && sizeof(R) <= 64) {
        // A value that is its bytes: status and value in one write, which either happens whole or
        // throws (bad_alloc) before writing anything, so no partial record is possible.
        const R r = call_task<Spread>(f, std::move(arg));
        std::byte rec[1 + sizeof(R)];
        rec[0] = std::byte{1};
        std::memcpy(rec + 1, std::addressof(r), sizeof(R));
        out.write(rec, sizeof rec);
      } else {
        decltype(auto) r = call_task<Spread>(f, std::move(arg));
        // Encoded aside first: a result whose encoding throws half-way (a codec hook, bad_alloc) must
        // leave no partial bytes in the answer, or the parent would decode them as this task's result.
        thread_local std::vector<std::byte> encoded;
        encoded.clear();
        encode_append(encoded, r);
        out.write_byte(std::byte{1});
        out.write(encoded.data(), encoded.size());
      }
    } catch (...) {
      write_current_exception(out);
    }
  }
}

template <class Arg, class Ref>
void encode_item(ByteWriter& w, Ref&& x) {
  if constexpr (std::is_same_v<std::remove_cvref_t<Ref>, Arg>) {
    encode_to(w, x);
  } else {
    encode_to(w, static_cast<Arg>(std::forward<Ref>(x)));
  }
}

}  // namespace detail

#define MPROC_POOL_CHECK_FUNCTION(F)                                                                          \
  static_assert(::mproc::detail::pool_function_ok<F>,                                                          \
                "mproc::Pool: the task function must be a function pointer, a captureless lambda or a "      \
                "default-constructible function object: pool workers are forked before the task exists, "    \
                "so captured state cannot reach them; pass state as arguments, or use mproc::async")

#define MPROC_POOL_CHECK_CALLABLE(F, Arg, Spread)                                  \
  static_assert(::mproc::detail::task_callable<F, Arg, Spread>(),                   \
                "mproc::Pool: the task function cannot be called with an element of the range")

/// The result of apply_async, map_async (R = std::vector<T>) or mproc::async, delivered later. Cheap to
/// copy (copies share the result); usable from any thread of the parent.
template <class R>
class AsyncResult {
 public:
  /// An empty AsyncResult: every call throws UsageError.
  AsyncResult() = default;

  /// Block until ready, then return the value (a copy, each time) or throw the task's error:
  /// RemoteError, WorkerLost, TimeoutError (task_timeout), mproc::Error("pool terminated").
  R get() {
    wait();
    return take();
  }
  /// As get(), waiting at most timeout: TimeoutError if the result is not ready by then.
  template <class Rep, class P>
  R get(std::chrono::duration<Rep, P> timeout) {
    if (!wait(timeout)) throw TimeoutError("mproc::AsyncResult::get: timed out");
    return take();
  }
  /// Block until ready.
  void wait() { state("wait").src->wait(std::nullopt); }
  /// Block until ready or timeout; true if ready.
  template <class Rep, class P>
  bool wait(std::chrono::duration<Rep, P> timeout) {
    return state("wait").src->wait(detail::to_nanoseconds(timeout));
  }
  /// Ready? Never blocks.
  bool ready() const { return state("ready").src->ready(); }
  /// Ready and without error? UsageError if not ready yet.
  bool successful() const {
    auto& s = state("successful");
    if (!s.src->ready()) throw UsageError("mproc::AsyncResult::successful: the result is not ready yet");
    s.finish();
    return !s.error;
  }

  /// For mproc itself (Pool, async).
  AsyncResult(std::shared_ptr<detail::ResultSource> src, detail::Assemble<R> assemble)
      : st_(std::make_shared<detail::ResultState<R>>()) {
    st_->src = std::move(src);
    st_->assemble = assemble;
  }

 private:
  detail::ResultState<R>& state(const char* what) const {
    if (!st_) throw UsageError(std::string("mproc::AsyncResult::") + what + ": empty AsyncResult");
    return *st_;
  }
  R take() {
    auto& s = state("get");
    s.finish();
    if (s.error) std::rethrow_exception(s.error);
    if constexpr (!std::is_void_v<R>) return *s.value;
  }
  std::shared_ptr<detail::ResultState<R>> st_;
};

/// What imap / imap_unordered return: an input range over the results (range-for works), with next().
/// Reads its input lazily in the thread that calls next() or advances the iterator, keeping at most
/// 2 × processes + 1 chunks submitted but not consumed. A failed item throws from next() (or the
/// iterator) for that item only; next() may be called again for the following ones. Destroying it
/// early drops its chunks not yet started and ignores late results. Move-only; one thread at a time.
template <class F, class Range, bool Ordered>
class IMapIterator {
  using Base = std::conditional_t<std::is_lvalue_reference_v<Range>, std::remove_reference_t<Range>,
                                  std::remove_cvref_t<Range>>;
  using Stored = std::conditional_t<std::is_lvalue_reference_v<Range>, Base*, Base>;
  using It = std::ranges::iterator_t<Base&>;
  using Sent = std::ranges::sentinel_t<Base&>;
  using Arg = std::ranges::range_value_t<Base&>;

 public:
  /// The result type: what f returns for one element of the range.
  using value_type = detail::task_result_t<F, Arg, false>;

 private:
  using R = value_type;
  struct State {
    std::shared_ptr<detail::PoolCore> core;
    std::shared_ptr<detail::Job> job;
    std::uintptr_t fn = 0;
    Stored range;
    std::optional<It> it;
    std::optional<Sent> end;
    std::size_t chunksize = 1;
    std::uint64_t window = 1, submitted = 0, taken = 0;
    bool input_done = false;
    std::deque<std::pair<std::optional<R>, std::exception_ptr>> buffer;
    std::optional<R> current;
    Base& base() {
      if constexpr (std::is_pointer_v<Stored>) {
        return *range;
      } else {
        return range;
      }
    }
    State(Stored r) : range(std::move(r)) {}
    State(const State&) = delete;
    ~State() {
      if (job) job->cancel();
    }
  };

 public:
  /// The input iterator that begin() returns. It refers to its IMapIterator, which must outlive it.
  class iterator {
   public:
    using value_type = R;                              ///< the result type
    using difference_type = std::ptrdiff_t;            ///< as input iterators need one
    using iterator_concept = std::input_iterator_tag;  ///< a single-pass input iterator
    iterator() = default;
    /// The current result (until the next ++).
    R& operator*() const { return *st_->current; }
    /// The current result's members (until the next ++).
    R* operator->() const { return &*st_->current; }
    /// Move to the next result: blocks for it, and throws that item's error, as next().
    iterator& operator++() {
      advance(*st_);
      return *this;
    }
    /// As ++it (an input iterator: returns nothing).
    void operator++(int) { ++*this; }
    /// True past the last result (and for a default-constructed iterator).
    friend bool operator==(const iterator& i, std::default_sentinel_t) noexcept {
      return !i.st_ || !i.st_->current;
    }

   private:
    friend class IMapIterator;
    explicit iterator(State* s) : st_(s) {}
    State* st_ = nullptr;
  };

  /// The next result: in input order (imap) or completion order (imap_unordered); nullopt at the end.
  /// Throws that item's error (RemoteError, WorkerLost, ...), or what reading/encoding the input throws.
  std::optional<R> next() { return next_for(std::nullopt); }
  /// As next(), waiting at most timeout for the result: TimeoutError if it does not come by then.
  template <class Rep, class P>
  std::optional<R> next(std::chrono::duration<Rep, P> timeout) {
    return next_for(detail::to_nanoseconds(timeout));
  }
  /// Fetches the first result (so it may block and throw, like next()).
  iterator begin() {
    advance(*st_);
    return iterator(st_.get());
  }
  /// The end of the results, for range-for.
  std::default_sentinel_t end() const noexcept { return {}; }

  /// For mproc::Pool.
  IMapIterator(std::shared_ptr<detail::PoolCore> core, std::shared_ptr<detail::Job> job, std::uintptr_t fn,
               Stored range, std::size_t chunksize)
      : st_(std::make_unique<State>(std::move(range))) {
    st_->core = std::move(core);
    st_->job = std::move(job);
    st_->fn = fn;
    st_->chunksize = chunksize == 0 ? 1 : chunksize;
    st_->window = 2 * std::uint64_t{detail::pool_processes(*st_->core)} + 1;
  }

 private:
  static void advance(State& st) {
    st.current.reset();
    st.current = next_in(st, std::nullopt);
  }
  std::optional<R> next_for(std::optional<std::chrono::nanoseconds> timeout) {
    if (!st_) throw UsageError("mproc::Pool::imap: use of a moved-from object");
    return next_in(*st_, timeout);
  }
  static void top_up(State& st) {
    if (!st.it) {
      st.it.emplace(std::ranges::begin(st.base()));
      st.end.emplace(std::ranges::end(st.base()));
    }
    while (!st.input_done && st.submitted - st.taken < st.window) {
      std::vector<std::byte> msg = detail::run_message(&detail::invoke_chunk<F, Arg, false>, st.fn);
      std::size_t count = 0;
      {
        VectorWriter w(msg);
        for (; count < st.chunksize && *st.it != *st.end; ++*st.it, ++count) detail::encode_item<Arg>(w, **st.it);
        w.commit();
      }
      if (count > 0) {
        detail::pool_submit(*st.core, st.job, std::move(msg), count);
        ++st.submitted;
      }
      if (*st.it == *st.end) {
        st.input_done = true;
        st.job->finish_input();
      }
    }
  }
  static std::optional<R> next_in(State& st, std::optional<std::chrono::nanoseconds> timeout) {
    for (;;) {
      if (!st.buffer.empty()) {
        auto item = std::move(st.buffer.front());
        st.buffer.pop_front();
        if (item.second) std::rethrow_exception(item.second);
        return std::move(item.first);
      }
      top_up(st);
      if (st.taken == st.submitted) return std::nullopt;  // input exhausted and everything consumed
      auto oc = st.job->take(Ordered ? std::optional<std::uint64_t>(st.taken) : std::nullopt, timeout);
      if (!oc) throw TimeoutError("mproc::Pool::imap: timed out waiting for the next result");
      ++st.taken;
      detail::decode_items<R>(*oc, st.buffer);
    }
  }
  std::unique_ptr<State> st_;
};

/// A pool of worker processes (see the top of this file). Not copyable; movable (a moved-from Pool
/// throws UsageError on use). Every method: UsageError when called in a forked child of the pool's
/// creator, or on a moved-from Pool.
class MPROC_API Pool {
 public:
  /// Fork `processes` workers now (0: process_cpu_count()) and start the pool thread.
  /// std::system_error if a fork fails (nothing is left behind).
  explicit Pool(unsigned processes = 0);
  /// As Pool(unsigned), set up by options (workers, initializer, maxtasksperchild, names, task_timeout).
  explicit Pool(PoolOptions options);
  /// Takes over the other's workers and pool thread; the other is left moved-from.
  Pool(Pool&&) noexcept;
  /// Takes over the other's workers; this Pool's own are terminated and joined, as by ~Pool().
  Pool& operator=(Pool&&) noexcept;
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;
  /// terminate(), then join (as Python's `with Pool() as p:`). Never throws, never hangs.
  ~Pool();

  /// f(args...) in a worker; blocks for the result. Throws what AsyncResult::get throws; UsageError
  /// after close()/terminate().
  template <class F, class... A>
  auto apply(F f, A&&... args) {
    MPROC_POOL_CHECK_FUNCTION(F);
    return apply_async(f, std::forward<A>(args)...).get();
  }

  /// f(args...) in a worker; returns at once. UsageError after close()/terminate().
  template <class F, class... A>
  auto apply_async(F f, A&&... args) {
    MPROC_POOL_CHECK_FUNCTION(F);
    using Arg = std::tuple<std::decay_t<A>...>;
    static_assert(detail::task_callable<F, Arg, true>(),
                  "mproc::Pool::apply: the task function cannot be called with these arguments");
    using R = detail::task_result_t<F, Arg, true>;
    auto& c = core("apply_async");
    auto job = detail::pool_new_job(c, false, "apply_async");
    std::vector<std::byte> msg = detail::run_message(&detail::invoke_chunk<F, Arg, true>, detail::fn_address(f));
    {
      VectorWriter w(msg);
      encode_to(w, Arg(std::forward<A>(args)...));
      w.commit();
    }
    detail::pool_submit(c, job, std::move(msg), 1);
    job->finish_input();
    return AsyncResult<R>(std::move(job), &detail::assemble_one<R>);
  }

  /// [f(x) for x in in], in input order, cut into chunks of chunksize (0: Python's heuristic,
  /// ceil(len / (4 × processes))). Blocks; throws the error of the first failing item in input order
  /// (after every chunk has finished). Empty input: {} at once.
  template <class F, class Range>
  auto map(F f, const Range& in, std::size_t chunksize = 0) {
    MPROC_POOL_CHECK_FUNCTION(F);
    using Arg = std::ranges::range_value_t<const Range&>;
    MPROC_POOL_CHECK_CALLABLE(F, Arg, false);
    using R = detail::task_result_t<F, Arg, false>;
    auto job = submit_all<F, Arg, false>(f, in, chunksize, "map");
    job->wait(std::nullopt);
    return detail::collect<R>(*job);
  }

  /// As map(), calling on_progress(done, total) in this thread each time more items are done, and
  /// (total, total) last; empty input: on_progress(0, 0) once.
  template <class F, class Range>
  auto map(F f, const Range& in, std::size_t chunksize,
           std::function<void(std::size_t done, std::size_t total)> on_progress) {
    MPROC_POOL_CHECK_FUNCTION(F);
    using Arg = std::ranges::range_value_t<const Range&>;
    MPROC_POOL_CHECK_CALLABLE(F, Arg, false);
    using R = detail::task_result_t<F, Arg, false>;
    auto job = submit_all<F, Arg, false>(f, in, chunksize, "map");
    const std::size_t total = job->total_tasks();
    if (total == 0) {
      if (on_progress) on_progress(0, 0);
      return std::vector<R>{};
    }
    std::size_t seen = 0;
    while (seen < total) {
      const std::size_t d = job->wait_progress(seen, std::nullopt);
      if (d > seen) {
        seen = d;
        if (on_progress) on_progress(seen, total);
      }
    }
    job->wait(std::nullopt);
    return detail::collect<R>(*job);
  }

  /// map() without blocking: AsyncResult<std::vector<R>>.
  template <class F, class Range>
  auto map_async(F f, const Range& in, std::size_t chunksize = 0) {
    MPROC_POOL_CHECK_FUNCTION(F);
    using Arg = std::ranges::range_value_t<const Range&>;
    MPROC_POOL_CHECK_CALLABLE(F, Arg, false);
    using R = detail::task_result_t<F, Arg, false>;
    auto job = submit_all<F, Arg, false>(f, in, chunksize, "map_async");
    return AsyncResult<std::vector<R>>(std::move(job), &detail::assemble_vector<R>);
  }

  /// Lazy map in input order (see IMapIterator). An rvalue range is moved into the result; an lvalue
  /// range is referenced and must outlive the iteration.
  template <class F, class Range>
  auto imap(F f, Range&& in, std::size_t chunksize = 1) {
    MPROC_POOL_CHECK_FUNCTION(F);
    return make_imap<F, Range, true>(f, std::forward<Range>(in), chunksize, "imap");
  }
  /// As imap, results in completion order.
  template <class F, class Range>
  auto imap_unordered(F f, Range&& in, std::size_t chunksize = 1) {
    MPROC_POOL_CHECK_FUNCTION(F);
    return make_imap<F, Range, false>(f, std::forward<Range>(in), chunksize, "imap_unordered");
  }

  /// [std::apply(f, t) for t in tuples] (tuples: a range of std::tuple / std::pair / std::array).
  template <class F, class Range>
  auto starmap(F f, const Range& tuples, std::size_t chunksize = 0) {
    MPROC_POOL_CHECK_FUNCTION(F);
    using Arg = std::ranges::range_value_t<const Range&>;
    MPROC_POOL_CHECK_CALLABLE(F, Arg, true);
    using R = detail::task_result_t<F, Arg, true>;
    auto job = submit_all<F, Arg, true>(f, tuples, chunksize, "starmap");
    job->wait(std::nullopt);
    return detail::collect<R>(*job);
  }

  /// No new work from now on (UsageError for apply/map/... afterwards); queued work still runs. An imap
  /// created before keeps reading its input until join() has finished.
  void close();
  /// Stop now: SIGTERM every worker, SIGKILL after at most 100 ms, reap them all; every result not yet
  /// ready fails with mproc::Error("pool terminated"). Idempotent.
  void terminate();
  /// Wait for all queued work, then for the workers to exit. UsageError unless close() or terminate()
  /// was called first.
  void join();

 private:
  template <class F, class Arg, bool Spread, class Range>
  std::shared_ptr<detail::Job> submit_all(F f, const Range& in, std::size_t chunksize, const char* what) {
    static_assert(!std::is_void_v<detail::task_result_t<F, Arg, Spread>>,
                  "mproc::Pool::map/starmap/imap: the task function must return a value (use apply_async "
                  "for tasks without a result)");
    auto& c = core(what);
    auto job = detail::pool_new_job(c, false, what);
    std::size_t n = 0;
    if constexpr (std::ranges::sized_range<const Range>) {
      n = static_cast<std::size_t>(std::ranges::size(in));
    } else {
      n = static_cast<std::size_t>(std::ranges::distance(in));
    }
    if (chunksize == 0) {
      const std::size_t parts = 4 * std::size_t{detail::pool_processes(c)};
      chunksize = n / parts + (n % parts ? 1 : 0);
    }
    auto it = std::ranges::begin(in);
    auto end = std::ranges::end(in);
    const std::uintptr_t fn = detail::fn_address(f);
    std::size_t left = n;
    while (it != end) {
      std::vector<std::byte> msg = detail::run_message(&detail::invoke_chunk<F, Arg, Spread>, fn);
      std::size_t count = 0;
      {
        // Fixed-size arguments: room for the whole chunk at once (no regrowth, each byte zeroed once).
        std::size_t hint = 0;
        if constexpr (detail::fixed_size_v<Arg>) hint = std::min(chunksize, left) * detail::min_size_v<Arg>;
        VectorWriter w(msg, hint);
        for (; count < chunksize && it != end; ++it, ++count) detail::encode_item<Arg>(w, *it);
        w.commit();
      }
      left -= std::min(left, count);
      detail::pool_submit(c, job, std::move(msg), count);
    }
    job->finish_input();
    return job;
  }

  template <class F, class Range, bool Ordered>
  auto make_imap(F f, Range&& in, std::size_t chunksize, const char* what) {
    using Result = IMapIterator<F, Range, Ordered>;
    using Base = std::conditional_t<std::is_lvalue_reference_v<Range>, std::remove_reference_t<Range>,
                                    std::remove_cvref_t<Range>>;
    using Arg = std::ranges::range_value_t<Base&>;
    static_assert(std::ranges::input_range<Base&>, "mproc::Pool::imap: the input must be a range");
    MPROC_POOL_CHECK_CALLABLE(F, Arg, false);
    static_assert(!std::is_void_v<detail::task_result_t<F, Arg, false>>,
                  "mproc::Pool::imap: the task function must return a value");
    auto job = detail::pool_new_job(core(what), true, what);
    if constexpr (std::is_lvalue_reference_v<Range>) {
      return Result(core_, std::move(job), detail::fn_address(f), &in, chunksize);
    } else {
      return Result(core_, std::move(job), detail::fn_address(f), std::move(in), chunksize);
    }
  }

  detail::PoolCore& core(const char* what) const;
  std::shared_ptr<detail::PoolCore> core_;
};

/// f(args...) in a freshly forked child (a non-daemon Process, named like any Process), started now:
/// captures are allowed, f and args are decay-copied as by Process. The result comes back through the
/// codec. get() throws RemoteError for an exception in the child, WorkerLost (naming the child's pid and
/// "killed by SIGSEGV" / "exited with code 3") if it died without answering. Throws what Process::start
/// throws (UsageError in a daemon process, std::system_error if fork fails).
template <class F, class... Args>
auto async(F&& f, Args&&... args) {
  using R = std::remove_cvref_t<std::invoke_result_t<std::decay_t<F>, std::decay_t<Args>...>>;
  auto body = [g = std::decay_t<F>(std::forward<F>(f)),
               tup = std::tuple<std::decay_t<Args>...>(std::forward<Args>(args)...)](Connection w) mutable {
    std::vector<std::byte> rec;
    try {
      VectorWriter out(rec);
      if constexpr (std::is_void_v<R>) {
        std::apply(std::move(g), std::move(tup));
        out.write_byte(std::byte{1});
      } else {
        decltype(auto) r = std::apply(std::move(g), std::move(tup));
        out.write_byte(std::byte{1});
        encode_to(out, r);
      }
      out.commit();
    } catch (...) {
      VectorWriter out(rec);
      detail::write_current_exception(out);
      out.commit();
    }
    w.send_bytes(rec);
  };
  auto [reader, writer] = Pipe(false);
  Process p(std::move(body), writer);
  return AsyncResult<R>(detail::launch_async(std::move(p), std::move(reader), std::move(writer)),
                        &detail::assemble_one<R>);
}

}  // namespace mproc

#undef MPROC_POOL_CHECK_FUNCTION
#undef MPROC_POOL_CHECK_CALLABLE
