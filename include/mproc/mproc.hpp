// mproc/mproc.hpp — everything mproc offers, in one include.
#pragma once

#include "mproc/error.hpp"
#include "mproc/exit_status.hpp"
#include "mproc/posix.hpp"
#include "mproc/process.hpp"
#include "mproc/reaper.hpp"
#include "mproc/this_process.hpp"
