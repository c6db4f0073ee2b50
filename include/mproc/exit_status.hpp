// mproc/exit_status.hpp — how a process ended, as a value.
//
// ExitStatus wraps a raw waitpid() status (as folly's ProcessReturnCode does) and answers the usual
// questions: did it exit normally and with which code, or was it killed and by which signal, and did it
// dump core. exitcode() follows Python's convention: the exit code, or -N for signal N.
// A plain value: nothing blocks, nothing throws, safe in any thread and in a forked child.
#pragma once

#include <string>

#include "mproc/export.hpp"

namespace mproc {

/// How a process ended: a raw waitpid() status, decoded (see the top of this header).
struct MPROC_API ExitStatus {
  /// A default ExitStatus reads as "exited with code 0".
  ExitStatus() = default;

  bool exited() const noexcept;       ///< ended by exit()/_exit() or returning from main
  int code() const noexcept;          ///< the exit code (0..255); 0 unless exited()
  bool signaled() const noexcept;     ///< killed by a signal
  int signal() const noexcept;        ///< the signal number; 0 unless signaled()
  bool core_dumped() const noexcept;  ///< killed by a signal and a core file was written
  int exitcode() const noexcept;      ///< code(), or -signal() (Python's Process.exitcode)
  /// "exited with code 3", "killed by SIGKILL", "killed by SIGSEGV (core dumped)". Throws only bad_alloc.
  std::string to_string() const;
  /// The raw status as waitpid() wrote it.
  int raw() const noexcept { return status_; }
  /// Decode a raw waitpid() status.
  static ExitStatus from_wait_status(int status) noexcept;

  /// Equal when the raw statuses are.
  friend bool operator==(const ExitStatus&, const ExitStatus&) = default;

 private:
  int status_ = 0;
};

}  // namespace mproc
