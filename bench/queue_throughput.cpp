// bench/queue_throughput — messages per second from one producer process to one consumer process,
// for items of 8 B (a std::uint64_t), 64 B, 4 KiB and 1 MiB (std::vector<std::byte>), through:
//   * mproc::Queue (default QueueOptions: a 1 MiB ring; items travel through the codec);
//   * boost::interprocess::message_queue (named, max message size = the item size, room for
//     max(4, 1 MiB / size) messages, removed before and after so /dev/shm stays clean);
//   * a raw pipe (write/read of fixed-size items; its buffer raised to 1 MiB with F_SETPIPE_SZ);
//   * Python's multiprocessing.Queue (fork context; an int for 8 B, bytes otherwise) when python3 is on
//     PATH, at a tenth of the item count (it is that much slower; rates are per second either way).
// Then 4 producers -> 2 consumers at 64 B for mproc::Queue and Boost, and mproc::Connection (Pipe(),
// send<std::uint64_t>/recv) against Python's multiprocessing.Pipe and the raw pipe at 8 B. Last,
// Connection at 1 MiB (send_bytes/recv_bytes) against a raw pipe with the same buffer size, for both
// kinds of Pipe: the duplex Pipe() (an AF_UNIX SOCK_SEQPACKET socketpair: the raw pipe gets
// F_SETPIPE_SZ = the sending socket's SO_SNDBUF, which the kernel rounds up to a power of two pages) and
// the one-way Pipe(false) (a pipe: the raw pipe gets its F_GETPIPE_SZ); the sizes used are printed.
//
//   queue_throughput [N = 200000] [repeats = 5]
//
// N is the item count at 8 B and 64 B; larger items move the same bytes as N items of 512 B (at least
// 20 items). The processes are forked first and held at a gate; the clock (CLOCK_MONOTONIC, shared by
// all processes) starts when the gate opens and stops when the last consumer has its last item. The C++
// variants run interleaved in each repeat (rotating order); each figure is the median of the repeats
// with the min-max. MB/s counts payload bytes, 1 MB = 10^6 B. Targets (from the same run): mproc >= 2x
// Boost and >= 30x Python at 8 B and 64 B, mproc >= Boost at 4 KiB, mproc >= Boost and >= 10x Python at
// 1 MiB, mproc >= Boost at 4 -> 2 (64 B), Connection >= 5x Python's Pipe at 8 B and >= 80% of the raw
// pipe at 1 MiB; each is also printed as an `@row` summary line (bench_util.hpp). Nothing is pinned to
// a CPU: producers and consumers go where the scheduler puts them. Run it in Release: ./scripts/bench.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <boost/interprocess/ipc/message_queue.hpp>

#include "bench_util.hpp"
#include "mproc/connection.hpp"
#include "mproc/mproc.hpp"

namespace {

namespace bip = boost::interprocess;
using Clock = std::chrono::steady_clock;
using Bytes = std::vector<std::byte>;

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

[[noreturn]] void throw_errno(const char* what) { throw std::system_error(errno, std::system_category(), what); }

void write_all(int fd, const void* buf, std::size_t n) {
  const char* p = static_cast<const char*>(buf);
  while (n > 0) {
    const ssize_t k = ::write(fd, p, n);
    if (k < 0) {
      if (errno == EINTR) continue;
      throw_errno("write");
    }
    p += k;
    n -= static_cast<std::size_t>(k);
  }
}

// False at EOF before n bytes.
bool read_all(int fd, void* buf, std::size_t n) {
  char* p = static_cast<char*>(buf);
  while (n > 0) {
    const ssize_t k = ::read(fd, p, n);
    if (k < 0) {
      if (errno == EINTR) continue;
      throw_errno("read");
    }
    if (k == 0) return false;
    p += k;
    n -= static_cast<std::size_t>(k);
  }
  return true;
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
    if (r >= 0) ::close(r);
    if (w >= 0) ::close(w);
  }
  PipeFds(const PipeFds&) = delete;
  PipeFds& operator=(const PipeFds&) = delete;
};

