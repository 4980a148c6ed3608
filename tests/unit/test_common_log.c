/* Logging: debug lines switched on per part, the journal's line format. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "twl_common.h"

static int reset(void **state)
{
    (void)state;
    char err[256];
    twl_log_set_level(TWL_LOG_INFO);
    assert_int_equal(twl_log_set_debug("none", err, sizeof(err)), 0);
    return 0;
}

static void debug_parts_switch_on_and_off(void **state)
{
    (void)state;
    char err[256], got[256];
    assert_false(twl_log_debug_on("iscsi"));
    assert_int_equal(twl_log_set_debug("iscsi,pair", err, sizeof(err)), 0);
    assert_true(twl_log_debug_on("iscsi"));
    assert_true(twl_log_debug_on("pair"));
    assert_false(twl_log_debug_on("throttle"));
    assert_false(twl_log_debug_on("isc")); /* a prefix is not the part */
    twl_log_get_debug(got, sizeof(got));
    assert_string_equal(got, "iscsi,pair");
    assert_int_equal(twl_log_set_debug("", err, sizeof(err)), 0);
    assert_false(twl_log_debug_on("iscsi"));
    twl_log_get_debug(got, sizeof(got));
    assert_string_equal(got, "");
}

static void all_names_every_part(void **state)
{
    (void)state;
    char err[256], got[512], want[512] = "";
    assert_int_equal(twl_log_set_debug("all", err, sizeof(err)), 0);
    for (int i = 0; twl_log_parts[i]; i++) {
        assert_true(twl_log_debug_on(twl_log_parts[i]));
        snprintf(want + strlen(want), sizeof(want) - strlen(want), "%s%s", i ? "," : "",
                 twl_log_parts[i]);
    }
    twl_log_get_debug(got, sizeof(got));
    assert_string_equal(got, want);
}

static void unknown_part_changes_nothing(void **state)
{
    (void)state;
    char err[256] = "", got[256];
    assert_int_equal(twl_log_set_debug("pair", err, sizeof(err)), 0);
    assert_int_equal(twl_log_set_debug("iscsi,bogus", err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "'bogus' is not a part"));
    assert_non_null(strstr(err, "throttle")); /* the message lists what is known */
    twl_log_get_debug(got, sizeof(got));
    assert_string_equal(got, "pair");
    assert_int_equal(twl_log_check_debug("tracker,,rdma", err, sizeof(err)), 0);
    twl_log_get_debug(got, sizeof(got));
    assert_string_equal(got, "pair"); /* checking sets nothing */
}

static void level_debug_means_every_part(void **state)
{
    (void)state;
    twl_log_set_level(TWL_LOG_DEBUG);
    assert_true(twl_log_debug_on("anything"));
    twl_log_set_level(TWL_LOG_WARN);
    assert_false(twl_log_debug_on("iscsi"));
}

/* Runs fn in a child whose stderr is a file; returns what it wrote. */
static char *child_output(void (*fn)(const char *path), char *buf, size_t len)
{
    char path[] = "/tmp/twl-log-test-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fd, 2);
        fn(path);
        fflush(stderr);
        _exit(0);
    }
    int status;
    waitpid(pid, &status, 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ssize_t n = pread(fd, buf, len - 1, 0);
    assert_true(n >= 0);
    buf[n] = '\0';
    close(fd);
    unlink(path);
    return buf;
}

static void log_lines(const char *path)
{
    (void)path;
    char err[256];
    twl_log_set_level(TWL_LOG_WARN);
    twl_log_set_debug("pair", err, sizeof(err));
    TWL_INFO("iscsi", "hidden %d", 1);
    TWL_WARN("iscsi", "shown %d", 2);
    TWL_DEBUG("pair", "debug of pair %d", 3);
    TWL_DEBUG("iscsi", "debug of iscsi %d", 4);
}

static void journal(const char *path)
{
    struct stat st;
    stat(path, &st);
    char v[64];
    snprintf(v, sizeof(v), "%lu:%lu", (unsigned long)st.st_dev, (unsigned long)st.st_ino);
    setenv("JOURNAL_STREAM", v, 1);
    log_lines(path);
}

static void stderr_lines_carry_time_level_part(void **state)
{
    (void)state;
    char out[4096];
    unsetenv("JOURNAL_STREAM");
    child_output(log_lines, out, sizeof(out));
    assert_null(strstr(out, "hidden"));
    assert_null(strstr(out, "debug of iscsi"));
    assert_non_null(strstr(out, " warn iscsi: shown 2\n"));
    assert_non_null(strstr(out, " debug pair: debug of pair 3\n"));
    /* HH:MM:SS.mmm first */
    assert_true(strlen(out) > 13 && out[2] == ':' && out[5] == ':' && out[8] == '.');
}

static void journal_lines_carry_priority(void **state)
{
    (void)state;
    char out[4096];
    child_output(journal, out, sizeof(out));
    assert_string_equal(out, "<4>iscsi: shown 2\n<7>pair: debug of pair 3\n");
}

static void journal_stream_of_another_file_is_not_the_journal(void **state)
{
    (void)state;
    char out[4096];
    setenv("JOURNAL_STREAM", "1:1", 1);
    child_output(log_lines, out, sizeof(out));
    unsetenv("JOURNAL_STREAM");
    assert_non_null(strstr(out, " warn iscsi: shown 2\n"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(debug_parts_switch_on_and_off, reset),
        cmocka_unit_test_setup(all_names_every_part, reset),
        cmocka_unit_test_setup(unknown_part_changes_nothing, reset),
        cmocka_unit_test_setup(level_debug_means_every_part, reset),
        cmocka_unit_test_setup(stderr_lines_carry_time_level_part, reset),
        cmocka_unit_test_setup(journal_lines_carry_priority, reset),
        cmocka_unit_test_setup(journal_stream_of_another_file_is_not_the_journal, reset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
