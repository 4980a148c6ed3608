/*
 * Third-party copy (SPC-4 6.3 / 6.18): EXTENDED COPY (LID1) between the LUs of one target and
 * RECEIVE COPY RESULTS (COPY STATUS, OPERATING PARAMETERS), with the Third-party Copy VPD page.
 *
 * Pure: no threads, no globals, no locks. The caller parses the parameter list with
 * xcopy_parse(), carries the segments out with xcopy_step() (or xcopy_execute()) on a worker
 * thread while it holds the destination ranges, and keeps a struct xcopy_history per I_T nexus
 * and LU for COPY STATUS, serialising access to it.
 *
 * Formats parsed (all integers big-endian, offsets in bytes):
 *
 * EXTENDED COPY (LID1) parameter list
 *   0      LIST IDENTIFIER
 *   1      bit 5 STR (ignored: a hint), bits 4-3 LIST ID USAGE, bits 2-0 PRIORITY (ignored)
 *   2-3    CSCD (target) DESCRIPTOR LIST LENGTH
 *   8-11   SEGMENT DESCRIPTOR LIST LENGTH
 *   12-15  INLINE DATA LENGTH (must be 0: no segment type that reads inline data is supported)
 *   16-    the target descriptors, then the segment descriptors, then inline data
 *
 * Identification descriptor target (CSCD) descriptor, type E4h, 32 bytes
 *   0      E4h
 *   1      bits 7-6 LU ID TYPE (ignored: E4h has no LU IDENTIFIER for it to qualify), bit 5
 *          NUL, bits 4-0 PERIPHERAL DEVICE TYPE
 *   2-3    RELATIVE INITIATOR PORT IDENTIFIER (ignored: every port reaches every LU)
 *   4-27   a designation descriptor as VPD page 83h carries it: 4 code set, 5 association and
 *          designator type, 7 designator length (at most 20), 8- designator. Only the NAA
 *          designator (binary, associated with the LU, 16 bytes) an LU of lus[] reports names
 *          a reachable LU.
 *   28-31  block device parameters: 28 bit 2 PAD, 29-31 DISK BLOCK LENGTH (0 or the LU's)
 *
 * Block device to block device segment descriptor, type 02h, 28 bytes
 *   0      02h
 *   1      bit 1 DC, bit 0 CAT (both moot: source and destination block sizes must be equal)
 *   2-3    DESCRIPTOR LENGTH (0018h)
 *   4-5    SOURCE CSCD DESCRIPTOR ID, 6-7 DESTINATION CSCD DESCRIPTOR ID (target indexes)
 *   10-11  NUMBER OF BLOCKS
 *   12-19  SOURCE LBA, 20-27 DESTINATION LBA
 *
 * Errors found in the list before any data moves come back as ILLEGAL REQUEST with a field
 * pointer into the parameter list; errors about a copy target (unknown designator, NUL, a
 * missing target index, an LBA beyond the end) as COPY ABORTED with the segment number in
 * bytes 2-3 of the COMMAND-SPECIFIC INFORMATION field and a segment pointer (SD = 1) to the
 * offending field of the segment descriptor, as the copy manager would report them while
 * processing that segment.
 */
#ifndef TGT_XCOPY_H
#define TGT_XCOPY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backing.h"
#include "scsi.h"

#define XCOPY_OPCODE          0x83 /* EXTENDED COPY; service action 00h = LID1 */
#define XCOPY_RCR_OPCODE      0x84 /* RECEIVE COPY RESULTS */
#define XCOPY_SA_LID1         0x00
#define XCOPY_RCR_COPY_STATUS 0x00
#define XCOPY_RCR_OP_PARAMS   0x03

/* Limits, as OPERATING PARAMETERS and the Third-party Copy VPD page report them. */
#define XCOPY_HEADER_LEN              16
#define XCOPY_TARGET_DESC_LEN         32
#define XCOPY_SEGMENT_DESC_LEN        28
#define XCOPY_MAX_TARGET_DESCRIPTORS  8
#define XCOPY_MAX_SEGMENT_DESCRIPTORS 16
/* The longest list of the supported descriptors at their maximum counts. */
#define XCOPY_MAX_DESC_LIST_LEN                                                                    \
    (XCOPY_MAX_TARGET_DESCRIPTORS * XCOPY_TARGET_DESC_LEN +                                        \
     XCOPY_MAX_SEGMENT_DESCRIPTORS * XCOPY_SEGMENT_DESC_LEN)
