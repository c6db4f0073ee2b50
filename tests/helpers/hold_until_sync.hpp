// tests/helpers/hold_until_sync.hpp — a streambuf with no put area that keeps what it is given until
// sync(), then writes it to a file descriptor: what a tee or logging buffer looks like. Only a flush()
// of its stream hands its bytes on. Used by the tests of mproc's stream flushing at fork and at a
// child's exit (tests/test_process.cpp and the helper program's cout-held mode).
#pragma once

#include <unistd.h>

#include <streambuf>
#include <string>

namespace mproc_test {

struct HoldUntilSync : std::streambuf {
  explicit HoldUntilSync(int fd) : fd_(fd) {}
  int overflow(int c) override {
    if (c != traits_type::eof()) held_.push_back(static_cast<char>(c));
    return c;
  }
  int sync() override {
    const bool ok = ::write(fd_, held_.data(), held_.size()) == static_cast<ssize_t>(held_.size());
    held_.clear();
    return ok ? 0 : -1;
  }

 private:
  int fd_;
  std::string held_;
};

}  // namespace mproc_test
