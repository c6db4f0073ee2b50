// mproc/codec.hpp — how values cross a process boundary: encode to bytes, decode from bytes.
//
//     std::vector<std::byte> b = mproc::encode(std::map<std::string, std::vector<int>>{{"a", {1, 2}}});
//     auto m = mproc::decode<std::map<std::string, std::vector<int>>>(b);
//
// Queue items, pipe messages, pool arguments and results all travel through this codec. Built in:
// arithmetic types, bool, std::byte, enums with a fixed underlying type (enum class E, enum E : int),
// std::basic_string, std::vector (std::vector<bool> too), std::array, C arrays as fields, std::pair,
// std::tuple, std::optional, std::variant, std::monostate, std::map, std::unordered_map, std::set,
// std::unordered_set, std::chrono::duration and time_point, any nesting of these, and trivially copyable
// aggregates without pointers (their fields are found automatically, up to 32 of them). Any other type
// opts in with one line at global namespace scope after its definition:
//
//     namespace ns { struct Job { std::string name; std::vector<double> data; int priority; }; }
//     MPROC_CODEC(ns::Job, name, data, priority);
//
// or with a specialization of mproc::codec<T> (see below). A type with no codec is a compile error whose
// message names MPROC_CODEC; the type itself is named in the "required from" lines of the trace.
//
// Wire format (docs/design/codec.md has all of it): no header, no type tag, no field names; host byte
// order, which is little-endian on every platform mproc runs on (the bytes are meant for processes on
// the same machine, usually the same program); 64-bit counts and lengths. A trivially copyable type
// whose every field takes any bit pattern (integers, floating point, std::byte, fixed enums, arrays and
// aggregates of them) is its object representation, padding included, so it and every contiguous run of
// it (vector, array, string) is one memcpy each way. Padding bytes travel as they are (unspecified).
//
// Decoding is total: for any T and any bytes, decode<T> returns a T or throws CodecError. It never reads
// outside the input, never invokes undefined behaviour, and never allocates before checking that the
// bytes left can hold what a length claims (count × the fewest bytes one element can take ≤ the bytes
// left), so the memory it uses is at most a per-type constant times the input size. bool and optional
// tags must be 0 or 1, variant indexes in range, map and set keys strictly increasing (unordered ones
// distinct), unused bits zero: every value has exactly one encoding (except padding). User types nest
// at most max_decode_depth deep (only they can be recursive), so no input can exhaust the stack.
//
// Blocking: nothing here blocks. Threads: all functions are reentrant; a ByteWriter or ByteReader must
// not be used by two threads at once. Fork: nothing here holds a lock or a resource; only the memory
// allocator is used. Errors: CodecError (from mproc/error.hpp) for bytes that do not decode and for
// values that cannot be encoded (a valueless variant, an output span too small); std::bad_alloc if
// memory runs out.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "mproc/error.hpp"

namespace mproc {

/// The codec of T: built in for the types listed above, opt-in for others with MPROC_CODEC or an
/// explicit specialization (at global namespace scope, after T is complete):
///
///     template <> struct mproc::codec<ns::Money> {
///       static void encode(mproc::ByteWriter& w, const ns::Money& m) { mproc::encode_to(w, m.cents()); }
///       static void decode(mproc::ByteReader& r, ns::Money& m) {
///         std::int64_t c; mproc::decode_from(r, c);
///         if (c < 0) r.fail("negative money");   // validate: throws CodecError
///         m = ns::Money(c);
///       }
///       static constexpr std::size_t min_size = 8;     // optional: fewest bytes any encoding takes
///       static constexpr bool fixed_size = true;       // optional: every encoding takes min_size bytes
///       static std::size_t size(const ns::Money&);     // optional: exact encoded size (else measured)
///     };
///
/// decode receives a value-initialized or previously used T and must overwrite all of it. It must
/// consume exactly the bytes encode wrote, and throw (CodecError, through ByteReader) for anything else.
/// min_size must be a true lower bound; leaving it out (0) is always correct and costs one byte per
/// element in containers of T (see docs/design/codec.md, "zero-size elements").
template <class T>
struct codec;

/// Where encoded bytes go: a window [pos_, end_) written in place, and a virtual overflow() called only
/// when a write does not fit. VectorWriter and SpanWriter are the ready-made ones; derive your own to
/// encode straight into other storage (overflow() must consume all n bytes or throw). Not copyable.
class ByteWriter {
 public:
  ByteWriter(const ByteWriter&) = delete;
  ByteWriter& operator=(const ByteWriter&) = delete;

