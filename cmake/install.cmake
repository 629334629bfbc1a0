# Install layout and the .deb (CPack). `cmake --install build` (or the .deb)
# puts what a Debian system expects where it expects it:
#   /usr/bin/edgerec
#   /etc/edgerec/edgerec.conf       the commented sample with the service's
#                                   settings (see below); a conffile
#   /etc/edgerec/policies/          the shipped Lua policies (the default
#                                   policy_dir); conffiles, so an operator's
#                                   edits survive upgrades
#   /usr/lib/systemd/system/edgerec.service, /usr/lib/sysusers.d/edgerec.conf,
#   /usr/lib/tmpfiles.d/edgerec.conf   from rootfs/ (the files every image carries)
#   /usr/share/doc/edgerec/         README and the policy guide
# The prefix defaults to /usr in a new build tree (CMakeLists.txt); `cmake
# --install build --prefix /usr` says it for any tree; the .deb always uses
# /usr. /etc is /etc whatever the prefix: edgerec reads
# /etc/edgerec/edgerec.conf by default. DESTDIR stages an install elsewhere.
include(GNUInstallDirs)
set(EDGEREC_ETC /etc/edgerec)

# The installed configuration is the sample with four lines set for a
# service: HTTPS on 443, recordings in the state directory (not /tmp, which
# the unit makes private), no development token in the journal. Everything
# else stays commented with its default.
file(READ ${CMAKE_SOURCE_DIR}/rootfs/etc/edgerec/edgerec.conf EDGEREC_CONF)
foreach(pair
    "# listen_https = 0.0.0.0:8443|listen_https = 0.0.0.0:443"
    "# local_storage_path = /tmp/webrtc_recordings|local_storage_path = /var/lib/edgerec/recordings"
    "# dev_token = true|dev_token = false")
  string(REPLACE "|" ";" pair "${pair}")
  list(GET pair 0 from)
  list(GET pair 1 to)
  string(FIND "${EDGEREC_CONF}" "${from}\n" at)
  if(at LESS 0)
    message(FATAL_ERROR "rootfs/etc/edgerec/edgerec.conf has no line '${from}'")
  endif()
  string(REPLACE "${from}\n" "${to}\n" EDGEREC_CONF "${EDGEREC_CONF}")
endforeach()
file(CONFIGURE OUTPUT ${CMAKE_BINARY_DIR}/installed/edgerec.conf CONTENT "${EDGEREC_CONF}" @ONLY)

install(TARGETS edgerec RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(FILES ${CMAKE_BINARY_DIR}/installed/edgerec.conf DESTINATION ${EDGEREC_ETC})
install(DIRECTORY ${CMAKE_SOURCE_DIR}/policies/ DESTINATION ${EDGEREC_ETC}/policies
  FILES_MATCHING PATTERN "*.lua")
install(FILES ${CMAKE_SOURCE_DIR}/rootfs/usr/lib/systemd/system/edgerec.service
  DESTINATION lib/systemd/system)
install(FILES ${CMAKE_SOURCE_DIR}/rootfs/usr/lib/sysusers.d/edgerec.conf
  DESTINATION lib/sysusers.d)
install(FILES ${CMAKE_SOURCE_DIR}/rootfs/usr/lib/tmpfiles.d/edgerec.conf
  DESTINATION lib/tmpfiles.d)
install(FILES ${CMAKE_SOURCE_DIR}/README.md
  DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(FILES ${CMAKE_SOURCE_DIR}/policies/README.md DESTINATION ${CMAKE_INSTALL_DOCDIR} RENAME policies.md)

# The .deb: `cpack -G DEB` in the build tree. Library dependencies come
# from dpkg-shlibdeps (Debian package names and versions of what the binary
# links); redis-server is the embedded Redis edgerec starts.
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME edgerec)
set(CPACK_PACKAGE_VENDOR "edgerec")
set(CPACK_PACKAGE_CONTACT "edgerec maintainers <maintainers@edgerec.invalid>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "recording appliance for WebRTC rooms")
set(CPACK_PACKAGE_DESCRIPTION "Records WebRTC rooms to WebM/Matroska/MP4 behind an HTTPS REST API,\nwith Redis state and Lua policies.")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION video)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "redis-server, systemd")
# Everything under /etc is a conffile (dpkg keeps an operator's edits).
file(GLOB_RECURSE EDGEREC_POLICY_FILES RELATIVE ${CMAKE_SOURCE_DIR}/policies CONFIGURE_DEPENDS
  ${CMAKE_SOURCE_DIR}/policies/*.lua)
set(EDGEREC_CONFFILES "${EDGEREC_ETC}/edgerec.conf\n")
foreach(f ${EDGEREC_POLICY_FILES})
  string(APPEND EDGEREC_CONFFILES "${EDGEREC_ETC}/policies/${f}\n")
endforeach()
file(CONFIGURE OUTPUT ${CMAKE_BINARY_DIR}/installed/conffiles CONTENT "${EDGEREC_CONFFILES}")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA ${CMAKE_BINARY_DIR}/installed/conffiles
  ${CMAKE_SOURCE_DIR}/cmake/deb/postinst ${CMAKE_SOURCE_DIR}/cmake/deb/prerm ${CMAKE_SOURCE_DIR}/cmake/deb/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_STRIP_FILES ON)
include(CPack)