// What a consumer tells the parent when it is done.
struct Report {
  std::int64_t last_item_ns = 0;  // when it got its last real item
  std::uint64_t items = 0;
  std::uint32_t ok = 0;  // every item was the expected one
};

// One measured run: `producers` processes run produce(index), `consumers` run consume(); all are forked
// and held at a gate first. After the producers are joined, finish() runs in the parent (sentinels for
// multi-consumer runs). Returns seconds from the gate's opening to the last consumer's last item.
double run(int producers, const std::function<void(int)>& produce, int consumers,
           const std::function<Report()>& consume, std::uint64_t expected_items,
           const std::function<void()>& finish = {}) {
  PipeFds ready, go, report;
  auto hold = [&] {
    const char c = 'r';
    write_all(ready.w, &c, 1);
    char g;
    if (!read_all(go.r, &g, 1)) throw std::runtime_error("gate closed");
  };
  std::vector<mproc::Process> cs, ps;
  for (int i = 0; i < consumers; ++i)
    cs.emplace_back([&] {
      hold();
      const Report rep = consume();
      write_all(report.w, &rep, sizeof rep);
    });
  for (int i = 0; i < producers; ++i)
    ps.emplace_back([&, i] {
      hold();
      produce(i);
    });
  for (auto& c : cs) c.start();
  for (auto& p : ps) p.start();
  // Only the children keep the write ends: a child that dies early gives EOF instead of a hang.
  ::close(std::exchange(ready.w, -1));
  ::close(std::exchange(report.w, -1));
  const int children = producers + consumers;
  std::vector<char> buf(static_cast<std::size_t>(children));
  if (!read_all(ready.r, buf.data(), buf.size())) throw std::runtime_error("a child died before the gate");

  const std::int64_t t0 = now_ns();
  std::fill(buf.begin(), buf.end(), 'g');
  write_all(go.w, buf.data(), buf.size());
  for (auto& p : ps) p.join();
  if (finish) finish();
  std::int64_t end = t0;
  std::uint64_t items = 0;
  bool ok = true;
  for (int i = 0; i < consumers; ++i) {
    Report rep;
    if (!read_all(report.r, &rep, sizeof rep)) throw std::runtime_error("a consumer died without a report");
    end = std::max(end, rep.last_item_ns);
    items += rep.items;
    ok = ok && rep.ok;
  }
  for (auto& c : cs) c.join();
  for (auto& p : ps) ok = ok && p.exitcode() == 0;
  for (auto& c : cs) ok = ok && c.exitcode() == 0;
  if (!ok || items != expected_items)
    throw std::runtime_error("a run failed its checks (" + std::to_string(items) + " of " +
                             std::to_string(expected_items) + " items)");
  return static_cast<double>(end - t0) / 1e9;
}

// ---- mproc::Queue ----------------------------------------------------------------------------------

double mproc_u64(std::size_t n) {
  mproc::Queue<std::uint64_t> q;
  return run(
      1, [&](int) { for (std::uint64_t i = 0; i < n; ++i) q.put(i); }, 1,
      [&] {
        std::uint64_t sum = 0;
        for (std::size_t i = 0; i < n; ++i) sum += q.get();
        return Report{now_ns(), n, sum == std::uint64_t{n} * (n - 1) / 2};
      },
      n);
}

double mproc_bytes(std::size_t size, std::size_t n) {
  mproc::Queue<Bytes> q;
  return run(
      1,
      [&](int) {
        const Bytes item(size, std::byte{7});
        for (std::size_t i = 0; i < n; ++i) q.put(item);
      },
      1,
      [&] {
        bool ok = true;
        for (std::size_t i = 0; i < n; ++i) ok = q.get().size() == size && ok;
        return Report{now_ns(), n, ok};
      },
      n);
}

