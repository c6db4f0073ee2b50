// bench/memory — what an idle forked child costs in memory: the USS (unique set size: the pages only that
// process maps, Private_Clean + Private_Dirty) of an mproc::Process child against a plain fork() child of
// the same program, measured in the same run.
//
//   memory [rounds = 7]
//
// Each round starts one child of each kind (in a rotating order), each child writes a ready byte on a pipe
// and blocks in read() on another; the parent reads the ready byte, reads /proc/<pid>/smaps_rollup (the
// sum over /proc/<pid>/smaps on kernels without it), then writes the release byte and reaps the child.
// No sleeps: the pipes are the synchronization. The plain child is a raw fork() of this benchmark (a C++
// program that links mproc but does not use it for that child); the mproc child is Process::start() of a
// target doing the same. Right after a fork every page is shared with the parent, so a child's USS is
// what it (and mproc, in the child, before the target) wrote since, plus pages the parent wrote in the
// meantime (a copy-on-write break in the parent leaves the child's copy unshared): between the fork and
// the measurement the parent does only a few system calls and writes only its stack.
// Reports the median and min–max of USS, and the medians of RSS and PSS, in KiB. Target (issue 8):
// mproc's USS ≤ 2× the plain child's, also printed as an `@row` summary line (bench_util.hpp). Nothing is
// pinned to a CPU. Run it in Release: ./scripts/bench.
#include <fcntl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "bench_util.hpp"
#include "mproc/mproc.hpp"

namespace {

[[noreturn]] void throw_errno(const char* what) {
  throw std::system_error(errno, std::system_category(), what);
}

// A child's memory, in KiB.
struct Mem {
  double rss = 0, pss = 0, uss = 0;
};

// Adds a "Key:   123 kB" line of smaps(_rollup) to m when Key is one we sum.
void add_line(const char* line, std::size_t len, Mem& m) {
  auto value = [&](const char* key) -> double {
    const std::size_t k = std::strlen(key);
    if (len <= k || std::strncmp(line, key, k) != 0) return -1;
    return std::strtod(line + k, nullptr);
  };
  double v = 0;
  if ((v = value("Rss:")) >= 0) {
    m.rss += v;
  } else if ((v = value("Pss:")) >= 0) {
    m.pss += v;
  } else if ((v = value("Private_Clean:")) >= 0 || (v = value("Private_Dirty:")) >= 0) {
    m.uss += v;
  }
}

// The sums over /proc/<pid>/smaps_rollup, or over /proc/<pid>/smaps (one block per mapping) where the
// kernel has no rollup (before 4.14). Reads with read(2) into a stack buffer: no heap allocation in the
// parent, whose writes would turn pages shared with the child into the child's private ones.
Mem read_mem(pid_t pid) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/smaps_rollup", static_cast<int>(pid));
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT) {
    std::snprintf(path, sizeof path, "/proc/%d/smaps", static_cast<int>(pid));
    fd = ::open(path, O_RDONLY | O_CLOEXEC);
  }
  if (fd < 0) throw_errno("open /proc/<pid>/smaps");
  Mem m;
  char buf[8192];
  std::size_t have = 0;
  for (;;) {
    const ssize_t got = ::read(fd, buf + have, sizeof buf - 1 - have);  // room for a final '\0'
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      const int e = errno;
      ::close(fd);
      throw std::system_error(e, std::system_category(), "read smaps");
    }
    if (got == 0) {  // EOF: a last line without '\n', if any
      buf[have] = '\0';
      if (have > 0) add_line(buf, have, m);
      break;
    }
    have += static_cast<std::size_t>(got);
    // Every complete line; the rest (a partial line) moves to the front for the next read.
    std::size_t start = 0;
    for (std::size_t i = 0; i < have; ++i) {
      if (buf[i] != '\n') continue;
      buf[i] = '\0';
      add_line(buf + start, i - start, m);
      start = i + 1;
    }
    if (start == 0 && have == sizeof buf - 1) start = have;  // a line longer than 8 KiB: not one we sum
    std::memmove(buf, buf + start, have - start);
    have -= start;
  }
  ::close(fd);
  return m;
}

struct PipeFds {
  int r = -1, w = -1;
  PipeFds() {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) throw_errno("pipe2");
    r = p[0];
    w = p[1];
  }
  ~PipeFds() {
    close_r();
    close_w();
  }
  void close_r() {
    if (r >= 0) ::close(std::exchange(r, -1));
  }
  void close_w() {
    if (w >= 0) ::close(std::exchange(w, -1));
  }
  PipeFds(const PipeFds&) = delete;
  PipeFds& operator=(const PipeFds&) = delete;
};

