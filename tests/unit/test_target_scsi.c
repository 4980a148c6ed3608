/* SCSI command layer: decoding, emulated responses and sense data, byte by byte. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "scsi.h"
#include "twl_common.h"

#define TARGET_NAME "iqn.2024-01.org.twinlun:disk1"

static const uint32_t lun_ids[] = {0, 3, 300};

static struct scsi_lun lun;
static struct scsi_target_view view;
static uint8_t buf[4096];
static struct scsi_plan plan;

static int setup(void **state)
{
    (void)state;
    memset(&lun, 0, sizeof(lun));
    lun.id = 3;
    lun.block_count = 1000000;
    lun.block_size = 512;
    lun.thin = true;
    lun.write_cache = true;
    strcpy(lun.serial, "SER123");
    lun.max_transfer_blocks = 2048;
    scsi_lun_derive_ids(&lun, TARGET_NAME);

    view.target_name = TARGET_NAME;
    view.relative_port_id = 2;
    view.target_port_group = 5;
    view.lun_ids = lun_ids;
    view.lun_count = 3;

    /* Garbage everywhere the code under test must overwrite or leave alone. */
    memset(buf, 0xee, sizeof(buf));
    memset(&plan, 0xa5, sizeof(plan));
    return 0;
}

static void run_on(const struct scsi_lun *l, const uint8_t *cdb, size_t len)
{
    scsi_plan_command(l, &view, cdb, len, buf, sizeof(buf), &plan);
}

static void run(const uint8_t *cdb, size_t len)
{
    run_on(&lun, cdb, len);
}

static void assert_good(void)
{
    assert_int_equal(plan.action, SCSI_ACTION_COMPLETE);
    assert_int_equal(plan.status, SCSI_STATUS_GOOD);
    assert_int_equal(plan.sense_len, 0);
}

static void assert_check(uint8_t key, uint16_t asc)
{
    assert_int_equal(plan.action, SCSI_ACTION_COMPLETE);
    assert_int_equal(plan.status, SCSI_STATUS_CHECK_CONDITION);
    assert_int_equal(plan.data_len, 0);
    assert_int_equal(plan.sense_len, SCSI_SENSE_FIXED_LEN);
    assert_int_equal(plan.sense[0] & 0x7f, 0x70);
    assert_int_equal(plan.sense[2] & 0x0f, key);
    assert_int_equal(plan.sense[7], 10);
    assert_int_equal(plan.sense[12], asc >> 8);
    assert_int_equal(plan.sense[13], asc & 0xff);
}

static void assert_invalid_field(uint16_t byte)
{
    assert_check(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_CDB);
    assert_int_equal(plan.sense[15] & 0xc0, 0xc0); /* SKSV, C/D */
    assert_int_equal(twl_get_be16(plan.sense + 16), byte);
}

/* ---- sense helpers ---- */

static void sense_fixed_layout(void **state)
{
    (void)state;
    uint8_t s[SCSI_SENSE_FIXED_LEN];
    memset(s, 0xff, sizeof(s));
    scsi_sense_build_fixed(s, SCSI_SENSE_MEDIUM_ERROR, SCSI_ASC_READ_ERROR);
    const uint8_t want[SCSI_SENSE_FIXED_LEN] = {0x70, 0, 0x03, 0,    0, 0, 0, 10, 0,
                                                0,    0, 0,    0x11, 0, 0, 0, 0,  0};
    assert_memory_equal(s, want, sizeof(want));
}

static void sense_info_valid(void **state)
{
    (void)state;
    scsi_plan_check_condition_info(&plan, SCSI_SENSE_MEDIUM_ERROR, SCSI_ASC_WRITE_ERROR,
                                   0x12345678);
    assert_check(SCSI_SENSE_MEDIUM_ERROR, SCSI_ASC_WRITE_ERROR);
    assert_int_equal(plan.sense[0], 0xf0);
    assert_int_equal(twl_get_be32(plan.sense + 3), 0x12345678);
}

static void sense_info_too_wide_clears_valid(void **state)
{
    (void)state;
    scsi_plan_check_condition_info(&plan, SCSI_SENSE_MEDIUM_ERROR, SCSI_ASC_READ_ERROR,
                                   0x1122334455667788ull);
    assert_check(SCSI_SENSE_MEDIUM_ERROR, SCSI_ASC_READ_ERROR);
    assert_int_equal(plan.sense[0], 0x70);
    assert_int_equal(twl_get_be32(plan.sense + 3), 0x55667788);
}

/* ---- INQUIRY ---- */

static void inquiry_standard(void **state)
{
    (void)state;
    const uint8_t cdb[6] = {0x12, 0, 0, 0, 255, 0};
    run(cdb, sizeof(cdb));
    assert_good();
    assert_int_equal(plan.data_len, 66);
    assert_int_equal(buf[0], 0x00);
    assert_int_equal(buf[1], 0x00);
    assert_int_equal(buf[2], 0x06);
    assert_int_equal(buf[3], 0x12); /* HiSup, format 2 */
    assert_int_equal(buf[4], 66 - 5);
    assert_int_equal(buf[5] & 0x30, 0x10); /* TPGS implicit */
    assert_int_equal(buf[7] & 0x02, 0x02); /* CmdQue */
    assert_memory_equal(buf + 8, "TWINLUN ", 8);
    assert_memory_equal(buf + 16, "twinlun disk    ", 16);
    assert_memory_equal(buf + 32, "0001", 4);
    assert_int_equal(twl_get_be16(buf + 62), 0x0460); /* SPC-4 version descriptor */
    assert_int_equal(buf[66], 0xee);                  /* nothing written past the data */
}

static void inquiry_clipped_to_allocation_length(void **state)
{
    (void)state;
    const uint8_t cdb[6] = {0x12, 0, 0, 0, 5, 0};
    run(cdb, sizeof(cdb));
    assert_good();
    assert_int_equal(plan.data_len, 5);
    assert_int_equal(buf[4], 61); /* still the full length */
    assert_int_equal(buf[5], 0xee);
}

