// 17_shared_memory_by_name — mproc::SharedMemory, Python's shared_memory.SharedMemory: two unrelated
// programs share one block of memory through its name in /dev/shm. Nothing is inherited: the second
// program is a fresh exec (here a second copy of this program, started with "reader <name>"; any other
// program that knows the name would do). The block is created with mode 0600 (this user only) and O_EXCL,
// and must be unlink()ed when done: a named block outlives the processes that use it.
//
//   17_shared_memory_by_name                 create a block, start the reader, show its answer
//   17_shared_memory_by_name reader <name>   open the block by name, read it, answer in it
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>

#include "mproc/mproc.hpp"

extern char** environ;

namespace {

constexpr std::size_t kAnswerOffset = 512;

int reader(const std::string& name) {
  mproc::SharedMemory shm = mproc::SharedMemory::open(name);  // by name only
  const char* text = reinterpret_cast<const char*>(shm.buf().data());
  std::printf("reader (pid %d): opened \"%s\", %zu bytes; it says: \"%s\"\n", ::getpid(), name.c_str(), shm.size(),
              text);
  std::snprintf(reinterpret_cast<char*>(shm.buf().data()) + kAnswerOffset, 64, "thanks from pid %d", ::getpid());
  shm.close();  // unmaps here; the block itself stays until someone unlinks it
  return 0;
}

int writer() {
  // An empty name asks for a generated one: "mproc_" and 64 random bits.
  mproc::SharedMemory shm = mproc::SharedMemory::create("", 4096);
  const std::string path = "/dev/shm/" + shm.name();
  struct stat st {};
  ::stat(path.c_str(), &st);
  std::printf("writer (pid %d): created %s, %zu bytes, mode %04o\n", ::getpid(), path.c_str(), shm.size(),
              static_cast<unsigned>(st.st_mode & 07777));
  std::snprintf(reinterpret_cast<char*>(shm.buf().data()), kAnswerOffset, "hello from pid %d", ::getpid());

  // Start the reader: a new program image, which knows nothing but the name on its command line.
  const std::string self = mproc::this_process::exec_path().string();
  std::string arg_reader = "reader", arg_name = shm.name();
  char* argv[] = {const_cast<char*>(self.c_str()), arg_reader.data(), arg_name.data(), nullptr};
  std::fflush(stdout);
  pid_t pid = 0;
  if (int rc = ::posix_spawn(&pid, self.c_str(), nullptr, nullptr, argv, environ); rc != 0) {
    std::fprintf(stderr, "posix_spawn: %s\n", std::strerror(rc));
    shm.unlink();
    return 1;
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  std::printf("writer: the reader exited (%s); its answer in the block: \"%s\"\n",
              mproc::ExitStatus::from_wait_status(status).to_string().c_str(),
              reinterpret_cast<const char*>(shm.buf().data()) + kAnswerOffset);

  shm.unlink();
  std::printf("writer: unlinked; %s exists: %s\n", path.c_str(), std::filesystem::exists(path) ? "yes" : "no");
  return 0;
}

}  // namespace

int main(int argc, char** argv) try {
  if (argc == 3 && std::string(argv[1]) == "reader") return reader(argv[2]);
  return writer();
} catch (const std::exception& e) {
  std::fprintf(stderr, "17_shared_memory_by_name: %s\n", e.what());
  return 1;
}
