/*
 * twinlund: the twinlun node daemon.
 *
 *   twinlund [--config FILE] [--state-dir DIR] [--port N] [--log-level L] [--check]
 *
 * Without --config it serves the built-in default (one thin 1 GiB LUN under the state
 * directory on 127.0.0.1:3260). --check validates the configuration and exits.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "target.h"
#include "twl_common.h"

static struct tgt_server *running;

static void on_signal(int sig)
{
    (void)sig;
    if (running)
        tgt_server_stop(running);
}

static void usage(FILE *out)
{
    fprintf(out, "usage: twinlund [--config FILE] [--state-dir DIR] [--port N] [--log-level "
                 "error|warn|info|debug] [--check]\n");
}

static int make_dirs(const char *path)
{
    char buf[PATH_MAX];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0700) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(buf, 0700) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

int main(int argc, char **argv)
{
    const char *config_path = NULL, *state_dir = NULL, *log_level = NULL;
    int port = -1;
    bool check_only = false;
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"state-dir", required_argument, NULL, 's'},
                                         {"port", required_argument, NULL, 'p'},
                                         {"log-level", required_argument, NULL, 'l'},
                                         {"check", no_argument, NULL, 'k'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int opt;
    while ((opt = getopt_long(argc, argv, "c:s:p:l:kh", opts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            config_path = optarg;
            break;
        case 's':
            state_dir = optarg;
            break;
        case 'p':
            port = atoi(optarg);
            if (port < 0 || port > 65535) {
                fprintf(stderr, "twinlund: --port takes 0..65535\n");
                return 2;
            }
            break;
        case 'l':
            log_level = optarg;
            break;
        case 'k':
            check_only = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }

    static struct tgt_config cfg;
    char err[1024] = "";
    int rc;
    if (config_path)
        rc = tgt_config_load_file(config_path, &cfg, err, sizeof(err));
    else
        rc = tgt_config_load_default(state_dir, &cfg, err, sizeof(err));
    if (rc) {
        fprintf(stderr, "twinlund: %s\n", err);
        return 1;
    }
    if (config_path && state_dir)
        fprintf(stderr, "twinlund: --state-dir is ignored with --config (set node.state_dir)\n");
    if (port >= 0)
        cfg.listen_port = (uint16_t)port;
    if (check_only) {
        printf("%s: ok (%zu targets)\n", cfg.source, cfg.target_count);
        tgt_config_free(&cfg);
        return 0;
    }
    enum twl_log_level level;
    if (twl_log_parse_level(log_level ? log_level : cfg.log_level, &level) == 0)
        twl_log_set_level(level);

    rc = make_dirs(cfg.state_dir);
    if (rc) {
        TWL_ERROR("twinlund", "state directory %s: %s", cfg.state_dir, strerror(-rc));
        tgt_config_free(&cfg);
        return 1;
    }
    struct tgt_server *srv = NULL;
    rc = tgt_server_create(&cfg, &srv);
    if (rc) {
        TWL_ERROR("twinlund", "not starting: %s", strerror(-rc));
        tgt_config_free(&cfg);
        return 1;
    }
    running = srv;
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    for (size_t i = 0; i < cfg.target_count; i++)
        for (size_t j = 0; j < cfg.targets[i].lun_count; j++)
            TWL_INFO("twinlund", "ready: iscsi://%s:%u/%s/%u", cfg.listen_host,
                     tgt_server_port(srv), cfg.targets[i].iqn, cfg.targets[i].luns[j].id);
    rc = tgt_server_run(srv);
    running = NULL;
    tgt_server_destroy(srv);
    TWL_INFO("twinlund", "stopped");
    tgt_config_free(&cfg);
    return rc ? 1 : 0;
}