  /// Append n bytes from src. Throws what overflow() throws.
  void write(const void* src, std::size_t n) {
    if (n <= static_cast<std::size_t>(end_ - pos_)) {
      if (n != 0) std::memcpy(pos_, src, n);
      pos_ += n;
    } else {
      overflow(static_cast<const std::byte*>(src), n);
    }
  }
  /// Append one byte. Throws what overflow() throws.
  void write_byte(std::byte b) {
    if (pos_ != end_) {
      *pos_++ = b;
    } else {
      overflow(&b, 1);
    }
  }
  /// Fixed-width integers in host byte order (little-endian on mproc's platforms).
  void write_u32(std::uint32_t v) { write(&v, sizeof v); }
  /// As write_u32(), 8 bytes.
  void write_u64(std::uint64_t v) { write(&v, sizeof v); }

 protected:
  ByteWriter() = default;
  /// A writer whose first window is [first, last).
  ByteWriter(std::byte* first, std::byte* last) noexcept : pos_(first), end_(last) {}
  ~ByteWriter() = default;

  /// [src, src + n) did not fit in [pos_, end_): take all of it (usually: set up a new window and copy
  /// it there), or throw.
  virtual void overflow(const std::byte* src, std::size_t n) = 0;

  std::byte* pos_ = nullptr;  ///< next byte to write
  std::byte* end_ = nullptr;  ///< end of the current window
};

/// Appends to a std::vector<std::byte>, growing it as needed. The bytes become part of the vector at
/// commit(); destroyed without commit() (an exception while encoding), it leaves the vector as it was.
class VectorWriter final : public ByteWriter {
 public:
  /// size_hint: bytes to make room for at once (exact if you know it: encoded_size()).
  explicit VectorWriter(std::vector<std::byte>& out, std::size_t size_hint = 0)
      : out_(out), start_(out.size()) {
    out_.resize(start_ + size_hint);
    pos_ = out_.data() + start_;
    end_ = out_.data() + out_.size();
  }
  VectorWriter(const VectorWriter&) = delete;
  VectorWriter& operator=(const VectorWriter&) = delete;
  ~VectorWriter() {
    if (!committed_) out_.resize(start_);
  }
  /// Bytes written so far by this writer.
  std::size_t written() const noexcept { return static_cast<std::size_t>(pos_ - (out_.data() + start_)); }
  /// Trim the vector to what was written and keep it. Returns the vector's new size.
  std::size_t commit() {
    out_.resize(start_ + written());
    committed_ = true;
    return out_.size();
  }

 private:
  void overflow(const std::byte* src, std::size_t n) override {
    const std::size_t used = static_cast<std::size_t>(pos_ - out_.data());
    std::size_t want = out_.size() < 64 ? 64 : out_.size() * 2;
    if (want < used + n) want = used + n;
    out_.resize(want);
    std::memcpy(out_.data() + used, src, n);
    pos_ = out_.data() + used + n;
    end_ = out_.data() + out_.size();
  }

