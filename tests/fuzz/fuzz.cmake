# tests/fuzz/fuzz.cmake — the fuzzers beyond the codec's (codec.cmake), included by tests/CMakeLists.txt:
#   * connection_fuzz.cpp: Connection's frame reader fed a peer's bytes (records, stream and pipe);
#   * ring_fuzz.cpp: the queues' shared ring with its header and data area scribbled on by a peer.
# Each is built two ways:
#   * <name>_replay, always, with the normal compiler and linked to replay_main.cpp: ctest replays the
#     checked-in seed corpus (corpus/<name>/), each input and all its strict prefixes. No clang needed.
#   * <name>_fuzz under libFuzzer with ASan and UBSan, only in a build configured with -DMPROC_FUZZ=ON
#     and clang++ (not part of `all`). The harnesses call into the library, so MPROC_FUZZ compiles the
#     library with coverage instrumentation and the sanitizers too, and links them into everything
#     that uses it in that build. scripts/fuzz configures such a build in build-fuzz/ and runs them
#     (with codec_fuzz, which codec.cmake provides there as well).

option(MPROC_FUZZ "Build the libFuzzer harnesses connection_fuzz and ring_fuzz (clang++; instruments the library)" OFF)

# ring_fuzz reaches src/ internals (shm::Ring): it links them from the static library. A shared
# libmproc hides them (-fvisibility=hidden), so there is no ring fuzzer then.
get_target_property(_mproc_type mproc TYPE)
set(_mproc_fuzz_names connection)
if(_mproc_type STREQUAL "STATIC_LIBRARY")
  list(APPEND _mproc_fuzz_names ring)
else()
  message(STATUS "mproc: shared library build; ring_fuzz and ring_fuzz_replay need the static library")
endif()

foreach(_name IN LISTS _mproc_fuzz_names)
  add_executable(${_name}_fuzz_replay ${CMAKE_CURRENT_LIST_DIR}/${_name}_fuzz.cpp ${CMAKE_CURRENT_LIST_DIR}/replay_main.cpp)
  target_link_libraries(${_name}_fuzz_replay PRIVATE mproc::mproc Threads::Threads)
  target_compile_options(${_name}_fuzz_replay PRIVATE ${MPROC_WARNINGS})
  add_test(NAME ${_name}_fuzz_replay COMMAND ${_name}_fuzz_replay ${CMAKE_CURRENT_LIST_DIR}/corpus/${_name})
  set_tests_properties(${_name}_fuzz_replay PROPERTIES TIMEOUT 120)
endforeach()
if(TARGET ring_fuzz_replay)
  target_include_directories(ring_fuzz_replay PRIVATE ${PROJECT_SOURCE_DIR}/src)
endif()

if(MPROC_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "MPROC_FUZZ needs clang++: configure with -DCMAKE_CXX_COMPILER=clang++")
  endif()
  set(_mproc_fuzz_flags -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
                        -fno-omit-frame-pointer)
  target_compile_options(mproc PRIVATE ${_mproc_fuzz_flags})
  target_link_options(mproc INTERFACE -fsanitize=address,undefined)
  foreach(_name IN LISTS _mproc_fuzz_names)
    add_executable(${_name}_fuzz EXCLUDE_FROM_ALL ${CMAKE_CURRENT_LIST_DIR}/${_name}_fuzz.cpp)
    target_compile_options(${_name}_fuzz PRIVATE ${_mproc_fuzz_flags} ${MPROC_WARNINGS})
    target_link_options(${_name}_fuzz PRIVATE -fsanitize=fuzzer)
    target_link_libraries(${_name}_fuzz PRIVATE mproc::mproc Threads::Threads)
  endforeach()
  if(TARGET ring_fuzz)
    target_include_directories(ring_fuzz PRIVATE ${PROJECT_SOURCE_DIR}/src)
  endif()
endif()
