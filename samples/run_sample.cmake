# samples/run_sample.cmake — run one sample and check what it printed (ctest runs this with cmake -P).
#
#   cmake -DSAMPLE=<binary> -DSPEC=<name>.sample.cmake -P run_sample.cmake
#
# SPEC sets SAMPLE_ARGS (the sample's arguments) and SAMPLE_EXPECT (regular expressions). The test fails
# if the sample exits non-zero or times out, if any expression does not match its output (stdout and
# stderr together; "." also matches a newline, so "a.*b" checks that b comes after a), or if a
# sanitizer reported something. ctest's PASS_REGULAR_EXPRESSION alone would ignore the exit status.
cmake_minimum_required(VERSION 3.25)

if(NOT DEFINED SAMPLE OR NOT DEFINED SPEC)
  message(FATAL_ERROR "usage: cmake -DSAMPLE=<binary> -DSPEC=<spec file> -P run_sample.cmake")
endif()
include("${SPEC}")
get_filename_component(name "${SAMPLE}" NAME)

execute_process(
  COMMAND "${SAMPLE}" ${SAMPLE_ARGS}
  OUTPUT_VARIABLE out
  ERROR_VARIABLE out  # the same variable: both streams, merged in the order written
  RESULT_VARIABLE rc
  TIMEOUT 55)
message("----- output of ${name} -----\n${out}-----")

set(failures "")
if(NOT rc STREQUAL "0")
  string(APPEND failures "\n  exit status: ${rc} (expected 0)")
endif()
foreach(re IN LISTS SAMPLE_EXPECT)
  if(NOT out MATCHES "${re}")
    string(APPEND failures "\n  no match for: ${re}")
  endif()
endforeach()
if(out MATCHES "ERROR: (Address|Leak|Thread|Memory)Sanitizer|runtime error: ")
  string(APPEND failures "\n  a sanitizer reported an error")
endif()

if(failures)
  message(FATAL_ERROR "sample ${name} FAILED:${failures}")
endif()
message("sample ${name}: ok")
