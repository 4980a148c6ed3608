/*
 * The admin socket's requests (admin_handle) and the metrics page (metrics_render) on a real
 * server from the built-in default, with one libiscsi session that wrote a known number of
 * bytes: the words are parsed strictly (exit codes 0/1/2), the figures match what was done, and
 * every line of the metrics page is in Prometheus' text format.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>

#include "admin.h"
#include "iscsi_session.h"
#include "metrics.h"
#include "target.h"
#include "twl_common.h"

#define OUT_LEN (256 * 1024)

struct fixture {
    char dir[64];
    struct tgt_config cfg;
    struct tgt_server *srv;
    pthread_t runner;
    struct iscsi_context *iscsi;
    int lun;
    char *out;
};

static void *run_server(void *arg)
{
    tgt_server_run(arg);
    return NULL;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/twl-admin.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    char err[512];
    assert_int_equal(tgt_config_load_default(f->dir, &f->cfg, err, sizeof(err)), 0);
    f->cfg.listen_port = 0;
    f->cfg.threads = 2;
    assert_int_equal(tgt_config_set_metrics(&f->cfg, "127.0.0.1:0", err, sizeof(err)), 0);
    assert_int_equal(tgt_server_create(&f->cfg, &f->srv), 0);
    pthread_create(&f->runner, NULL, run_server, f->srv);
    char url[256];
    snprintf(url, sizeof(url), "iscsi://127.0.0.1:%u/iqn.2026-11.io.twinlun:default/0",
             tgt_server_port(f->srv));
    f->iscsi = test_session_open(url, "iqn.2026-12.test:admin-unit", &f->lun);
    assert_non_null(f->iscsi);
    f->out = malloc(OUT_LEN);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    iscsi_logout_sync(f->iscsi);
    iscsi_destroy_context(f->iscsi);
    tgt_server_stop(f->srv);
    pthread_join(f->runner, NULL);
    tgt_server_destroy(f->srv);
    tgt_config_free(&f->cfg);
    char path[128];
    snprintf(path, sizeof(path), "%s/lun0.img", f->dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/twinlund.sock", f->dir);
    unlink(path);
    rmdir(f->dir);
    free(f->out);
    free(f);
    return 0;
}

static int ask(struct fixture *f, const char *line)
{
    return admin_handle(f->srv, line, f->out, OUT_LEN);
}

/* Writes count 4 KiB blocks (one command each) and reads them back. */
static void write_and_read(struct fixture *f, int count)
{
    uint8_t buf[4096];
    for (int i = 0; i < count; i++) {
        memset(buf, i + 1, sizeof(buf));
        struct scsi_task *t = iscsi_write16_sync(f->iscsi, f->lun, (uint64_t)i * 8, buf,
                                                 sizeof(buf), 512, 0, 0, 0, 0, 0);
        assert_non_null(t);
        assert_int_equal(t->status, SCSI_STATUS_GOOD);
        scsi_free_scsi_task(t);
        t = iscsi_read16_sync(f->iscsi, f->lun, (uint64_t)i * 8, sizeof(buf), 512, 0, 0, 0, 0, 0);
        assert_non_null(t);
        assert_int_equal(t->status, SCSI_STATUS_GOOD);
        scsi_free_scsi_task(t);
    }
}

static void requests_are_parsed_strictly(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(ask(f, ""), 2);
    assert_non_null(strstr(f->out, "empty request"));
    assert_int_equal(ask(f, "status extra"), 2);
    assert_int_equal(ask(f, "a b c d e f g h i"), 2);
    assert_non_null(strstr(f->out, "too many words"));
    assert_int_equal(ask(f, "promote -1"), 2);
    assert_int_equal(ask(f, "promote 65536"), 2);
    assert_int_equal(ask(f, "promote 1x"), 2);
    assert_int_equal(ask(f, "resync"), 2);
    assert_int_equal(ask(f, "resync go"), 2);
    assert_non_null(strstr(f->out, "not start, pause or resume"));
    assert_int_equal(ask(f, "resync pause 0 1"), 2);
    assert_int_equal(ask(f, "log level"), 2);
    assert_int_equal(ask(f, "log debug"), 2);
    assert_int_equal(ask(f, "log level chatty"), 2);
    /* well-formed but refused: no pair */
    assert_int_equal(ask(f, "resync pause 0"), 1);
    assert_non_null(strstr(f->out, "no pair"));
    assert_int_equal(ask(f, "resync start --json"), 1);
    assert_string_equal(f->out, "{\"ok\":false,\"message\":\"no pair: nothing to resync\"}\n");
    assert_int_equal(ask(f, "status --json"), 0);
    assert_true(f->out[0] == '{' && strstr(f->out, "\"sessions\":1"));
}

