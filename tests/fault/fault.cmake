# tests/fault/fault.cmake — fault injection (issue 7, item 2), included by tests/CMakeLists.txt.
#
#   mproc_fault_shim    LD_PRELOAD library: MPROC_FAULT=<call>:<N>:<errno> makes the N-th call of one
#                       wrapper (fork, vfork, pipe2, socketpair, eventfd, mmap, shm_open, ftruncate,
#                       write, read, sendmsg, recvmsg, poll, waitpid, waitid, and pidfd_open and futex
#                       through syscall()) fail, counting only after the driver arms it (fault_shim.cpp);
#                       MPROC_FAULT_SCOPE=children moves the fault into the forked children
#   mproc_fault_driver  runs one operation (process, queue, pool, spawn, shared_memory, reaper,
#                       background) under the fault and checks the outcome and what is left: children,
#                       zombies, fds, /dev/shm (fault_driver.cpp)
#   mproc_fault_sweep   for one (operation, call) pair: a dry run gives the call count K, then the driver
#                       runs for N = 1..K+1 and each errno, each run with a timeout
#
# One ctest test per (operation, call): fault_<operation>_<call>, label "fault". A pair whose operation
# makes no call of that kind here (e.g. pipe2 for a Process when pidfds exist) is skipped (exit 77).
# fault_pool_partial_construction: Pool(5) whose 4th fork fails throws, and the 3 workers already
# started are terminated and reaped.

# Not under ASan: the shim would be preloaded ahead of libasan, which must come first in the initial
# library list (ASan aborts with "ASan runtime does not come first"); and ASan's own interceptors of
# read/write/mmap would sit between mproc and the shim anyway.
if(MPROC_SANITIZE)
  return()
endif()

add_library(mproc_fault_shim MODULE ${CMAKE_CURRENT_LIST_DIR}/fault_shim.cpp)
target_compile_options(mproc_fault_shim PRIVATE ${MPROC_WARNINGS})
target_compile_features(mproc_fault_shim PRIVATE cxx_std_20)
set_target_properties(mproc_fault_shim PROPERTIES CXX_VISIBILITY_PRESET hidden)
target_link_libraries(mproc_fault_shim PRIVATE ${CMAKE_DL_LIBS})

add_executable(mproc_fault_driver ${CMAKE_CURRENT_LIST_DIR}/fault_driver.cpp)
target_link_libraries(mproc_fault_driver PRIVATE mproc::mproc ${CMAKE_DL_LIBS})
target_compile_options(mproc_fault_driver PRIVATE ${MPROC_WARNINGS})

add_executable(mproc_fault_sweep ${CMAKE_CURRENT_LIST_DIR}/fault_sweep.cpp)
target_compile_options(mproc_fault_sweep PRIVATE ${MPROC_WARNINGS})
target_compile_features(mproc_fault_sweep PRIVATE cxx_std_20)
add_dependencies(mproc_fault_sweep mproc_fault_shim mproc_fault_driver)

# mproc_fault_test(<operation> <call> <errno,...> [VARIANT <suffix> ENV <NAME=VALUE>...]): the test
# fault_<operation>[_<suffix>]_<call>. Each run has a 20 s limit (a normal one takes ~0.1 s); K is at
# most a few dozen here, so every N is run.
function(mproc_fault_test op call errnos)
  cmake_parse_arguments(PARSE_ARGV 3 arg "" "VARIANT" "ENV")
  set(name fault_${op})
  if(arg_VARIANT)
    string(APPEND name _${arg_VARIANT})
  endif()
  string(APPEND name _${call})
  set(env_args)
  foreach(e IN LISTS arg_ENV)
    list(APPEND env_args --env ${e})
  endforeach()
  add_test(NAME ${name}
           COMMAND mproc_fault_sweep --driver $<TARGET_FILE:mproc_fault_driver>
                   --shim $<TARGET_FILE:mproc_fault_shim> --mode ${op} --call ${call} --errnos ${errnos}
                   --timeout-s 20 ${env_args})
  set_tests_properties(${name} PROPERTIES TIMEOUT 300 SKIP_RETURN_CODE 77 LABELS fault)
