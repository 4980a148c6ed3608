/* twl_notify and twl_notify_watchdog_usec: the datagram reaches a path or an abstract
 * socket named by NOTIFY_SOCKET; no NOTIFY_SOCKET sends nothing; the watchdog interval is read
 * strictly from WATCHDOG_USEC and WATCHDOG_PID. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "twl_notify.h"

struct listener {
    char dir[64];
    char path[128];
    int fd;
};

/* A datagram socket bound at <tmpdir>/notify, or at an abstract name when abstract. */
static void listener_open(struct listener *l, bool abstract)
{
    memset(l, 0, sizeof(*l));
    l->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(l->fd >= 0);
    int one = 1;
    assert_int_equal(setsockopt(l->fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)), 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    socklen_t len;
    if (abstract) {
        snprintf(l->path, sizeof(l->path), "@twl-test-notify-%d-%ld", (int)getpid(),
                 (long)random());
        memcpy(addr.sun_path, l->path, strlen(l->path));
        addr.sun_path[0] = '\0';
        len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(l->path));
    } else {
        snprintf(l->dir, sizeof(l->dir), "/tmp/twl-notify-XXXXXX");
        assert_non_null(mkdtemp(l->dir));
        snprintf(l->path, sizeof(l->path), "%s/notify", l->dir);
        assert_true(strlen(l->path) < sizeof(addr.sun_path));
        memcpy(addr.sun_path, l->path, strlen(l->path) + 1);
        len = sizeof(addr);
    }
    assert_int_equal(bind(l->fd, (struct sockaddr *)&addr, len), 0);
}

static void listener_close(struct listener *l)
{
    close(l->fd);
    if (l->dir[0]) {
        unlink(l->path);
        rmdir(l->dir);
    }
}

/* The next datagram (without waiting) into buf; its length, or -1 when there is none. The
 * sender's pid goes to *pid. */
static ssize_t listener_recv(struct listener *l, char *buf, size_t size, pid_t *pid)
{
    char control[CMSG_SPACE(sizeof(struct ucred))];
    struct iovec iov = {.iov_base = buf, .iov_len = size - 1};
    struct msghdr msg = {.msg_iov = &iov,
                         .msg_iovlen = 1,
                         .msg_control = control,
                         .msg_controllen = sizeof(control)};
    ssize_t n = recvmsg(l->fd, &msg, MSG_DONTWAIT);
    if (n < 0)
        return -1;
    buf[n] = '\0';
    *pid = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
            struct ucred cred;
            memcpy(&cred, CMSG_DATA(c), sizeof(cred));
            *pid = cred.pid;
        }
    return n;
}

static void notify_reaches_a_path_socket(void **state)
{
    (void)state;
    struct listener l;
    listener_open(&l, false);
    assert_int_equal(setenv("NOTIFY_SOCKET", l.path, 1), 0);
    errno = 12345;
    assert_int_equal(twl_notify("READY=1"), 0);
    assert_int_equal(errno, 12345);
    char buf[256];
    pid_t pid;
    assert_int_equal(listener_recv(&l, buf, sizeof(buf), &pid), 7);
    assert_string_equal(buf, "READY=1");
    assert_int_equal(pid, getpid());

    const char *lines = "READY=1\nSTATUS=serving 2 LUNs on 127.0.0.1:3260\nMAINPID=42";
    assert_int_equal(twl_notify(lines), 0);
    assert_int_equal(listener_recv(&l, buf, sizeof(buf), &pid), (ssize_t)strlen(lines));
    assert_string_equal(buf, lines);
    assert_int_equal(listener_recv(&l, buf, sizeof(buf), &pid), -1); /* one datagram each */

    unsetenv("NOTIFY_SOCKET");
    listener_close(&l);
}

static void notify_reaches_an_abstract_socket(void **state)
{
    (void)state;
    struct listener l;
    listener_open(&l, true);
    assert_int_equal(setenv("NOTIFY_SOCKET", l.path, 1), 0);
    assert_int_equal(twl_notify("WATCHDOG=1"), 0);
    char buf[256];
    pid_t pid;
    assert_int_equal(listener_recv(&l, buf, sizeof(buf), &pid), 10);
    assert_string_equal(buf, "WATCHDOG=1");
    assert_int_equal(pid, getpid());
    unsetenv("NOTIFY_SOCKET");
    listener_close(&l);
}

static void no_notify_socket_sends_nothing(void **state)
{
    (void)state;
    struct listener l;
    listener_open(&l, false);
    char buf[256];
    pid_t pid;
    unsetenv("NOTIFY_SOCKET");
    assert_int_equal(twl_notify("READY=1"), 0);
    assert_int_equal(setenv("NOTIFY_SOCKET", "", 1), 0);
    assert_int_equal(twl_notify("READY=1"), 0);
    assert_int_equal(listener_recv(&l, buf, sizeof(buf), &pid), -1);
    unsetenv("NOTIFY_SOCKET");
    listener_close(&l);
}

