# Third-party libraries: Debian packages through pkg-config, and the Debian
# source packages fetched by scripts/bootstrap, built here statically.

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

# Applies the patches given after 'dir' (patch -p1, in the order given) in
# 'dir', a copy of 'name''s pinned source 'src'; one that does not apply
# stops the configure step with patch's output.
function(thirdparty_apply_patches name src dir)
  find_program(PATCH_EXECUTABLE patch REQUIRED)
  foreach(p IN LISTS ARGN)
    execute_process(COMMAND "${PATCH_EXECUTABLE}" -p1 --forward --batch --quiet -i "${p}"
      WORKING_DIRECTORY "${dir}" RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
    if(NOT rc EQUAL 0)
      message(FATAL_ERROR "${name}: ${p} does not apply to ${src}:\n${out}")
    endif()
  endforeach()
endfunction()

set(CIVETWEB_DIR "${EDGEREC_FETCH_DIR}/civetweb")
set(LIBWEBM_DIR "${EDGEREC_FETCH_DIR}/libwebm")
set(LIBSRTP2_DIR "${EDGEREC_FETCH_DIR}/libsrtp2")
if(NOT EXISTS "${CIVETWEB_DIR}/src/civetweb.c" OR NOT EXISTS "${LIBWEBM_DIR}/mkvmuxer/mkvmuxer.cc"
   OR NOT EXISTS "${LIBSRTP2_DIR}/srtp/srtp.c")
  message(FATAL_ERROR "civetweb/libwebm/libsrtp2 sources missing in ${EDGEREC_FETCH_DIR}: run scripts/bootstrap")
endif()

# civetweb is built from a copy in the build tree with cmake/patches/civetweb-*.patch
# applied (docs/civetweb-patches.md says what they change and why). The copy
# is remade whenever a patch or the pinned source changes; a stamp holding the
# hashes of both makes this idempotent across re-configures.
file(GLOB CIVETWEB_PATCHES CONFIGURE_DEPENDS "${CMAKE_CURRENT_LIST_DIR}/patches/civetweb-*.patch")
list(SORT CIVETWEB_PATCHES)
set(CIVETWEB_BUILD_DIR "${CMAKE_BINARY_DIR}/civetweb-patched")
set(CIVETWEB_STAMP_TEXT "")
foreach(f IN LISTS CIVETWEB_PATCHES ITEMS "${CIVETWEB_DIR}/src/civetweb.c"
        "${CIVETWEB_DIR}/src/mod_mbedtls.inl" "${CIVETWEB_DIR}/include/civetweb.h")
  file(SHA256 "${f}" h)
  string(APPEND CIVETWEB_STAMP_TEXT "${h}\n")
endforeach()
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${CIVETWEB_PATCHES}
  "${CIVETWEB_DIR}/src/civetweb.c")
set(CIVETWEB_STAMP "${CIVETWEB_BUILD_DIR}/.patched")
set(CIVETWEB_STAMP_OLD "")
if(EXISTS "${CIVETWEB_STAMP}")
  file(READ "${CIVETWEB_STAMP}" CIVETWEB_STAMP_OLD)
endif()
if(NOT CIVETWEB_STAMP_OLD STREQUAL CIVETWEB_STAMP_TEXT)
  file(REMOVE_RECURSE "${CIVETWEB_BUILD_DIR}")
  file(COPY "${CIVETWEB_DIR}/src" "${CIVETWEB_DIR}/include" DESTINATION "${CIVETWEB_BUILD_DIR}")
  thirdparty_apply_patches(civetweb "${CIVETWEB_DIR}" "${CIVETWEB_BUILD_DIR}" ${CIVETWEB_PATCHES})
  file(WRITE "${CIVETWEB_STAMP}" "${CIVETWEB_STAMP_TEXT}")
  message(STATUS "civetweb: patched copy in ${CIVETWEB_BUILD_DIR}")
endif()

# civetweb 1.15 with mbedTLS and WebSocket, no CGI/SSI/Lua, as a static library.
add_library(thirdparty_civetweb STATIC "${CIVETWEB_BUILD_DIR}/src/civetweb.c")
target_include_directories(thirdparty_civetweb SYSTEM PUBLIC "${CIVETWEB_BUILD_DIR}/include")
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

# libsrtp2 2.5.0 with OpenSSL's libcrypto as its cipher and HMAC engine.
# Debian's libsrtp2-1 is built on NSS, which sets up a cipher context per
# packet: srtp_unprotect of a 1200-byte packet took 4.7 us with it and 1.2 us
# with libcrypto (AES-NI, SHA extensions) on this box, about half of a WHIP
# stream's CPU through `edgerec serve` (scripts/bench.d/55-whip). libcrypto is already in the process through
# libcurl. The header goes to an include folder of its own as <srtp2/srtp.h>,
# ahead of any system copy.
find_package(OpenSSL REQUIRED COMPONENTS Crypto)
include(CheckIncludeFile)
include(CheckTypeSize)
foreach(h arpa/inet.h byteswap.h inttypes.h netinet/in.h stdint.h stdlib.h sys/socket.h sys/types.h unistd.h)
  string(TOUPPER "HAVE_${h}" var)
  string(REGEX REPLACE "[/.]" "_" var "${var}")
  check_include_file(${h} ${var})
