/*
 * ferry_cla.h: the C ABI between ferryd and its convergence-layer plugins,
 * version 1.1. The reference is the ferry-cla-abi crate's documentation
 * (`cargo doc -p ferry-cla-abi`); this header declares the same types,
 * and a test (cla-plugins/abi/tests/c_header.rs) checks with a C compiler
 * that their sizes and field offsets are the Rust ones.
 *
 * A plugin is a shared library exporting
 *     const FerryClaDescriptor *ferry_cla_descriptor(void);
 * Bytes passed to a function are borrowed for the call: copy what you keep.
 * Callbacks may be called from any thread; the host may call transmit,
 * verdict, connect and preparing from any thread, concurrently.
 */
#ifndef FERRY_CLA_H
#define FERRY_CLA_H

#include <stddef.h>
#include <stdint.h>

#define FERRY_ABI_MAJOR 1
#define FERRY_ABI_MINOR 1

#define FERRY_OK 0
#define FERRY_ERR_PANIC (-1)
#define FERRY_ERR_INVALID (-2)
#define FERRY_ERR_FAILED (-3)

#define FERRY_VERDICT_ACCEPTED 0
#define FERRY_VERDICT_DUPLICATE 1
#define FERRY_VERDICT_NO_RESOURCES 2
#define FERRY_VERDICT_INVALID 3

#define FERRY_OUTCOME_SENT 0
#define FERRY_OUTCOME_REFUSED 1
#define FERRY_OUTCOME_FAILED 2

#define FERRY_LOG_ERROR 1
#define FERRY_LOG_WARN 2
#define FERRY_LOG_INFO 3
#define FERRY_LOG_DEBUG 4
#define FERRY_LOG_TRACE 5

/* A caller-owned buffer for an error message (UTF-8, truncated to cap). */
typedef struct FerryError {
    uint8_t *buf;
    size_t cap;
    size_t len; /* set by the callee: bytes written */
} FerryError;

/* A peer that came up. Strings are UTF-8, not NUL-terminated. */
typedef struct FerryPeerInfo {
    const uint8_t *node_id;
    size_t node_id_len;
    const uint8_t *address;
    size_t address_len;
    uint64_t mtu;      /* largest bundle taken whole; 0: unlimited or unknown */
    uint64_t rate_bps; /* bytes per second; 0: unknown */
} FerryPeerInfo;

/* The host's callbacks, handed to create; valid until destroy returns. */
typedef struct FerryHost {
    size_t size;
    void *ctx; /* the first argument of every callback */
    const uint8_t *node_id;
    size_t node_id_len;
    /* Withhold the acknowledgement to the peer until verdict(token, ...). */
    void (*bundle_received)(void *ctx, uint64_t peer, const uint8_t *data, size_t len, uint64_t token);
    void (*peer_up)(void *ctx, uint64_t peer, const FerryPeerInfo *info);
    void (*peer_down)(void *ctx, uint64_t peer);
    /* Exactly once per transmit that returned FERRY_OK. */
    void (*transmit_done)(void *ctx, uint64_t transmit, int32_t outcome);
    void (*log)(void *ctx, int32_t level, const uint8_t *msg, size_t len);
} FerryHost;

typedef struct FerryClaDescriptor {
    uint16_t abi_major;
    uint16_t abi_minor;
    uint32_t size; /* sizeof(FerryClaDescriptor) as the plugin was built */
    const char *name;
    const char *version;
    int32_t (*create)(const uint8_t *config, size_t config_len, const FerryHost *host, void **out, FerryError *err);
    int32_t (*start)(void *instance, FerryError *err);
    int32_t (*transmit)(void *instance, uint64_t peer, uint64_t transmit, const uint8_t *data, size_t len,
                        FerryError *err);
    void (*verdict)(void *instance, uint64_t token, int32_t verdict);
    int32_t (*connect)(void *instance, const uint8_t *address, size_t len, FerryError *err);
    void (*stop)(void *instance);
    void (*destroy)(void *instance);
    /* ABI 1.1; may be NULL. */
    void (*preparing)(void *instance, uint64_t peer, int64_t delta);
} FerryClaDescriptor;

const FerryClaDescriptor *ferry_cla_descriptor(void);

#endif