// P producers x n/P items, C consumers that stop at an empty item (a sentinel per consumer).
double mproc_mpmc(std::size_t size, std::size_t n, int producers, int consumers) {
  mproc::Queue<Bytes> q;
  const std::size_t each = n / static_cast<std::size_t>(producers);
  return run(
      producers,
      [&](int) {
        const Bytes item(size, std::byte{7});
        for (std::size_t i = 0; i < each; ++i) q.put(item);
      },
      consumers,
      [&] {
        Report rep{0, 0, 1};
        for (;;) {
          const Bytes b = q.get();
          if (b.empty()) break;
          rep.last_item_ns = now_ns();
          ++rep.items;
          rep.ok = rep.ok && b.size() == size;
        }
        return rep;
      },
      each * static_cast<std::size_t>(producers), [&] {
        for (int i = 0; i < consumers; ++i) q.put(Bytes{});
      });
}

// ---- Boost.Interprocess message_queue --------------------------------------------------------------

// A uniquely named queue, removed before and after (also on exceptions): nothing stays in /dev/shm.
struct BoostQueue {
  std::string name;
  std::optional<bip::message_queue> mq;
  BoostQueue(std::size_t max_msgs, std::size_t max_size)
      : name("mproc_bench_mq_" + std::to_string(::getpid())) {
    bip::message_queue::remove(name.c_str());
    mq.emplace(bip::create_only, name.c_str(), max_msgs, max_size);
  }
  ~BoostQueue() {
    mq.reset();
    bip::message_queue::remove(name.c_str());
  }
  BoostQueue(const BoostQueue&) = delete;
  BoostQueue& operator=(const BoostQueue&) = delete;
};

std::size_t boost_capacity(std::size_t size) { return std::max<std::size_t>(4, (std::size_t{1} << 20) / size); }

double boost_run(std::size_t size, std::size_t n) {
  BoostQueue bq(boost_capacity(size), size);
  bip::message_queue& mq = *bq.mq;  // the mapping is shared: forked children use it as it is
  return run(
      1,
      [&](int) {
        Bytes item(size, std::byte{7});
        for (std::size_t i = 0; i < n; ++i) {
          if (size == 8) std::memcpy(item.data(), &i, 8);
          mq.send(item.data(), size, 0);
        }
      },
      1,
      [&] {
        Bytes buf(size);
        bool ok = true;
        std::uint64_t sum = 0;
        for (std::size_t i = 0; i < n; ++i) {
          bip::message_queue::size_type got = 0;
          unsigned prio = 0;
          mq.receive(buf.data(), size, got, prio);
          ok = ok && got == size;
          if (size == 8) {
            std::uint64_t v;
            std::memcpy(&v, buf.data(), 8);
            sum += v;
          }
        }
        if (size == 8) ok = ok && sum == std::uint64_t{n} * (n - 1) / 2;
        return Report{now_ns(), n, ok};
      },
      n);
}

double boost_mpmc(std::size_t size, std::size_t n, int producers, int consumers) {
  BoostQueue bq(boost_capacity(size), size);
  bip::message_queue& mq = *bq.mq;
  const std::size_t each = n / static_cast<std::size_t>(producers);
  return run(
      producers,
      [&](int) {
        const Bytes item(size, std::byte{7});
        for (std::size_t i = 0; i < each; ++i) mq.send(item.data(), size, 0);
      },
      consumers,
      [&] {
        Report rep{0, 0, 1};
        Bytes buf(size);
        for (;;) {
          bip::message_queue::size_type got = 0;
          unsigned prio = 0;
          mq.receive(buf.data(), size, got, prio);
          if (got == 0) break;
          rep.last_item_ns = now_ns();
          ++rep.items;
          rep.ok = rep.ok && got == size;
        }
        return rep;
      },
      each * static_cast<std::size_t>(producers), [&] {
        // An empty message is the stop sentinel; a real (if unused) buffer, since Boost memcpy()s from
        // it even for 0 bytes and memcpy from a null pointer is undefined (UBSan stops on it).
        const std::byte none{};
        for (int i = 0; i < consumers; ++i) mq.send(&none, 0, 0);
      });
}

