/* Shared by the rdma protocol codecs (change.c, hello.c); not part of the public header. */
#ifndef TWL_RDMA_PROTO_INTERNAL_H
#define TWL_RDMA_PROTO_INTERNAL_H

#include <stddef.h>

/* Writes the reason into err (when not NULL) and returns rc, so a refusal is one statement. */
int twl_rdma_proto_fail(int rc, char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
