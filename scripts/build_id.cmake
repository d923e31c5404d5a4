# Writes OUTPUT (a C++ include) with a hash of every file in SOURCES (a ;-separated list), so
# that the disk cache's key changes whenever code generation's sources do. The file is only
# rewritten when the hash changes, which keeps rebuilds small.
set(text "")
foreach(source ${SOURCES})
  file(SHA256 ${source} digest)
  string(APPEND text "${digest}")
endforeach()
string(SHA256 id "${text}")
string(SUBSTRING "${id}" 0 16 id)
set(content "constexpr const char* kBuildId = \"${id}\";\n")
if(EXISTS ${OUTPUT})
  file(READ ${OUTPUT} old)
  if(old STREQUAL content)
    return()
  endif()
endif()
file(WRITE ${OUTPUT} "${content}")
