// 26_copy_on_write — after fork() a variable has the same address in parent and child but two values:
// separate address spaces. The copy is lazy: pages are shared until one side writes, and only the page
// written is copied, as /proc/self/smaps and the page-fault count show.
#include <sys/mman.h>
#include <sys/resource.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include "mproc/mproc.hpp"

namespace posix = mproc::posix;

namespace {

int global = 1;  // static data: one copy per process

constexpr std::size_t MiB = 1024 * 1024;
constexpr std::size_t buffer_size = 64 * MiB;
constexpr std::size_t written_size = 16 * MiB;

// Resident, shared and private (copied) memory of the mapping that holds addr, from /proc/self/smaps.
struct MappingUse {
  long rss_kb = 0, shared_dirty_kb = 0, private_dirty_kb = 0;
};

MappingUse mapping_use(const void* addr) {
  const auto a = reinterpret_cast<std::uintptr_t>(addr);
  std::ifstream smaps("/proc/self/smaps");
  MappingUse use;
  bool inside = false;
  for (std::string line; std::getline(smaps, line);) {
    unsigned long start = 0, end = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx ", &start, &end) == 2 && line.find(':') > line.find(' ')) {
      inside = start <= a && a < end;  // a mapping's first line: "start-end perms offset dev inode path"
      continue;
    }
    if (!inside) continue;
    std::istringstream fields(line);
    std::string key;
    long kb = 0;
    fields >> key >> kb;
    if (key == "Rss:") use.rss_kb = kb;
    if (key == "Shared_Dirty:") use.shared_dirty_kb = kb;
    if (key == "Private_Dirty:") use.private_dirty_kb = kb;
  }
  return use;
}

void show(const char* who, const char* when, const MappingUse& u) {
  std::printf("  %s %-28s resident %2ld MiB, shared with the other process %2ld MiB, private %2ld MiB\n", who,
              when, u.rss_kb / 1024, u.shared_dirty_kb / 1024, u.private_dirty_kb / 1024);
}

long minor_faults() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  return ru.ru_minflt;
}

}  // namespace

int main() {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);

  // 1. Same addresses, separate memory.
  char* heap = new char[32];
  std::strcpy(heap, "the parent's text");
  std::printf("1. separate address spaces\n");
  std::printf("  parent (pid %d): global = %d at %p, heap block at %p\n", posix::getpid(), global,
              static_cast<void*>(&global), static_cast<void*>(heap));
  const pid_t pid = posix::fork();
  if (pid == 0) {
    global = 2;
    std::strcpy(heap, "the child's text");
    std::printf("  child  (pid %d): global = %d at %p, heap block at %p says \"%s\"\n", posix::getpid(),
                global, static_cast<void*>(&global), static_cast<void*>(heap), heap);
    std::fflush(stdout);
    posix::exit_now(0);
  }
  posix::waitpid(pid);
  std::printf("  parent, after the child ended: global = %d, heap block says \"%s\"\n", global, heap);
  std::printf("  same addresses, different values: each process has its own memory\n");
  delete[] heap;

  // 2. Copy-on-write, page by page. Our own mapping, with 4 KiB pages, so the numbers count pages simply.
  std::printf("2. copy-on-write: a 64 MiB buffer, filled before the fork\n");
  void* mem = ::mmap(nullptr, buffer_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) return 1;
  ::madvise(mem, buffer_size, MADV_NOHUGEPAGE);  // no 2 MiB pages: 4 KiB is the unit of copying here
  auto* buffer = static_cast<unsigned char*>(mem);
  std::memset(buffer, 0x11, buffer_size);
  show("parent:", "before the fork:", mapping_use(buffer));

  mproc::Process child([buffer] {
    show("child: ", "right after the fork:", mapping_use(buffer));

    long faults = minor_faults();
    unsigned long sum = 0;
    for (std::size_t i = 0; i < buffer_size; i += 4096) sum += buffer[i];  // read one byte of every page
    long read_faults = minor_faults() - faults;
    show("child: ", "after reading 64 MiB:", mapping_use(buffer));
    std::printf("  child:  reading caused %ld page faults (sum %lu): reading copies nothing\n", read_faults,
                sum);

    faults = minor_faults();
    std::memset(buffer, 0x22, written_size);  // write 16 MiB: 4096 pages
    const long write_faults = minor_faults() - faults;
    show("child: ", "after writing 16 MiB:", mapping_use(buffer));
    std::printf(
        "  child:  writing caused %ld page faults for %zu pages: each page is copied at its first write\n",
        write_faults, written_size / 4096);
  });
  child.start();
  child.join();

  bool untouched = true;
  for (std::size_t i = 0; i < buffer_size; ++i) untouched = untouched && buffer[i] == 0x11;
  show("parent:", "after the child ended:", mapping_use(buffer));
  std::printf("  parent: my buffer is untouched (all 0x11): %s\n", untouched ? "yes" : "NO");
  ::munmap(mem, buffer_size);
  return untouched && child.exitcode() == 0 ? 0 : 1;
}
