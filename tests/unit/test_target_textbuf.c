/* Text replies in a fixed buffer: cut, never overflowing, JSON strings escaped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "textbuf.h"

static void appends_and_cuts_at_the_end(void **state)
{
    (void)state;
    char buf[8];
    memset(buf, 'X', sizeof(buf));
    buf[0] = '\0';
    struct textbuf t = {.p = buf, .len = sizeof(buf)};
    textbuf_put(&t, "%d-%s", 12, "ab");
    assert_string_equal(buf, "12-ab");
    assert_int_equal(t.used, 5);
    textbuf_put(&t, "%s", "cdefgh");
    assert_string_equal(buf, "12-abcd"); /* cut, NUL-terminated */
    assert_int_equal(t.used, 7);
    textbuf_put(&t, "more");
    assert_string_equal(buf, "12-abcd");
    assert_int_equal(t.used, 7);
}

static void json_strings_are_escaped(void **state)
{
    (void)state;
    char buf[64];
    buf[0] = '\0';
    struct textbuf t = {.p = buf, .len = sizeof(buf)};
    textbuf_json_str(&t, "a\"b\\c\n\x01");
    assert_string_equal(buf, "\"a\\\"b\\\\c\\u000a\\u0001\"");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(appends_and_cuts_at_the_end),
        cmocka_unit_test(json_strings_are_escaped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
