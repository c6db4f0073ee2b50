# docs/docs.cmake — the API reference (Doxygen) and the ctest test that keeps it complete.
# Included from the top-level CMakeLists.txt when the tests are built.
#
#   <build>/docs/Doxyfile      configured from docs/Doxyfile.in
#   <build>/docs/html/         the HTML, made by ./scripts/docs or by the test
#   docs_no_undocumented       runs doxygen with warnings as errors: a public entity without a `///`
#                              comment (or a comment doxygen cannot read) fails the test suite
#
# Without doxygen the test is still registered, and fails saying how to get doxygen: it never passes
# by not running. (./scripts/test and ./scripts/docs install it: it is in MPROC_PACKAGES.)

# ctest runs this file as a script (cmake -P) for docs_no_undocumented when doxygen was not found.
if(CMAKE_SCRIPT_MODE_FILE)
  message(FATAL_ERROR "docs_no_undocumented: doxygen was not found when the build was configured. "
                      "Run ./scripts/docs (it installs doxygen), or install it (apt-get install doxygen) "
                      "and configure the build again.")
endif()

set(MPROC_DOCS_OUTPUT_DIR ${PROJECT_BINARY_DIR}/docs)
# Doxyfile INPUT: the public headers (detail/ is excluded by the Doxyfile), the generated
# mproc/version.hpp, and the main page.
set(MPROC_DOCS_INPUT "\"${PROJECT_SOURCE_DIR}/include/mproc\" \"${PROJECT_SOURCE_DIR}/docs/reference.md\"")
if(EXISTS ${PROJECT_BINARY_DIR}/include/mproc/version.hpp)
  string(APPEND MPROC_DOCS_INPUT " \"${PROJECT_BINARY_DIR}/include/mproc/version.hpp\"")
endif()
configure_file(${CMAKE_CURRENT_LIST_DIR}/Doxyfile.in ${MPROC_DOCS_OUTPUT_DIR}/Doxyfile @ONLY)

find_program(MPROC_DOXYGEN doxygen DOC "doxygen, for the API reference (docs/docs.cmake)")
if(MPROC_DOXYGEN)
  # Doxygen exits 1 after reporting every warning (WARN_AS_ERROR = FAIL_ON_WARNINGS): ctest shows them
  # with --output-on-failure.
  add_test(NAME docs_no_undocumented
           COMMAND ${MPROC_DOXYGEN} ${MPROC_DOCS_OUTPUT_DIR}/Doxyfile
           WORKING_DIRECTORY ${MPROC_DOCS_OUTPUT_DIR})
else()
  message(STATUS "doxygen not found: the test docs_no_undocumented will fail (run ./scripts/docs)")
  add_test(NAME docs_no_undocumented COMMAND ${CMAKE_COMMAND} -P ${CMAKE_CURRENT_LIST_FILE})
endif()
set_tests_properties(docs_no_undocumented PROPERTIES TIMEOUT 120 LABELS docs)
