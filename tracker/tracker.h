/*
 * twinlun tracker: persistent memory for the logs that must survive a crash.
 *
 * Public names are prefixed trk_. This is the one place that talks to libpmem2 (DESIGN.md
 * section 3): everything else sees a mapped file and a persist call, so moving to another kind
 * of persistent memory changes this part only.
 *
 * A mapping is a file (on a DAX file system: real persistent memory; anywhere else: the page
 * cache) mapped shared. trk_pmem_persist makes a range durable: CPU cache flushes on pmem,
 * msync elsewhere. Once trk_pmem_persist has returned, the range survives a crash of the
 * process and of the machine; before it, a process crash keeps what was stored (the mapping is
 * shared) but a machine crash may not.
 */
#ifndef TWL_TRACKER_H
#define TWL_TRACKER_H

#include <stdbool.h>
#include <stddef.h>

struct trk_pmem;

/*
 * Maps the file at path, creating it (mode 0600) or resizing it to len bytes first; bytes new
 * to the file read as zeros, bytes already there are kept. Returns 0 or a negative errno
 * (logged with the path).
 */
int trk_pmem_open(const char *path, size_t len, struct trk_pmem **out);
void *trk_pmem_addr(const struct trk_pmem *m);
size_t trk_pmem_len(const struct trk_pmem *m);
/* True when the file is on persistent memory (persisting is a cache flush, not an msync). */
bool trk_pmem_is_pmem(const struct trk_pmem *m);
/* Makes [addr, addr + len) inside the mapping durable. */
void trk_pmem_persist(const struct trk_pmem *m, const void *addr, size_t len);
/* Unmaps and closes. NULL is fine. */
void trk_pmem_close(struct trk_pmem *m);

#endif