  std::vector<std::byte>& out_;
  std::size_t start_;
  bool committed_ = false;
};

/// Writes into a fixed buffer; a write past its end throws CodecError (what was written stays).
class SpanWriter final : public ByteWriter {
 public:
  /// A writer at the start of out (the buffer must outlive the writer).
  explicit SpanWriter(std::span<std::byte> out) noexcept
      : ByteWriter(out.data(), out.data() + out.size()), first_(out.data()) {}
  SpanWriter(const SpanWriter&) = delete;
  SpanWriter& operator=(const SpanWriter&) = delete;
  ~SpanWriter() = default;
  /// Bytes written so far.
  std::size_t written() const noexcept { return static_cast<std::size_t>(pos_ - first_); }

 private:
  void overflow(const std::byte*, std::size_t n) override {
    throw CodecError("mproc::encode: the output buffer is too small (" + std::to_string(n) +
                     " more bytes needed, " + std::to_string(end_ - pos_) + " left)");
  }
  std::byte* first_;
};

/// How deep user codecs (MPROC_CODEC or a codec<T> specialization) may nest while decoding; only they
/// can make a type recursive (a tree node holding a vector of nodes). Deeper input: CodecError.
inline constexpr unsigned max_decode_depth = 256;

/// Reads encoded bytes, bounds-checked: every read that would pass the end throws CodecError. Not
/// copyable; it only refers to the bytes, which must outlive it.
class ByteReader {
 public:
  /// A reader at the start of in (the bytes must outlive the reader).
  explicit ByteReader(std::span<const std::byte> in) noexcept
      : pos_(in.data()), end_(in.data() + in.size()) {}
  ByteReader(const ByteReader&) = delete;
  ByteReader& operator=(const ByteReader&) = delete;

  /// Bytes not read yet.
  std::size_t remaining() const noexcept { return static_cast<std::size_t>(end_ - pos_); }

  /// The next n bytes (a pointer into the input), consumed. CodecError if fewer remain.
  const std::byte* take(std::size_t n) {
    if (n > remaining()) fail_truncated(n);
    const std::byte* p = pos_;
    pos_ += n;
    return p;
  }
  /// Copy the next n bytes to dst. CodecError if fewer remain.
  void read(void* dst, std::size_t n) {
    const std::byte* p = take(n);
    if (n != 0) std::memcpy(dst, p, n);
  }
  /// The next byte, consumed. CodecError if none remains.
  std::byte read_byte() { return *take(1); }
  /// Fixed-width integers in host byte order, as ByteWriter writes them. CodecError if fewer remain.
  std::uint32_t read_u32() {
    std::uint32_t v;
    read(&v, sizeof v);
    return v;
  }
  /// As read_u32(), 8 bytes.
  std::uint64_t read_u64() {
    std::uint64_t v;
    read(&v, sizeof v);
    return v;
  }

  /// A 64-bit element count, checked before anything is allocated: CodecError unless count ×
  /// min_bytes_each ≤ remaining() (min_bytes_each ≥ 1: the fewest bytes one element can take).
  std::size_t read_count(std::size_t min_bytes_each) {
    const std::uint64_t n = read_u64();
    if (n > remaining() / min_bytes_each) fail_count(n, min_bytes_each);
    return static_cast<std::size_t>(n);
  }

  /// CodecError unless every byte has been read.
  void expect_end() const {
    if (pos_ != end_) fail_trailing();
  }

  /// Throw CodecError("mproc::decode: " + what). For codecs that validate what they decode.
  [[noreturn]] static void fail(const char* what) { throw CodecError(std::string("mproc::decode: ") + what); }

  /// Counts one level of user-codec nesting for as long as it lives; CodecError past max_decode_depth.
  class Nest {
   public:
    /// Enter one level of nesting on r (the destructor leaves it). CodecError past max_decode_depth.
    explicit Nest(ByteReader& r) : r_(r) {
      if (++r_.depth_ > max_decode_depth) {
        --r_.depth_;
        fail("nesting deeper than mproc::max_decode_depth");
      }
    }
    Nest(const Nest&) = delete;
    Nest& operator=(const Nest&) = delete;
    ~Nest() { --r_.depth_; }

   private:
    ByteReader& r_;
  };

