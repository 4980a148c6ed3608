/*
 * twinlunctl: asks a running twinlund (target/admin.h says what it answers) and prints the
 * reply. Exit codes: 0 done, 1 refused by the daemon, 2 bad usage or request, 3 the daemon
 * cannot be reached.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define DEFAULT_STATE_DIR "/var/lib/twinlun"
#define SOCKET_NAME       "twinlund.sock"

static void usage(FILE *f)
{
    fprintf(f, "usage: twinlunctl [--state-dir DIR | --socket PATH] COMMAND [--json]\n"
               "commands:\n"
               "  status [--json]           the node, the pair, every LUN's role and sync state\n"
               "  promote [LUN]             serve LUN (or all) here while the partner is "
               "unreachable\n"
               "  resolve --discard NODE    end a split brain, dropping NODE's writes since it\n"
               "exit codes: 0 done, 1 refused, 2 bad usage, 3 daemon unreachable\n"
               "the socket is DIR/" SOCKET_NAME " (DIR: --state-dir, $TWINLUN_STATE_DIR, "
               "or " DEFAULT_STATE_DIR ")\n");
}

int main(int argc, char **argv)
{
    const char *state_dir = getenv("TWINLUN_STATE_DIR"), *sock = NULL;
    static const struct option opts[] = {{"state-dir", required_argument, NULL, 's'},
                                         {"socket", required_argument, NULL, 'S'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int opt;
    /* "+": options after the command (--discard, --json) belong to the request */
    while ((opt = getopt_long(argc, argv, "+s:S:h", opts, NULL)) != -1) {
        switch (opt) {
        case 's':
            state_dir = optarg;
            break;
        case 'S':
            sock = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return 2;
    }
    char request[1024] = "";
    size_t used = 0;
    for (int i = optind; i < argc; i++) {
        int n = snprintf(request + used, sizeof(request) - used, "%s%s", i > optind ? " " : "",
                         argv[i]);
        if (n < 0 || (size_t)n >= sizeof(request) - used) {
            fprintf(stderr, "twinlunctl: request too long\n");
            return 2;
        }
        used += (size_t)n;
    }
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int n = sock ? snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock)
                 : snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%s",
                            state_dir ? state_dir : DEFAULT_STATE_DIR, SOCKET_NAME);
    if (n < 0 || (size_t)n >= sizeof(sa.sun_path)) {
        fprintf(stderr, "twinlunctl: socket path too long\n");
        return 2;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        fprintf(stderr, "twinlunctl: cannot reach twinlund at %s: %s\n", sa.sun_path,
                strerror(errno));
        return 3;
    }
    request[used++] = '\n';
    if (write(fd, request, used) != (ssize_t)used) {
        fprintf(stderr, "twinlunctl: sending to %s: %s\n", sa.sun_path, strerror(errno));
        return 3;
    }
    char buf[4096];
    size_t got = 0;
    int code = -1;
    ssize_t r;
    char head[16];
    /* the first line is the exit code */
    while (code < 0 && got < sizeof(head) - 1 && (r = read(fd, head + got, 1)) == 1) {
        if (head[got] == '\n') {
            head[got] = '\0';
            code = atoi(head);
        } else {
            got++;
        }
    }
    if (code < 0) {
        fprintf(stderr, "twinlunctl: twinlund at %s sent no reply\n", sa.sun_path);
        return 3;
    }
    while ((r = read(fd, buf, sizeof(buf))) > 0)
        fwrite(buf, 1, (size_t)r, code == 0 ? stdout : stderr);
    close(fd);
    return code;
}
