# cmake/packaging.cmake — the pkg-config file and the CPack (.deb) configuration. Included from the
# top-level CMakeLists.txt inside if(MPROC_INSTALL), after the mproc target and its install rules.
#
#   mproc.pc           installed into ${CMAKE_INSTALL_LIBDIR}/pkgconfig (always, with the install rules)
#   cpack -G DEB       libmproc-dev_<version>_<arch>.deb (only when mproc is the top-level project, so a
#                      project that pulls mproc in with add_subdirectory/FetchContent keeps its own CPack)
#
# Everything here takes the version from project(): nothing repeats it.

# --- pkg-config -----------------------------------------------------------------------------------
# prefix is relative to the .pc file's own directory (${pcfiledir}, known to pkg-config and pkgconf),
# like the relocatable mproc-config.cmake: the file stays right under `cmake --install --prefix X` and
# with DESTDIR. The .deb's copy says prefix=/usr instead (cmake/cpack_deb_pc.cmake, below).
# Absolute CMAKE_INSTALL_LIBDIR/INCLUDEDIR (unusual) are written as they are.
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}")
  set(MPROC_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
  set(MPROC_PC_LIBDIR "${CMAKE_INSTALL_LIBDIR}")
else()
  file(RELATIVE_PATH _mproc_pc_up "/mproc-prefix/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/mproc-prefix")
  string(REGEX REPLACE "/$" "" _mproc_pc_up "${_mproc_pc_up}")
  set(MPROC_PC_PREFIX "\${pcfiledir}/${_mproc_pc_up}")
  set(MPROC_PC_LIBDIR "\${prefix}/${CMAKE_INSTALL_LIBDIR}")
endif()
if(IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
  set(MPROC_PC_INCLUDEDIR "${CMAKE_INSTALL_INCLUDEDIR}")
else()
  set(MPROC_PC_INCLUDEDIR "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
endif()
# What mproc::mproc carries besides the library: pthreads, librt where shm_open is not in libc (see
# MPROC_SHM_OPEN_IN_LIBC), MPROC_SHARED for a shared build. All in Libs, not Libs.private: the default
# libmproc is a static archive, and `pkg-config --libs` without --static leaves Libs.private out.
# C++20 itself is not in Cflags (the consumer picks its -std, which must be c++20 or later).
set(MPROC_PC_LIBS " -pthread")
if(NOT MPROC_SHM_OPEN_IN_LIBC)
  string(APPEND MPROC_PC_LIBS " -lrt")
endif()
set(MPROC_PC_CFLAGS "")
if(BUILD_SHARED_LIBS)
  string(APPEND MPROC_PC_CFLAGS " -DMPROC_SHARED")
endif()
configure_file(${PROJECT_SOURCE_DIR}/cmake/mproc.pc.in ${PROJECT_BINARY_DIR}/mproc.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/mproc.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

# --- CPack: one Debian package, libmproc-dev ----------------------------------------------------
# It holds what `cmake --install` installs, and nothing else: the library, the headers (with the
# generated mproc/version.hpp), the CMake package files and mproc.pc. Tests, samples and benchmarks
# have no install rules.
if(NOT MPROC_MASTER_PROJECT)
  return()
endif()

set(CPACK_PACKAGE_NAME mproc)
set(CPACK_PACKAGE_VENDOR "mproc")
if(NOT DEFINED CPACK_PACKAGE_CONTACT)  # -DCPACK_PACKAGE_CONTACT="Name <mail>" to sign it otherwise
  set(CPACK_PACKAGE_CONTACT "Seed 7b18ab3d maintainers <maintainers@users.noreply.r-seed-7b18ab3d.example>")
endif()
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "${PROJECT_DESCRIPTION}")
set(CPACK_PACKAGE_DESCRIPTION
"mproc brings Python's multiprocessing to C++20 on Linux: Process and a reaper
that never leaves zombies, Queue/SimpleQueue/JoinableQueue, Pipe/Connection,
Lock/RLock/Semaphore/Condition/Event/Barrier, Value/Array/SharedMemory, Pool
and mproc::async, and external programs.
This package holds the library, its headers, the CMake package (find_package(mproc))
and the pkg-config file (mproc.pc). Programs need a C++20 compiler (-std=c++20).")
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_PACKAGE_NAME libmproc-dev)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)  # <name>_<version>_<arch>.deb: libmproc-dev_0.1.0_amd64.deb
set(CPACK_DEBIAN_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${CPACK_PACKAGE_CONTACT}")
# What a consumer needs: the C and C++ standard library headers and archives the library was built
# against. Boost is not among them: it is a private build-time dependency (no installed header includes
# a Boost header — the consumer_no_boost_in_headers test checks — and nothing is linked from Boost).
# The glibc version is the one this package was built on: libmproc.a was compiled against its headers.
if(NOT DEFINED CPACK_DEBIAN_PACKAGE_DEPENDS)
  execute_process(COMMAND getconf GNU_LIBC_VERSION OUTPUT_VARIABLE _mproc_glibc
                  OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  if(_mproc_glibc MATCHES "^glibc ([0-9]+\\.[0-9]+)")
    set(_mproc_libc_dev "libc6-dev (>= ${CMAKE_MATCH_1})")
  else()
    set(_mproc_libc_dev "libc6-dev")
  endif()
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    string(REGEX MATCH "^[0-9]+" _mproc_gcc_major "${CMAKE_CXX_COMPILER_VERSION}")
    set(_mproc_libstdcxx "libstdc++-${_mproc_gcc_major}-dev | libstdc++-dev")
  else()
    set(_mproc_libstdcxx "libstdc++-dev")
  endif()
  set(CPACK_DEBIAN_PACKAGE_DEPENDS "${_mproc_libc_dev} | libc-dev, ${_mproc_libstdcxx}")
endif()
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "g++ (>= 4:12) | clang (>= 1:14)")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "cmake, pkgconf | pkg-config")
# The packaged mproc.pc says prefix=/usr outright (see the script).
set(CPACK_PRE_BUILD_SCRIPTS ${PROJECT_SOURCE_DIR}/cmake/cpack_deb_pc.cmake)
include(CPack)
