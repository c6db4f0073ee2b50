# cmake/cpack_deb_pc.cmake — a CPack pre-build script (CPACK_PRE_BUILD_SCRIPTS, set in
# cmake/packaging.cmake): in the package's staging tree, give mproc.pc the absolute prefix the package
# installs to (CPACK_PACKAGING_INSTALL_PREFIX, /usr for the .deb) instead of the relocatable
# ${pcfiledir}-relative one that `cmake --install` writes. A system package's .pc then reads like every
# other one (prefix=/usr), and pkg-config leaves the system directories out of --cflags and --libs.
# (Unpacked elsewhere, e.g. with dpkg-deb -x, pass pkg-config --define-variable=prefix=<root>/usr.)
if(NOT CPACK_PACKAGING_INSTALL_PREFIX OR NOT IS_ABSOLUTE "${CPACK_PACKAGING_INSTALL_PREFIX}")
  return()  # no fixed prefix: the relocatable file stays right
endif()
file(GLOB_RECURSE _pcs LIST_DIRECTORIES false "${CPACK_TEMPORARY_INSTALL_DIRECTORY}/mproc.pc")
list(FILTER _pcs INCLUDE REGEX "/pkgconfig/mproc\\.pc$")
foreach(_pc IN LISTS _pcs)
  file(READ "${_pc}" _text)
  if(NOT _text MATCHES "\nprefix=")
    message(FATAL_ERROR "cpack_deb_pc.cmake: no prefix= line in ${_pc}")
  endif()
  string(REGEX REPLACE "\nprefix=[^\n]*\n" "\nprefix=${CPACK_PACKAGING_INSTALL_PREFIX}\n" _fixed "${_text}")
  # The comment about ${pcfiledir} no longer holds in this copy.
  string(REGEX REPLACE "# prefix is found from where[^\n]*\n[^\n]*\n" "" _fixed "${_fixed}")
  file(WRITE "${_pc}" "${_fixed}")
  message(STATUS "mproc.pc: prefix=${CPACK_PACKAGING_INSTALL_PREFIX} in ${_pc}")
endforeach()
if(NOT _pcs)
  message(FATAL_ERROR "cpack_deb_pc.cmake: no pkgconfig/mproc.pc under ${CPACK_TEMPORARY_INSTALL_DIRECTORY}")
endif()
