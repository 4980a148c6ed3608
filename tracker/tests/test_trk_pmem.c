/* Persistent mappings: creation, growth keeps old bytes, contents survive a remap. */
#include "tracker.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

static char path[64];

static int setup(void **state)
{
    (void)state;
    snprintf(path, sizeof(path), "/tmp/test_trk_pmem.XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0)
        return -1;
    close(fd);
    unlink(path); /* trk_pmem_open creates it */
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(path);
    return 0;
}

static void test_created_zeroed_and_sized(void **state)
{
    (void)state;
    struct trk_pmem *m;
    assert_int_equal(trk_pmem_open(path, 65536, &m), 0);
    assert_int_equal(trk_pmem_len(m), 65536);
    const uint8_t *p = trk_pmem_addr(m);
    for (size_t i = 0; i < 65536; i++)
        assert_int_equal(p[i], 0);
    trk_pmem_close(m);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, 65536);
    assert_int_equal(st.st_mode & 0777, 0600);
}

static void test_contents_survive_remap_and_growth(void **state)
{
    (void)state;
    struct trk_pmem *m;
    assert_int_equal(trk_pmem_open(path, 8192, &m), 0);
    uint8_t *p = trk_pmem_addr(m);
    for (size_t i = 0; i < 8192; i++)
        p[i] = (uint8_t)(i * 7 + 1);
    trk_pmem_persist(m, p, 8192);
    trk_pmem_close(m);

    assert_int_equal(trk_pmem_open(path, 16384, &m), 0);
    p = trk_pmem_addr(m);
    for (size_t i = 0; i < 8192; i++)
        assert_int_equal(p[i], (uint8_t)(i * 7 + 1));
    for (size_t i = 8192; i < 16384; i++)
        assert_int_equal(p[i], 0);
    trk_pmem_close(m);
}

static void test_bad_path_and_length(void **state)
{
    (void)state;
    struct trk_pmem *m = (void *)1;
    assert_int_equal(trk_pmem_open("/nonexistent-dir/x", 4096, &m), -ENOENT);
    assert_null(m);
    assert_int_equal(trk_pmem_open(path, 0, &m), -EINVAL);
    trk_pmem_close(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_created_zeroed_and_sized, setup, teardown),
        cmocka_unit_test_setup_teardown(test_contents_survive_remap_and_growth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_path_and_length, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
