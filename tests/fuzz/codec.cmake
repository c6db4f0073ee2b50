# tests/fuzz/codec.cmake — the codec's tests beyond the Catch2 suite (included by tests/CMakeLists.txt):
#   * codec_fuzz_replay: the libFuzzer harness (codec_fuzz.cpp) linked to a small main (replay_main.cpp)
#     and built with the normal compiler; ctest replays the checked-in seed corpus (corpus/codec/), each
#     input and all its strict prefixes, through LLVMFuzzerTestOneInput.
#   * codec_compile_fail_*: a type without a codec must not compile, and the error must name
#     MPROC_CODEC and the type (tests/codec_compile_fail.cmake; case 0 is the control that compiles).
#   * codec_fuzz (optional, not built by default): the harness under libFuzzer with ASan and UBSan, when
#     a clang++ that can link -fsanitize=fuzzer is found. scripts/fuzz builds and runs it.

set(MPROC_CODEC_FUZZ_SOURCE ${CMAKE_CURRENT_LIST_DIR}/codec_fuzz.cpp)

add_executable(codec_fuzz_replay ${MPROC_CODEC_FUZZ_SOURCE} ${CMAKE_CURRENT_LIST_DIR}/replay_main.cpp)
target_link_libraries(codec_fuzz_replay PRIVATE mproc::mproc)
target_compile_options(codec_fuzz_replay PRIVATE ${MPROC_WARNINGS})
add_test(NAME codec_fuzz_replay COMMAND codec_fuzz_replay ${CMAKE_CURRENT_LIST_DIR}/corpus/codec)
set_tests_properties(codec_fuzz_replay PROPERTIES TIMEOUT 120)

# codec_compile_fail_*: see mproc_compile_fail in tests/CMakeLists.txt.
mproc_compile_fail(codec_compile_fail_control codec_no_codec.cpp 0)
mproc_compile_fail(codec_compile_fail_no_codec codec_no_codec.cpp 1 MPROC_CODEC NoCodecType)
mproc_compile_fail(codec_compile_fail_no_codec_element codec_no_codec.cpp 2 MPROC_CODEC NoCodecType)
mproc_compile_fail(codec_compile_fail_not_trivially_copyable codec_no_codec.cpp 3 MPROC_CODEC NotTriviallyCopyable)
mproc_compile_fail(codec_compile_fail_pointer_field codec_no_codec.cpp 4 MPROC_CODEC HoldsPointer)
mproc_compile_fail(codec_compile_fail_unscoped_enum codec_no_codec.cpp 5 "fixed underlying type" Unscoped)

# The libFuzzer build. The harness needs only the headers, so it is compiled by clang directly (a custom
# command), whatever compiler builds the rest of the project. Probed once per build directory.
if(CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  set(_mproc_fuzz_cxx ${CMAKE_CXX_COMPILER})
else()
  find_program(MPROC_CLANGXX NAMES clang++ clang++-19 clang++-18 clang++-17 clang++-16 clang++-15 clang++-14
               DOC "clang++ for the libFuzzer harness (optional)")
  set(_mproc_fuzz_cxx ${MPROC_CLANGXX})
endif()
if(_mproc_fuzz_cxx AND NOT DEFINED MPROC_CLANG_FUZZER_WORKS)
  set(_probe_dir ${CMAKE_CURRENT_BINARY_DIR}/fuzzer_probe)
  file(MAKE_DIRECTORY ${_probe_dir})
  file(WRITE ${_probe_dir}/probe.cpp
       "#include <cstddef>\n#include <cstdint>\n"
       "extern \"C\" int LLVMFuzzerTestOneInput(const std::uint8_t*, std::size_t) { return 0; }\n")
  execute_process(COMMAND ${_mproc_fuzz_cxx} -fsanitize=fuzzer ${_probe_dir}/probe.cpp -o ${_probe_dir}/probe
                  RESULT_VARIABLE _probe_rc OUTPUT_QUIET ERROR_QUIET)
  if(_probe_rc EQUAL 0)
    set(MPROC_CLANG_FUZZER_WORKS ON CACHE INTERNAL "clang++ links -fsanitize=fuzzer")
  else()
    set(MPROC_CLANG_FUZZER_WORKS OFF CACHE INTERNAL "clang++ links -fsanitize=fuzzer")
  endif()
endif()
if(_mproc_fuzz_cxx AND MPROC_CLANG_FUZZER_WORKS)
  set(_fuzz_bin ${CMAKE_CURRENT_BINARY_DIR}/codec_fuzz)
  add_custom_command(
    OUTPUT ${_fuzz_bin}
    COMMAND ${_mproc_fuzz_cxx} -std=c++20 -g -O1 -fno-omit-frame-pointer
            -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
            -I${PROJECT_SOURCE_DIR}/include -MD -MF ${_fuzz_bin}.d ${MPROC_CODEC_FUZZ_SOURCE} -o ${_fuzz_bin}
    DEPENDS ${MPROC_CODEC_FUZZ_SOURCE}
    DEPFILE ${_fuzz_bin}.d
    COMMENT "Building the codec's libFuzzer harness with ${_mproc_fuzz_cxx}"
    VERBATIM)
  # Not part of `all`: build it with `cmake --build <dir> --target codec_fuzz` (or scripts/fuzz).
  add_custom_target(codec_fuzz DEPENDS ${_fuzz_bin})
else()
  message(STATUS "mproc: no clang++ that links -fsanitize=fuzzer; the codec_fuzz target is not available")
endif()
