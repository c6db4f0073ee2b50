// mproc/detail/target.hpp — type erasure for "a callable and its arguments, run once in a child".
// Not part of the public API; public templates (Process, spawn_detached) need to see it.
#pragma once

#include <chrono>
#include <concepts>
#include <cstdint>
#include <functional>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>

namespace mproc::detail {

// Runs once, in the child, after fork. Args are decay-copied at construction (like std::thread) and
// moved into the call, so move-only arguments (std::unique_ptr) work.
struct Target {
  virtual ~Target() = default;
  virtual void run() = 0;
};

template <class F, class... Args>
struct BoundTarget final : Target {
  template <class G, class... A>
  explicit BoundTarget(G&& g, A&&... a) : f(std::forward<G>(g)), args(std::forward<A>(a)...) {}
  void run() override { std::apply(std::move(f), std::move(args)); }
  F f;
  std::tuple<Args...> args;
};

template <class F, class... Args>
std::unique_ptr<Target> make_target(F&& f, Args&&... args) {
  return std::make_unique<BoundTarget<std::decay_t<F>, std::decay_t<Args>...>>(std::forward<F>(f),
                                                                               std::forward<Args>(args)...);
}

// A user-supplied duration as nanoseconds, saturating instead of overflowing (hours::max() means
// "practically forever", not a negative number). Negative durations become zero.
template <class Rep, class Period>
constexpr std::chrono::nanoseconds to_nanoseconds(std::chrono::duration<Rep, Period> d) {
  using namespace std::chrono;
  if (d <= duration<Rep, Period>::zero()) return nanoseconds::zero();
  using Wide = duration<long double, std::nano>;
  const Wide w = duration_cast<Wide>(d);
  if (w >= Wide(static_cast<long double>(nanoseconds::max().count()))) return nanoseconds::max();
  return duration_cast<nanoseconds>(d);
}

}  // namespace mproc::detail
