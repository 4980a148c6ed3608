/* Unit tests of the handshake's MAC: the construction against values computed independently
 * (Python's hmac module over the same bytes), and that every input it covers changes it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "rdma.h"

static const char hello[] = "hello, partner";
static uint8_t sender_nonce[TWL_RDMA_NONCE_LEN], receiver_nonce[TWL_RDMA_NONCE_LEN];

static int setup(void **state)
{
    (void)state;
    for (unsigned i = 0; i < TWL_RDMA_NONCE_LEN; i++) {
        sender_nonce[i] = (uint8_t)(0x10 + i);
        receiver_nonce[i] = (uint8_t)(0x20 + i);
    }
    return 0;
}

static void mac_of(const char *secret, bool connected, const uint8_t *sn, const uint8_t *rn,
                   const void *msg, size_t len, uint8_t out[TWL_RDMA_MAC_LEN])
{
    assert_int_equal(twl_rdma_hello_mac(secret, connected, sn, rn, msg, len, out), 0);
}

/* HMAC-SHA256(key, "twinlun backplane hello 1" || role || sender nonce || receiver nonce ||
 * hello), as python3 -c 'import hmac, hashlib; hmac.new(key, msg, hashlib.sha256)' gives it. */
static void test_known_values(void **state)
{
    (void)state;
    static const uint8_t with_secret[TWL_RDMA_MAC_LEN] = {
        0xf3, 0xba, 0x8b, 0x72, 0x67, 0x81, 0x00, 0xc1, 0xd4, 0x56, 0xf5,
        0x36, 0x36, 0x79, 0xdf, 0xe7, 0x9c, 0x27, 0xfa, 0x9f, 0x24, 0xb3,
        0x76, 0xba, 0x39, 0xba, 0xe4, 0x09, 0x4b, 0x37, 0xc6, 0x29};
    static const uint8_t no_secret[TWL_RDMA_MAC_LEN] = {
        0xe4, 0xd5, 0x5f, 0x2e, 0x9d, 0x02, 0x56, 0x29, 0x34, 0xb1, 0xd8,
        0x07, 0x23, 0x69, 0x76, 0x4b, 0xab, 0x24, 0x60, 0x5f, 0x6b, 0xd5,
        0xee, 0x28, 0x07, 0x37, 0x16, 0xb1, 0x37, 0x94, 0xd1, 0xc9};
    uint8_t mac[TWL_RDMA_MAC_LEN];
    mac_of("correct horse battery", true, sender_nonce, receiver_nonce, hello, strlen(hello), mac);
    assert_memory_equal(mac, with_secret, sizeof(mac));
    mac_of(NULL, false, sender_nonce, receiver_nonce, hello, strlen(hello), mac);
    assert_memory_equal(mac, no_secret, sizeof(mac));
    mac_of("", false, sender_nonce, receiver_nonce, hello, strlen(hello), mac);
    assert_memory_equal(mac, no_secret, sizeof(mac));
}

static void test_every_input_counts(void **state)
{
    (void)state;
    const char *secret = "correct horse battery";
    uint8_t base[TWL_RDMA_MAC_LEN], other[TWL_RDMA_MAC_LEN];
    mac_of(secret, true, sender_nonce, receiver_nonce, hello, strlen(hello), base);

    /* the same inputs, the same MAC */
    mac_of(secret, true, sender_nonce, receiver_nonce, hello, strlen(hello), other);
    assert_memory_equal(base, other, sizeof(base));
    /* a different secret, or none */
    mac_of("correct horse batterz", true, sender_nonce, receiver_nonce, hello, strlen(hello),
           other);
    assert_memory_not_equal(base, other, sizeof(base));
    mac_of(NULL, true, sender_nonce, receiver_nonce, hello, strlen(hello), other);
    assert_memory_not_equal(base, other, sizeof(base));
    /* the other role: a hello reflected back at its sender */
    mac_of(secret, false, sender_nonce, receiver_nonce, hello, strlen(hello), other);
    assert_memory_not_equal(base, other, sizeof(base));
    /* the nonces swapped, or a fresh receiver nonce: a replayed hello */
    mac_of(secret, true, receiver_nonce, sender_nonce, hello, strlen(hello), other);
    assert_memory_not_equal(base, other, sizeof(base));
    uint8_t fresh[TWL_RDMA_NONCE_LEN];
    memcpy(fresh, receiver_nonce, sizeof(fresh));
    fresh[TWL_RDMA_NONCE_LEN - 1] ^= 0x80;
    mac_of(secret, true, sender_nonce, fresh, hello, strlen(hello), other);
    assert_memory_not_equal(base, other, sizeof(base));
    /* one bit of the hello, or its length */
    char changed[sizeof(hello)];
    memcpy(changed, hello, sizeof(hello));
    changed[3] ^= 0x01;
    mac_of(secret, true, sender_nonce, receiver_nonce, changed, strlen(changed), other);
    assert_memory_not_equal(base, other, sizeof(base));
    mac_of(secret, true, sender_nonce, receiver_nonce, hello, strlen(hello) - 1, other);
    assert_memory_not_equal(base, other, sizeof(base));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_known_values, setup),
        cmocka_unit_test_setup(test_every_input_counts, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