endforeach()
check_type_size("unsigned long" SIZEOF_UNSIGNED_LONG)
check_type_size("unsigned long long" SIZEOF_UNSIGNED_LONG_LONG)
set(OPENSSL 1)
set(GCM 1)
set(HAVE_INLINE 1)
set(HAVE_UINT8_T 1)
set(HAVE_UINT16_T 1)
set(HAVE_UINT32_T 1)
set(HAVE_UINT64_T 1)
set(HAVE_INT32_T 1)
set(HAVE_INET_PTON 1)
set(HAVE_USLEEP 1)
set(PACKAGE_VERSION "2.5.0")
set(PACKAGE_STRING "libsrtp2 2.5.0")
if(CMAKE_SYSTEM_PROCESSOR MATCHES "(x86)|(X86)|(amd64)|(AMD64)")
  set(HAVE_X86 1)
endif()
set(LIBSRTP2_GEN "${CMAKE_BINARY_DIR}/libsrtp2")
configure_file("${LIBSRTP2_DIR}/config_in_cmake.h" "${LIBSRTP2_GEN}/config/config.h")
configure_file("${LIBSRTP2_DIR}/include/srtp.h" "${LIBSRTP2_GEN}/include/srtp2/srtp.h" COPYONLY)
add_library(thirdparty_srtp2 STATIC
  "${LIBSRTP2_DIR}/srtp/srtp.c"
  "${LIBSRTP2_DIR}/crypto/cipher/cipher.c"
  "${LIBSRTP2_DIR}/crypto/cipher/cipher_test_cases.c"
  "${LIBSRTP2_DIR}/crypto/cipher/null_cipher.c"
  "${LIBSRTP2_DIR}/crypto/cipher/aes_icm_ossl.c"
  "${LIBSRTP2_DIR}/crypto/cipher/aes_gcm_ossl.c"
  "${LIBSRTP2_DIR}/crypto/hash/auth.c"
  "${LIBSRTP2_DIR}/crypto/hash/auth_test_cases.c"
  "${LIBSRTP2_DIR}/crypto/hash/null_auth.c"
  "${LIBSRTP2_DIR}/crypto/hash/hmac_ossl.c"
  "${LIBSRTP2_DIR}/crypto/kernel/alloc.c"
  "${LIBSRTP2_DIR}/crypto/kernel/crypto_kernel.c"
  "${LIBSRTP2_DIR}/crypto/kernel/err.c"
  "${LIBSRTP2_DIR}/crypto/kernel/key.c"
  "${LIBSRTP2_DIR}/crypto/math/datatypes.c"
  "${LIBSRTP2_DIR}/crypto/replay/rdb.c"
  "${LIBSRTP2_DIR}/crypto/replay/rdbx.c")
target_include_directories(thirdparty_srtp2 SYSTEM BEFORE PUBLIC "${LIBSRTP2_GEN}/include")
target_include_directories(thirdparty_srtp2 PRIVATE "${LIBSRTP2_GEN}/config"
  "${LIBSRTP2_DIR}/include" "${LIBSRTP2_DIR}/crypto/include")
target_compile_definitions(thirdparty_srtp2 PRIVATE HAVE_CONFIG_H)
target_compile_options(thirdparty_srtp2 PRIVATE -w)
set_target_properties(thirdparty_srtp2 PROPERTIES POSITION_INDEPENDENT_CODE ON)
target_link_libraries(thirdparty_srtp2 PUBLIC OpenSSL::Crypto)

# libvpx 1.12.0 (Debian's source package with its patches) with
# cmake/patches/libvpx-*.patch applied (docs/libvpx-patches.md says what they
# change and why), linked statically into edgerec. Debian's libvpx7 zero-fills
# the VP8 encoder's token buffer, sized for the most tokens a frame could
# have (about 22 MB at 1280x720), so all of it is resident in every encoder
# although a frame at a recording's bitrate writes a small part of it. The
# configuration is Debian's otherwise (without high bit depth, which a
# recorder of 8-bit video does not use). One build serves every build tree of
# a checkout (release, sanitizers, fuzzing): it sits in the fetch folder,
# remade when the source, a patch or the flags change, under a lock so trees
# configured at once wait for it. edgerec-finish decodes with Debian's shared
# libvpx and links none of this.
set(LIBVPX_DIR "${EDGEREC_FETCH_DIR}/libvpx")
if(NOT EXISTS "${LIBVPX_DIR}/vpx/vpx_encoder.h")
  message(FATAL_ERROR "libvpx source missing in ${LIBVPX_DIR}: run scripts/bootstrap")