static void inquiry_clipped_to_buflen(void **state)
{
    (void)state;
    const uint8_t cdb[6] = {0x12, 0, 0, 0x10, 0x00, 0};
    scsi_plan_command(&lun, &view, cdb, sizeof(cdb), buf, 10, &plan);
    assert_good();
    assert_int_equal(plan.data_len, 10);
    assert_int_equal(buf[10], 0xee);
}

static void inquiry_allocation_length_zero(void **state)
{
    (void)state;
    const uint8_t cdb[6] = {0x12, 0, 0, 0, 0, 0};
    run(cdb, sizeof(cdb));
    assert_good();
    assert_int_equal(plan.data_len, 0);
    assert_int_equal(buf[0], 0xee);
}

static void inquiry_no_lun(void **state)
{
    (void)state;
    const uint8_t cdb[6] = {0x12, 0, 0, 0, 96, 0};
    run_on(NULL, cdb, sizeof(cdb));
    assert_good();
    assert_int_equal(plan.data_len, 66);
    assert_int_equal(buf[0], 0x7f);
    assert_memory_equal(buf + 8, "TWINLUN ", 8);
}

static void inquiry_cmddt_rejected(void **state)
{
    (void)state;
    const uint8_t cdb[6] = {0x12, 0x02, 0, 0, 96, 0};
    run(cdb, sizeof(cdb));
    assert_invalid_field(1);
    assert_int_equal(plan.sense[15], 0xc8 | 1); /* BPV, bit 1 */
}

static void inquiry_page_without_evpd_rejected(void **state)
{
    (void)state;
    const uint8_t cdb[6] = {0x12, 0, 0x80, 0, 96, 0};
    run(cdb, sizeof(cdb));
    assert_invalid_field(2);
}

static void inquiry_unsupported_vpd_rejected(void **state)
{
    (void)state;
    const uint8_t cdb[6] = {0x12, 0x01, 0x86, 0, 96, 0};
    run(cdb, sizeof(cdb));
    assert_invalid_field(2);
}

static void vpd_supported_pages(void **state)
{
    (void)state;
    const uint8_t cdb[6] = {0x12, 0x01, 0x00, 0, 255, 0};
    run(cdb, sizeof(cdb));
    assert_good();
    const uint8_t want[] = {0x00, 0x00, 0x00, 6, 0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2};
    assert_int_equal(plan.data_len, sizeof(want));
    assert_memory_equal(buf, want, sizeof(want));
}

static void vpd_no_lun(void **state)
{
    (void)state;
    const uint8_t cdb0[6] = {0x12, 0x01, 0x00, 0, 255, 0};
    run_on(NULL, cdb0, sizeof(cdb0));
    assert_good();
    const uint8_t want[] = {0x7f, 0x00, 0x00, 1, 0x00};
    assert_int_equal(plan.data_len, sizeof(want));
    assert_memory_equal(buf, want, sizeof(want));

    const uint8_t cdb80[6] = {0x12, 0x01, 0x80, 0, 255, 0};
    run_on(NULL, cdb80, sizeof(cdb80));
    assert_invalid_field(2);
}

static void vpd_unit_serial(void **state)
{
    (void)state;
    const uint8_t cdb[6] = {0x12, 0x01, 0x80, 0, 255, 0};
    run(cdb, sizeof(cdb));
    assert_good();
    const uint8_t want[] = {0x00, 0x80, 0x00, 6, 'S', 'E', 'R', '1', '2', '3'};
    assert_int_equal(plan.data_len, sizeof(want));
    assert_memory_equal(buf, want, sizeof(want));
}

static void vpd_device_identification(void **state)
{
    (void)state;
    const uint8_t cdb[6] = {0x12, 0x01, 0x83, 0x01, 0x00, 0};
    run(cdb, sizeof(cdb));
    assert_good();
    assert_int_equal(buf[1], 0x83);
    size_t total = 4 + twl_get_be16(buf + 2);
    assert_int_equal(plan.data_len, total);

    /* NAA, binary, LU association */
    const uint8_t *d = buf + 4;
    assert_int_equal(d[0], 0x01);
    assert_int_equal(d[1], 0x03);
    assert_int_equal(d[3], 16);
    assert_memory_equal(d + 4, lun.naa, 16);
    assert_int_equal(d[4] >> 4, 6);
    d += 4 + 16;

    /* SCSI name string of the target port */
    const char name[] = TARGET_NAME ",t,0x0001";
    size_t padded = (sizeof(name) + 3) & ~(size_t)3; /* sizeof counts the NUL */
    assert_int_equal(d[0], 0x53);
    assert_int_equal(d[1], 0x98);
    assert_int_equal(d[3], padded);
    assert_int_equal(d[3] % 4, 0);
    assert_memory_equal(d + 4, name, sizeof(name));
    for (size_t i = sizeof(name); i < padded; i++)
        assert_int_equal(d[4 + i], 0);
    d += 4 + padded;

    /* relative target port */
    const uint8_t rtp[] = {0x51, 0x94, 0, 4, 0, 0, 0, 2};
    assert_memory_equal(d, rtp, sizeof(rtp));
    d += 8;
    /* target port group */
    const uint8_t tpg[] = {0x51, 0x95, 0, 4, 0, 0, 0, 5};
    assert_memory_equal(d, tpg, sizeof(tpg));
    d += 8;
    assert_int_equal((size_t)(d - buf), total);
}

