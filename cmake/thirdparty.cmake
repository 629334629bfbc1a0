# Third-party libraries: Debian packages through pkg-config, and the two
# Debian source packages fetched by scripts/bootstrap, built here statically.

pkg_check_modules(HIREDIS REQUIRED IMPORTED_TARGET hiredis)
pkg_check_modules(LUA REQUIRED IMPORTED_TARGET lua5.4)
pkg_check_modules(VPX REQUIRED IMPORTED_TARGET vpx)
pkg_check_modules(OPUS REQUIRED IMPORTED_TARGET opus)
pkg_check_modules(CURL REQUIRED IMPORTED_TARGET libcurl)
pkg_check_modules(AVFORMAT REQUIRED IMPORTED_TARGET libavformat libavcodec libavutil)
pkg_check_modules(JPEG REQUIRED IMPORTED_TARGET libjpeg)
pkg_check_modules(CJSON REQUIRED IMPORTED_TARGET libcjson)

# libyuv (the video encoder's downscaler) ships no pkg-config file either.
find_library(YUV_LIB yuv REQUIRED)
find_path(YUV_INCLUDE_DIR libyuv/scale.h REQUIRED)
add_library(thirdparty_yuv INTERFACE)
target_link_libraries(thirdparty_yuv INTERFACE ${YUV_LIB})
target_include_directories(thirdparty_yuv SYSTEM INTERFACE ${YUV_INCLUDE_DIR})

# mbedtls 2.28 ships no pkg-config file.
find_library(MBEDTLS_LIB mbedtls REQUIRED)
find_library(MBEDX509_LIB mbedx509 REQUIRED)
find_library(MBEDCRYPTO_LIB mbedcrypto REQUIRED)
add_library(thirdparty_mbedtls INTERFACE)
target_link_libraries(thirdparty_mbedtls INTERFACE ${MBEDTLS_LIB} ${MBEDX509_LIB} ${MBEDCRYPTO_LIB})

set(CIVETWEB_DIR "${EDGEREC_FETCH_DIR}/civetweb")
set(LIBWEBM_DIR "${EDGEREC_FETCH_DIR}/libwebm")
if(NOT EXISTS "${CIVETWEB_DIR}/src/civetweb.c" OR NOT EXISTS "${LIBWEBM_DIR}/mkvmuxer/mkvmuxer.cc")
  message(FATAL_ERROR "civetweb/libwebm sources missing in ${EDGEREC_FETCH_DIR}: run scripts/bootstrap")
endif()

# civetweb 1.15 with mbedTLS and WebSocket, no CGI/SSI/Lua, as a static library.
add_library(thirdparty_civetweb STATIC "${CIVETWEB_DIR}/src/civetweb.c")
target_include_directories(thirdparty_civetweb SYSTEM PUBLIC "${CIVETWEB_DIR}/include")
target_compile_definitions(thirdparty_civetweb
  PUBLIC USE_MBEDTLS USE_WEBSOCKET
  PRIVATE NO_CGI NO_SSI)
target_compile_options(thirdparty_civetweb PRIVATE -w)
set_target_properties(thirdparty_civetweb PROPERTIES POSITION_INDEPENDENT_CODE ON)
target_link_libraries(thirdparty_civetweb PUBLIC thirdparty_mbedtls Threads::Threads ${CMAKE_DL_LIBS})

# libwebm's muxer (the -dev package ships only the parser headers).
add_library(thirdparty_mkvmuxer STATIC
  "${LIBWEBM_DIR}/mkvmuxer/mkvmuxer.cc"
  "${LIBWEBM_DIR}/mkvmuxer/mkvmuxerutil.cc"
  "${LIBWEBM_DIR}/mkvmuxer/mkvwriter.cc")
target_include_directories(thirdparty_mkvmuxer SYSTEM PUBLIC "${LIBWEBM_DIR}")
target_compile_options(thirdparty_mkvmuxer PRIVATE -w)
set_target_properties(thirdparty_mkvmuxer PROPERTIES POSITION_INDEPENDENT_CODE ON)

# libwebm's parser, built from the same source (used to read back and repair files).
add_library(thirdparty_mkvparser STATIC
  "${LIBWEBM_DIR}/mkvparser/mkvparser.cc"
  "${LIBWEBM_DIR}/mkvparser/mkvreader.cc")
target_include_directories(thirdparty_mkvparser SYSTEM PUBLIC "${LIBWEBM_DIR}")
target_compile_options(thirdparty_mkvparser PRIVATE -w)
set_target_properties(thirdparty_mkvparser PROPERTIES POSITION_INDEPENDENT_CODE ON)
