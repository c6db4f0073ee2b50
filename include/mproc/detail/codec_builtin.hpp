// mproc/detail/codec_builtin.hpp — the built-in codecs; not part of the public API (included by
// mproc/codec.hpp, whose comment and docs/design/codec.md describe the wire format).
//
// Every codec is a struct with static encode(ByteWriter&, const T&) and decode(ByteReader&, T&), and
// optionally min_size (fewest bytes of any encoding), fixed_size (every encoding is min_size bytes) and
// size(const T&). Built-in ones also carry `using mproc_builtin = void;` and, when T is copied as its
// object representation, `mproc_memcpy = true` (which lets a contiguous run of T be one memcpy). A type
// without a codec gets a struct with `mproc_no_codec` and an mproc_diagnose() whose static_assert says
// what to do; the public entry points call it, so that exactly one readable error appears.
//
// Containers never declare class-level constants that depend on their element's codec: a recursive
// user type (a node holding std::vector<node>) asks for min_size_v<std::vector<node>> while its own
// codec is still incomplete.
#pragma once

#include <array>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <iterator>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

#include "mproc/detail/codec_fields.hpp"
#include "mproc/error.hpp"

namespace mproc::detail {

template <class>
inline constexpr bool always_false = false;

// ---- what a codec says about T -------------------------------------------------------------------

template <class T>
concept has_codec = !requires {
  codec<T>::mproc_no_codec;
};

template <class T>
concept is_builtin_codec = requires {
  typename codec<T>::mproc_builtin;
};

inline constexpr std::size_t size_max = static_cast<std::size_t>(-1);
constexpr std::size_t sat_add(std::size_t a, std::size_t b) noexcept {
  return a > size_max - b ? size_max : a + b;
}
constexpr std::size_t sat_mul(std::size_t a, std::size_t b) noexcept {
  return (b != 0 && a > size_max / b) ? size_max : a * b;
}
constexpr std::size_t sat_sum(std::initializer_list<std::size_t> xs) noexcept {
  std::size_t s = 0;
  for (std::size_t x : xs) s = sat_add(s, x);
  return s;
}
constexpr std::size_t min_of(std::initializer_list<std::size_t> xs) noexcept {
  std::size_t m = size_max;
  for (std::size_t x : xs) m = x < m ? x : m;
  return m;
}

template <class T>
consteval std::size_t min_size_of() {
  if constexpr (requires { codec<T>::min_size; }) {
    return static_cast<std::size_t>(codec<T>::min_size);
  } else {
    return 0;
  }
}
/// The fewest bytes any encoding of T takes (0 when the codec does not say).
template <class T>
inline constexpr std::size_t min_size_v = min_size_of<T>();

template <class T>
consteval bool fixed_size_of() {
  if constexpr (requires { codec<T>::fixed_size; }) {
    return static_cast<bool>(codec<T>::fixed_size);
  } else {
    return false;
  }
}
/// Every encoding of T takes exactly min_size_v<T> bytes.
template <class T>
inline constexpr bool fixed_size_v = fixed_size_of<T>();

template <class T>
consteval bool memcpy_of() {
  if constexpr (is_builtin_codec<T> && requires { codec<T>::mproc_memcpy; }) {
    return static_cast<bool>(codec<T>::mproc_memcpy);
  } else {
    return false;
  }
}
/// T's encoding is its object representation (sizeof(T) bytes), and any sizeof(T) bytes are a valid T.
template <class T>
inline constexpr bool memcpy_v = memcpy_of<T>();

// ---- container elements: the zero-size rule ------------------------------------------------------
// A count is checked against the bytes left as count × (fewest bytes per element). An element type
// whose encoding can be empty (std::monostate, an empty struct, a user codec without min_size) would
// let 8 bytes claim 2^64 elements; so in counted containers each such element is preceded by one 0x00
// byte, and then every element takes at least one byte. cost_v is that per-element lower bound.

template <class T>
inline constexpr bool marked_v = min_size_v<T> == 0;
template <class T>
inline constexpr std::size_t cost_v = marked_v<T> ? 1 : min_size_v<T>;

inline void write_marker(ByteWriter& w) { w.write_byte(std::byte{0}); }
inline void read_marker(ByteReader& r) {
  if (r.read_byte() != std::byte{0}) ByteReader::fail("the marker byte before an element is not 0");
}

template <class T>
void encode_element(ByteWriter& w, const T& x) {
  if constexpr (marked_v<T>) write_marker(w);
  ::mproc::encode_to(w, x);
}
template <class T>
void decode_element(ByteReader& r, T& x) {
  if constexpr (marked_v<T>) read_marker(r);
  ::mproc::decode_from(r, x);
}
/// Encoded size of count elements of a range (markers included).
template <class T, class Range>
std::size_t elements_size(const Range& range, std::size_t count) {
  if constexpr (fixed_size_v<T>) {
    (void)range;
    return count * (min_size_v<T> + (marked_v<T> ? 1 : 0));
  } else {
    std::size_t s = 0;
    for (const auto& x : range) s += (marked_v<T> ? 1 : 0) + ::mproc::encoded_size(x);
    return s;
  }
}

/// Measures an encoding without keeping it (for user codecs that have no size()).
class SizeCounter final : public ByteWriter {
 public:
  SizeCounter() noexcept {
    pos_ = buf_;
    end_ = buf_ + sizeof buf_;
  }
  std::size_t size() const noexcept { return flushed_ + static_cast<std::size_t>(pos_ - buf_); }