// ---- raw pipe ----------------------------------------------------------------------------------------

// The pipe's buffer is raised to pipe_size with F_SETPIPE_SZ (default: 1 MiB, as much as the queue's
// ring), where allowed (/proc/sys/fs/pipe-max-size); pipe_capacity() says what it got.
double pipe_run(std::size_t size, std::size_t n, int pipe_size = 1 << 20) {
  PipeFds p;
  (void)::fcntl(p.w, F_SETPIPE_SZ, pipe_size);
  return run(
      1,
      [&](int) {
        Bytes item(size, std::byte{7});
        for (std::size_t i = 0; i < n; ++i) {
          if (size == 8) std::memcpy(item.data(), &i, 8);
          write_all(p.w, item.data(), size);
        }
      },
      1,
      [&] {
        Bytes buf(size);
        bool ok = true;
        for (std::size_t i = 0; i < n && ok; ++i) ok = read_all(p.r, buf.data(), size);
        return Report{now_ns(), n, ok};
      },
      n);
}

// The buffer a pipe gets when pipe_run asks for pipe_size (the kernel rounds up to a power of two pages
// and refuses more than pipe-max-size to an unprivileged process).
int pipe_capacity(int pipe_size) {
  PipeFds p;
  (void)::fcntl(p.w, F_SETPIPE_SZ, pipe_size);
  return ::fcntl(p.w, F_GETPIPE_SZ);
}

// ---- mproc::Connection -------------------------------------------------------------------------------

// How much a Connection end can have in flight before the writer blocks: SO_SNDBUF of a socket end (an
// AF_UNIX SOCK_SEQPACKET record stays charged to the sender until it is read), F_GETPIPE_SZ of a pipe.
int connection_buffer(const mproc::Connection& writer, bool duplex) {
  if (!duplex) return ::fcntl(writer.fileno(), F_GETPIPE_SZ);
  int v = 0;
  socklen_t len = sizeof v;
  if (::getsockopt(writer.fileno(), SOL_SOCKET, SO_SNDBUF, &v, &len) != 0) throw_errno("getsockopt");
  return v;
}

// n messages of size bytes as raw bytes (send_bytes/recv_bytes, no codec), producer -> consumer process.
double connection_bytes(bool duplex, std::size_t size, std::size_t n) {
  auto ends = mproc::Pipe(duplex);  // one-way: (reader, writer)
  mproc::Connection& rx = ends.first;
  mproc::Connection& tx = ends.second;
  return run(
      1,
      [&](int) {
        const Bytes item(size, std::byte{7});
        for (std::size_t i = 0; i < n; ++i) tx.send_bytes(item);
      },
      1,
      [&] {
        bool ok = true;
        for (std::size_t i = 0; i < n; ++i) ok = rx.recv_bytes().size() == size && ok;
        return Report{now_ns(), n, ok};
      },
      n);
}

double connection_u64(std::size_t n) {
  auto [a, b] = mproc::Pipe();
  return run(
      1, [&, b = b](int) mutable { for (std::uint64_t i = 0; i < n; ++i) b.send(i); }, 1,
      [&, a = a]() mutable {
        std::uint64_t sum = 0;
        for (std::size_t i = 0; i < n; ++i) sum += a.recv<std::uint64_t>();
        return Report{now_ns(), n, sum == std::uint64_t{n} * (n - 1) / 2};
      },
      n);
}

// ---- Python ------------------------------------------------------------------------------------------

// Prints one line per repeat: the seconds from the producer's release to the consumer's last item.
constexpr const char* kPythonScript = R"(
import multiprocessing as mp, sys, time
def produce_queue(q, go, n, size):
    item = 12345678 if size == 8 else bytes(size)
    go.wait()
    for _ in range(n):
        q.put(item)
