/*
 * twinlund: the twinlun node daemon.
 *
 *   twinlund [--config FILE] [--state-dir DIR] [--port N] [--metrics-listen HOST:PORT|off]
 *            [--log-level L] [--check]
 *
 * Without --config it serves the built-in default (one thin 1 GiB LUN under the state
 * directory on 127.0.0.1:3260). --check validates the configuration and exits.
 *
 * Under systemd (Type=notify, dist/systemd/twinlund.service) it reports READY=1 once the portal
 * accepts connections, STOPPING=1 when a stop signal arrives, and with WatchdogSec= pings the
 * watchdog every half interval from a thread of its own until the server is drained.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "target.h"
#include "twl_common.h"
#include "twl_notify.h"

static struct tgt_server *running;
/* Set by the signal handler once it told the service manager STOPPING=1 (and how that went). */
static volatile sig_atomic_t stop_notified, stop_notify_err;

static void on_signal(int sig)
{
    (void)sig;
    if (running) {
        if (!stop_notified) {
            stop_notify_err = twl_notify("STOPPING=1"); /* async-signal-safe, twl_notify.h */
            stop_notified = 1;
        }
        tgt_server_stop(running);
    }
}

/* The first failure to reach the service manager is logged, later ones are not (the watchdog
 * would repeat it every few seconds). */
static void notify_failed(int rc)
{
    static atomic_bool warned;
    if (rc < 0 && !atomic_exchange(&warned, true))
        TWL_WARN("twinlund", "cannot notify the service manager ($NOTIFY_SOCKET): %s",
                 strerror(-rc));
}

static void notify(const char *state)
{
    notify_failed(twl_notify(state));
}

/* The service manager's watchdog (WatchdogSec=): a thread sends WATCHDOG=1 every half interval
 * until watchdog_stop(). */
struct watchdog {
    pthread_t tid;
    pthread_mutex_t lock;
    pthread_cond_t cond; /* on CLOCK_MONOTONIC */
    uint64_t period_usec;
    bool stop;
    bool started;
};

static void *watchdog_main(void *arg)
{
    struct watchdog *wd = arg;
    pthread_mutex_lock(&wd->lock);
    while (!wd->stop) {
        pthread_mutex_unlock(&wd->lock);
        notify("WATCHDOG=1");
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        uint64_t nsec = (uint64_t)until.tv_nsec + wd->period_usec % 1000000 * 1000;
        until.tv_sec += (time_t)(wd->period_usec / 1000000 + nsec / 1000000000);
        until.tv_nsec = (long)(nsec % 1000000000);
        pthread_mutex_lock(&wd->lock);
        while (!wd->stop && pthread_cond_timedwait(&wd->cond, &wd->lock, &until) != ETIMEDOUT)
            ;
    }
    pthread_mutex_unlock(&wd->lock);
    return NULL;
}

/* Starts the pings when the manager asked for a watchdog; 0 (also when it did not) or -errno. */
static int watchdog_start(struct watchdog *wd)
{
    memset(wd, 0, sizeof(*wd));
    uint64_t usec = twl_notify_watchdog_usec();
    if (!usec)
        return 0;
    wd->period_usec = usec / 2 ? usec / 2 : 1;
    pthread_condattr_t attr;
    int rc = pthread_condattr_init(&attr);
    if (rc)
        return -rc;
    rc = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    if (!rc)
        rc = pthread_cond_init(&wd->cond, &attr);
    pthread_condattr_destroy(&attr);
    if (rc)
        return -rc;
    rc = pthread_mutex_init(&wd->lock, NULL);
    if (rc) {
        pthread_cond_destroy(&wd->cond);
        return -rc;
    }
    rc = pthread_create(&wd->tid, NULL, watchdog_main, wd);
    if (rc) {
        pthread_mutex_destroy(&wd->lock);
        pthread_cond_destroy(&wd->cond);
        return -rc;
    }
    wd->started = true;
    TWL_INFO("twinlund", "service manager watchdog: a ping every %llu ms",
             (unsigned long long)(wd->period_usec / 1000));
    return 0;
}

static void watchdog_stop(struct watchdog *wd)
{
    if (!wd->started)
        return;
    pthread_mutex_lock(&wd->lock);
    wd->stop = true;
    pthread_cond_signal(&wd->cond);
    pthread_mutex_unlock(&wd->lock);
    pthread_join(wd->tid, NULL);
    pthread_mutex_destroy(&wd->lock);
    pthread_cond_destroy(&wd->cond);
    wd->started = false;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: twinlund [--config FILE] [--state-dir DIR] [--port N] [--metrics-listen "
                 "HOST:PORT|off] [--log-level error|warn|info|debug] [--check]\n");
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
    const char *config_path = NULL, *state_dir = NULL, *log_level = NULL, *metrics = NULL;
    int port = -1;
    bool check_only = false;
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"state-dir", required_argument, NULL, 's'},
        {"port", required_argument, NULL, 'p'},   {"log-level", required_argument, NULL, 'l'},
        {"check", no_argument, NULL, 'k'},        {"metrics-listen", required_argument, NULL, 'm'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0}};
    int opt;
    while ((opt = getopt_long(argc, argv, "c:s:p:l:km:h", opts, NULL)) != -1) {
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
        case 'm':
            metrics = optarg;
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
    if (metrics && tgt_config_set_metrics(&cfg, metrics, err, sizeof(err)) != 0) {
        fprintf(stderr, "twinlund: --metrics-listen %s\n", err);
        tgt_config_free(&cfg);
        return 2;
    }
    if (check_only) {
        printf("%s: ok (%zu targets)\n", cfg.source, cfg.target_count);
        tgt_config_free(&cfg);
        return 0;
    }
    enum twl_log_level level;
    if (twl_log_parse_level(log_level ? log_level : cfg.log_level, &level) == 0)
        twl_log_set_level(level);
    twl_log_set_debug(cfg.log_debug, err, sizeof(err)); /* checked when the config loaded */

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
    struct watchdog wd;
    rc = watchdog_start(&wd);
    if (rc) {
        /* the manager would kill a daemon that never pings: better not to start */
        TWL_ERROR("twinlund", "not starting: watchdog thread: %s", strerror(-rc));
        running = NULL;
        tgt_server_destroy(srv);
        tgt_config_free(&cfg);
        return 1;
    }
    size_t luns = 0;
    for (size_t i = 0; i < cfg.target_count; i++)
        luns += cfg.targets[i].lun_count;
    bool v6 = strchr(cfg.listen_host, ':') != NULL;
    char status[256];
    snprintf(status, sizeof(status), "READY=1\nSTATUS=serving %zu LUN%s on %s%s%s:%u\nMAINPID=%ld",
             luns, luns == 1 ? "" : "s", v6 ? "[" : "", cfg.listen_host, v6 ? "]" : "",
             tgt_server_port(srv), (long)getpid());
    if (!stop_notified) /* a stop signal already said STOPPING=1 */
        notify(status);
    rc = tgt_server_run(srv);
    running = NULL;
    if (!stop_notified)
        notify("STOPPING=1"); /* stopped by other means than a signal */
    else
        notify_failed(stop_notify_err);
    watchdog_stop(&wd);
    tgt_server_destroy(srv);
    TWL_INFO("twinlund", "stopped");
    tgt_config_free(&cfg);
    return rc ? 1 : 0;
}