endif()
file(GLOB LIBVPX_PATCHES CONFIGURE_DEPENDS "${CMAKE_CURRENT_LIST_DIR}/patches/libvpx-*.patch")
list(SORT LIBVPX_PATCHES)
set(LIBVPX_FLAGS --enable-pic --enable-runtime-cpu-detect --enable-multithread --enable-postproc
  --enable-vp9-postproc --enable-multi-res-encoding --enable-temporal-denoising
  --enable-vp9-temporal-denoising --enable-vp8 --enable-vp9 --disable-examples --disable-tools
  --disable-docs --disable-unit-tests --disable-install-bins --disable-install-srcs
  --size-limit=16384x16384 --extra-cflags=-fstack-protector-strong)
if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64)$")
  list(APPEND LIBVPX_FLAGS --target=x86_64-linux-gcc)
elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "^(aarch64|arm64)$")
  list(APPEND LIBVPX_FLAGS --target=arm64-linux-gcc)
else()
  list(APPEND LIBVPX_FLAGS --target=generic-gnu)
endif()
set(LIBVPX_BUILD_DIR "${EDGEREC_FETCH_DIR}/libvpx-build")
set(LIBVPX_STAMP_TEXT "${LIBVPX_FLAGS}\n")
foreach(f IN LISTS LIBVPX_PATCHES ITEMS "${EDGEREC_FETCH_DIR}/dl/libvpx_1.12.0-1+deb12u5.dsc")
  file(SHA256 "${f}" h)
  string(APPEND LIBVPX_STAMP_TEXT "${h}\n")
endforeach()
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${LIBVPX_PATCHES})
file(LOCK "${EDGEREC_FETCH_DIR}/libvpx-build.lock" GUARD FILE TIMEOUT 1800)
set(LIBVPX_STAMP_OLD "")
if(EXISTS "${LIBVPX_BUILD_DIR}/.stamp" AND EXISTS "${LIBVPX_BUILD_DIR}/obj/libvpx.a")
  file(READ "${LIBVPX_BUILD_DIR}/.stamp" LIBVPX_STAMP_OLD)
endif()
if(NOT LIBVPX_STAMP_OLD STREQUAL LIBVPX_STAMP_TEXT)
  find_program(NASM_EXECUTABLE nasm)
  if(NOT NASM_EXECUTABLE AND CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64)$")
    message(FATAL_ERROR "libvpx needs nasm: run scripts/bootstrap")
  endif()
  cmake_host_system_information(RESULT LIBVPX_JOBS QUERY NUMBER_OF_LOGICAL_CORES)
  message(STATUS "libvpx: building in ${LIBVPX_BUILD_DIR} (once per checkout, about a minute on 2 cores)")
  file(REMOVE_RECURSE "${LIBVPX_BUILD_DIR}")
  file(MAKE_DIRECTORY "${LIBVPX_BUILD_DIR}/obj")
  file(COPY "${LIBVPX_DIR}/" DESTINATION "${LIBVPX_BUILD_DIR}/src" PATTERN ".pc" EXCLUDE PATTERN "debian" EXCLUDE)
  thirdparty_apply_patches(libvpx "${LIBVPX_DIR}" "${LIBVPX_BUILD_DIR}/src" ${LIBVPX_PATCHES})
  execute_process(COMMAND "${LIBVPX_BUILD_DIR}/src/configure" ${LIBVPX_FLAGS}
    WORKING_DIRECTORY "${LIBVPX_BUILD_DIR}/obj" RESULT_VARIABLE rc
    OUTPUT_FILE "${LIBVPX_BUILD_DIR}/configure.out" ERROR_FILE "${LIBVPX_BUILD_DIR}/configure.out")
  if(rc EQUAL 0)
    execute_process(COMMAND make -j${LIBVPX_JOBS} libvpx.a
      WORKING_DIRECTORY "${LIBVPX_BUILD_DIR}/obj" RESULT_VARIABLE rc
      OUTPUT_FILE "${LIBVPX_BUILD_DIR}/make.out" ERROR_FILE "${LIBVPX_BUILD_DIR}/make.out")
  endif()
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "libvpx: build failed, see ${LIBVPX_BUILD_DIR}/configure.out and make.out")
  endif()
  file(WRITE "${LIBVPX_BUILD_DIR}/.stamp" "${LIBVPX_STAMP_TEXT}")
endif()
file(LOCK "${EDGEREC_FETCH_DIR}/libvpx-build.lock" RELEASE)
add_library(thirdparty_vpx STATIC IMPORTED GLOBAL)
set_target_properties(thirdparty_vpx PROPERTIES IMPORTED_LOCATION "${LIBVPX_BUILD_DIR}/obj/libvpx.a")
target_include_directories(thirdparty_vpx SYSTEM BEFORE INTERFACE "${LIBVPX_BUILD_DIR}/src")
target_link_libraries(thirdparty_vpx INTERFACE Threads::Threads m)
