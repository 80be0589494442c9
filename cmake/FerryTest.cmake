# Test helpers: every test is its own CTest entry with a hard timeout.
pkg_check_modules(CRITERION REQUIRED IMPORTED_TARGET criterion)

# ferry_criterion_test(NAME name SOURCES a.c b.c LIBS lib... [TIMEOUT s] [LABELS l...])
# A Criterion test binary. Label `concurrency` puts it in the ThreadSanitizer pass.
function(ferry_criterion_test)
  cmake_parse_arguments(T "" "NAME;TIMEOUT" "SOURCES;LIBS;LABELS" ${ARGN})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 60)
  endif()
  add_executable(${T_NAME} ${T_SOURCES})
  if(FERRY_SANITIZE MATCHES "thread")
    # Criterion cannot start under ThreadSanitizer (see the header): the same
    # sources build against our stand-in <criterion/criterion.h>.
    target_include_directories(${T_NAME} BEFORE PRIVATE
      ${PROJECT_SOURCE_DIR}/tests/support/tsan_criterion)
    target_link_libraries(${T_NAME} PRIVATE ${T_LIBS} Threads::Threads m)
  else()
    target_link_libraries(${T_NAME} PRIVATE ${T_LIBS} PkgConfig::CRITERION Threads::Threads)
  endif()
  set_target_properties(${T_NAME} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
  # Criterion's per-test timeout backs up CTest's: a hung test is killed and reported.
  add_test(NAME ${T_NAME} COMMAND ${T_NAME} --timeout ${T_TIMEOUT} --jobs 1 --short-filename)
  set_tests_properties(${T_NAME} PROPERTIES TIMEOUT ${T_TIMEOUT} LABELS "${T_LABELS}")
endfunction()

# ferry_script_test(NAME name COMMAND cmd... [TIMEOUT s] [LABELS l...])
# An integration test driven by a script with real processes.
function(ferry_script_test)
  cmake_parse_arguments(T "" "NAME;TIMEOUT" "COMMAND;LABELS" ${ARGN})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 120)
  endif()
  add_test(NAME ${T_NAME} COMMAND ${T_COMMAND})
  set_tests_properties(${T_NAME} PROPERTIES TIMEOUT ${T_TIMEOUT} LABELS "${T_LABELS}"
    ENVIRONMENT "FERRY_BUILD_DIR=${CMAKE_BINARY_DIR};FERRY_SOURCE_DIR=${CMAKE_SOURCE_DIR}")
endfunction()