// What both children do: say "ready", then block until released (or until the parent's end closes).
// Raw system calls only, the same in both kinds of child.
void idle(int ready_w, int release_r) {
  const char c = 'r';
  while (::write(ready_w, &c, 1) < 0 && errno == EINTR) {
  }
  char g = 0;
  while (::read(release_r, &g, 1) < 0 && errno == EINTR) {
  }
}

// Waits for the child's ready byte (false at EOF: the child died first).
bool wait_ready(int ready_r) {
  char c = 0;
  for (;;) {
    const ssize_t k = ::read(ready_r, &c, 1);
    if (k == 1) return true;
    if (k == 0) return false;
    if (errno != EINTR) throw_errno("read ready");
  }
}

void release(int release_w) {
  const char g = 'g';
  while (::write(release_w, &g, 1) < 0 && errno == EINTR) {
  }
}

Mem plain_child() {
  PipeFds ready, go;
  std::fflush(nullptr);  // no buffered output for the child to inherit and flush again
  const pid_t pid = ::fork();
  if (pid < 0) throw_errno("fork");
  if (pid == 0) {
    idle(ready.w, go.r);
    ::_exit(0);
  }
  ready.close_w();  // the child's copy is the only one left: its death gives EOF, not a hang
  const bool ok = wait_ready(ready.r);
  const Mem m = ok ? read_mem(pid) : Mem{};
  release(go.w);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) throw_errno("waitpid");
  }
  if (!ok || !WIFEXITED(status) || WEXITSTATUS(status) != 0) throw std::runtime_error("plain child failed");
  return m;
}

Mem mproc_child() {
  PipeFds ready, go;
  mproc::Process p([rw = ready.w, rr = go.r] { idle(rw, rr); });
  p.start();
  ready.close_w();
  const bool ok = wait_ready(ready.r);
  const Mem m = ok ? read_mem(*p.pid()) : Mem{};
  release(go.w);
  p.join();
  if (!ok || p.exitcode() != 0) throw std::runtime_error("mproc child failed");
  return m;
}

struct Variant {
  const char* label;
  std::function<Mem()> run;
  std::vector<double> uss, rss, pss;  // KiB, one per round
};

int parse_positive(const char* s, const char* what) {
  char* end = nullptr;
  const long v = std::strtol(s, &end, 10);
  if (end == s || *end != '\0' || v <= 0 || v > 100'000) {
    std::fprintf(stderr, "memory: bad %s '%s'\nusage: memory [rounds]\n", what, s);
    std::exit(2);
  }
  return static_cast<int>(v);
}

}  // namespace

int main(int argc, char** argv) try {
  const int rounds = argc > 1 ? parse_positive(argv[1], "rounds") : 7;

  std::vector<Variant> variants;
  variants.push_back({"plain fork() child", plain_child, {}, {}, {}});
  variants.push_back({"mproc::Process child", mproc_child, {}, {}, {}});

  std::printf("memory: USS of an idle forked child (blocked in read() on a pipe), %d rounds\n", rounds);
  std::fflush(stdout);

  // Warm-up: mproc's first-use set-up (the reaper) happens in the parent, not in a measured round.
  (void)plain_child();
  (void)mproc_child();

  for (int r = 0; r < rounds; ++r) {
    for (std::size_t k = 0; k < variants.size(); ++k) {
      Variant& v = variants[(k + static_cast<std::size_t>(r)) % variants.size()];
      const Mem m = v.run();
      v.uss.push_back(m.uss);
      v.rss.push_back(m.rss);
      v.pss.push_back(m.pss);
    }
  }

  std::printf(
      "\n| variant | USS KiB (median) | USS min – max | vs plain | RSS KiB (median) | PSS KiB (median) |\n"
      "|---|---:|---:|---:|---:|---:|\n");
  const double plain_uss = bench::stats(variants[0].uss).median;
  for (const Variant& v : variants) {
    const bench::Stats u = bench::stats(v.uss);
    std::printf("| %s | %.0f | %.0f – %.0f | %.2f× | %.0f | %.0f |\n", v.label, u.median, u.min, u.max,
                plain_uss > 0 ? u.median / plain_uss : 0.0, bench::stats(v.rss).median,
                bench::stats(v.pss).median);
  }
  const double ratio = plain_uss > 0 ? bench::stats(variants[1].uss).median / plain_uss : 0;
  std::printf("\nratio mproc/plain USS = %.2f× (target ≤ 2×: %s)\n\n", ratio, ratio <= 2 ? "met" : "NOT met");
  bench::row({"idle forked child USS", bench::figure(bench::stats(variants[1].uss), "KiB"),
              std::string("plain fork() child: ") + bench::figure(bench::stats(variants[0].uss), "KiB"),
              ratio, "mproc/plain", "×", true, 2});

  const std::size_t zombies = mproc::count_zombies();
  if (zombies != 0) {
    std::fprintf(stderr, "memory: %zu zombie(s) left\n", zombies);
    return 1;
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "memory: %s\n", e.what());
  return 1;
}