 private:
  [[noreturn, gnu::cold, gnu::noinline]] void fail_truncated(std::size_t n) const {
    throw CodecError("mproc::decode: input ends early (" + std::to_string(n) + " bytes needed, " +
                     std::to_string(remaining()) + " left)");
  }
  [[noreturn, gnu::cold, gnu::noinline]] void fail_count(std::uint64_t n, std::size_t each) const {
    throw CodecError("mproc::decode: a count of " + std::to_string(n) + " elements (at least " +
                     std::to_string(each) + " bytes each) exceeds the " + std::to_string(remaining()) +
                     " bytes left");
  }
  [[noreturn, gnu::cold, gnu::noinline]] void fail_trailing() const {
    throw CodecError("mproc::decode: " + std::to_string(remaining()) +
                     " bytes left over after the value (wrong type, or not one whole message)");
  }

  const std::byte* pos_;
  const std::byte* end_;
  unsigned depth_ = 0;
};

/// Encode value at the writer's position: the building block for codecs and custom sinks. Throws what
/// the writer throws, and CodecError for a value that cannot be encoded (a valueless variant).
template <class T>
void encode_to(ByteWriter& w, const T& value);

/// Decode into out from the reader's position (consumes exactly the value's bytes; use
/// ByteReader::expect_end() to require the input's end). CodecError if the bytes do not decode; out is
/// then valid but unspecified.
template <class T>
void decode_from(ByteReader& r, T& out);

/// The exact number of bytes encode(value) produces. O(1) for types of fixed size and for contiguous
/// runs of them (std::vector<int>, std::string); otherwise one walk over the value, and for user codecs
/// without size() a trial encoding into a counter. Never throws for built-in types.
template <class T>
std::size_t encoded_size(const T& value);

}  // namespace mproc

#include "mproc/detail/codec_builtin.hpp"

namespace mproc {

template <class T>
struct codec : detail::builtin_codec<T> {};

template <class T>
void encode_to(ByteWriter& w, const T& value) {
  if constexpr (!detail::has_codec<T>) {
    codec<T>::mproc_diagnose();
  } else {
    codec<T>::encode(w, value);
  }
}

template <class T>
void decode_from(ByteReader& r, T& out) {
  static_assert(!std::is_const_v<T>, "mproc::decode_from: cannot decode into a const object");
  if constexpr (!detail::has_codec<T>) {
    codec<T>::mproc_diagnose();
  } else if constexpr (detail::is_builtin_codec<T>) {
    codec<T>::decode(r, out);
  } else {
    // Only user codecs can make a type recursive; bound the depth so input cannot exhaust the stack.
    ByteReader::Nest nest(r);
    codec<T>::decode(r, out);
  }
}

template <class T>
std::size_t encoded_size(const T& value) {
  if constexpr (!detail::has_codec<T>) {
    codec<T>::mproc_diagnose();
    return 0;
  } else if constexpr (detail::fixed_size_v<T>) {
    (void)value;
    return detail::min_size_v<T>;
  } else if constexpr (requires {
                         { codec<T>::size(value) } -> std::convertible_to<std::size_t>;
                       }) {
    return codec<T>::size(value);
  } else {
    detail::SizeCounter counter;
    codec<T>::encode(counter, value);
    return counter.size();
  }
}

namespace detail {
template <class T>
constexpr void check_top_level_encode() {
  static_assert(!std::is_array_v<T>,
                "mproc::encode: a C array (a string literal?) as a whole value; pass std::string(\"...\") "
                "or a std::array, whose codecs the receiving side can name");
}
}  // namespace detail

/// Append value's encoding to out (one allocation at most: the exact size is computed first). On an
/// exception out is left as it was. Throws CodecError (see encode_to), std::bad_alloc.
template <class T>
void encode_append(std::vector<std::byte>& out, const T& value) {
  detail::check_top_level_encode<T>();
  if constexpr (!detail::has_codec<T>) {
    codec<T>::mproc_diagnose();
  } else {
    VectorWriter w(out, encoded_size(value));
    encode_to(w, value);
    w.commit();
  }
}

/// value's encoding as a new vector. Throws CodecError (see encode_to), std::bad_alloc.
template <class T>
std::vector<std::byte> encode(const T& value) {
  std::vector<std::byte> out;
  encode_append(out, value);
  return out;
}

/// Encode value into out (no allocation for built-in types); returns the bytes written. CodecError if
/// out is smaller than encoded_size(value) (the bytes written so far are unspecified).
template <class T>
std::size_t encode_into(std::span<std::byte> out, const T& value) {
  detail::check_top_level_encode<T>();
  SpanWriter w(out);
  encode_to(w, value);
  return w.written();
}

/// Decode bytes that hold exactly one T into out, reusing its storage (a vector's capacity). Throws as
/// decode<T>; after a CodecError out is valid but unspecified.
template <class T>
void decode(std::span<const std::byte> bytes, T& out) {
  ByteReader r(bytes);
  decode_from(r, out);
  r.expect_end();
}

/// Decode bytes that hold exactly one T (as encode produced them). CodecError if they are truncated,
/// malformed, or followed by more bytes. T must be default-constructible (it is decoded in place).
template <class T>
T decode(std::span<const std::byte> bytes) {
  static_assert(std::is_default_constructible_v<T>,
                "mproc::decode<T>: T must be default-constructible (the value is decoded into a "
                "value-initialized T)");
  T out{};
  decode(bytes, out);
  return out;
}

}  // namespace mproc