/* Largest PARAMETER LIST LENGTH a valid list needs; the planner may refuse longer ones. */
#define XCOPY_MAX_PARAM_LEN (XCOPY_HEADER_LEN + XCOPY_MAX_DESC_LIST_LEN)
/* Bytes one segment may move: every segment of a 512-byte LU, 8192 blocks of a 4 KiB one.
 * With the segment count it bounds how long one command holds a worker. */
#define XCOPY_MAX_SEGMENT_BYTES (32u << 20)
/* xcopy_step() moves at most this much per call, through a buffer of this size. */
#define XCOPY_STEP_BYTES (1u << 20)
/* Copies a history remembers (and at most this many run at once per I_T nexus). */
#define XCOPY_HISTORY_LEN 8

/* Responses */
#define XCOPY_OP_PARAMS_LEN   46 /* OPERATING PARAMETERS with two descriptor type codes */
#define XCOPY_COPY_STATUS_LEN 12
#define XCOPY_VPD_PAGE        0x8f /* Third-party Copy */
#define XCOPY_VPD_LEN         100

/* Sense this module reports beyond scsi.h's */
#define XCOPY_SENSE_COPY_ABORTED         0xa
#define XCOPY_ASC_NO_ADDITIONAL_SENSE    0x0000
#define XCOPY_ASC_OPERATION_IN_PROGRESS  0x0016
#define XCOPY_ASC_TARGET_NOT_REACHABLE   0x0d02 /* COPY TARGET DEVICE NOT REACHABLE */
#define XCOPY_ASC_INCORRECT_TARGET_TYPE  0x0d03 /* INCORRECT COPY TARGET DEVICE TYPE */
#define XCOPY_ASC_TOO_MANY_TARGETS       0x2606 /* TOO MANY TARGET DESCRIPTORS */
#define XCOPY_ASC_UNSUPPORTED_TARGET     0x2607 /* UNSUPPORTED TARGET DESCRIPTOR TYPE CODE */
#define XCOPY_ASC_TOO_MANY_SEGMENTS      0x2608 /* TOO MANY SEGMENT DESCRIPTORS */
#define XCOPY_ASC_UNSUPPORTED_SEGMENT    0x2609 /* UNSUPPORTED SEGMENT DESCRIPTOR TYPE CODE */
#define XCOPY_ASC_INLINE_DATA_EXCEEDED   0x260b /* INLINE DATA LENGTH EXCEEDED */
#define XCOPY_ASC_INVALID_COPY_OPERATION 0x260c /* INVALID OPERATION FOR COPY SOURCE OR DEST. */
#define XCOPY_ASC_INSUFFICIENT_RESOURCES 0x5503

/* The LUs an EXTENDED COPY may name: those of the same target, found by the NAA designator an
 * identification descriptor (E4h) carries. */
struct xcopy_lu {
    const struct scsi_lun *info;
    struct backing *store;
};

/* One block-to-block segment: blocks of lus[src] from src_lba onto lus[dst] at dst_lba (the
 * two LUs have the same block size). The caller locks [dst_lba, dst_lba + blocks) of lus[dst]
 * (and keeps lus[src] from changing under the copy if it wants a consistent image). */
struct xcopy_segment {
    size_t src, dst; /* indexes into the lus array */
    uint64_t src_lba, dst_lba;
    uint32_t blocks;
};

/* LIST ID USAGE */
enum xcopy_list_usage {
    XCOPY_LIST_HOLD = 0,    /* keep COPY STATUS after completion until it is read */
    XCOPY_LIST_NO_HOLD = 2, /* list identifier valid while the copy runs, nothing kept */
    XCOPY_LIST_NONE = 3,    /* no list identifier (SNLID) */
};

struct xcopy_list {
    uint8_t id;
    enum xcopy_list_usage usage;
};

/* Parses and validates an EXTENDED COPY (LID1) parameter list of len bytes (the PARAMETER LIST
 * LENGTH of the CDB, bytes 10-13) against lus[0..lu_count) and the limits above; segs has room
 * for max segments (XCOPY_MAX_SEGMENT_DESCRIPTORS is enough; fewer lowers the limit). Returns
 * the number of segments (0: nothing to copy, e.g. a parameter list length of 0, which is not
 * an error), or -1 with plan set to the CHECK CONDITION to report. *list receives the LIST
 * IDENTIFIER and its usage (XCOPY_LIST_NONE for an empty list). */
int xcopy_parse(const uint8_t *param, size_t len, const struct xcopy_lu *lus, size_t lu_count,
                struct xcopy_segment *segs, size_t max, struct xcopy_list *list,
                struct scsi_plan *plan);

/* How far a copy got. */
struct xcopy_progress {
    uint16_t segments; /* segments completely copied */
    uint64_t bytes;    /* bytes written to destinations */
};

