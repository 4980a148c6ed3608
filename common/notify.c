/* twinlun notify: see twl_notify.h. */
#include "twl_notify.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int twl_notify(const char *state)
{
    int saved_errno = errno;
    const char *name = getenv("NOTIFY_SOCKET");
    if (!name || !name[0])
        return 0;
    if (name[0] != '/' && name[0] != '@')
        return -EAFNOSUPPORT;
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    size_t len = strlen(name);
    /* a path needs room for its NUL; an abstract name's '@' becomes the leading NUL */
    if (len >= sizeof(addr.sun_path) + (name[0] == '@'))
        return -ENAMETOOLONG;
    memcpy(addr.sun_path, name, len);
    socklen_t addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
    if (name[0] == '@')
        addr.sun_path[0] = '\0';
    else
        addr_len++; /* the terminating NUL, as systemd's own clients send it */

    int rc = 0;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        rc = -errno;
    } else {
        size_t n = strlen(state);
        ssize_t sent = sendto(fd, state, n, MSG_NOSIGNAL, (struct sockaddr *)&addr, addr_len);
        if (sent < 0)
            rc = -errno;
        else if ((size_t)sent != n)
            rc = -EMSGSIZE;
        close(fd);
    }
    errno = saved_errno;
    return rc;
}

/* A positive decimal number without sign, blanks or trailing characters; 0 otherwise. */
static uint64_t parse_positive(const char *s)
{
    if (!s || !s[0])
        return 0;
    uint64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return 0;
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return 0;
        v = v * 10 + d;
    }
    return v;
}

uint64_t twl_notify_watchdog_usec(void)
{
    uint64_t usec = parse_positive(getenv("WATCHDOG_USEC"));
    if (!usec)
        return 0;
    const char *pid = getenv("WATCHDOG_PID");
    if (pid && pid[0] && parse_positive(pid) != (uint64_t)getpid())
        return 0;
    return usec;
}
