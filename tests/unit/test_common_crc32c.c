/* CRC32C as iSCSI uses it: RFC 3720 appendix B.4 vectors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "twl_common.h"

static void crc32c_check_value(void **state)
{
    (void)state;
    assert_int_equal(twl_crc32c("123456789", 9), 0xE3069283u);
}

static void crc32c_rfc3720_vectors(void **state)
{
    (void)state;
    uint8_t buf[32];
    memset(buf, 0, sizeof(buf));
    assert_int_equal(twl_crc32c(buf, 32), 0x8A9136AAu);
    memset(buf, 0xff, sizeof(buf));
    assert_int_equal(twl_crc32c(buf, 32), 0x62A8AB43u);
    for (int i = 0; i < 32; i++)
        buf[i] = (uint8_t)i;
    assert_int_equal(twl_crc32c(buf, 32), 0x46DD794Eu);
}

static void crc32c_incremental_equals_whole(void **state)
{
    (void)state;
    uint8_t buf[1000];
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (uint8_t)(i * 7 + 3);
    uint32_t c = twl_crc32c_update(0, buf, 333);
    c = twl_crc32c_update(c, buf + 333, 667);
    assert_int_equal(c, twl_crc32c(buf, sizeof(buf)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(crc32c_check_value),
        cmocka_unit_test(crc32c_rfc3720_vectors),
        cmocka_unit_test(crc32c_incremental_equals_whole),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
