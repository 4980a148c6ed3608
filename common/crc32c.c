#include "twl_common.h"

#include <isa-l/crc.h>

/* ISA-L's crc32_iscsi neither inverts its seed nor its result; CRC32C as iSCSI defines it does
 * both, so the running value is kept inverted between calls. */
uint32_t twl_crc32c_update(uint32_t crc, const void *buf, size_t len)
{
    uint32_t running = ~crc;
    const unsigned char *p = buf;
    while (len > 0) {
        int chunk = len > (1u << 30) ? (1 << 30) : (int)len;
        running = crc32_iscsi((unsigned char *)p, chunk, running);
        p += chunk;
        len -= (size_t)chunk;
    }
    return ~running;
}

uint32_t twl_crc32c(const void *buf, size_t len)
{
    return twl_crc32c_update(0, buf, len);
}