/// MPROC_CODEC(Type, field1, field2, ...): give Type a codec that encodes the listed data members in
/// the order listed. Write it at global namespace scope after Type's definition, with Type's qualified
/// name; for a template specialization with commas in its name, use an alias. The members must be
/// accessible (public, or `friend struct mproc::codec<Type>;`), not const, and have codecs themselves;
/// Type must be default-constructible. Members left out are not transmitted (they keep the value they
/// had in the object decoded into). Type may be recursive through a container (a tree node with a
/// std::vector of nodes); decoding then nests at most max_decode_depth deep.
#define MPROC_CODEC(Type, ...)                                                                               \
  template <>                                                                                                \
  struct mproc::codec<Type> : ::mproc::detail::member_codec<Type, ::mproc::codec<Type>> {                    \
    using mproc_type = Type;                                                                                 \
    template <class MprocObj, class MprocF>                                                                  \
    static void for_each_member(MprocObj& mproc_obj, MprocF&& mproc_f) {                                     \
      (void)mproc_obj;                                                                                       \
      (void)mproc_f;                                                                                         \
      MPROC_DETAIL_FOR_EACH(MPROC_DETAIL_MEMBER_VISIT, __VA_ARGS__)                                          \
    }                                                                                                        \
    static constexpr std::size_t min_size = ::mproc::detail::sat_sum(                                        \
        {std::size_t{0} MPROC_DETAIL_FOR_EACH(MPROC_DETAIL_MEMBER_MIN, __VA_ARGS__)});                       \
    static constexpr bool fixed_size = (true MPROC_DETAIL_FOR_EACH(MPROC_DETAIL_MEMBER_FIXED, __VA_ARGS__)); \
  }

#define MPROC_DETAIL_MEMBER_VISIT(member) mproc_f(mproc_obj.member);
#define MPROC_DETAIL_MEMBER_TYPE(member) std::remove_cvref_t<decltype(std::declval<mproc_type&>().member)>
#define MPROC_DETAIL_MEMBER_MIN(member) , ::mproc::detail::min_size_v<MPROC_DETAIL_MEMBER_TYPE(member)>
#define MPROC_DETAIL_MEMBER_FIXED(member) &&::mproc::detail::fixed_size_v<MPROC_DETAIL_MEMBER_TYPE(member)>
