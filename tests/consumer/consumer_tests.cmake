# tests/consumer/consumer_tests.cmake — ctest tests that use mproc the way users do. Included from
# tests/CMakeLists.txt (so PROJECT_* are mproc's); each step runs through run_consumer.cmake.
#   consumer_install            cmake --install this build tree into a scratch prefix (fixture)
#   consumer_find_package       a project with find_package(mproc REQUIRED) against that prefix
#   consumer_no_boost_in_headers  no installed header includes a Boost header
#   consumer_add_subdirectory   a project with add_subdirectory(<mproc source>)
# The consumers are built with this build's compiler, build type and, under MPROC_SANITIZE, the same
# sanitizer flags, so they link against the library as it was built here.

set(_mproc_consumer_dir "${CMAKE_CURRENT_LIST_DIR}")
set(_mproc_consumer_bin "${PROJECT_BINARY_DIR}/consumer")
set(_mproc_consumer_prefix "${_mproc_consumer_bin}/prefix")
set(_mproc_consumer_driver -P "${_mproc_consumer_dir}/run_consumer.cmake")

set(_mproc_consumer_args
  "-DGENERATOR=${CMAKE_GENERATOR}"
  "-DMAKE_PROGRAM=${CMAKE_MAKE_PROGRAM}"
  "-DCXX_COMPILER=${CMAKE_CXX_COMPILER}"
  "-DCONFIG=$<CONFIG>")
if(MPROC_SANITIZE)
  list(APPEND _mproc_consumer_args
    "-DCXX_FLAGS=-fsanitize=address,undefined -fno-omit-frame-pointer"
    "-DLINKER_FLAGS=-fsanitize=address,undefined")
endif()

if(MPROC_INSTALL)
  add_test(NAME consumer_install
    COMMAND ${CMAKE_COMMAND} -DMODE=install "-DBUILD_DIR=${PROJECT_BINARY_DIR}"
            "-DPREFIX=${_mproc_consumer_prefix}" "-DCONFIG=$<CONFIG>" ${_mproc_consumer_driver})
  set_tests_properties(consumer_install PROPERTIES FIXTURES_SETUP mproc_consumer_installed)

  add_test(NAME consumer_find_package
    COMMAND ${CMAKE_COMMAND} -DMODE=project "-DSOURCE=${_mproc_consumer_dir}/find_package"
            "-DBINARY=${_mproc_consumer_bin}/find_package" "-DPREFIX=${_mproc_consumer_prefix}"
            ${_mproc_consumer_args} ${_mproc_consumer_driver})
  set_tests_properties(consumer_find_package PROPERTIES FIXTURES_REQUIRED mproc_consumer_installed)

  add_test(NAME consumer_no_boost_in_headers
    COMMAND ${CMAKE_COMMAND} -DMODE=headers "-DPREFIX=${_mproc_consumer_prefix}" ${_mproc_consumer_driver})
  set_tests_properties(consumer_no_boost_in_headers PROPERTIES FIXTURES_REQUIRED mproc_consumer_installed)
  set(_mproc_consumer_tests consumer_install consumer_find_package consumer_no_boost_in_headers)
endif()

add_test(NAME consumer_add_subdirectory
  COMMAND ${CMAKE_COMMAND} -DMODE=project "-DSOURCE=${_mproc_consumer_dir}/add_subdirectory"
          "-DBINARY=${_mproc_consumer_bin}/add_subdirectory" "-DMPROC_SOURCE_DIR=${PROJECT_SOURCE_DIR}"
          "-DSHARED=${BUILD_SHARED_LIBS}" ${_mproc_consumer_args} ${_mproc_consumer_driver})
list(APPEND _mproc_consumer_tests consumer_add_subdirectory)

# 600 s: each of these configures and compiles mproc (or a consumer of it) from scratch; that takes
# 25-50 s on a quiet 2-core machine but went past 300 s once when the machine was loaded (load 9).
set_tests_properties(${_mproc_consumer_tests} PROPERTIES TIMEOUT 600 LABELS consumer)
