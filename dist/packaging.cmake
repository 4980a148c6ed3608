# CPack: `cpack -G DEB` in the build directory makes twinlun_<version>_<arch>.deb with the
# layout of `cmake --install` under /usr, plus /etc/twinlun/twinlun.conf (the documented
# default configuration) as a conffile, and maintainer scripts that create the tmpfiles
# directories and reload systemd. Installing the package starts nothing: the admin reviews the
# configuration, then `systemctl enable --now twinlund` (or twinlund@NAME).
set(TWL_VERSION "0.1.0" CACHE STRING "Version of the packages")

# The conffile goes to the absolute /etc/twinlun in a component only the package installs:
# a plain `cmake --install` (EXCLUDE_FROM_ALL) never writes to /etc.
install(FILES ${PROJECT_SOURCE_DIR}/etc/twinlun.conf DESTINATION /etc/twinlun
        COMPONENT conffiles EXCLUDE_FROM_ALL)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME twinlun)
set(CPACK_PACKAGE_VERSION ${TWL_VERSION})
set(CPACK_PACKAGE_VENDOR "twinlun")
set(CPACK_PACKAGE_CONTACT "twinlun maintainers <twinlun@example.org>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "replicated iSCSI target (two nodes mirrored over RDMA)")
set(CPACK_PACKAGE_DESCRIPTION
    "twinlun is a pair of storage nodes that look like one iSCSI target: each node serves \
LUNs to iSCSI initiators and mirrors every write to its partner over RDMA. This package has \
the daemon twinlund, the admin tool twinlunctl, systemd units and example configurations.")
# Absolute destinations (the conffile) land in the staging tree; the prefix seen at install
# time is the real one, so the units name /usr/sbin/twinlund.
set(CPACK_SET_DESTDIR ON)
set(CPACK_INSTALL_PREFIX /usr)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_COMPONENTS_ALL Unspecified conffiles)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_GROUPING ALL_COMPONENTS_IN_ONE)

set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${CPACK_PACKAGE_CONTACT}")
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# Debian 12 (bookworm) names of the shared libraries twinlund links.
set(CPACK_DEBIAN_PACKAGE_DEPENDS
    "libc6 (>= 2.34), libconfig9, liburing2, libisal2, libssl3, libibverbs1, librdmacm1, libpmem2")
# The RDMA device drivers (rxe for soft-RoCE, mlx5, ...) of libibverbs.
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "ibverbs-providers")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${CMAKE_CURRENT_LIST_DIR}/debian/conffiles ${CMAKE_CURRENT_LIST_DIR}/debian/postinst
    ${CMAKE_CURRENT_LIST_DIR}/debian/prerm ${CMAKE_CURRENT_LIST_DIR}/debian/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)

include(CPack)
