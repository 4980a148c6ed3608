/*
 * Command buffers from one memory region the backplane registers with the RDMA device, so a
 * replicated write's data goes to the partner straight from the buffer the iSCSI receive path
 * filled (no copy). Power-of-two size classes from 4 KiB; a freed buffer goes back to its
 * class. When the region is used up (or absent) buffers come from the heap, and the backplane
 * copies those.
 */
#ifndef TGT_BUFPOOL_H
#define TGT_BUFPOOL_H

#include <stddef.h>
#include <stdint.h>

struct bufpool;

/* bytes 0: no pool (every buffer from the heap). Returns 0 or -errno. */
int bufpool_create(size_t bytes, struct bufpool **out);
void bufpool_destroy(struct bufpool *p);
/* The region, for registration. */
void *bufpool_base(const struct bufpool *p);
size_t bufpool_size(const struct bufpool *p);
/* A 4096-aligned buffer of at least len bytes (len 0 gives 4096), or NULL. p may be NULL. */
uint8_t *bufpool_alloc(struct bufpool *p, size_t len);
void bufpool_free(struct bufpool *p, uint8_t *buf);

#endif
