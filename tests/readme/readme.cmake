# tests/readme/readme.cmake — readme_code_blocks: every ```cpp block in README.md compiles and runs.
# Included from tests/CMakeLists.txt. check_readme.py (beside this file) explains the markers that make a
# block a fragment, compile-only or skipped. The blocks are compiled the way a user program would be:
# the same compiler, mproc's public include directories (include/ and the generated
# ${PROJECT_BINARY_DIR}/include, home of mproc/version.hpp) and the libmproc just built.
find_package(Python3 REQUIRED COMPONENTS Interpreter)

set(_readme_args
  --readme ${PROJECT_SOURCE_DIR}/README.md
  --cxx ${CMAKE_CXX_COMPILER} --compiler-id ${CMAKE_CXX_COMPILER_ID}
  --include ${PROJECT_SOURCE_DIR}/include --include ${PROJECT_BINARY_DIR}/include
  --lib $<TARGET_FILE:mproc>
  --workdir ${CMAKE_CURRENT_BINARY_DIR}/readme
  --flag=-Wall --flag=-Wextra --flag=-Wno-unused-variable --flag=-Wno-unused-but-set-variable
  --link-flag=-Wl,-rpath,$<TARGET_FILE_DIR:mproc>)  # for BUILD_SHARED_LIBS=ON
if(MPROC_WERROR)
  list(APPEND _readme_args --flag=-Werror)
endif()
if(MPROC_SANITIZE)  # libmproc is instrumented: the blocks must be too
  list(APPEND _readme_args --flag=-fsanitize=address,undefined --flag=-fno-omit-frame-pointer
       --flag=-fno-sanitize-recover=undefined)
endif()
if(BUILD_SHARED_LIBS)
  list(APPEND _readme_args --flag=-DMPROC_SHARED)
endif()
if(NOT MPROC_SHM_OPEN_IN_LIBC)  # glibc < 2.34: shm_open is in librt
  list(APPEND _readme_args --link-flag=-lrt)
endif()

add_test(NAME readme_code_blocks
  COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_LIST_DIR}/check_readme.py ${_readme_args})
set_tests_properties(readme_code_blocks PROPERTIES TIMEOUT 300 LABELS readme)
unset(_readme_args)
