// mproc/error.hpp — the exceptions mproc throws.
//
// Three families:
//   * mproc::Error (a std::runtime_error) and its children: something went wrong at run time that a
//     correct program can meet (a timeout, a dead peer, bytes that do not decode).
//   * mproc::UsageError (a std::logic_error): the program used the library wrongly (start twice, join
//     before start, set daemon after start, use after close, ...). Fix the program.
//   * std::system_error: an operating-system call failed; code() carries errno and what() names the
//     call that failed ("fork: Resource temporarily unavailable").
// Nothing here blocks; all types are cheap to copy and safe to throw across threads.
#pragma once

#include <stdexcept>
#include <string>
#include <system_error>

#include "mproc/export.hpp"

namespace mproc {

/// Base of the library's run-time errors.
class MPROC_API Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Misuse of the API (a programming error): start twice, join before start, use after close, ...
class MPROC_API UsageError : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

/// A timed wait ran out where the call has no other way to say so.
class MPROC_API TimeoutError : public Error {
 public:
  using Error::Error;
};

/// Queue get could not complete (non-blocking, or timeout).
class MPROC_API Empty : public Error {
 public:
  Empty() : Error("queue is empty") {}
  using Error::Error;
};

/// Queue put could not complete (non-blocking, or timeout).
class MPROC_API Full : public Error {
 public:
  Full() : Error("queue is full") {}
  using Error::Error;
};

/// Connection::recv* when the other end is closed and nothing is left.
class MPROC_API EOFError : public Error {
 public:
  using Error::Error;
};

/// Bytes that do not decode as the requested type.
class MPROC_API CodecError : public Error {
 public:
  using Error::Error;
};

/// An exception escaped a task in a pool worker or an async child.
class MPROC_API RemoteError : public Error {
 public:
  /// type_name() is type_name (the original exception's demangled type); what() is message (its what()).
  RemoteError(std::string type_name, const std::string& message)
      : Error(message), type_name_(std::move(type_name)) {}
  /// The demangled type of the original exception, e.g. "std::out_of_range".
  const std::string& type_name() const noexcept { return type_name_; }

 private:
  std::string type_name_;
};

/// The worker running a task died before answering.
class MPROC_API WorkerLost : public Error {
 public:
  /// what() is message; exitcode() is exitcode.
  WorkerLost(const std::string& message, int exitcode) : Error(message), exitcode_(exitcode) {}
  /// -signal if it was killed by a signal, else its exit code.
  int exitcode() const noexcept { return exitcode_; }

 private:
  int exitcode_;
};

/// A barrier was aborted, reset, or timed out.
class MPROC_API BrokenBarrierError : public Error {
 public:
  BrokenBarrierError() : Error("barrier is broken") {}
  using Error::Error;
};

/// An external program could not be started; code() says why (e.g. ENOENT).
class MPROC_API SpawnError : public Error {
 public:
  /// what() is message (it names the program); code() is code.
  SpawnError(const std::string& message, std::error_code code) : Error(message), code_(code) {}
  /// Why the program could not be started: an errno value (ENOENT, EACCES, ...) in system_category.
  std::error_code code() const noexcept { return code_; }

 private:
  std::error_code code_;
};

}  // namespace mproc