endfunction()

# The errnos are the ones that call can really return at the sites the operation reaches, plus EINTR
# wherever mproc must restart the call (then the operation has to succeed):
#   fork/vfork EAGAIN ENOMEM; pipe2 EMFILE ENFILE; socketpair/eventfd EMFILE ENOMEM; mmap ENOMEM EAGAIN;
#   shm_open EMFILE ENOSPC; ftruncate ENOSPC EINTR; waitpid/waitid EINTR (ECHILD for an owned child is
#   the documented "lost" case, not a transient fault); read EINTR EAGAIN EIO; write EINTR EAGAIN EPIPE
#   ENOSPC on pipes (spawn's stdin); sendmsg EINTR EAGAIN ENOBUFS; recvmsg EINTR EAGAIN ENOMEM;
#   poll EINTR ENOMEM; pidfd_open EMFILE ENOMEM; futex (the queue ring's waits and wakes) EINTR.
# To keep the whole sweep well under 3 minutes on 2 busy cores, the pairs with many calls drop errnos
# that take the same path as another: the parent's sendmsg/recvmsg sweeps skip EAGAIN (like EINTR, a
# retry, there after a poll; the workers' variants keep it), and futex gets only EINTR (the ring
# ignores futex's result altogether: any errno is the same spurious wake-up).
# Writes to an eventfd (the Pool's and the background reaper's wake-ups) only get EINTR: an eventfd
# write fails with EAGAIN only when the counter is already near 2^64 (so the reader is awake anyway)
# and with nothing else; an injected EAGAIN there is a lost wake-up the kernel never produces.
# memfd_create is interposed but mproc never calls it (anonymous segments are MAP_ANONYMOUS mappings).

# Process start/join (a normal and a daemon Process); without pidfds the sentinels are pipes.
mproc_fault_test(process fork EAGAIN,ENOMEM)
mproc_fault_test(process pipe2 EMFILE,ENFILE)
mproc_fault_test(process waitpid EINTR)
mproc_fault_test(process pidfd_open EMFILE,ENOMEM)
mproc_fault_test(process poll EINTR,ENOMEM)
mproc_fault_test(process pipe2 EMFILE,ENFILE VARIANT nopidfd ENV MPROC_NO_PIDFD=1)
mproc_fault_test(process waitpid EINTR VARIANT nopidfd ENV MPROC_NO_PIDFD=1)

# Queue put/get both ways with a child (items streamed through a 4 KiB ring).
mproc_fault_test(queue mmap ENOMEM,EAGAIN)
mproc_fault_test(queue fork EAGAIN,ENOMEM)
mproc_fault_test(queue pipe2 EMFILE,ENFILE)
mproc_fault_test(queue waitpid EINTR)
mproc_fault_test(queue pidfd_open EMFILE,ENOMEM)
mproc_fault_test(queue futex EINTR)
mproc_fault_test(queue futex EINTR VARIANT child ENV MPROC_FAULT_SCOPE=children)

# Pool(5) construction, map of 100, close, join; the workers' side with scope children.
mproc_fault_test(pool fork EAGAIN,ENOMEM)
mproc_fault_test(pool pipe2 EMFILE,ENFILE)
mproc_fault_test(pool socketpair EMFILE,ENOMEM)
mproc_fault_test(pool eventfd EMFILE,ENOMEM)
mproc_fault_test(pool write EINTR)
mproc_fault_test(pool read EINTR,EAGAIN)
mproc_fault_test(pool sendmsg EINTR,ENOBUFS)
mproc_fault_test(pool recvmsg EINTR,ENOMEM)
mproc_fault_test(pool waitpid EINTR)
mproc_fault_test(pool pidfd_open EMFILE,ENOMEM)
mproc_fault_test(pool poll EINTR,ENOMEM)
mproc_fault_test(pool sendmsg EINTR,EAGAIN,ENOBUFS VARIANT workers ENV MPROC_FAULT_SCOPE=children)
mproc_fault_test(pool recvmsg EINTR,EAGAIN,ENOMEM VARIANT workers ENV MPROC_FAULT_SCOPE=children)
mproc_fault_test(pool pipe2 EMFILE,ENFILE VARIANT nopidfd ENV MPROC_NO_PIDFD=1)
mproc_fault_test(pool waitpid EINTR VARIANT nopidfd ENV MPROC_NO_PIDFD=1)

