/*
 * Multi-step medium commands (SBC-3): COMPARE AND WRITE, ORWRITE, VERIFY with BYTCHK, WRITE SAME
 * (with UNMAP and ANCHOR), UNMAP and GET LBA STATUS.
 *
 * Each runs synchronously against the backing store and is meant for a worker thread. The
 * caller holds the LU's range lock over [lba, lba + blocks) (all of the LU for UNMAP) for the
 * commands that change the medium, which is what makes COMPARE AND WRITE atomic against every
 * other write. The outcome is left in the plan: GOOD, or a CHECK CONDITION with the sense the
 * initiator needs (MISCOMPARE with the offset, MEDIUM ERROR with the LBA, ...).
 */
#ifndef TGT_MEDIA_H
#define TGT_MEDIA_H

#include <stddef.h>
#include <stdint.h>

#include "backing.h"
#include "scsi.h"

/* data holds plan->data_out bytes of Data-Out; ORWRITE leaves the blocks it wrote there (for
 * the replica). For GET LBA STATUS, out receives up to plan->alloc_len bytes (and out_cap at
 * most) and plan->data_len says how many. */
void media_execute(struct backing *store, const struct scsi_lun *lun, struct scsi_plan *plan,
                   uint8_t *data, uint8_t *out, size_t out_cap);

#endif