static void log_requests_change_the_running_log(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(ask(f, "log debug throttle,pr"), 0);
    assert_true(twl_log_debug_on("pr"));
    assert_false(twl_log_debug_on("iscsi"));
    assert_int_equal(ask(f, "log --json"), 0);
    assert_non_null(strstr(f->out, "\"debug\":\"pr,throttle\""));
    assert_int_equal(ask(f, "log debug none"), 0);
    assert_false(twl_log_debug_on("pr"));
    assert_int_equal(ask(f, "log level warn"), 0);
    assert_int_equal(twl_log_get_level(), TWL_LOG_WARN);
    assert_int_equal(ask(f, "log level info"), 0);
}

static void luns_and_sessions_show_what_was_done(void **state)
{
    struct fixture *f = *state;
    write_and_read(f, 25);
    assert_int_equal(ask(f, "luns --json"), 0);
    assert_non_null(strstr(f->out, "\"write\":{\"commands\":25,\"bytes\":102400,"));
    assert_non_null(strstr(f->out, "\"read\":{\"commands\":25,\"bytes\":102400,"));
    assert_non_null(strstr(f->out, "\"alua\":\"active/optimized\""));
    assert_int_equal(ask(f, "luns"), 0);
    assert_non_null(strstr(f->out, "active/optimized"));
    assert_int_equal(ask(f, "sessions --json"), 0);
    assert_non_null(strstr(f->out, "\"initiator\":\"iqn.2026-12.test:admin-unit\""));
    assert_int_equal(ask(f, "sessions"), 0);
    assert_non_null(strstr(f->out, "iqn.2026-12.test:admin-unit"));
}

/* Every line a comment (HELP/TYPE) or "name{labels} value"; histogram buckets cumulative. */
static void metrics_page_is_well_formed(void **state)
{
    struct fixture *f = *state;
    write_and_read(f, 10);
    size_t len = metrics_render(f->srv, f->out, OUT_LEN);
    assert_true(len > 0 && len == strlen(f->out));
    assert_non_null(strstr(f->out, "twinlun_lun_commands_total{lun=\"0\",op=\"write\"} 10\n"));
    assert_non_null(strstr(f->out, "twinlun_lun_bytes_total{lun=\"0\",op=\"read\"} 40960\n"));
    assert_non_null(
        strstr(f->out, "twinlun_lun_latency_seconds_count{lun=\"0\",op=\"write\"} 10\n"));
    assert_non_null(strstr(f->out, "twinlun_sessions 1\n"));
    assert_null(strstr(f->out, "twinlun_pair_connected")); /* no pair: no pair figures */
    char *save = NULL;
    uint64_t last_bucket = 0;
    bool in_histogram = false;
    for (char *line = strtok_r(f->out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (strncmp(line, "# HELP ", 7) == 0 || strncmp(line, "# TYPE ", 7) == 0)
            continue;
        char name[160];
        double v;
        int n = 0;
        assert_true(sscanf(line, "%159[a-z_]%n", name, &n) == 1);
        const char *rest = line + n;
        if (*rest == '{') {
            rest = strchr(rest, '}');
            assert_non_null(rest);
            rest++;
        }
        assert_true(sscanf(rest, " %lf", &v) == 1);
        if (strcmp(name, "twinlun_lun_latency_seconds_bucket") == 0) {
            uint64_t cum = (uint64_t)v;
            if (in_histogram)
                assert_true(cum >= last_bucket);
            last_bucket = cum;
            in_histogram = strstr(line, "le=\"+Inf\"") == NULL;
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(requests_are_parsed_strictly, setup, teardown),
        cmocka_unit_test_setup_teardown(log_requests_change_the_running_log, setup, teardown),
        cmocka_unit_test_setup_teardown(luns_and_sessions_show_what_was_done, setup, teardown),
        cmocka_unit_test_setup_teardown(metrics_page_is_well_formed, setup, teardown),
    };
    twl_log_set_level(TWL_LOG_WARN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
