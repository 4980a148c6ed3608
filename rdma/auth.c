/* The handshake's MAC (rdma.h, twl_rdma_hello_mac): HMAC-SHA256 through OpenSSL's EVP_MAC. */
#include "rdma.h"

#include <errno.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <string.h>

#define MAC_LABEL "twinlun backplane hello 1"

int twl_rdma_hello_mac(const char *secret, bool sender_connected,
                       const uint8_t sender_nonce[TWL_RDMA_NONCE_LEN],
                       const uint8_t receiver_nonce[TWL_RDMA_NONCE_LEN], const void *hello,
                       size_t len, uint8_t mac[TWL_RDMA_MAC_LEN])
{
    /* EVP_MAC_init takes a NULL key as "keep the previous one": an empty secret is passed as
     * a zero-length key at a valid address. */
    static const unsigned char no_key[1];
    const unsigned char *key = secret && *secret ? (const unsigned char *)secret : no_key;
    size_t key_len = secret ? strlen(secret) : 0;
    uint8_t role = sender_connected ? 'C' : 'L';
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                           OSSL_PARAM_construct_end()};
    size_t out_len = 0;
    int rc = -EIO;

    EVP_MAC *alg = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (alg == NULL)
        return -ENOSYS;
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(alg);
    if (ctx == NULL) {
        rc = -ENOMEM;
        goto out_alg;
    }
    if (EVP_MAC_init(ctx, key, key_len, params) &&
        EVP_MAC_update(ctx, (const unsigned char *)MAC_LABEL, strlen(MAC_LABEL)) &&
        EVP_MAC_update(ctx, &role, 1) && EVP_MAC_update(ctx, sender_nonce, TWL_RDMA_NONCE_LEN) &&
        EVP_MAC_update(ctx, receiver_nonce, TWL_RDMA_NONCE_LEN) &&
        EVP_MAC_update(ctx, hello, len) && EVP_MAC_final(ctx, mac, &out_len, TWL_RDMA_MAC_LEN) &&
        out_len == TWL_RDMA_MAC_LEN)
        rc = 0;
    EVP_MAC_CTX_free(ctx);
out_alg:
    EVP_MAC_free(alg);
    return rc;
}
