// mproc/export.hpp — symbol visibility.
//
// The library is built with -fvisibility=hidden; MPROC_API marks what a user program may link to.
// The same header serves static and shared builds (a static build simply ignores visibility).
#pragma once

#if defined(__GNUC__) || defined(__clang__)
#define MPROC_API __attribute__((visibility("default")))
#else
#define MPROC_API
#endif