static void bad_notify_socket_is_an_error(void **state)
{
    (void)state;
    assert_int_equal(setenv("NOTIFY_SOCKET", "relative/notify", 1), 0);
    assert_int_equal(twl_notify("READY=1"), -EAFNOSUPPORT);
    assert_int_equal(setenv("NOTIFY_SOCKET", "/nonexistent-twl-dir/notify", 1), 0);
    errno = 0;
    assert_int_equal(twl_notify("READY=1"), -ENOENT);
    assert_int_equal(errno, 0);
    char longname[200];
    memset(longname, 'x', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    longname[0] = '/';
    assert_int_equal(setenv("NOTIFY_SOCKET", longname, 1), 0);
    assert_int_equal(twl_notify("READY=1"), -ENAMETOOLONG);
    longname[0] = '@';
    assert_int_equal(setenv("NOTIFY_SOCKET", longname, 1), 0);
    assert_int_equal(twl_notify("READY=1"), -ENAMETOOLONG);
    /* a path of exactly sizeof(sun_path) - 1 characters fits; nobody listens there */
    longname[0] = '/';
    longname[sizeof(((struct sockaddr_un *)0)->sun_path) - 1] = '\0';
    assert_int_equal(setenv("NOTIFY_SOCKET", longname, 1), 0);
    assert_int_equal(twl_notify("READY=1"), -ENOENT);
    unsetenv("NOTIFY_SOCKET");
}

static void watchdog_usec_parsing(void **state)
{
    (void)state;
    unsetenv("WATCHDOG_PID");
    unsetenv("WATCHDOG_USEC");
    assert_int_equal(twl_notify_watchdog_usec(), 0);

    static const struct {
        const char *usec;
        uint64_t want;
    } cases[] = {
        {"200000", 200000},
        {"1", 1},
        {"30000000", 30000000},
        {"18446744073709551615", UINT64_MAX},
        {"18446744073709551616", 0}, /* overflows */
        {"99999999999999999999999", 0},
        {"0", 0},
        {"", 0},
        {"abc", 0},
        {"12abc", 0},
        {"-5", 0},
        {"+5", 0},
        {" 5", 0},
        {"5 ", 0},
        {"0x10", 0},
        {"1.5", 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(setenv("WATCHDOG_USEC", cases[i].usec, 1), 0);
        uint64_t got = twl_notify_watchdog_usec();
        if (got != cases[i].want)
            fail_msg("WATCHDOG_USEC=\"%s\": got %llu, want %llu", cases[i].usec,
                     (unsigned long long)got, (unsigned long long)cases[i].want);
    }
}

static void watchdog_pid_must_be_ours(void **state)
{
    (void)state;
    char pid[32];
    assert_int_equal(setenv("WATCHDOG_USEC", "500000", 1), 0);

    snprintf(pid, sizeof(pid), "%d", (int)getpid());
    assert_int_equal(setenv("WATCHDOG_PID", pid, 1), 0);
    assert_int_equal(twl_notify_watchdog_usec(), 500000);

    snprintf(pid, sizeof(pid), "%d", (int)getpid() + 1);
    assert_int_equal(setenv("WATCHDOG_PID", pid, 1), 0);
    assert_int_equal(twl_notify_watchdog_usec(), 0);

    static const char *garbage[] = {"x", "12x", "-1", " 1", "0", "99999999999999999999999"};
    for (size_t i = 0; i < sizeof(garbage) / sizeof(garbage[0]); i++) {
        assert_int_equal(setenv("WATCHDOG_PID", garbage[i], 1), 0);
        if (twl_notify_watchdog_usec() != 0)
            fail_msg("WATCHDOG_PID=\"%s\" gave a watchdog", garbage[i]);
    }

    /* empty counts as unset */
    assert_int_equal(setenv("WATCHDOG_PID", "", 1), 0);
    assert_int_equal(twl_notify_watchdog_usec(), 500000);

    /* our pid with leading zeros is still our pid */
    snprintf(pid, sizeof(pid), "000%d", (int)getpid());
    assert_int_equal(setenv("WATCHDOG_PID", pid, 1), 0);
    assert_int_equal(twl_notify_watchdog_usec(), 500000);

    unsetenv("WATCHDOG_PID");
    unsetenv("WATCHDOG_USEC");
}

int main(void)
{
    srandom((unsigned)getpid());
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(notify_reaches_a_path_socket),
        cmocka_unit_test(notify_reaches_an_abstract_socket),
        cmocka_unit_test(no_notify_socket_sends_nothing),
        cmocka_unit_test(bad_notify_socket_is_an_error),
        cmocka_unit_test(watchdog_usec_parsing),
        cmocka_unit_test(watchdog_pid_must_be_ours),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
