#!/usr/bin/env python3
"""tools/compliance's parser on pieces of iscsi-test-cu 1.19 output recorded from tgt and
twinlund runs, with the interleavings that trip a line-by-line reading: suite teardown and
next-suite setup messages printed after a test's end word, on the same line or the next,
CUnit's assertion list after FAILED with the next setup's output glued to its last line, a
tool bug that fails, and a run that breaks off. The NoMedia block, a [FAILED] message in a
test that still passed, is made up: no recorded run had one."""

import importlib.machinery
import importlib.util
import os

from iscsi_raw import check, run_main

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SAMPLE = """\
    [SKIPPED] PERSISTENT RESERVE IN is not implemented.
found matching LU device identifier for all (2) paths



     CUnit - A unit testing framework for C - Version 2.1-3
     http://cunit.sourceforge.net/


Suite: CompareAndWrite
  Test: Unwritten ...    [SKIPPED] COMPAREANDWRITE is not implemented.
passed
  Test: InvalidDataOutSize ...    [SKIPPED] LBPPB < 2. Skipping test
passed    [SKIPPED] PERSISTENT RESERVE IN is not implemented.
    [SKIPPED] PERSISTENT RESERVE IN is not implemented.

Suite: Inquiry
  Test: VersionDescriptors ...passed    [SKIPPED] PERSISTENT RESERVE IN is not implemented.
    [SKIPPED] PERSISTENT RESERVE IN is not implemented.

Suite: ModeSense6
  Test: Control-SWP ...    SWP is not changeable
passed
  Test: Residuals ...passed    [FAILED] PRIN command: failed with sense. SENSE KEY:UNIT_ATTENTION(6) ASCQ:MODE PARAMETERS CHANGED(0x2a01)

Suite: NoMedia
  Test: NoMediaSBC ...    [FAILED] READ10 returned a transient error, retrying
passed
Suite: OrWrite
  Test: Simple ...    [FAILED] ORWRITE command failed with status 2 / sense key ILLEGAL_REQUEST(0x05) / ASCQ LBA_OUT_OF_RANGE(0x2100)
FAILED
    1. test_orwrite_simple.c:54  - CU_ASSERT_EQUAL(_r,0)
Suite: PrinReadKeys
  Test: Truncate ...FAILED
    1. test_prin_read_keys_truncate.c:58  - CU_ASSERT_EQUAL(ret,0)    [FAIL] failed to unmarshall PRIN/READ_KEYS data.
    [SKIPPED] PERSISTENT RESERVE IN is not implemented.

Suite: iSCSITMF
  Test: AbortTaskSimpleAsync ...passed
  Test: LUNResetSimpleAsync ...FAILED
    1. test_async_lu_reset_simple.c:157  - CU_ASSERT_EQUAL(reconnect_succeeded,1)    [FAILED] PRIN command: failed with sense. SENSE KEY:UNIT_ATTENTION(6) ASCQ:BUS_RESET(0x2900)
Suite: MultipathIO
  Test: Reset ...FAILED
    1. test_multipathio_reset.c:69  - CU_ASSERT_NOT_EQUAL(num_uas,0)
    2. test_multipathio_reset.c:69  - CU_ASSERT_NOT_EQUAL(num_uas,0)
  Test: CompareAndWriteAsync ...    [SKIPPED] WRITESAME10 is not implemented.
    [SKIPPED] WRITESAME10 is not implemented.
passed    [SKIPPED] PERSISTENT RESERVE IN is not implemented.
    [SKIPPED] PERSISTENT RESERVE IN is not implemented.


Run Summary:    Type  Total    Ran Passed Failed Inactive
              suites     51     51    n/a      0        0
               tests    230    230    217     13        0
             asserts  20979  20979  20975      4      n/a
"""

WANT = [
    ("SCSI.CompareAndWrite.Unwritten", "skipped",
     "[SKIPPED] COMPAREANDWRITE is not implemented."),
    ("SCSI.CompareAndWrite.InvalidDataOutSize", "skipped",
     "[SKIPPED] LBPPB < 2. Skipping test"),
    ("SCSI.Inquiry.VersionDescriptors", "passed", ""),
    ("SCSI.ModeSense6.Control-SWP", "passed", ""),
    ("SCSI.ModeSense6.Residuals", "passed", ""),
    ("SCSI.NoMedia.NoMediaSBC", "passed", ""),
    ("SCSI.OrWrite.Simple", "failed", "[FAILED] ORWRITE command failed with status 2 / sense key "
     "ILLEGAL_REQUEST(0x05) / ASCQ LBA_OUT_OF_RANGE(0x2100)"),
    ("SCSI.PrinReadKeys.Truncate", "failed",
     "1. test_prin_read_keys_truncate.c:58  - CU_ASSERT_EQUAL(ret,0)"),
    ("iSCSI.iSCSITMF.AbortTaskSimpleAsync", "passed", ""),
    ("iSCSI.iSCSITMF.LUNResetSimpleAsync", "excluded", None),
    ("SCSI.MultipathIO.Reset", "failed",
     "1. test_multipathio_reset.c:69  - CU_ASSERT_NOT_EQUAL(num_uas,0)"),
    ("SCSI.MultipathIO.CompareAndWriteAsync", "skipped",
     "[SKIPPED] WRITESAME10 is not implemented."),
]


def load_compliance():
    path = os.path.join(ROOT, "tools", "compliance")
    loader = importlib.machinery.SourceFileLoader("compliance", path)
    mod = importlib.util.module_from_spec(importlib.util.spec_from_loader("compliance", loader))
    loader.exec_module(mod)
    return mod


def main(_args):
    c = load_compliance()
    got = c.parse(SAMPLE)
    check([n for n, _, _ in WANT] == list(got), "test names or order: %s" % list(got))
    for name, verdict, reason in WANT:
        r = got[name]
        check(r.verdict == verdict, "%s: verdict %r, want %r" % (name, r.verdict, verdict))
        if reason is not None:
            check(r.reason == reason, "%s: reason %r, want %r" % (name, r.reason, reason))
    check(got["iSCSI.iSCSITMF.LUNResetSimpleAsync"].reason.startswith("excluded (tool bug:"),
          "exclusion reason: %r" % got["iSCSI.iSCSITMF.LUNResetSimpleAsync"].reason)
    check(c.tally(got) == [5, 3, 3, 1], "tally %s" % c.tally(got))
    check(c.tally(got, "iSCSI") == [1, 0, 0, 1], "iSCSI tally %s" % c.tally(got, "iSCSI"))
    check(c.cunit_summary(SAMPLE) == (230, 13), "summary %s" % (c.cunit_summary(SAMPLE),))
    # passing or skipping, a listed tool bug counts as usual
    alone = "Suite: iSCSITMF\n  Test: LUNResetSimpleAsync ...passed\n"
    check(c.parse(alone)["iSCSI.iSCSITMF.LUNResetSimpleAsync"].verdict == "passed",
          "an excluded test that passed is not reported passed")

    # a run stopped mid-test (timeout, crash): the open test failed, the summary is missing
    cut = SAMPLE[:SAMPLE.index("  Test: CompareAndWriteAsync")] + (
        "  Test: CompareAndWriteAsync ...    [SKIPPED] WRITESAME10 is not implemented.\n")
    r = c.parse(cut)["SCSI.MultipathIO.CompareAndWriteAsync"]
    check(r.verdict == "failed" and r.reason == c.NO_END, "broken-off test: %s" % (r,))
    check(c.cunit_summary(cut) is None, "a summary found in a broken-off run")


if __name__ == "__main__":
    run_main(main)
