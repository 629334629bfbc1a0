# http_console_embed: turns the console's files into one C source holding
# a table of them (name, content type, bytes, length, ETag). Run with
# cmake -P:
#   -DDIR=<folder of the files> -DFILES=<name,name,...> -DOUTPUT=<file.c>
string(REPLACE "," ";" names "${FILES}")
set(defs "")
set(rows "")
set(i 0)
foreach(name IN LISTS names)
  set(path "${DIR}/${name}")
  file(READ "${path}" hex HEX)
  file(SHA256 "${path}" sha)
  string(SUBSTRING "${sha}" 0 16 etag)
  string(LENGTH "${hex}" hexlen)
  math(EXPR len "${hexlen} / 2")
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
  if(name MATCHES "\\.html$")
    set(type "text/html; charset=utf-8")
  elseif(name MATCHES "\\.js$")
    set(type "text/javascript; charset=utf-8")
  elseif(name MATCHES "\\.css$")
    set(type "text/css; charset=utf-8")
  elseif(name MATCHES "\\.svg$")
    set(type "image/svg+xml")
  else()
    message(FATAL_ERROR "http_console_embed: no content type for ${name}")
  endif()
  string(APPEND defs "static const char f${i}[] = {\n${bytes}0x00 };\n")
  string(APPEND rows "\t{ \"${name}\", \"${type}\", f${i}, ${len}UL, \"\\\"${etag}\\\"\" },\n")
  math(EXPR i "${i} + 1")
endforeach()
file(WRITE "${OUTPUT}.tmp"
  "/* Generated from ${DIR} by http_console_embed.cmake; do not edit. */\n"
  "#include \"http_console.h\"\n\n${defs}\n"
  "const struct http_console_file http_console_files[] = {\n${rows}\t{ 0 },\n};\n")
file(RENAME "${OUTPUT}.tmp" "${OUTPUT}")
