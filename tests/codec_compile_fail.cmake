# tests/codec_compile_fail.cmake — a negative compile test, run by ctest as a CMake script:
#
#   cmake -DCXX=<compiler> -DINCLUDE_DIR=<mproc/include>[;<more dirs>] -DSOURCE=<file.cpp> -DCASE=<n>
#         [-DEXPECT=<text;text;...>] [-DSHOULD_COMPILE=ON] -P codec_compile_fail.cmake
#
# Compiles SOURCE with -DMPROC_CASE=CASE (syntax only: nothing is linked). With SHOULD_COMPILE the
# compile must succeed (the control case). Otherwise it must fail, and the compiler's output must
# contain every text in EXPECT (the static_assert's advice, the offending type's name): a failure for
# any other reason does not count.
foreach(var CXX INCLUDE_DIR SOURCE CASE)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "codec_compile_fail.cmake: ${var} is not set")
  endif()
endforeach()

set(include_flags "")
foreach(dir IN LISTS INCLUDE_DIR)
  list(APPEND include_flags "-I${dir}")
endforeach()
execute_process(
  COMMAND "${CXX}" -std=c++20 -fsyntax-only ${include_flags} "-DMPROC_CASE=${CASE}" "${SOURCE}"
  RESULT_VARIABLE rc
  OUTPUT_VARIABLE out
  ERROR_VARIABLE err)
set(all "${out}${err}")

if(SHOULD_COMPILE)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "case ${CASE} should compile but did not:\n${all}")
  endif()
  message(STATUS "case ${CASE} compiles, as it should")
  return()
endif()

if(rc EQUAL 0)
  message(FATAL_ERROR "case ${CASE} compiled, but must not")
endif()
foreach(text IN LISTS EXPECT)
  string(FIND "${all}" "${text}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "case ${CASE} failed to compile, but the output lacks \"${text}\":\n${all}")
  endif()
endforeach()
message(STATUS "case ${CASE} fails to compile with the expected message (${EXPECT})")
