/*
 * twinlunctl: asks a running twinlund (target/admin.h says what it answers) and prints the
 * reply; `config check` runs here, without a daemon. Exit codes: 0 done, 1 refused by the
 * daemon (or the configuration is invalid), 2 bad usage or request, 3 the daemon cannot be
 * reached.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "config.h"
#include "textbuf.h"

#define DEFAULT_STATE_DIR "/var/lib/twinlun"
#define SOCKET_NAME       "twinlund.sock"

static void usage(FILE *f)
{
    fprintf(f, "usage: twinlunctl [--state-dir DIR | --socket PATH] COMMAND [ARGS] [--json]\n"
               "commands (--json: one JSON object instead of text):\n"
               "  status                    the node, the pair, every LUN's role and sync "
               "state\n"
               "  sessions                  initiators, ISIDs, portals, negotiated parameters\n"
               "  luns                      every LUN: size, owner, ALUA state, sync, I/O "
               "figures\n"
               "  promote [LUN]             serve LUN (or all) here while the partner is "
               "unreachable\n"
               "  takeover [LUN] [--force]  serve LUN (default: all the partner serves) here, a "
               "planned move\n"
               "                            (refused unless the copies are in sync; --force "
               "holds I/O until they are)\n"
               "  giveback [LUN|all] [--force]\n"
               "                            hand LUN (default: the ones the partner owns) back to "
               "the partner\n"
               "  resolve --discard NODE    end a split brain, dropping NODE's writes since it\n"
               "  resync start|pause|resume [LUN]\n"
               "                            control the copying of what differs (on the node "
               "that serves the LUN)\n"
               "  log                       the log level and the parts with debug lines\n"
               "  log level LEVEL           error, warn, info or debug\n"
               "  log debug PARTS           debug lines of PART[,PART...], all or none\n"
               "  config check FILE         validate a configuration file (no daemon needed)\n"
               "exit codes: 0 done, 1 refused or invalid, 2 bad usage, 3 daemon unreachable\n"
               "the socket is DIR/" SOCKET_NAME " (DIR: --state-dir, $TWINLUN_STATE_DIR, "
               "or " DEFAULT_STATE_DIR ")\n");
}

/* The loader's checks, and what it leaves to start time: a LUN file that must exist. */
static int config_check(const char *path, bool json)
{
    static struct tgt_config cfg;
    static char err[2 * PATH_MAX + 512];
    int rc = tgt_config_load_file(path, &cfg, err, sizeof(err));
    for (size_t t = 0; rc == 0 && t < cfg.target_count; t++)
        for (size_t i = 0; rc == 0 && i < cfg.targets[t].lun_count; i++) {
            const struct tgt_lun_config *l = &cfg.targets[t].luns[i];
            struct stat st;
            if (l->create || stat(l->path, &st) == 0)
                continue;
            rc = -ENOENT;
            snprintf(err, sizeof(err),
                     "%s:%u: targets[%zu].luns[%zu].path '%s' does not exist (%s) and create is "
                     "false; expected an existing file or block device, or create = true with a "
                     "size",
                     path, l->path_line, t, i, l->path, strerror(errno));
        }
    size_t targets = cfg.target_count, luns = 0;
    for (size_t t = 0; t < cfg.target_count; t++)
        luns += cfg.targets[t].lun_count;
    bool pair = cfg.pair.enabled;
    tgt_config_free(&cfg);
    if (json) {
        static char out[8 * sizeof(err)]; /* room for every byte escaped as \\uXXXX */
        struct textbuf t = {.p = out, .len = sizeof(out)};
        char msg[PATH_MAX + 8];
        snprintf(msg, sizeof(msg), "%s: ok", path);
        textbuf_put(&t, "{\"file\":");
        textbuf_json_str(&t, path);
        textbuf_put(&t, ",\"ok\":%s,\"message\":", rc == 0 ? "true" : "false");
        textbuf_json_str(&t, rc == 0 ? msg : err);
        if (rc == 0)
            textbuf_put(&t, ",\"targets\":%zu,\"luns\":%zu,\"pair\":%s", targets, luns,
                        pair ? "true" : "false");
        textbuf_put(&t, "}\n");
        fputs(out, stdout);
    } else if (rc == 0) {
        printf("%s: ok (%zu target%s, %zu LUN%s%s)\n", path, targets, targets == 1 ? "" : "s", luns,
               luns == 1 ? "" : "s", pair ? ", a pair" : "");
    } else {
        fprintf(stderr, "%s\n", err);
    }
    return rc == 0 ? 0 : 1;
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
    if (strcmp(argv[optind], "config") == 0) {
        int n = argc - optind;
        bool json = n > 0 && strcmp(argv[argc - 1], "--json") == 0;
        if (json)
            n--;
        if (n != 3 || strcmp(argv[optind + 1], "check") != 0) {
            fprintf(stderr, "usage: twinlunctl config check FILE [--json]\n");
            return 2;
        }
        return config_check(argv[optind + 2], json);
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
