// mproc/mproc.hpp — everything mproc offers, in one include.
#pragma once

#include "mproc/codec.hpp"
#include "mproc/connection.hpp"
#include "mproc/error.hpp"
#include "mproc/exit_status.hpp"
#include "mproc/pool.hpp"
#include "mproc/posix.hpp"
#include "mproc/process.hpp"
#include "mproc/queue.hpp"
#include "mproc/reaper.hpp"
#include "mproc/shared.hpp"
#include "mproc/spawn.hpp"
#include "mproc/synchronize.hpp"
#include "mproc/this_process.hpp"
#include "mproc/version.hpp"
