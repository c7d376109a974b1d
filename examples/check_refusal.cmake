# Runs ${EXE} ${ARGS} (a ;-list) and passes only if it exits with 2 and its stderr matches
# every regular expression in ${EXPECT} (a ;-list): a refused input names the field, the value
# and what to do.
execute_process(COMMAND ${EXE} ${ARGS} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 2)
  message(FATAL_ERROR "exit status ${rc}, expected 2\nstdout: ${out}\nstderr: ${err}")
endif()
foreach(re IN LISTS EXPECT)
  if(NOT err MATCHES "${re}")
    message(FATAL_ERROR "stderr does not match '${re}':\n${err}")
  endif()
endforeach()
