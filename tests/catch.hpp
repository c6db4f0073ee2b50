// tests/catch.hpp — one include for Catch2 v2 (single header, what Debian bookworm ships) and v3.
//
// Test files include this, never a Catch2 header directly. main.cpp defines MPROC_TESTS_MAIN before
// including it, so that the v2 single header's implementation (CATCH_CONFIG_RUNNER: our own main()) is
// compiled exactly once. MPROC_CATCH_V3 tells which major version was found, for the few places where
// the APIs differ (the listener base class).
#pragma once

#if __has_include(<catch2/catch_all.hpp>)
#include <catch2/catch_all.hpp>
#define MPROC_CATCH_V3 1
#else
#if defined(MPROC_TESTS_MAIN)
#define CATCH_CONFIG_RUNNER
// No fatal-signal handlers: a forked child inherits its parent's signal dispositions, so a Process
// child that gets SIGTERM or calls abort() (as several tests make it do) would run Catch's crash
// reporter inside the child. A crash of the test runner itself still fails its ctest test.
#define CATCH_CONFIG_NO_POSIX_SIGNALS
#endif
#include <catch2/catch.hpp>
#define MPROC_CATCH_V3 0
#endif
