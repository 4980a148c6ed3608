/*
 * twinlun notify: the service manager's readiness protocol (sd_notify(3)) without libsystemd.
 *
 * Promises:
 * - twl_notify(state) sends state as one datagram to the AF_UNIX socket named by
 *   $NOTIFY_SOCKET: a file system path ("/run/systemd/notify") or, when it starts with '@', an
 *   abstract address (the '@' stands for the leading NUL byte). It returns 0 when the datagram
 *   was sent, 0 as well when NOTIFY_SOCKET is unset or empty (no manager is listening: nothing
 *   to do), and a negative errno otherwise (-EAFNOSUPPORT for an address that is neither a path
 *   nor abstract, -ENAMETOOLONG when it does not fit a sockaddr_un, or what socket()/sendto()
 *   failed with). state is sent as it is: lines such as "READY=1\nSTATUS=...".
 * - twl_notify() leaves the environment alone (unlike sd_notify's unset_environment it can be
 *   called again), keeps errno, and uses only getenv(), strlen(), memcpy(), socket(), sendto()
 *   and close(): it may be called from a signal handler as long as no thread changes the
 *   environment meanwhile, and from several threads at once.
 * - twl_notify_watchdog_usec() is the watchdog interval the manager asked for, in
 *   microseconds: WATCHDOG_USEC when it is a positive decimal number and WATCHDOG_PID is unset
 *   or names this process; 0 (no watchdog) otherwise, including for values that are not plain
 *   decimal numbers or overflow. The manager expects "WATCHDOG=1" more often than that; every
 *   half interval is the usual choice.
 */
#ifndef TWL_NOTIFY_H
#define TWL_NOTIFY_H

#include <stdint.h>

int twl_notify(const char *state);
uint64_t twl_notify_watchdog_usec(void);

#endif
