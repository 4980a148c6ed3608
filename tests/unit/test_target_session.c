/* CmdSN window: acceptance, duplicates, out-of-window commands, MaxCmdSN never shrinking. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "session.h"

static void window_opens_with_size(void **state)
{
    (void)state;
    struct cmdsn_window w;
    cmdsn_init(&w, 100, 8);
    assert_int_equal(w.exp_cmdsn, 100);
    assert_int_equal(w.max_cmdsn, 107);
}

static void accepts_in_order_and_counts_slots(void **state)
{
    (void)state;
    struct cmdsn_window w;
    cmdsn_init(&w, 1, 4);
    for (uint32_t sn = 1; sn <= 4; sn++)
        assert_int_equal(cmdsn_check(&w, sn, false, true), CMDSN_ACCEPT);
    assert_int_equal(w.exp_cmdsn, 5);
    /* all four slots busy: the window does not move past 4 */
    assert_int_equal(w.max_cmdsn, 4);
    assert_int_equal(cmdsn_check(&w, 5, false, true), CMDSN_OUTSIDE);
    cmdsn_complete(&w);
    assert_int_equal(w.max_cmdsn, 5);
    assert_int_equal(cmdsn_check(&w, 5, false, true), CMDSN_ACCEPT);
}

static void duplicates_and_gaps_are_dropped(void **state)
{
    (void)state;
    struct cmdsn_window w;
    cmdsn_init(&w, 10, 16);
    assert_int_equal(cmdsn_check(&w, 10, false, true), CMDSN_ACCEPT);
    assert_int_equal(cmdsn_check(&w, 10, false, true), CMDSN_STALE);
    assert_int_equal(cmdsn_check(&w, 13, false, true), CMDSN_OUTSIDE);
    assert_int_equal(cmdsn_check(&w, 1000, false, true), CMDSN_OUTSIDE);
    assert_int_equal(w.exp_cmdsn, 11);
}

static void immediate_commands_do_not_advance(void **state)
{
    (void)state;
    struct cmdsn_window w;
    cmdsn_init(&w, 7, 4);
    assert_int_equal(cmdsn_check(&w, 7, true, false), CMDSN_ACCEPT);
    assert_int_equal(w.exp_cmdsn, 7);
    assert_int_equal(w.outstanding, 0);
}

static void non_slot_commands_keep_window(void **state)
{
    (void)state;
    struct cmdsn_window w;
    cmdsn_init(&w, 1, 2);
    assert_int_equal(cmdsn_check(&w, 1, false, false), CMDSN_ACCEPT); /* e.g. a NOP-Out */
    assert_int_equal(w.max_cmdsn, 3);
}

static void wraps_around_serial_space(void **state)
{
    (void)state;
    struct cmdsn_window w;
    cmdsn_init(&w, 0xfffffffe, 4);
    assert_int_equal(w.max_cmdsn, 1);
    assert_int_equal(cmdsn_check(&w, 0xfffffffe, false, true), CMDSN_ACCEPT);
    assert_int_equal(cmdsn_check(&w, 0xffffffff, false, true), CMDSN_ACCEPT);
    assert_int_equal(cmdsn_check(&w, 0, false, true), CMDSN_ACCEPT);
    assert_int_equal(w.exp_cmdsn, 1);
    assert_int_equal(cmdsn_check(&w, 0xfffffffd, false, true), CMDSN_STALE);
}

static void withheld_slots_never_shrink_max(void **state)
{
    (void)state;
    struct cmdsn_window w;
    cmdsn_init(&w, 1, 8);
    assert_int_equal(w.max_cmdsn, 8);
    cmdsn_set_withheld(&w, 6);
    /* already advertised: MaxCmdSN must not move backwards (RFC 7143 4.2.2.1) */
    assert_int_equal(w.max_cmdsn, 8);
    for (uint32_t sn = 1; sn <= 8; sn++)
        assert_int_equal(cmdsn_check(&w, sn, false, true), CMDSN_ACCEPT);
    for (int i = 0; i < 8; i++)
        cmdsn_complete(&w);
    /* 8 slots, 6 withheld: the window reopens by two */
    assert_int_equal(w.max_cmdsn, 10);
    cmdsn_set_withheld(&w, 0);
    assert_int_equal(w.max_cmdsn, 16);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(window_opens_with_size),
        cmocka_unit_test(accepts_in_order_and_counts_slots),
        cmocka_unit_test(duplicates_and_gaps_are_dropped),
        cmocka_unit_test(immediate_commands_do_not_advance),
        cmocka_unit_test(non_slot_commands_keep_window),
        cmocka_unit_test(wraps_around_serial_space),
        cmocka_unit_test(withheld_slots_never_shrink_max),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