 private:
  void overflow(const std::byte*, std::size_t n) override {
    flushed_ += static_cast<std::size_t>(pos_ - buf_) + n;
    pos_ = buf_;
  }
  std::byte buf_[256];
  std::size_t flushed_ = 0;
};

// ---- types without a codec: one readable error each ----------------------------------------------

struct no_codec {
  static constexpr bool mproc_no_codec = true;
};

template <class T>
struct no_codec_generic : no_codec {
  static void mproc_diagnose() {
    static_assert(always_false<T>,
                  "mproc: this type has no codec (the type is named in the 'required from' lines of this "
                  "error). Give it one with MPROC_CODEC(Type, field1, field2, ...) at global namespace "
                  "scope after its definition, or specialize mproc::codec<Type>.");
  }
};
template <class T>
struct no_codec_pointer : no_codec {
  static void mproc_diagnose() {
    static_assert(always_false<T>,
                  "mproc: a pointer has no codec: its value means nothing in another process. Send what "
                  "it points to (a std::string for a const char*, a std::vector for a T*), and give a "
                  "struct holding it a codec with MPROC_CODEC(Type, field1, field2, ...).");
  }
};
template <class T>
struct no_codec_view : no_codec {
  static void mproc_diagnose() {
    static_assert(always_false<T>,
                  "mproc: a view (std::string_view, std::span) has no codec: decoding needs an owner for "
                  "the elements. Send a std::string or a std::vector (in a struct: MPROC_CODEC(Type, "
                  "fields...) with owning fields).");
  }
};
template <class T>
struct no_codec_union : no_codec {
  static void mproc_diagnose() {
    static_assert(always_false<T>,
                  "mproc: a union has no codec (which member is active is unknown). Use std::variant, or "
                  "specialize mproc::codec<Type> (MPROC_CODEC is for structs).");
  }
};
template <class T>
struct no_codec_enum : no_codec {
  static void mproc_diagnose() {
    static_assert(always_false<T>,
                  "mproc: an enum without a fixed underlying type has no codec (decoding a value outside "
                  "its range would be undefined behaviour). Declare it `enum class E` or `enum E : int`, "
                  "or specialize mproc::codec<E> (MPROC_CODEC is for structs).");
  }
};
template <class T>
struct no_codec_not_trivially_copyable : no_codec {
  static void mproc_diagnose() {
    static_assert(always_false<T>,
                  "mproc: this aggregate has no built-in codec because it is not trivially copyable (it "
                  "holds a std::string, a std::vector, ...). List its fields with MPROC_CODEC(Type, "
                  "field1, field2, ...) at global namespace scope after its definition.");
  }
};
template <class T>
struct no_codec_uncountable : no_codec {
  static void mproc_diagnose() {
    static_assert(always_false<T>,
                  "mproc: the fields of this aggregate cannot be found automatically (a field without a "
                  "default constructor, a reference, or a base class). Give it a codec with "
                  "MPROC_CODEC(Type, field1, field2, ...).");
  }
};
template <class T>
struct no_codec_too_many : no_codec {
  static void mproc_diagnose() {
    static_assert(always_false<T>,
                  "mproc: this aggregate has more than 32 fields, more than the codec finds by itself. "
                  "Give it a codec with MPROC_CODEC(Type, field1, field2, ...).");
  }
};
template <class T>
struct no_codec_cv_or_ref : no_codec {
  static void mproc_diagnose() {
    static_assert(always_false<T>,
                  "mproc: this aggregate has a const, volatile or reference field, which decoding cannot "
                  "assign. Give it a codec with MPROC_CODEC(Type, field1, ...) or specialize "
                  "mproc::codec<Type>.");
  }
};
template <class T, class... Fields>
struct no_codec_bad_field : no_codec {
  static void mproc_diagnose() {
    static_assert(always_false<T>,
                  "mproc: a field of this trivially copyable aggregate has no codec (the next error says "
                  "why: a pointer?). Change the field, or give the aggregate a codec with "
                  "MPROC_CODEC(Type, field1, field2, ...) listing the fields to send.");
    (diagnose_field<Fields>(), ...);
  }
  template <class F>
  static void diagnose_field() {
    if constexpr (!has_codec<F>) codec<F>::mproc_diagnose();
  }
};
/// A composite whose element E has no codec has none either (so that the aggregate that holds it
/// reports the field); the diagnosis is E's.
template <class E>
struct no_codec_forward : no_codec {
  static void mproc_diagnose() { codec<E>::mproc_diagnose(); }
};

// ---- scalars --------------------------------------------------------------------------------------

/// T is its object representation; every bit pattern is a valid T.
template <class T>
struct raw_codec {
  using mproc_builtin = void;
  static constexpr bool mproc_memcpy = true;
  static constexpr std::size_t min_size = sizeof(T);
  static constexpr bool fixed_size = true;
  static void encode(ByteWriter& w, const T& v) { w.write(std::addressof(v), sizeof(T)); }
  static void decode(ByteReader& r, T& v) { r.read(std::addressof(v), sizeof(T)); }
};

/// One byte, 0 or 1 (any other byte would make a bool with an invalid value: undefined behaviour).
template <class T>
struct bool_codec {
  using mproc_builtin = void;
  static constexpr std::size_t min_size = 1;
  static constexpr bool fixed_size = true;
  static void encode(ByteWriter& w, const T& v) {
    w.write_byte(static_cast<bool>(v) ? std::byte{1} : std::byte{0});
  }
  static void decode(ByteReader& r, T& v) {
    const std::byte b = r.read_byte();
    if (b != std::byte{0} && b != std::byte{1}) ByteReader::fail("a bool byte is neither 0 nor 1");
    v = static_cast<T>(b == std::byte{1});
  }
};

/// An enum with a fixed underlying type may hold any value of that type (so any bytes decode);
/// without one, only values within its range are valid, which decoding cannot promise.
template <class E>
concept fixed_enum = std::is_enum_v<E> && requires {
  E{std::underlying_type_t<E>{}};
};

template <class E, bool Fixed = fixed_enum<E>>
struct enum_codec : no_codec_enum<E> {};
template <class E>
struct enum_codec<E, true>
    : std::conditional_t<std::is_same_v<std::underlying_type_t<E>, bool>, bool_codec<E>, raw_codec<E>> {};

// ---- arrays: C arrays (as fields) and std::array ---------------------------------------------------

template <class A, class E, std::size_t N>
struct elementwise_array_codec {
  using mproc_builtin = void;
  static constexpr std::size_t min_size = sat_mul(N, min_size_v<E>);
  static constexpr bool fixed_size = N == 0 || fixed_size_v<E>;
  static void encode(ByteWriter& w, const A& a) {
    for (const E& e : a) ::mproc::encode_to(w, e);
  }
  static void decode(ByteReader& r, A& a) {
    for (E& e : a) ::mproc::decode_from(r, e);
  }
  static std::size_t size(const A& a) {
    std::size_t s = 0;
    for (const E& e : a) s += ::mproc::encoded_size(e);
    return s;
  }
};

template <class A, class E, std::size_t N>
using array_codec = std::conditional_t<!has_codec<E>, no_codec_forward<E>,
                                       std::conditional_t<memcpy_v<E> && N != 0 && sizeof(A) == N * sizeof(E),
                                                          raw_codec<A>, elementwise_array_codec<A, E, N>>>;

// ---- aggregates ------------------------------------------------------------------------------------

enum class aggregate_kind {
  raw,
  fields,
  not_trivially_copyable,
  uncountable,
  too_many,
  cv_or_ref,
  bad_field
};

template <class F>
inline constexpr bool cv_or_ref_v = std::is_reference_v<F> || std::is_const_v<F> || std::is_volatile_v<F>;

template <class... Fs>
consteval aggregate_kind classify_fields(type_list<Fs...>) {
  if constexpr ((cv_or_ref_v<Fs> || ...)) {
    return aggregate_kind::cv_or_ref;
  } else if constexpr (!(has_codec<Fs> && ...)) {
    return aggregate_kind::bad_field;
  } else if constexpr (sizeof...(Fs) != 0 && (memcpy_v<Fs> && ...)) {
    return aggregate_kind::raw;
  } else {
    return aggregate_kind::fields;
  }
}

template <class T>
consteval aggregate_kind classify_aggregate() {
  if constexpr (!std::is_trivially_copyable_v<T>) {
    return aggregate_kind::not_trivially_copyable;
  } else {
    constexpr std::size_t n = field_count<T>();
    if constexpr (n == fields_uncountable || (n == 0 && !std::is_empty_v<T>)) {
      return aggregate_kind::uncountable;
    } else if constexpr (n == fields_too_many) {
      return aggregate_kind::too_many;
    } else {
      return classify_fields(field_types_t<T, n>{});
    }
  }
}

template <class... Fs>
consteval std::size_t fields_min_size(type_list<Fs...>) {
  return sat_sum({std::size_t{0}, min_size_v<Fs>...});
}
template <class... Fs>
consteval bool fields_fixed_size(type_list<Fs...>) {
  return (fixed_size_v<Fs> && ...);
}

/// A trivially copyable aggregate with a field that is not bitwise (a bool, a std::optional): the
/// fields' encodings in declaration order, each validated.
template <class T>
struct aggregate_fields_codec {
  using mproc_builtin = void;
  static constexpr std::size_t count = field_count<T>();
  static constexpr std::size_t min_size = fields_min_size(field_types_t<T, count>{});
  static constexpr bool fixed_size = fields_fixed_size(field_types_t<T, count>{});
  static void encode(ByteWriter& w, const T& v) {
    visit_fields<count>(v, [&](const auto&... f) { (::mproc::encode_to(w, f), ...); });
  }
  static void decode(ByteReader& r, T& v) {
    visit_fields<count>(v, [&](auto&... f) { (::mproc::decode_from(r, f), ...); });
  }
  static std::size_t size(const T& v) {
    std::size_t s = 0;
    visit_fields<count>(v, [&](const auto&... f) { ((s += ::mproc::encoded_size(f)), ...); });
    return s;
  }
};

template <class T, class List>
struct bad_field_codec;
template <class T, class... Fs>
struct bad_field_codec<T, type_list<Fs...>> : no_codec_bad_field<T, Fs...> {};

template <class T, aggregate_kind K = classify_aggregate<T>()>
struct aggregate_codec;
template <class T>
struct aggregate_codec<T, aggregate_kind::raw> : raw_codec<T> {};
template <class T>
struct aggregate_codec<T, aggregate_kind::fields> : aggregate_fields_codec<T> {};
template <class T>
struct aggregate_codec<T, aggregate_kind::not_trivially_copyable> : no_codec_not_trivially_copyable<T> {};
template <class T>
struct aggregate_codec<T, aggregate_kind::uncountable> : no_codec_uncountable<T> {};
template <class T>
struct aggregate_codec<T, aggregate_kind::too_many> : no_codec_too_many<T> {};
template <class T>
struct aggregate_codec<T, aggregate_kind::cv_or_ref> : no_codec_cv_or_ref<T> {};
template <class T>
struct aggregate_codec<T, aggregate_kind::bad_field>
    : bad_field_codec<T, field_types_t<T, field_count<T>()>> {};

// ---- dispatch on the kind of type -----------------------------------------------------------------

enum class type_kind { other, boolean, arithmetic, enumeration, pointer, array, union_type, aggregate };

template <class T>
consteval type_kind kind_of() {
  if constexpr (std::is_same_v<T, bool>) {
    return type_kind::boolean;
  } else if constexpr (std::is_arithmetic_v<T>) {
    return type_kind::arithmetic;
  } else if constexpr (std::is_enum_v<T>) {
    return type_kind::enumeration;
  } else if constexpr (std::is_pointer_v<T> || std::is_member_pointer_v<T> || std::is_null_pointer_v<T>) {
    return type_kind::pointer;
  } else if constexpr (std::is_bounded_array_v<T>) {
    return type_kind::array;
  } else if constexpr (std::is_union_v<T>) {
    return type_kind::union_type;
  } else if constexpr (std::is_class_v<T> && std::is_aggregate_v<T>) {
    return type_kind::aggregate;
  } else {
    return type_kind::other;
  }
}

template <class T, type_kind K = kind_of<T>()>
struct kind_codec : no_codec_generic<T> {};
template <class T>
struct kind_codec<T, type_kind::boolean> : bool_codec<T> {};
template <class T>
struct kind_codec<T, type_kind::arithmetic> : raw_codec<T> {};
template <class T>
struct kind_codec<T, type_kind::enumeration> : enum_codec<T> {};
template <class T>
struct kind_codec<T, type_kind::pointer> : no_codec_pointer<T> {};
template <class T>
struct kind_codec<T, type_kind::array> : array_codec<T, std::remove_extent_t<T>, std::extent_v<T>> {};
template <class T>
struct kind_codec<T, type_kind::union_type> : no_codec_union<T> {};
template <class T>
struct kind_codec<T, type_kind::aggregate> : aggregate_codec<T> {};

/// What codec<T> is unless the user specializes it.
template <class T>
struct builtin_codec : kind_codec<T> {};

// ---- the standard library --------------------------------------------------------------------------

template <class C, class Tr, class A>
struct builtin_codec<std::basic_string<C, Tr, A>> {
  using mproc_builtin = void;
  using S = std::basic_string<C, Tr, A>;
  static constexpr std::size_t min_size = 8;
  static void encode(ByteWriter& w, const S& s) {
    w.write_u64(s.size());
    w.write(s.data(), s.size() * sizeof(C));
  }
  static void decode(ByteReader& r, S& s) {
    const std::size_t n = r.read_count(sizeof(C));
    const std::byte* p = r.take(n * sizeof(C));
    if constexpr (std::is_same_v<C, char> || std::is_same_v<C, unsigned char>) {
      // char and unsigned char may alias the input bytes.
      s.assign(reinterpret_cast<const C*>(p), n);
    } else {
      s.resize(n);
      if (n != 0) std::memcpy(s.data(), p, n * sizeof(C));
    }
  }
  static std::size_t size(const S& s) { return 8 + s.size() * sizeof(C); }
};

template <class C, class Tr>
struct builtin_codec<std::basic_string_view<C, Tr>> : no_codec_view<std::basic_string_view<C, Tr>> {};
template <class T, std::size_t N>
struct builtin_codec<std::span<T, N>> : no_codec_view<std::span<T, N>> {};

template <class T, class A>
struct builtin_codec<std::vector<T, A>> {
  using mproc_builtin = void;
  using V = std::vector<T, A>;
  static constexpr std::size_t min_size = 8;
  static void encode(ByteWriter& w, const V& v) {
    w.write_u64(v.size());
    if constexpr (memcpy_v<T>) {
      w.write(v.data(), v.size() * sizeof(T));
    } else {
      for (const T& x : v) encode_element(w, x);
    }
  }
  static void decode(ByteReader& r, V& v) {
    const std::size_t n = r.read_count(cost_v<T>);
    if (n > v.max_size()) ByteReader::fail("a vector's count exceeds its max_size()");
    if constexpr (memcpy_v<T>) {
      // cost_v<T> == sizeof(T): the bytes are there. One copy, no per-element work.
      const std::byte* p = r.take(n * sizeof(T));
      v.resize(n);
      if (n != 0) std::memcpy(v.data(), p, n * sizeof(T));
    } else {
      v.resize(n);  // n elements are backed by at least n * cost_v<T> input bytes
      for (T& x : v) decode_element(r, x);
    }
  }
  static std::size_t size(const V& v) {
    if constexpr (memcpy_v<T>) {
      return 8 + v.size() * sizeof(T);
    } else {
      return 8 + elements_size<T>(v, v.size());
    }
  }
};

/// T's encoding is an 8-byte element count (ByteWriter::write_u64: host byte order) followed by its
/// elements' object representations, which is what the std::vector and std::basic_string codecs above
/// write for elements with memcpy_v. Queue::put (mproc/queue.hpp) copies such values into its ring
/// without encoding them; tests/test_queue.cpp checks the two agree.
template <class T>
inline constexpr bool counted_run_v = false;
template <class E, class A>
inline constexpr bool counted_run_v<std::vector<E, A>> = is_builtin_codec<std::vector<E, A>> && memcpy_v<E>;
template <class C, class Tr, class A>
inline constexpr bool counted_run_v<std::basic_string<C, Tr, A>> =
    is_builtin_codec<std::basic_string<C, Tr, A>> && memcpy_v<C>;

/// Bit-packed: bit i in byte i / 8 at position i % 8; the unused high bits of the last byte are 0.
template <class A>
struct builtin_codec<std::vector<bool, A>> {
  using mproc_builtin = void;
  using V = std::vector<bool, A>;
  static constexpr std::size_t min_size = 8;
  static std::size_t bytes_for(std::uint64_t bits) noexcept {
    return static_cast<std::size_t>(bits / 8 + (bits % 8 != 0 ? 1 : 0));
  }
  static void encode(ByteWriter& w, const V& v) {
    const std::size_t n = v.size();
    w.write_u64(n);
    std::byte buf[256];
    std::size_t used = 0;
    for (std::size_t i = 0; i < n; i += 8) {
      unsigned b = 0;
      for (std::size_t j = 0; j < 8 && i + j < n; ++j) b |= (v[i + j] ? 1u : 0u) << j;
      buf[used++] = static_cast<std::byte>(b);
      if (used == sizeof buf) {
        w.write(buf, used);
        used = 0;
      }
    }
    w.write(buf, used);
  }
  static void decode(ByteReader& r, V& v) {
    const std::uint64_t n = r.read_u64();
    // bits / 8 rounded up cannot overflow; compared before anything is allocated.
    if (n / 8 + (n % 8 != 0 ? 1 : 0) > r.remaining()) {
      ByteReader::fail("a std::vector<bool>'s bit count exceeds the bytes left");
    }
    if (n > v.max_size()) ByteReader::fail("a std::vector<bool>'s bit count exceeds its max_size()");
    const std::size_t bits = static_cast<std::size_t>(n);
    const std::byte* p = r.take(bytes_for(bits));
    if (bits % 8 != 0 && (std::to_integer<unsigned>(p[bits / 8]) >> (bits % 8)) != 0) {
      ByteReader::fail("the unused bits of a std::vector<bool> are not 0");
    }
    v.assign(bits, false);
    for (std::size_t i = 0; i < bits; ++i) {
      if (((std::to_integer<unsigned>(p[i / 8]) >> (i % 8)) & 1u) != 0) v[i] = true;
    }
  }
  static std::size_t size(const V& v) { return 8 + bytes_for(v.size()); }
};

template <class T, std::size_t N>
struct builtin_codec<std::array<T, N>> : array_codec<std::array<T, N>, T, N> {};

template <class A, class B>
struct builtin_codec<std::pair<A, B>> {
  using mproc_builtin = void;
  using P = std::pair<A, B>;
  static constexpr std::size_t min_size = sat_add(min_size_v<A>, min_size_v<B>);
  static constexpr bool fixed_size = fixed_size_v<A> && fixed_size_v<B>;
  static void encode(ByteWriter& w, const P& p) {
    ::mproc::encode_to(w, p.first);
    ::mproc::encode_to(w, p.second);
  }
  static void decode(ByteReader& r, P& p) {
    ::mproc::decode_from(r, p.first);
    ::mproc::decode_from(r, p.second);
  }
  static std::size_t size(const P& p) {
    return ::mproc::encoded_size(p.first) + ::mproc::encoded_size(p.second);
  }
};

template <class... Ts>
struct builtin_codec<std::tuple<Ts...>> {
  using mproc_builtin = void;
  using T = std::tuple<Ts...>;
  static constexpr std::size_t min_size = sat_sum({std::size_t{0}, min_size_v<Ts>...});
  static constexpr bool fixed_size = (fixed_size_v<Ts> && ...);
  static void encode(ByteWriter& w, const T& t) {
    std::apply([&](const auto&... x) { (::mproc::encode_to(w, x), ...); }, t);
  }
  static void decode(ByteReader& r, T& t) {
    std::apply([&](auto&... x) { (::mproc::decode_from(r, x), ...); }, t);
  }
  static std::size_t size(const T& t) {
    return std::apply([](const auto&... x) { return (std::size_t{0} + ... + ::mproc::encoded_size(x)); }, t);
  }
};

template <class T>
struct optional_codec {
  using mproc_builtin = void;
  using O = std::optional<T>;
  static constexpr std::size_t min_size = 1;
  static void encode(ByteWriter& w, const O& o) {
    if (o) {
      w.write_byte(std::byte{1});
      ::mproc::encode_to(w, *o);
    } else {
      w.write_byte(std::byte{0});
    }
  }
  static void decode(ByteReader& r, O& o) {
    const std::byte tag = r.read_byte();
    if (tag == std::byte{0}) {
      o.reset();
    } else if (tag == std::byte{1}) {
      if (!o) o.emplace();
      ::mproc::decode_from(r, *o);
    } else {
      ByteReader::fail("a std::optional's tag is neither 0 nor 1");
    }
  }
  static std::size_t size(const O& o) { return 1 + (o ? ::mproc::encoded_size(*o) : 0); }
};
template <class T>
struct builtin_codec<std::optional<T>>
    : std::conditional_t<has_codec<T>, optional_codec<T>, no_codec_forward<T>> {};

template <>
struct builtin_codec<std::monostate> {
  using mproc_builtin = void;
  static constexpr std::size_t min_size = 0;
  static constexpr bool fixed_size = true;
  static void encode(ByteWriter&, const std::monostate&) {}
  static void decode(ByteReader&, std::monostate&) {}
};

/// A 32-bit alternative index, then that alternative.
template <class... Ts>
struct builtin_codec<std::variant<Ts...>> {
  using mproc_builtin = void;
  using V = std::variant<Ts...>;
  static_assert(sizeof...(Ts) < (std::uint64_t{1} << 32));
  static constexpr std::size_t min_size = sat_add(4, min_of({min_size_v<Ts>...}));
  static void encode(ByteWriter& w, const V& v) {
    if (v.valueless_by_exception()) {
      throw CodecError(
          "mproc::encode: a valueless std::variant (an assignment to it threw) cannot be encoded");
    }
    w.write_u32(static_cast<std::uint32_t>(v.index()));
    std::visit([&](const auto& x) { ::mproc::encode_to(w, x); }, v);
  }
  static void decode(ByteReader& r, V& v) {
    const std::uint32_t i = r.read_u32();
    if (i >= sizeof...(Ts)) ByteReader::fail("a std::variant's index is out of range");
    decode_alternative(r, v, i, std::index_sequence_for<Ts...>{});
  }
  static std::size_t size(const V& v) {
    if (v.valueless_by_exception()) return 4;  // encode throws
    return 4 + std::visit([](const auto& x) { return ::mproc::encoded_size(x); }, v);
  }