/* Where a copy stands between steps; all zero before the first. */
struct xcopy_cursor {
    int seg;           /* segment being copied */
    uint64_t seg_done; /* bytes of it copied */
    struct xcopy_progress done;
};

/* What one step wrote: blocks [lba, lba + blocks) of lus[lu], the bytes in data (the step
 * buffer), so the caller can hand the same change to the replica. */
struct xcopy_chunk {
    int seg; /* the segment it belongs to */
    size_t lu;
    uint64_t lba;
    uint32_t blocks;
    uint32_t block_size;
    bool fua; /* the destination's write cache is off: the write went to stable storage */
    const uint8_t *data;
};

/* Copies the next piece of the segments (at most XCOPY_STEP_BYTES, within one segment) through
 * buf (XCOPY_STEP_BYTES bytes, 4096-aligned for O_DIRECT stores). Returns 1 with *chunk
 * describing the write, 0 when every segment is done (plan untouched), or -1 with plan set to
 * COPY ABORTED (the medium's ASC, the segment number in the COMMAND-SPECIFIC INFORMATION) and
 * cur->done telling how far the copy got. A segment whose ranges overlap on one LU is copied
 * back to front when the destination lies above the source, so the result is as if the
 * source had been read whole first. */
int xcopy_step(const struct xcopy_lu *lus, const struct xcopy_segment *segs, int count,
               struct xcopy_cursor *cur, uint8_t *buf, struct xcopy_chunk *chunk,
               struct scsi_plan *plan);

/* Called after each chunk is written; non-zero (-errno) aborts the copy with COPY ABORTED,
 * WRITE ERROR (e.g. the replica failed). */
typedef int (*xcopy_written_fn)(void *ctx, const struct xcopy_chunk *chunk);

/* Carries all segments out (xcopy_step() in a loop with its own buffer). Sets plan's status to
 * GOOD, or to the CHECK CONDITION of the failure; *done receives how far it got. written may
 * be NULL. */
void xcopy_execute(const struct xcopy_lu *lus, const struct xcopy_segment *segs, int count,
                   xcopy_written_fn written, void *ctx, struct scsi_plan *plan,
                   struct xcopy_progress *done);

/* Copies of one I_T nexus (and LU) that COPY STATUS can report: running ones and finished ones
 * with LIST ID USAGE 00b not yet read. Plain data: zero it (xcopy_history_init) at nexus
 * creation and on nexus loss or LU reset. */
struct xcopy_history_entry {
    bool used;
    bool running;
    bool failed;
    uint8_t list_id;
    uint32_t seq; /* age, for replacing the oldest finished entry */
    struct xcopy_progress done;
};

struct xcopy_history {
    struct xcopy_history_entry e[XCOPY_HISTORY_LEN];
    uint32_t seq;
};

void xcopy_history_init(struct xcopy_history *h);
/* Notes a copy about to run (after xcopy_parse succeeded). Returns 0, or -1 with plan set:
 * OPERATION IN PROGRESS when a running copy uses the same list identifier, INSUFFICIENT
 * RESOURCES when XCOPY_HISTORY_LEN copies run already. Lists without identifier always pass. */
int xcopy_history_begin(struct xcopy_history *h, const struct xcopy_list *list,
                        struct scsi_plan *plan);
/* Records how a copy ended. A held list (usage 00b) stays for COPY STATUS, replacing the
 * oldest finished entry when the history is full; other lists are forgotten. Works without a
 * preceding xcopy_history_begin() too. */
void xcopy_history_finish(struct xcopy_history *h, const struct xcopy_list *list, bool failed,
                          const struct xcopy_progress *done);

/* RECEIVE COPY RESULTS (cdb: 16 bytes): OPERATING PARAMETERS, or COPY STATUS of the LIST
 * IDENTIFIER in byte 2 from h (NULL: no copies known). A finished copy's status is forgotten
 * once reported. Output is clipped to the ALLOCATION LENGTH (bytes 10-13) and buflen, the
 * header length fields describe the full response; plan->data_len says how many bytes were
 * placed. Unknown list identifier: INVALID FIELD IN CDB (byte 2); other service actions:
 * INVALID FIELD IN CDB (byte 1). */
void xcopy_receive_results(const uint8_t *cdb, struct xcopy_history *h, uint8_t *buf, size_t buflen,
                           struct scsi_plan *plan);

/* Third-party Copy VPD page (8Fh) from byte 2 on (the caller sets bytes 0 and 1): supported
 * commands, parameter data, supported descriptors, supported CSCD IDs, general copy
 * operations. d needs XCOPY_VPD_LEN bytes; returns that length. */
size_t xcopy_vpd_page(uint8_t *d);

#endif