static void vpd_device_identification_name_needs_extra_padding(void **state)
{
    (void)state;
    /* 40 characters: the terminating NUL forces a whole extra group of 4 bytes. */
    view.target_name = "iqn.2024-01.org.twinlun:disk123";
    const char name[] = "iqn.2024-01.org.twinlun:disk123,t,0x0001";
    assert_int_equal(strlen(name), 40);
    const uint8_t cdb[6] = {0x12, 0x01, 0x83, 0x01, 0x00, 0};
    run(cdb, sizeof(cdb));
    assert_good();
    const uint8_t *d = buf + 4 + 4 + 16;
    assert_int_equal(d[1], 0x98);
    assert_int_equal(d[3], 44);
    assert_memory_equal(d + 4, name, 40);
    for (size_t i = 40; i < 44; i++)
        assert_int_equal(d[4 + i], 0);
    assert_int_equal(d[4 + 44 + 1], 0x94); /* next descriptor follows the padding */
}

static void vpd_device_identification_clipped(void **state)
{
    (void)state;
    const uint8_t cdb[6] = {0x12, 0x01, 0x83, 0, 8, 0};
    run(cdb, sizeof(cdb));
    assert_good();
    assert_int_equal(plan.data_len, 8);
    assert_true(twl_get_be16(buf + 2) > 60); /* full page length reported */
    assert_int_equal(buf[8], 0xee);
}

static void vpd_block_limits(void **state)
{
    (void)state;
    const uint8_t cdb[6] = {0x12, 0x01, 0xb0, 0, 255, 0};
    run(cdb, sizeof(cdb));
    assert_good();
    assert_int_equal(plan.data_len, 64);
    assert_int_equal(buf[1], 0xb0);
    assert_int_equal(twl_get_be16(buf + 2), 60);
    assert_int_equal(buf[4], 0x00);                 /* WSNZ 0: WRITE SAME 0 blocks = to the end */
    assert_int_equal(buf[5], 255);                  /* maximum COMPARE AND WRITE length */
    assert_int_equal(twl_get_be16(buf + 6), 8);     /* 4 KiB pages of 512-byte blocks */
    assert_int_equal(twl_get_be32(buf + 8), 2048);  /* maximum transfer length */
    assert_int_equal(twl_get_be32(buf + 12), 2048); /* optimal transfer length */
    assert_int_equal(twl_get_be32(buf + 16), 2048); /* maximum PRE-FETCH length */
    assert_int_equal(twl_get_be32(buf + 20), 0xffffffffu); /* maximum UNMAP LBA count */
    assert_int_equal(twl_get_be32(buf + 24), 256);         /* maximum UNMAP descriptors */
    assert_int_equal(twl_get_be32(buf + 28), 8);           /* optimal unmap granularity */
    assert_int_equal(twl_get_be32(buf + 32), 0x80000000u); /* UGAVALID, alignment 0 */
    assert_int_equal(twl_get_be64(buf + 36), 2048);        /* maximum WRITE SAME length */
    for (size_t i = 44; i < 64; i++)
        assert_int_equal(buf[i], 0);
    assert_int_equal(buf[64], 0xee);

    lun.block_size = 4096;
    run(cdb, sizeof(cdb));
    assert_int_equal(twl_get_be16(buf + 6), 1);
    assert_int_equal(twl_get_be32(buf + 28), 1);
}

static void vpd_block_limits_thick_has_no_unmap_limits(void **state)
{
    (void)state;
    /* A fully provisioned LU implements no UNMAP: SBC-3 reads zero counts as "not
     * implemented", so every unmap field must stay zero. */
    lun.thin = false;
    const uint8_t cdb[6] = {0x12, 0x01, 0xb0, 0, 255, 0};
    run(cdb, sizeof(cdb));
    assert_good();
    assert_int_equal(buf[5], 255);
    for (size_t i = 20; i < 36; i++)
        assert_int_equal(buf[i], 0);
    assert_int_equal(twl_get_be64(buf + 36), 2048);
}

static void vpd_block_characteristics(void **state)
{
    (void)state;
    const uint8_t cdb[6] = {0x12, 0x01, 0xb1, 0, 255, 0};
    run(cdb, sizeof(cdb));
    assert_good();
    assert_int_equal(plan.data_len, 64);
    assert_int_equal(buf[1], 0xb1);
    assert_int_equal(twl_get_be16(buf + 2), 60);
    assert_int_equal(twl_get_be16(buf + 4), 1);
}

static void vpd_logical_block_provisioning(void **state)
{
    (void)state;
    const uint8_t cdb[6] = {0x12, 0x01, 0xb2, 0, 255, 0};
    run(cdb, sizeof(cdb));
    assert_good();
    /* LBPU LBPWS LBPWS10 LBPRZ ANC_SUP, provisioning type 010b (thin) */
    const uint8_t thin[] = {0x00, 0xb2, 0x00, 4, 0, 0xe6, 0x02, 0};
    assert_int_equal(plan.data_len, sizeof(thin));
    assert_memory_equal(buf, thin, sizeof(thin));

    lun.thin = false;
    run(cdb, sizeof(cdb));
    assert_good();
    /* nothing supported, fully provisioned (000b) */
    const uint8_t thick[] = {0x00, 0xb2, 0x00, 4, 0, 0x00, 0x00, 0};
    assert_int_equal(plan.data_len, sizeof(thick));
    assert_memory_equal(buf, thick, sizeof(thick));
}

/* ---- TEST UNIT READY, unknown opcodes, missing LUN, CDB framing ---- */

static void test_unit_ready(void **state)
{
    (void)state;
    const uint8_t cdb[6] = {0};
    run(cdb, sizeof(cdb));
    assert_good();
    assert_int_equal(plan.data_len, 0);
}

static void unknown_opcode(void **state)
{
    (void)state;
    const uint8_t cdb[16] = {0xc5};
    run(cdb, sizeof(cdb));
    assert_check(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_OPCODE);
}

static void no_lun_rejects_media_commands(void **state)
{
    (void)state;
    const uint8_t tur[6] = {0};
    run_on(NULL, tur, sizeof(tur));
    assert_check(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_LUN_NOT_SUPPORTED);

    const uint8_t rd[10] = {0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0};
    run_on(NULL, rd, sizeof(rd));
    assert_check(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_LUN_NOT_SUPPORTED);

    /* An unknown opcode on a missing LU reports the missing LU, not the opcode. */
    const uint8_t unk[16] = {0xc5};
    run_on(NULL, unk, sizeof(unk));
    assert_check(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_LUN_NOT_SUPPORTED);
}