 private:
  template <std::size_t I>
  static void decode_as(ByteReader& r, V& v) {
    auto& x = v.index() == I ? std::get<I>(v) : v.template emplace<I>();
    ::mproc::decode_from(r, x);
  }
  template <std::size_t... Is>
  static void decode_alternative(ByteReader& r, V& v, std::uint32_t i, std::index_sequence<Is...>) {
    using fn = void (*)(ByteReader&, V&);
    static constexpr fn table[] = {&decode_as<Is>...};
    table[i](r, v);
  }
};

/// A count, then the entries in iteration order. Ordered containers must see strictly increasing keys
/// (by their comparator), unordered ones distinct keys: so every container has one encoding, and
/// decoding an ordered one is linear (each entry is placed at the end).
template <class M, class K, class V>
struct map_codec {
  using mproc_builtin = void;
  static constexpr std::size_t min_size = 8;
  static constexpr bool ordered = requires(const M& m) { m.key_comp(); };
  static void encode(ByteWriter& w, const M& m) {
    constexpr bool marked = sat_add(min_size_v<K>, min_size_v<V>) == 0;
    w.write_u64(m.size());
    for (const auto& [k, v] : m) {
      if constexpr (marked) write_marker(w);
      ::mproc::encode_to(w, k);
      ::mproc::encode_to(w, v);
    }
  }
  static void decode(ByteReader& r, M& m) {
    constexpr std::size_t entry_min = sat_add(min_size_v<K>, min_size_v<V>);
    constexpr bool marked = entry_min == 0;
    const std::size_t n = r.read_count(marked ? 1 : entry_min);
    m.clear();
    if constexpr (!ordered) m.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
      if constexpr (marked) read_marker(r);
      K k{};
      V v{};
      ::mproc::decode_from(r, k);
      ::mproc::decode_from(r, v);
      if constexpr (ordered) {
        if (!m.empty() && !m.key_comp()(std::prev(m.end())->first, k)) {
          ByteReader::fail("map keys are not in strictly increasing order");
        }
        m.emplace_hint(m.end(), std::move(k), std::move(v));
      } else {
        if (!m.emplace(std::move(k), std::move(v)).second)
          ByteReader::fail("an unordered map has a key twice");
      }
    }
  }
  static std::size_t size(const M& m) {
    constexpr bool marked = sat_add(min_size_v<K>, min_size_v<V>) == 0;
    if constexpr (fixed_size_v<K> && fixed_size_v<V>) {
      return 8 + m.size() * (min_size_v<K> + min_size_v<V> + (marked ? 1 : 0));
    } else {
      std::size_t s = 8;
      for (const auto& [k, v] : m)
        s += (marked ? 1 : 0) + ::mproc::encoded_size(k) + ::mproc::encoded_size(v);
      return s;
    }
  }
};

