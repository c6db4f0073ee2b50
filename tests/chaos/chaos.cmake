# tests/chaos/chaos.cmake — chaos tests (issue 7, item 3), included by tests/CMakeLists.txt.
#
#   mproc_chaos_tests   Catch2 executable (tests/main.cpp: the same main(), leak guard and hang guard as
#                       mproc_tests) with chaos/test_chaos.cpp: Pool(1|2|5|13) whose workers are killed
#                       by their own tasks (SIGKILL, SIGSEGV, _exit(0)) and by an outside killer thread,
#                       and a Queue whose producer or consumer is SIGKILLed at random instants.
#
# Its own executable rather than a [chaos] tag in mproc_tests: each case runs for ~10 s alone on the
# machine (~21 s two at once beside two busy loops) with both cores busy forking replacement workers, so
# the cases get their own label ("chaos": `ctest -L chaos` runs only them, `ctest -LE chaos` the quick
# suite without them) and a longer TIMEOUT than the suite's 60 s. The limits, in order (test_chaos.cpp,
# near kCaseBound): a case fails past 120 s (a hang guard), tests/main.cpp's watchdog prints the stacks
# past 130 s (test_chaos.cpp sets MPROC_TEST_WATCHDOG_SECONDS unless it is set), the case aborts naming
# the seed past 160 s, and this TIMEOUT (180 s) comes last. The seed: MPROC_CHAOS_SEED (else random),
# printed by every case; see test_chaos.cpp.
add_executable(mproc_chaos_tests ${CMAKE_CURRENT_SOURCE_DIR}/main.cpp ${CMAKE_CURRENT_LIST_DIR}/test_chaos.cpp)
target_link_libraries(mproc_chaos_tests PRIVATE mproc::mproc Catch2::Catch2 Threads::Threads)
target_compile_options(mproc_chaos_tests PRIVATE ${MPROC_WARNINGS})
# test_util.hpp (used by main.cpp's leak guard) needs the helper's path, though no chaos case runs it.
target_compile_definitions(mproc_chaos_tests PRIVATE MPROC_TEST_HELPER="$<TARGET_FILE:mproc_test_helper>")
catch_discover_tests(mproc_chaos_tests EXTRA_ARGS --warn NoTests PROPERTIES TIMEOUT 180 LABELS chaos)