static void short_cdb_rejected(void **state)
{
    (void)state;
    const uint8_t cdb[16] = {0x88, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    run(cdb, 10);
    assert_check(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_CDB);
    run(cdb, 0);
    assert_check(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_CDB);
}

static void naca_rejected(void **state)
{
    (void)state;
    const uint8_t cdb[6] = {0x00, 0, 0, 0, 0, 0x04};
    run(cdb, sizeof(cdb));
    assert_invalid_field(5);
}

/* ---- REPORT LUNS ---- */

static void report_luns(void **state)
{
    (void)state;
    const uint8_t cdb[12] = {0xa0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0x00, 0, 0};
    run(cdb, sizeof(cdb));
    assert_good();
    const uint8_t want[] = {0, 0, 0, 24, 0, 0, 0, 0, 0,    0,    0, 0, 0, 0, 0, 0,
                            0, 3, 0, 0,  0, 0, 0, 0, 0x41, 0x2c, 0, 0, 0, 0, 0, 0};
    assert_int_equal(plan.data_len, sizeof(want));
    assert_memory_equal(buf, want, sizeof(want));
}

static void report_luns_clipped(void **state)
{
    (void)state;
    const uint8_t cdb[12] = {0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0};
    run(cdb, sizeof(cdb));
    assert_good();
    assert_int_equal(plan.data_len, 16);
    assert_int_equal(twl_get_be32(buf), 24); /* full list length */
    assert_int_equal(buf[16], 0xee);
}

static void report_luns_small_allocation(void **state)
{
    (void)state;
    const uint8_t cdb[12] = {0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 15, 0, 0};
    run(cdb, sizeof(cdb));
    assert_invalid_field(6);
}

static void report_luns_select_report(void **state)
{
    (void)state;
    uint8_t cdb[12] = {0xa0, 0, 0x01, 0, 0, 0, 0, 0, 1, 0, 0, 0};
    run(cdb, sizeof(cdb));
    assert_good();
    assert_int_equal(plan.data_len, 8);
    assert_int_equal(twl_get_be32(buf), 0);

    cdb[2] = 0x03;
    run(cdb, sizeof(cdb));
    assert_invalid_field(2);
}

static void report_luns_no_lun(void **state)
{
    (void)state;
    const uint8_t cdb[12] = {0xa0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0};
    run_on(NULL, cdb, sizeof(cdb));
    assert_good();
    assert_int_equal(plan.data_len, 32);
    assert_int_equal(twl_get_be32(buf), 24);
}

/* ---- REQUEST SENSE ---- */

static void request_sense_fixed(void **state)
{
    (void)state;
    const uint8_t cdb[6] = {0x03, 0, 0, 0, 252, 0};
    run(cdb, sizeof(cdb));
    assert_good();
    assert_int_equal(plan.data_len, 18);
    assert_int_equal(buf[0], 0x70);
    assert_int_equal(buf[2], SCSI_SENSE_NO_SENSE);
    assert_int_equal(buf[7], 10);
    assert_int_equal(buf[12], 0);
    assert_int_equal(buf[13], 0);
}

static void request_sense_descriptor(void **state)
{
    (void)state;
    const uint8_t cdb[6] = {0x03, 0x01, 0, 0, 252, 0};
    run(cdb, sizeof(cdb));
    assert_good();
    const uint8_t want[8] = {0x72, 0, 0, 0, 0, 0, 0, 0};
    assert_int_equal(plan.data_len, sizeof(want));
    assert_memory_equal(buf, want, sizeof(want));
}

static void request_sense_clipped(void **state)
{
    (void)state;
    const uint8_t cdb[6] = {0x03, 0, 0, 0, 4, 0};
    run(cdb, sizeof(cdb));
    assert_good();
    assert_int_equal(plan.data_len, 4);
    assert_int_equal(buf[4], 0xee);
}

static void request_sense_no_lun(void **state)
{
    (void)state;
    const uint8_t cdb[6] = {0x03, 0, 0, 0, 252, 0};
    run_on(NULL, cdb, sizeof(cdb));
    assert_good();
    assert_int_equal(plan.data_len, 18);
    assert_int_equal(buf[2], SCSI_SENSE_ILLEGAL_REQUEST);
    assert_int_equal(buf[12], 0x25);
    assert_int_equal(buf[13], 0x00);
}

/* ---- READ CAPACITY ---- */

static void read_capacity_10(void **state)
{
    (void)state;
    const uint8_t cdb[10] = {0x25};
    run(cdb, sizeof(cdb));
    assert_good();
    assert_int_equal(plan.data_len, 8);
    assert_int_equal(twl_get_be32(buf), 999999);
    assert_int_equal(twl_get_be32(buf + 4), 512);
}

static void read_capacity_10_large_lun(void **state)
{
    (void)state;
    const uint8_t cdb[10] = {0x25};
    lun.block_count = 0x100000000ull; /* last LBA exactly 0xFFFFFFFF */
    run(cdb, sizeof(cdb));
    assert_good();
    assert_int_equal(twl_get_be32(buf), 0xffffffffu);

    lun.block_count = 0x100000001ull;
    run(cdb, sizeof(cdb));
    assert_int_equal(twl_get_be32(buf), 0xffffffffu);

    lun.block_count = 0xffffffffull; /* still fits: last LBA 0xFFFFFFFE */
    run(cdb, sizeof(cdb));
    assert_int_equal(twl_get_be32(buf), 0xfffffffeu);
}

static void read_capacity_16(void **state)
{
    (void)state;
    const uint8_t cdb[16] = {0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0};
    lun.block_count = 0x123456789ull;
    lun.block_size = 4096;
    run(cdb, sizeof(cdb));
    assert_good();
    assert_int_equal(plan.data_len, 32);
    assert_int_equal(twl_get_be64(buf), 0x123456788ull);
    assert_int_equal(twl_get_be32(buf + 8), 4096);
    assert_int_equal(buf[12], 0);
    assert_int_equal(buf[13], 0);    /* P_I_EXPONENT 0, one logical block per physical */
    assert_int_equal(buf[14], 0xc0); /* LBPME, LBPRZ, lowest aligned LBA 0 */
    assert_int_equal(buf[15], 0);
    for (size_t i = 16; i < 32; i++)
        assert_int_equal(buf[i], 0);

    /* 512-byte blocks on 4 KiB pages: 2^3 logical blocks per physical block */
    lun.block_size = 512;
    lun.lbppbe = 3;
    run(cdb, sizeof(cdb));
    assert_int_equal(twl_get_be32(buf + 8), 512);
    assert_int_equal(buf[13], 0x03);
    assert_int_equal(buf[14], 0xc0);

    lun.thin = false;
    run(cdb, sizeof(cdb));
    assert_int_equal(buf[13], 0x03);
    assert_int_equal(buf[14], 0x00);
}

static void read_capacity_16_clipped(void **state)
{
    (void)state;
    const uint8_t cdb[16] = {0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12, 0, 0};
    run(cdb, sizeof(cdb));
    assert_good();
    assert_int_equal(plan.data_len, 12);
    assert_int_equal(twl_get_be32(buf + 8), 512);
    assert_int_equal(buf[12], 0xee);
}

static void service_action_in_unknown(void **state)
{
    (void)state;
    const uint8_t cdb[16] = {0x9e, 0x11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0};
    run(cdb, sizeof(cdb));
    assert_invalid_field(1);
}

/* ---- READ / WRITE ---- */

static void assert_media(enum scsi_action action, uint64_t lba, uint32_t blocks, bool fua)
{
    assert_int_equal(plan.action, action);
    assert_int_equal(plan.lba, lba);
    assert_int_equal(plan.blocks, blocks);
    assert_int_equal(plan.fua, fua);
    assert_int_equal(plan.sense_len, 0);
}

static void read_6(void **state)
{
    (void)state;
    const uint8_t cdb[6] = {0x08, 0x0f, 0x12, 0x34, 8, 0}; /* 21-bit LBA 0x0f1234 */
    run(cdb, sizeof(cdb));
    assert_media(SCSI_ACTION_READ, 0x0f1234, 8, false);
}

static void read_6_zero_length_means_256(void **state)
{
    (void)state;
    const uint8_t cdb[6] = {0x08, 0, 0, 10, 0, 0};
    run(cdb, sizeof(cdb));
    assert_media(SCSI_ACTION_READ, 10, 256, false);
}

static void read_6_ignores_top_bits_of_byte_1(void **state)
{
    (void)state;
    /* Bits 7-5 of byte 1 are reserved in READ(6), not part of the LBA nor RDPROTECT. */
    const uint8_t cdb[6] = {0x08, 0xe0, 0, 1, 1, 0};
    run(cdb, sizeof(cdb));
    assert_media(SCSI_ACTION_READ, 1, 1, false);
}

static void write_6(void **state)
{
    (void)state;
    const uint8_t cdb[6] = {0x0a, 0x01, 0x00, 0x00, 16, 0};
    run(cdb, sizeof(cdb));
    assert_media(SCSI_ACTION_WRITE, 0x10000, 16, false);
}

static void read_10_fua(void **state)
{
    (void)state;
    const uint8_t cdb[10] = {0x28, 0x08, 0x00, 0x01, 0x02, 0x03, 0, 0x01, 0x00, 0};
    run(cdb, sizeof(cdb));
    assert_media(SCSI_ACTION_READ, 0x010203, 256, true);
}

static void write_10(void **state)
{
    (void)state;
    const uint8_t cdb[10] = {0x2a, 0x00, 0x00, 0x00, 0x00, 0x07, 0, 0x00, 0x09, 0};
    run(cdb, sizeof(cdb));
    assert_media(SCSI_ACTION_WRITE, 7, 9, false);
}

static void read_12(void **state)
{
    (void)state;
    const uint8_t cdb[12] = {0xa8, 0, 0x00, 0x0f, 0x42, 0x00, 0x00, 0x00, 0x00, 0x40, 0, 0};
    run(cdb, sizeof(cdb));
    assert_media(SCSI_ACTION_READ, 999936, 64, false);
}

static void write_12_fua(void **state)
{
    (void)state;
    const uint8_t cdb[12] = {0xaa, 0x08, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0};
    run(cdb, sizeof(cdb));
    assert_media(SCSI_ACTION_WRITE, 1, 1, true);
}

static void read_16_large_lba(void **state)
{
    (void)state;
    lun.block_count = 0x200000000ull;
    const uint8_t cdb[16] = {0x88, 0, 0, 0, 0, 0x01, 0x00, 0x00, 0x00, 0x05, 0, 0, 0, 4, 0, 0};
    run(cdb, sizeof(cdb));
    assert_media(SCSI_ACTION_READ, 0x100000005ull, 4, false);
}

static void write_16_fua(void **state)
{
    (void)state;
    const uint8_t cdb[16] = {0x8a, 0x08, 0, 0, 0, 0, 0, 0, 0, 0x20, 0, 0, 0x01, 0x00, 0, 0};
    run(cdb, sizeof(cdb));
    assert_media(SCSI_ACTION_WRITE, 0x20, 256, true);
}

static void zero_length_transfer_is_good(void **state)
{
    (void)state;
    const uint8_t cdb[10] = {0x2a, 0, 0, 0, 0, 5, 0, 0, 0, 0};
    run(cdb, sizeof(cdb));
    assert_good();
    assert_int_equal(plan.data_len, 0);
    assert_int_equal(plan.blocks, 0);
}

static void zero_length_beyond_end_out_of_range(void **state)
{
    (void)state;
    /* LBA 1000001 is past the end even with nothing to transfer. */
    const uint8_t cdb[10] = {0x28, 0, 0x00, 0x0f, 0x42, 0x41, 0, 0, 0, 0};
    run(cdb, sizeof(cdb));
    assert_check(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_LBA_OUT_OF_RANGE);
}

static void read_last_block_ok_next_out_of_range(void **state)
{
    (void)state;
    /* 999999 + 1 ends exactly at the capacity */
    uint8_t cdb[10] = {0x28, 0, 0x00, 0x0f, 0x42, 0x3f, 0, 0, 1, 0};
    run(cdb, sizeof(cdb));
    assert_media(SCSI_ACTION_READ, 999999, 1, false);

    cdb[8] = 2;
    run(cdb, sizeof(cdb));
    assert_check(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_LBA_OUT_OF_RANGE);
}

static void write_16_lba_overflow_out_of_range(void **state)
{
    (void)state;
    /* lba + blocks wraps around 2^64 to a small number: must still be refused. */
    lun.block_count = UINT64_MAX;
    uint8_t cdb[16] = {0x8a, 0};
    twl_put_be64(cdb + 2, UINT64_MAX - 1);
    twl_put_be32(cdb + 10, 4);
    run(cdb, sizeof(cdb));
    assert_check(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_LBA_OUT_OF_RANGE);

    lun.block_count = 1000;
    twl_put_be64(cdb + 2, UINT64_MAX);
    twl_put_be32(cdb + 10, 1);
    run(cdb, sizeof(cdb));
    assert_check(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_LBA_OUT_OF_RANGE);
}

static void read_6_out_of_range(void **state)
{
    (void)state;
    lun.block_count = 100;
    const uint8_t cdb[6] = {0x08, 0, 0, 0, 0, 0}; /* 256 blocks from 0 */
    run(cdb, sizeof(cdb));
    assert_check(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_LBA_OUT_OF_RANGE);
}

static void transfer_length_above_maximum(void **state)
{
    (void)state;
    uint8_t cdb[10] = {0x28, 0, 0, 0, 0, 0, 0, 0x08, 0x01, 0}; /* 2049 blocks */
    run(cdb, sizeof(cdb));
    assert_invalid_field(7);

    cdb[8] = 0x00; /* exactly the maximum */
    run(cdb, sizeof(cdb));
    assert_media(SCSI_ACTION_READ, 0, 2048, false);

    lun.max_transfer_blocks = 0; /* no limit */
    twl_put_be16(cdb + 7, 60000);
    run(cdb, sizeof(cdb));
    assert_media(SCSI_ACTION_READ, 0, 60000, false);
}

static void protect_field_rejected(void **state)
{
    (void)state;
    const uint8_t rd[10] = {0x28, 0x20, 0, 0, 0, 0, 0, 0, 1, 0};
    run(rd, sizeof(rd));
    assert_invalid_field(1);

    const uint8_t wr[16] = {0x8a, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0};
    run(wr, sizeof(wr));
    assert_invalid_field(1);
}

/* ---- SYNCHRONIZE CACHE ---- */

static void sync_cache_10(void **state)
{
    (void)state;
    const uint8_t cdb[10] = {0x35, 0x02, 0, 0, 0x01, 0x00, 0, 0x00, 0x10, 0};
    run(cdb, sizeof(cdb));
    assert_media(SCSI_ACTION_SYNC, 256, 16, false);
}

static void sync_cache_16_to_end(void **state)
{
    (void)state;
    const uint8_t cdb[16] = {0x91, 0, 0, 0, 0, 0, 0, 0, 0, 100, 0, 0, 0, 0, 0, 0};
    run(cdb, sizeof(cdb));
    assert_media(SCSI_ACTION_SYNC, 100, 0, false);
}

static void sync_cache_out_of_range(void **state)
{
    (void)state;
    uint8_t cdb[16] = {0x91, 0};
    twl_put_be64(cdb + 2, 999990);
    twl_put_be32(cdb + 10, 11);
    run(cdb, sizeof(cdb));
    assert_check(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_LBA_OUT_OF_RANGE);

    const uint8_t c10[10] = {0x35, 0, 0x00, 0x0f, 0x42, 0x41, 0, 0, 0, 0}; /* 1000001, to end */
    run(c10, sizeof(c10));
    assert_check(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_LBA_OUT_OF_RANGE);
}

/* ---- MODE SENSE ---- */

static void mode_sense_6_caching(void **state)
{
    (void)state;
    const uint8_t cdb[6] = {0x1a, 0, 0x08, 0, 255, 0};
    run(cdb, sizeof(cdb));
    assert_good();
    assert_int_equal(plan.data_len, 4 + 8 + 20);
    assert_int_equal(buf[0], 4 + 8 + 20 - 1);
    assert_int_equal(buf[1], 0);    /* medium type */
    assert_int_equal(buf[2], 0x10); /* DPOFUA, not write protected */
    assert_int_equal(buf[3], 8);
    assert_int_equal(twl_get_be32(buf + 4), 1000000);
    assert_int_equal(twl_get_be24(buf + 9), 512);
    assert_int_equal(buf[12], 0x88); /* PS, caching page */
    assert_int_equal(buf[13], 0x12);
    assert_int_equal(buf[14], 0x04); /* WCE */
    for (size_t i = 15; i < 32; i++)
        assert_int_equal(buf[i], 0);

    lun.write_cache = false;
    run(cdb, sizeof(cdb));
    assert_int_equal(buf[14], 0x00);
}

static void mode_sense_6_dbd_control(void **state)
{
    (void)state;
    const uint8_t cdb[6] = {0x1a, 0x08, 0x0a, 0, 255, 0};
    run(cdb, sizeof(cdb));
    assert_good();
    /* PS; all fixed but the busy timeout period (bytes 8-9): FFFFh, unlimited */
    const uint8_t want[] = {15, 0, 0x10, 0, 0x8a, 0x0a, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0};
    assert_int_equal(plan.data_len, sizeof(want));
    assert_memory_equal(buf, want, sizeof(want));
}

static void mode_sense_6_block_descriptor_clips_blocks(void **state)
{
    (void)state;
    lun.block_count = 0x100000005ull;
    const uint8_t cdb[6] = {0x1a, 0, 0x1c, 0, 255, 0};
    run(cdb, sizeof(cdb));
    assert_good();
    assert_int_equal(twl_get_be32(buf + 4), 0xffffffffu);
    assert_int_equal(buf[12], 0x9c);
    assert_int_equal(buf[13], 0x0a);
    assert_int_equal(buf[14], 0x08); /* DEXCPT */
}

static void mode_sense_10_all_pages(void **state)
{
    (void)state;
    const uint8_t cdb[10] = {0x5a, 0, 0x3f, 0, 0, 0, 0, 0x01, 0x00, 0};
    run(cdb, sizeof(cdb));
    assert_good();
    size_t total = 8 + 8 + 20 + 12 + 12;
    assert_int_equal(plan.data_len, total);
    assert_int_equal(twl_get_be16(buf), total - 2);
    assert_int_equal(buf[3], 0x10);
    assert_int_equal(buf[4], 0); /* LONGLBA */
    assert_int_equal(twl_get_be16(buf + 6), 8);
    assert_int_equal(buf[16], 0x88);
    assert_int_equal(buf[18], 0x04);
    assert_int_equal(buf[36], 0x8a);
    assert_int_equal(twl_get_be16(buf + 36 + 8), 0xffff);
    assert_int_equal(buf[48], 0x9c);
    assert_int_equal(buf[49], 0x0a);
    assert_int_equal(buf[50], 0x08);
}

static void mode_sense_10_all_subpages(void **state)
{
    (void)state;
    const uint8_t cdb[10] = {0x5a, 0x08, 0x3f, 0xff, 0, 0, 0, 0x01, 0x00, 0};
    run(cdb, sizeof(cdb));
    assert_good();
    assert_int_equal(plan.data_len, 8 + 20 + 12 + 12);
    assert_int_equal(twl_get_be16(buf + 6), 0);
    assert_int_equal(buf[8], 0x88);
}

static void mode_sense_10_long_lba(void **state)
{
    (void)state;
    lun.block_count = 0x123456789ull;
    const uint8_t cdb[10] = {0x5a, 0x10, 0x08, 0, 0, 0, 0, 0x01, 0x00, 0};
    run(cdb, sizeof(cdb));
    assert_good();
    assert_int_equal(plan.data_len, 8 + 16 + 20);
    assert_int_equal(buf[4], 0x01);
    assert_int_equal(twl_get_be16(buf + 6), 16);
    assert_int_equal(twl_get_be64(buf + 8), 0x123456789ull);
    assert_int_equal(twl_get_be32(buf + 20), 512);
    assert_int_equal(buf[24], 0x88);
}

static void mode_sense_changeable(void **state)
{
    (void)state;
    /* PC 01b, caching: the mask names WCE and nothing else (what MODE SELECT accepts). The
     * page header carries no PS in this form. */
    const uint8_t cdb[6] = {0x1a, 0x08, 0x48, 0, 255, 0};
    lun.write_cache = false; /* the mask does not depend on the current value */
    run(cdb, sizeof(cdb));
    assert_good();
    assert_int_equal(plan.data_len, 4 + 20);
    assert_int_equal(buf[4], 0x08);
    assert_int_equal(buf[5], 0x12);
    assert_int_equal(buf[6], 0x04);
    for (size_t i = 7; i < 24; i++)
        assert_int_equal(buf[i], 0);
}

static void mode_sense_changeable_control_and_iec_fixed(void **state)
{
    (void)state;
    /* The busy timeout and DEXCPT are current values, not changeable bits. */
    const uint8_t cdb[10] = {0x5a, 0x08, 0x7f, 0, 0, 0, 0, 0x01, 0x00, 0}; /* PC 01b, all */
    run(cdb, sizeof(cdb));
    assert_good();
    assert_int_equal(plan.data_len, 8 + 20 + 12 + 12);
    assert_int_equal(buf[8], 0x08);
    assert_int_equal(buf[10], 0x04);
    assert_int_equal(buf[28], 0x0a);
    assert_int_equal(buf[29], 0x0a);
    for (size_t i = 30; i < 40; i++)
        assert_int_equal(buf[i], 0);
    assert_int_equal(buf[40], 0x1c);
    for (size_t i = 42; i < 52; i++)
        assert_int_equal(buf[i], 0);
}

static void mode_sense_default(void **state)
{
    (void)state;
    /* PC 10b: the defaults (write cache on) whatever the current value */
    const uint8_t cdb[6] = {0x1a, 0x08, 0x88, 0, 255, 0};
    lun.write_cache = false;
    lun.saved_write_cache = false;
    run(cdb, sizeof(cdb));
    assert_good();
    assert_int_equal(plan.data_len, 4 + 20);
    assert_int_equal(buf[4], 0x88);
    assert_int_equal(buf[6], 0x04);
}

static void mode_sense_saved(void **state)
{
    (void)state;
    /* PC 11b: the values last saved by MODE SELECT with SP, not the current ones */
    const uint8_t cdb[6] = {0x1a, 0x08, 0xc8, 0, 255, 0};
    lun.write_cache = true;
    lun.saved_write_cache = false;
    run(cdb, sizeof(cdb));
    assert_good();
    assert_int_equal(plan.data_len, 4 + 20);
    assert_int_equal(buf[4], 0x88);
    assert_int_equal(buf[6], 0x00);

    lun.write_cache = false;
    lun.saved_write_cache = true;
    run(cdb, sizeof(cdb));
    assert_int_equal(buf[6], 0x04);

    /* the control page's saved busy timeout is the current one */
    const uint8_t ctl[6] = {0x1a, 0x08, 0xca, 0, 255, 0};
    run(ctl, sizeof(ctl));
    assert_good();
    assert_int_equal(buf[4], 0x8a);
    assert_int_equal(twl_get_be16(buf + 4 + 8), 0xffff);
}

static void mode_sense_unsupported_page(void **state)
{
    (void)state;
    const uint8_t cdb[6] = {0x1a, 0, 0x19, 0, 255, 0};
    run(cdb, sizeof(cdb));
    assert_invalid_field(2);
}

static void mode_sense_unsupported_subpage(void **state)
{
    (void)state;
    uint8_t cdb[10] = {0x5a, 0, 0x08, 0x01, 0, 0, 0, 0x01, 0x00, 0};
    run(cdb, sizeof(cdb));
    assert_invalid_field(3);

    cdb[3] = 0xff; /* only valid together with page 3Fh */
    run(cdb, sizeof(cdb));
    assert_invalid_field(3);
}

static void mode_sense_clipped(void **state)
{
    (void)state;
    const uint8_t cdb[6] = {0x1a, 0, 0x3f, 0, 6, 0};
    run(cdb, sizeof(cdb));
    assert_good();
    assert_int_equal(plan.data_len, 6);
    assert_int_equal(buf[0], 4 + 8 + 20 + 12 + 12 - 1);
    assert_int_equal(buf[6], 0xee);
}

/* ---- identity derivation ---- */

static void derive_ids_stable_and_distinct(void **state)
{
    (void)state;
    struct scsi_lun a = {.id = 1};
    struct scsi_lun b = {.id = 1};
    struct scsi_lun c = {.id = 2};
    struct scsi_lun d = {.id = 1};
    scsi_lun_derive_ids(&a, TARGET_NAME);
    scsi_lun_derive_ids(&b, TARGET_NAME);
    scsi_lun_derive_ids(&c, TARGET_NAME);
    scsi_lun_derive_ids(&d, "iqn.2024-01.org.twinlun:disk2");

    assert_memory_equal(a.naa, b.naa, 16);
    assert_string_equal(a.serial, b.serial);
    assert_memory_not_equal(a.naa, c.naa, 16);
    assert_memory_not_equal(a.naa, d.naa, 16);
    assert_string_not_equal(a.serial, c.serial);

    /* NAA 6 followed by the company ID 0A544C */
    assert_int_equal(a.naa[0], 0x60);
    assert_int_equal(a.naa[1], 0xa5);
    assert_int_equal(a.naa[2], 0x44);
    assert_int_equal(a.naa[3] >> 4, 0xc);

    assert_int_equal(strlen(a.serial), 16);
    assert_int_equal(strspn(a.serial, "0123456789abcdef"), 16);
}

static void derive_ids_keeps_configured_serial(void **state)
{
    (void)state;
    struct scsi_lun a = {.id = 1};
    strcpy(a.serial, "configured");
    scsi_lun_derive_ids(&a, TARGET_NAME);
    assert_string_equal(a.serial, "configured");
    assert_int_equal(a.naa[0] >> 4, 6);
}

#define T(f) cmocka_unit_test_setup(f, setup)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(sense_fixed_layout),
        T(sense_info_valid),
        T(sense_info_too_wide_clears_valid),
        T(inquiry_standard),
        T(inquiry_clipped_to_allocation_length),
        T(inquiry_clipped_to_buflen),
        T(inquiry_allocation_length_zero),
        T(inquiry_no_lun),
        T(inquiry_cmddt_rejected),
        T(inquiry_page_without_evpd_rejected),
        T(inquiry_unsupported_vpd_rejected),
        T(vpd_supported_pages),
        T(vpd_no_lun),
        T(vpd_unit_serial),
        T(vpd_device_identification),
        T(vpd_device_identification_name_needs_extra_padding),
        T(vpd_device_identification_clipped),
        T(vpd_block_limits),
        T(vpd_block_limits_thick_has_no_unmap_limits),
        T(vpd_block_characteristics),
        T(vpd_logical_block_provisioning),
        T(test_unit_ready),
        T(unknown_opcode),
        T(no_lun_rejects_media_commands),
        T(short_cdb_rejected),
        T(naca_rejected),
        T(report_luns),
        T(report_luns_clipped),
        T(report_luns_small_allocation),
        T(report_luns_select_report),
        T(report_luns_no_lun),
        T(request_sense_fixed),
        T(request_sense_descriptor),
        T(request_sense_clipped),
        T(request_sense_no_lun),
        T(read_capacity_10),
        T(read_capacity_10_large_lun),
        T(read_capacity_16),
        T(read_capacity_16_clipped),
        T(service_action_in_unknown),
        T(read_6),
        T(read_6_zero_length_means_256),
        T(read_6_ignores_top_bits_of_byte_1),
        T(write_6),
        T(read_10_fua),
        T(write_10),
        T(read_12),
        T(write_12_fua),
        T(read_16_large_lba),
        T(write_16_fua),
        T(zero_length_transfer_is_good),
        T(zero_length_beyond_end_out_of_range),
        T(read_last_block_ok_next_out_of_range),
        T(write_16_lba_overflow_out_of_range),
        T(read_6_out_of_range),
        T(transfer_length_above_maximum),
        T(protect_field_rejected),
        T(sync_cache_10),
        T(sync_cache_16_to_end),
        T(sync_cache_out_of_range),
        T(mode_sense_6_caching),
        T(mode_sense_6_dbd_control),
        T(mode_sense_6_block_descriptor_clips_blocks),
        T(mode_sense_10_all_pages),
        T(mode_sense_10_all_subpages),
        T(mode_sense_10_long_lba),
        T(mode_sense_changeable),
        T(mode_sense_changeable_control_and_iec_fixed),
        T(mode_sense_default),
        T(mode_sense_saved),
        T(mode_sense_unsupported_page),
        T(mode_sense_unsupported_subpage),
        T(mode_sense_clipped),
        T(derive_ids_stable_and_distinct),
        T(derive_ids_keeps_configured_serial),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