template <class S, class K>
struct set_codec {
  using mproc_builtin = void;
  static constexpr std::size_t min_size = 8;
  static constexpr bool ordered = requires(const S& s) { s.key_comp(); };
  static void encode(ByteWriter& w, const S& s) {
    w.write_u64(s.size());
    for (const K& k : s) encode_element(w, k);
  }
  static void decode(ByteReader& r, S& s) {
    const std::size_t n = r.read_count(cost_v<K>);
    s.clear();
    if constexpr (!ordered) s.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
      K k{};
      decode_element(r, k);
      if constexpr (ordered) {
        if (!s.empty() && !s.key_comp()(*std::prev(s.end()), k)) {
          ByteReader::fail("set elements are not in strictly increasing order");
        }
        s.emplace_hint(s.end(), std::move(k));
      } else {
        if (!s.emplace(std::move(k)).second) ByteReader::fail("an unordered set has an element twice");
      }
    }
  }
  static std::size_t size(const S& s) { return 8 + elements_size<K>(s, s.size()); }
};

template <class K, class V, class C, class A>
struct builtin_codec<std::map<K, V, C, A>> : map_codec<std::map<K, V, C, A>, K, V> {};
template <class K, class V, class H, class E, class A>
struct builtin_codec<std::unordered_map<K, V, H, E, A>> : map_codec<std::unordered_map<K, V, H, E, A>, K, V> {
};
template <class K, class C, class A>
struct builtin_codec<std::set<K, C, A>> : set_codec<std::set<K, C, A>, K> {};
template <class K, class H, class E, class A>
struct builtin_codec<std::unordered_set<K, H, E, A>> : set_codec<std::unordered_set<K, H, E, A>, K> {};

