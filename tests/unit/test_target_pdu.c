/* PDU codec: header accessors, digests on the wire, text key parsing and building. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pdu.h"

static void header_fields_decode(void **state)
{
    (void)state;
    uint8_t bhs[ISCSI_BHS_LEN] = {0};
    bhs[0] = ISCSI_FLAG_IMMEDIATE | ISCSI_OP_SCSI_CMD;
    bhs[4] = 3; /* 12 bytes of AHS */
    twl_put_be24(bhs + 5, 0x012345);
    bhs[8] = 0x40 | 0x01; /* flat addressing, LUN 0x123 */
    bhs[9] = 0x23;
    twl_put_be32(bhs + 16, 0xdeadbeef);
    assert_int_equal(pdu_opcode(bhs), ISCSI_OP_SCSI_CMD);
    assert_true(pdu_immediate(bhs));
    assert_int_equal(pdu_ahs_len(bhs), 12);
    assert_int_equal(pdu_data_len(bhs), 0x012345);
    assert_int_equal(pdu_lun(bhs), 0x123);
    assert_int_equal(pdu_itt(bhs), 0xdeadbeef);
}

static void lun_encoding_round_trips(void **state)
{
    (void)state;
    uint8_t bhs[ISCSI_BHS_LEN] = {0};
    pdu_set_lun(bhs, 5);
    assert_int_equal(bhs[8], 0);
    assert_int_equal(bhs[9], 5);
    assert_int_equal(pdu_lun(bhs), 5);
    pdu_set_lun(bhs, 300);
    assert_int_equal(bhs[8], 0x41);
    assert_int_equal(pdu_lun(bhs), 300);
}

static void padding(void **state)
{
    (void)state;
    assert_int_equal(pdu_pad(0), 0);
    assert_int_equal(pdu_pad(1), 3);
    assert_int_equal(pdu_pad(4), 0);
    assert_int_equal(pdu_pad(7), 1);
}

static void initiator_opcodes(void **state)
{
    (void)state;
    assert_true(pdu_is_initiator_opcode(ISCSI_OP_NOP_OUT));
    assert_true(pdu_is_initiator_opcode(ISCSI_OP_SNACK));
    assert_false(pdu_is_initiator_opcode(ISCSI_OP_NOP_IN));
    assert_false(pdu_is_initiator_opcode(0x07));
    assert_false(pdu_is_initiator_opcode(0x1c));
}

/* RFC 3720 B.4: 32 bytes of zeros give CRC32C 0x8a9136aa, sent as aa 36 91 8a. */
static void digest_wire_order(void **state)
{
    (void)state;
    uint8_t zeros[32] = {0}, out[4];
    pdu_digest_put(out, twl_crc32c(zeros, sizeof(zeros)));
    assert_int_equal(out[0], 0xaa);
    assert_int_equal(out[1], 0x36);
    assert_int_equal(out[2], 0x91);
    assert_int_equal(out[3], 0x8a);
    assert_true(pdu_digest_matches(out, 0x8a9136aa));
    out[0] ^= 1;
    assert_false(pdu_digest_matches(out, 0x8a9136aa));
}

static void text_parses_pairs(void **state)
{
    (void)state;
    char text[] = "InitiatorName=iqn.x\0SessionType=Normal\0Empty=\0\0\0";
    struct pdu_kv kvs[8];
    int n = pdu_text_parse(text, sizeof(text) - 1, kvs, 8);
    assert_int_equal(n, 3);
    assert_string_equal(kvs[0].key, "InitiatorName");
    assert_string_equal(kvs[0].value, "iqn.x");
    assert_string_equal(kvs[1].value, "Normal");
    assert_string_equal(kvs[2].key, "Empty");
    assert_string_equal(kvs[2].value, "");
}

static void text_rejects_malformed(void **state)
{
    (void)state;
    struct pdu_kv kvs[8];
    char no_equals[] = "Key\0";
    assert_int_equal(pdu_text_parse(no_equals, 4, kvs, 8), -EINVAL);
    char empty_key[] = "=v\0";
    assert_int_equal(pdu_text_parse(empty_key, 3, kvs, 8), -EINVAL);
    char unterminated[] = "K=v";
    assert_int_equal(pdu_text_parse(unterminated, 3, kvs, 8), -EINVAL);
    char long_key[80];
    memset(long_key, 'k', 64);
    memcpy(long_key + 64, "=v", 3);
    assert_int_equal(pdu_text_parse(long_key, 67, kvs, 8), -EINVAL);
    char many[] = "a=1\0b=2\0c=3\0";
    assert_int_equal(pdu_text_parse(many, sizeof(many) - 1, kvs, 2), -E2BIG);
}

static void text_builds_pairs(void **state)
{
    (void)state;
    struct pdu_text t = {0};
    assert_int_equal(pdu_text_add(&t, "A", "b"), 0);
    assert_int_equal(pdu_text_addf(&t, "N", "%u", 42u), 0);
    assert_int_equal(t.len, 4 + 5);
    assert_memory_equal(t.buf, "A=b\0N=42\0", 9);
    for (int i = 0; i < 200; i++) /* grows past the first allocation */
        assert_int_equal(pdu_text_add(&t, "Key", "0123456789"), 0);
    assert_int_equal(t.len, 9 + 200 * 15);
    pdu_text_free(&t);
    assert_null(t.buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(header_fields_decode),
        cmocka_unit_test(lun_encoding_round_trips),
        cmocka_unit_test(padding),
        cmocka_unit_test(initiator_opcodes),
        cmocka_unit_test(digest_wire_order),
        cmocka_unit_test(text_parses_pairs),
        cmocka_unit_test(text_rejects_malformed),
        cmocka_unit_test(text_builds_pairs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