def produce_pipe(c, go, n, size):
    go.wait()
    for i in range(n):
        c.send(i)
if __name__ == "__main__":
    ctx = mp.get_context("fork")
    kind, size, n, reps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    for _ in range(reps):
        go = ctx.Event()
        if kind == "queue":
            q = ctx.Queue()
            p = ctx.Process(target=produce_queue, args=(q, go, n, size))
            get = q.get
        else:
            a, b = ctx.Pipe()
            p = ctx.Process(target=produce_pipe, args=(b, go, n, size))
            get = a.recv
        p.start()
        t = time.perf_counter()
        go.set()
        for _ in range(n):
            get()
        print(time.perf_counter() - t, flush=True)
        p.join()
)";

std::vector<double> python_run(const char* kind, std::size_t size, std::size_t n, int repeats) {
  const std::string out = bench::run_python(kPythonScript, std::string(kind) + " " + std::to_string(size) + " " +
                                                                std::to_string(n) + " " + std::to_string(repeats));
  const std::vector<double> secs = bench::numbers(out);
  if (secs.size() != static_cast<std::size_t>(repeats)) throw std::runtime_error("python3 printed:\n" + out);
  return secs;
}

// ---- figures -----------------------------------------------------------------------------------------

struct Series {
  std::size_t size = 0, n = 0;  // item bytes, items per run
  std::vector<double> rates;    // msgs/s, one per repeat
  bool empty() const { return rates.empty(); }
  double median() const {
    std::vector<double> s = rates;
    std::sort(s.begin(), s.end());
    const std::size_t m = s.size() / 2;
    return s.size() % 2 == 1 ? s[m] : (s[m - 1] + s[m]) / 2;
  }
  double min() const { return *std::min_element(rates.begin(), rates.end()); }
  double max() const { return *std::max_element(rates.begin(), rates.end()); }
  void add_seconds(double secs) { rates.push_back(static_cast<double>(n) / secs); }
};

std::string fmt_rate(double r) {
  char b[64];
  if (r >= 1e6)
    std::snprintf(b, sizeof b, "%.2f M", r / 1e6);
  else if (r >= 1e3)
    std::snprintf(b, sizeof b, "%.1f k", r / 1e3);
  else
    std::snprintf(b, sizeof b, "%.0f", r);
  return b;
}

std::string size_label(std::size_t s) {
  if (s >= (std::size_t{1} << 20)) return std::to_string(s >> 20) + " MiB";
  if (s >= 1024) return std::to_string(s >> 10) + " KiB";
  return std::to_string(s) + " B";
}

void print_row(const char* size, const char* variant, const Series& s) {
  if (s.empty()) {
    std::printf("| %s | %s | n/a | n/a | n/a |\n", size, variant);
    return;
  }
  std::printf("| %s | %s | %s | %s – %s | %.1f |\n", size, variant, fmt_rate(s.median()).c_str(),
              fmt_rate(s.min()).c_str(), fmt_rate(s.max()).c_str(), s.median() * static_cast<double>(s.size) / 1e6);
}

std::string ratio(const Series& a, const Series& b) {
  if (a.empty() || b.empty()) return "n/a";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f×", a.median() / b.median());
  return buf;
}
const char* verdict(const Series& a, const Series& b, double target) {
  if (a.empty() || b.empty()) return "n/a";
  return a.median() / b.median() >= target ? "met" : "missed";
}

std::size_t parse_positive(const char* s, const char* what) {
  char* end = nullptr;
  const long v = std::strtol(s, &end, 10);
  if (end == s || *end != '\0' || v <= 0 || v > 100'000'000) {
    std::fprintf(stderr, "queue_throughput: bad %s '%s'\nusage: queue_throughput [N] [repeats]\n", what, s);
    std::exit(2);
  }
  return static_cast<std::size_t>(v);
}

}  // namespace