/// The count, as Rep; bitwise (one memcpy in a vector) when Rep is.
template <class D, class Rep>
struct count_codec {
  using mproc_builtin = void;
  static constexpr std::size_t min_size = min_size_v<Rep>;
  static constexpr bool fixed_size = fixed_size_v<Rep>;
  static void encode(ByteWriter& w, const D& d) { ::mproc::encode_to(w, d.count()); }
  static void decode(ByteReader& r, D& d) {
    Rep c{};
    ::mproc::decode_from(r, c);
    d = D(c);
  }
  static std::size_t size(const D& d) { return ::mproc::encoded_size(d.count()); }
};
template <class Rep, class Period>
struct builtin_codec<std::chrono::duration<Rep, Period>>
    : std::conditional_t<memcpy_v<Rep> && std::is_trivially_copyable_v<std::chrono::duration<Rep, Period>> &&
                             sizeof(std::chrono::duration<Rep, Period>) == sizeof(Rep),
                         raw_codec<std::chrono::duration<Rep, Period>>,
                         count_codec<std::chrono::duration<Rep, Period>, Rep>> {};

/// The time since the clock's epoch, as the duration.
template <class TP, class D>
struct time_point_codec {
  using mproc_builtin = void;
  static constexpr std::size_t min_size = min_size_v<D>;
  static constexpr bool fixed_size = fixed_size_v<D>;
  static void encode(ByteWriter& w, const TP& t) { ::mproc::encode_to(w, t.time_since_epoch()); }
  static void decode(ByteReader& r, TP& t) {
    D d{};
    ::mproc::decode_from(r, d);
    t = TP(d);
  }
  static std::size_t size(const TP& t) { return ::mproc::encoded_size(t.time_since_epoch()); }
};
template <class Clock, class D>
struct builtin_codec<std::chrono::time_point<Clock, D>>
    : std::conditional_t<memcpy_v<D> && std::is_trivially_copyable_v<std::chrono::time_point<Clock, D>> &&
                             sizeof(std::chrono::time_point<Clock, D>) == sizeof(D),
                         raw_codec<std::chrono::time_point<Clock, D>>,
                         time_point_codec<std::chrono::time_point<Clock, D>, D>> {};

// ---- MPROC_CODEC ----------------------------------------------------------------------------------

/// The base of every MPROC_CODEC codec: Self::for_each_member(obj, f) calls f on each listed member.
template <class T, class Self>
struct member_codec {
  static void encode(ByteWriter& w, const T& v) {
    Self::for_each_member(v, [&w](const auto& m) { ::mproc::encode_to(w, m); });
  }
  static void decode(ByteReader& r, T& v) {
    static_assert(std::is_default_constructible_v<T>,
                  "MPROC_CODEC: the type must be default-constructible (it is decoded in place)");
    Self::for_each_member(v, [&r](auto& m) { ::mproc::decode_from(r, m); });
  }
  static std::size_t size(const T& v) {
    std::size_t s = 0;
    Self::for_each_member(v, [&s](const auto& m) { s += ::mproc::encoded_size(m); });
    return s;
  }
};

}  // namespace mproc::detail