# spawn: exec_file(echo) and spawn(cat) with write/read_line/close_stdin/wait.
mproc_fault_test(spawn vfork EAGAIN,ENOMEM)
mproc_fault_test(spawn pipe2 EMFILE,ENFILE)
mproc_fault_test(spawn eventfd EMFILE,ENOMEM)
mproc_fault_test(spawn write EINTR,EAGAIN,EPIPE,ENOSPC)
mproc_fault_test(spawn read EINTR,EAGAIN,EIO)
mproc_fault_test(spawn waitpid EINTR)
mproc_fault_test(spawn poll EINTR,ENOMEM)
# When Boost.Process's own pidfd_open (basic_process's constructor) fails after a successful exec,
# spawn() carries on without Boost's handle (src/spawn.cpp): the operation must succeed.
mproc_fault_test(spawn pidfd_open EMFILE,ENOMEM)

# SharedMemory (named and anonymous) and Value, with a child opening the block by name.
mproc_fault_test(shared_memory fork EAGAIN,ENOMEM)
mproc_fault_test(shared_memory pipe2 EMFILE,ENFILE)
mproc_fault_test(shared_memory mmap ENOMEM,EAGAIN)
mproc_fault_test(shared_memory shm_open EMFILE,ENOSPC)
mproc_fault_test(shared_memory ftruncate ENOSPC,EINTR)
mproc_fault_test(shared_memory waitpid EINTR)
mproc_fault_test(shared_memory poll EINTR,ENOMEM)
mproc_fault_test(shared_memory shm_open EMFILE,ENOSPC VARIANT child ENV MPROC_FAULT_SCOPE=children)
mproc_fault_test(shared_memory mmap ENOMEM,EAGAIN VARIANT child ENV MPROC_FAULT_SCOPE=children)

# The reaper in subreaper mode: adopt, a spawn_detached orphan, a Process.
mproc_fault_test(reaper fork EAGAIN,ENOMEM)
mproc_fault_test(reaper pipe2 EMFILE,ENFILE)
mproc_fault_test(reaper read EINTR,EAGAIN,EIO)
mproc_fault_test(reaper waitpid EINTR)
mproc_fault_test(reaper waitid EINTR)
mproc_fault_test(reaper pidfd_open EMFILE,ENOMEM)
mproc_fault_test(reaper poll EINTR,ENOMEM)
mproc_fault_test(reaper fork EAGAIN,ENOMEM VARIANT child ENV MPROC_FAULT_SCOPE=children)
mproc_fault_test(reaper write EINTR,EIO,EPIPE VARIANT child ENV MPROC_FAULT_SCOPE=children)

# The background reaper thread.
mproc_fault_test(background eventfd EMFILE,ENOMEM)
mproc_fault_test(background fork EAGAIN,ENOMEM)
mproc_fault_test(background write EINTR)
mproc_fault_test(background read EINTR,EAGAIN)
mproc_fault_test(background waitpid EINTR)
mproc_fault_test(background pidfd_open EMFILE,ENOMEM)
mproc_fault_test(background poll EINTR,ENOMEM)

# Pool(5) whose 4th fork fails: std::system_error(EAGAIN) from the constructor, and the 3 workers
# already started are terminated and reaped by mproc before it returns (the driver checks the reaper
# recorded each one's status and that no child, zombie or fd is left).
add_test(NAME fault_pool_partial_construction
         COMMAND ${CMAKE_COMMAND} -E env LD_PRELOAD=$<TARGET_FILE:mproc_fault_shim> MPROC_FAULT=fork:4:EAGAIN
                 $<TARGET_FILE:mproc_fault_driver> pool_partial)
set_tests_properties(fault_pool_partial_construction PROPERTIES TIMEOUT 60 LABELS fault)