int main(int argc, char** argv) try {
  const std::size_t n = argc > 1 ? parse_positive(argv[1], "N") : 200000;
  const int repeats = static_cast<int>(argc > 2 ? parse_positive(argv[2], "repeats") : 5);
  const bool python = bench::on_path("python3");
  const std::vector<std::size_t> sizes{8, 64, 4096, std::size_t{1} << 20};
  auto count_for = [&](std::size_t size) { return std::max<std::size_t>(20, std::min(n, n * 512 / size)); };
  auto python_count = [](std::size_t c) { return std::max<std::size_t>(10, c / 10); };

  std::printf("queue_throughput: 1 producer -> 1 consumer process, N = %zu, %d repeats (median, min – max)\n", n,
              repeats);
  std::printf("%s\n", python ? "python3 on PATH: Python figures at a tenth of the item count"
                             : "python3 not on PATH: no Python figures");
  std::fflush(stdout);

  struct PerSize {
    Series mproc, boost, pipe, python;
  };
  std::vector<PerSize> results(sizes.size());
  for (std::size_t k = 0; k < sizes.size(); ++k) {
    const std::size_t size = sizes[k], c = count_for(size);
    PerSize& r = results[k];
    r.mproc = {size, c, {}};
    r.boost = {size, c, {}};
    r.pipe = {size, c, {}};
    std::vector<std::pair<Series*, std::function<double()>>> variants{
        {&r.mproc, [&] { return size == 8 ? mproc_u64(c) : mproc_bytes(size, c); }},
        {&r.boost, [&] { return boost_run(size, c); }},
        {&r.pipe, [&] { return pipe_run(size, c); }},
    };
    for (auto& v : variants) (void)v.second();  // warm-up: first-use costs, page faults
    for (int rep = 0; rep < repeats; ++rep)
      for (std::size_t i = 0; i < variants.size(); ++i) {
        auto& v = variants[(i + static_cast<std::size_t>(rep)) % variants.size()];
        v.first->add_seconds(v.second());
      }
    if (python) {
      r.python = {size, python_count(c), {}};
      for (double s : python_run("queue", size, r.python.n, repeats)) r.python.add_seconds(s);
    }
  }

  // 4 producers -> 2 consumers at 64 B.
  const std::size_t mpmc_n = count_for(64) / 4 * 4;
  Series mpmc_mproc{64, mpmc_n, {}}, mpmc_boost{64, mpmc_n, {}};
  (void)mproc_mpmc(64, mpmc_n, 4, 2);
  (void)boost_mpmc(64, mpmc_n, 4, 2);
  for (int rep = 0; rep < repeats; ++rep) {
    mpmc_mproc.add_seconds(mproc_mpmc(64, mpmc_n, 4, 2));
    mpmc_boost.add_seconds(boost_mpmc(64, mpmc_n, 4, 2));
  }

  // Connection vs Python's Pipe at 8 B.
  Series conn{8, n, {}}, conn_pipe{8, n, {}}, py_pipe;
  (void)connection_u64(n);
  for (int rep = 0; rep < repeats; ++rep) {
    conn.add_seconds(connection_u64(n));
    conn_pipe.add_seconds(pipe_run(8, n));
  }
  if (python) {
    py_pipe = {8, python_count(n), {}};
    for (double s : python_run("pipe", 8, py_pipe.n, repeats)) py_pipe.add_seconds(s);
  }

  // Connection vs a raw pipe with the same buffer at 1 MiB, for the duplex and the one-way Pipe.
  const std::size_t big = std::size_t{1} << 20, big_n = count_for(big);
  struct BigConn {
    bool duplex = true;
    int conn_buffer = 0, pipe_buffer = 0;  // bytes: the Connection's, what the raw pipe got
    Series conn, pipe;
  };
  std::vector<BigConn> bigs(2);
  bigs[0].duplex = true;
  bigs[1].duplex = false;
  for (BigConn& b : bigs) {
    {
      const auto ends = mproc::Pipe(b.duplex);
      b.conn_buffer = connection_buffer(ends.second, b.duplex);
    }
    b.pipe_buffer = pipe_capacity(b.conn_buffer);
    b.conn = {big, big_n, {}};
    b.pipe = {big, big_n, {}};
    (void)connection_bytes(b.duplex, big, big_n);
    (void)pipe_run(big, big_n, b.conn_buffer);
    for (int rep = 0; rep < repeats; ++rep) {
      // Alternating which goes first, so a drift of the machine's speed hits both alike.
      if (rep % 2 == 0) b.conn.add_seconds(connection_bytes(b.duplex, big, big_n));
      b.pipe.add_seconds(pipe_run(big, big_n, b.conn_buffer));
      if (rep % 2 == 1) b.conn.add_seconds(connection_bytes(b.duplex, big, big_n));
    }
  }

  std::printf("\n| item | variant | msgs/s (median) | min – max | MB/s (median) |\n|---|---|---:|---:|---:|\n");
  for (std::size_t k = 0; k < sizes.size(); ++k) {
    const std::string s = size_label(sizes[k]);
    print_row(s.c_str(), "mproc::Queue", results[k].mproc);
    print_row(s.c_str(), "boost message_queue", results[k].boost);
    print_row(s.c_str(), "raw pipe", results[k].pipe);
    print_row(s.c_str(), "Python mp.Queue", results[k].python);
  }

  std::printf("\n| item | mproc/Boost | target | mproc/Python | target | mproc/raw pipe |\n|---|---:|---|---:|---|---:|\n");
  for (std::size_t k = 0; k < sizes.size(); ++k) {
    const PerSize& r = results[k];
    const bool small = sizes[k] <= 64, huge = sizes[k] >= (std::size_t{1} << 20);
    const std::string boost_target = small ? std::string("≥ 2×: ") + verdict(r.mproc, r.boost, 2.0)
                                           : std::string("≥ 1×: ") + verdict(r.mproc, r.boost, 1.0);
    const std::string python_target = small  ? std::string("≥ 30×: ") + verdict(r.mproc, r.python, 30.0)
                                      : huge ? std::string("≥ 10×: ") + verdict(r.mproc, r.python, 10.0)
                                             : "—";
    std::printf("| %s | %s | %s | %s | %s | %s |\n", size_label(sizes[k]).c_str(), ratio(r.mproc, r.boost).c_str(),
                boost_target.c_str(), ratio(r.mproc, r.python).c_str(), python_target.c_str(),
                ratio(r.mproc, r.pipe).c_str());
  }

  std::printf("\n4 producers -> 2 consumers, 64 B, %zu items per run:\n\n| variant | msgs/s (median) | min – max | MB/s |\n|---|---:|---:|---:|\n",
              mpmc_n);
  print_row("64 B", "mproc::Queue", mpmc_mproc);
  print_row("64 B", "boost message_queue", mpmc_boost);
  std::printf("\nratio mproc/Boost (4P -> 2C, 64 B) = %s (target ≥ 1×: %s)\n",
              ratio(mpmc_mproc, mpmc_boost).c_str(), verdict(mpmc_mproc, mpmc_boost, 1.0));

  std::printf("\nConnection, 1 -> 1, 8 B (std::uint64_t), %zu messages per run:\n\n| item | variant | msgs/s (median) | min – max | MB/s |\n|---|---|---:|---:|---:|\n",
              n);
  print_row("8 B", "mproc::Connection (Pipe())", conn);
  print_row("8 B", "raw pipe", conn_pipe);
  print_row("8 B", "Python mp.Pipe", py_pipe);
  std::printf("\nratio Connection/Python Pipe = %s (target ≥ 5×: %s)\n", ratio(conn, py_pipe).c_str(),
              verdict(conn, py_pipe, 5.0));

  std::printf(
      "\nConnection, 1 -> 1, 1 MiB (send_bytes/recv_bytes), %zu messages per run, against a raw pipe "
      "with the same buffer:\n\n| item | variant | msgs/s (median) | min – max | MB/s "
      "|\n|---|---|---:|---:|---:|\n",
      big_n);
  for (const BigConn& b : bigs) {
    const std::string conn_label =
        b.duplex
            ? "mproc::Connection, Pipe() (socketpair, SO_SNDBUF " + std::to_string(b.conn_buffer) + " B)"
            : "mproc::Connection, Pipe(false) (pipe, F_GETPIPE_SZ " + std::to_string(b.conn_buffer) + " B)";
    const std::string pipe_label = "raw pipe, F_SETPIPE_SZ " + std::to_string(b.conn_buffer) + " B (got " +
                                   std::to_string(b.pipe_buffer) + " B)";
    print_row("1 MiB", conn_label.c_str(), b.conn);
    print_row("1 MiB", pipe_label.c_str(), b.pipe);
  }
  for (const BigConn& b : bigs)
    std::printf("\nratio Connection/raw pipe, %s = %s (target ≥ 0.8×: %s)",
                b.duplex ? "Pipe()" : "Pipe(false)", ratio(b.conn, b.pipe).c_str(),
                verdict(b.conn, b.pipe, 0.8));
  std::printf("\n\n");

  // The summary rows (issue 8 §3), one per target.
  auto rate_fig = [](const Series& s) {
    const double m = s.median();
    return m >= 1e6   ? bench::figure(bench::stats(s.rates), "M msgs/s", 1e-6)
           : m >= 1e4 ? bench::figure(bench::stats(s.rates), "k msgs/s", 1e-3)
                      : bench::figure(bench::stats(s.rates), "msgs/s");
  };
  auto emit = [&](const std::string& fig, const Series& m, const char* base_name, const Series& b,
                  const char* value_name, double target) {
    bench::Row r{fig, rate_fig(m), "", std::nullopt, value_name, "×", false, target};
    if (b.empty()) {
      r.baseline = bench::no_python(base_name);
    } else {
      r.baseline = std::string(base_name) + ": " + rate_fig(b);
      r.value = m.median() / b.median();
    }
    bench::row(r);
  };
  for (std::size_t k = 0; k < sizes.size(); ++k) {
    const std::string fig = "Queue 1→1, " + size_label(sizes[k]);
    const PerSize& r = results[k];
    const bool small = sizes[k] <= 64, big_item = sizes[k] >= big;
    emit(fig + " vs Boost", r.mproc, "Boost message_queue", r.boost, "mproc/Boost", small ? 2.0 : 1.0);
    if (small || big_item)
      emit(fig + " vs Python", r.mproc, "Python mp.Queue", r.python, "mproc/Python", small ? 30.0 : 10.0);
  }
  emit("Queue 4P→2C, 64 B vs Boost", mpmc_mproc, "Boost message_queue", mpmc_boost, "mproc/Boost", 1.0);
  emit("Connection 8 B vs Python Pipe", conn, "Python mp.Pipe", py_pipe, "mproc/Python", 5.0);
  for (const BigConn& b : bigs) {
    const std::string fig = std::string("Connection 1 MiB, ") +
                            (b.duplex ? "Pipe() (socketpair)" : "Pipe(false) (pipe)") + " vs raw pipe";
    const std::string base = "raw pipe, " + std::to_string(b.pipe_buffer) + " B buffer";
    emit(fig, b.conn, base.c_str(), b.pipe, "mproc/raw pipe", 0.8);
  }

  const std::size_t zombies = mproc::count_zombies();
  if (zombies != 0) {
    std::fprintf(stderr, "queue_throughput: %zu zombie(s) left\n", zombies);
    return 1;
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "queue_throughput: %s\n", e.what());
  return 1;
}
