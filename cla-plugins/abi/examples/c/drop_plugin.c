/*
 * A Ferry convergence-layer plugin in C: "drop" carries bundles through
 * two folders. What the node sends to its one peer is written, durably,
 * into `outbox`; what appears in `inbox` is handed to the node, and the
 * file is removed only once the node has stored the bundle (its verdict).
 * Point one node's outbox at the other's inbox (a shared or synced folder)
 * and they exchange bundles.
 *
 *     cc -shared -fPIC -O2 -Wall -Wextra -I cla-plugins/abi/include \
 *        -o libferry_cla_drop.so cla-plugins/abi/examples/c/drop_plugin.c -lpthread
 *
 * Settings (the [cla.settings] table; this small parser takes one
 * `key = "value"` per line):
 *     inbox = "/path/in"      folder read every 100 ms
 *     outbox = "/path/out"    folder written
 *     peer = "dtn://b/"       the node at the other end
 *
 * It is an example of the ABI, not a production plugin: one peer, files
 * read whole into memory, at most MAX_PENDING bundles awaiting a verdict.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ferry_cla.h"

#define PEER 1 /* our handle for the one peer */
#define MAX_PENDING 1024
#define MAX_BUNDLE (64u << 20)

struct pending {
    uint64_t token;
    char path[4096];
};

struct drop {
    FerryHost host;
    char inbox[4096], outbox[4096], peer[1024];
    pthread_t reader;
    atomic_bool running;
    int started;
    uint64_t next_token;
    pthread_mutex_t lock; /* guards pending */
    struct pending pending[MAX_PENDING];
    size_t npending;
};

static void fail(FerryError *err, const char *msg) {
    if (!err || !err->buf) return;
    size_t n = strlen(msg);
    if (n > err->cap) n = err->cap;
    memcpy(err->buf, msg, n);
    err->len = n;
}

static void logf_(struct drop *d, int32_t level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void logf_(struct drop *d, int32_t level, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    d->host.log(d->host.ctx, level, (const uint8_t *)msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1);
}

/* `key = "value"` lines of a TOML table; 0 when the key is absent. */
static int setting(const char *toml, size_t len, const char *key, char *out, size_t cap) {
    const char *p = toml, *end = toml + len;
    size_t klen = strlen(key);
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol) eol = end;
        const char *q = p;
        while (q < eol && (*q == ' ' || *q == '\t')) q++;
        if ((size_t)(eol - q) > klen && memcmp(q, key, klen) == 0) {
            q += klen;
            while (q < eol && (*q == ' ' || *q == '\t')) q++;
            if (q < eol && *q == '=') {
                const char *open = memchr(q, '"', (size_t)(eol - q));
                const char *close = open ? memchr(open + 1, '"', (size_t)(eol - open - 1)) : NULL;
                if (open && close && (size_t)(close - open - 1) < cap) {
                    memcpy(out, open + 1, (size_t)(close - open - 1));
                    out[close - open - 1] = 0;
                    return 1;
                }
            }
        }
        p = eol + 1;
    }
    return 0;
}

static int32_t drop_create(const uint8_t *config, size_t len, const FerryHost *host, void **out, FerryError *err) {
    struct drop *d = calloc(1, sizeof *d);
    if (!d) {
        fail(err, "drop: out of memory");
        return FERRY_ERR_FAILED;
    }
    d->host = *host;
    const char *toml = (const char *)config;
    if (!setting(toml, len, "inbox", d->inbox, sizeof d->inbox) ||
        !setting(toml, len, "outbox", d->outbox, sizeof d->outbox) ||
        !setting(toml, len, "peer", d->peer, sizeof d->peer)) {
        free(d);
        fail(err, "drop plugin settings: `inbox`, `outbox` and `peer` are required (key = \"value\")");
        return FERRY_ERR_INVALID;
    }
    pthread_mutex_init(&d->lock, NULL);
    *out = d;
    return FERRY_OK;
}

/* Reads one file whole; NULL when it cannot (or it is too large). */
static uint8_t *slurp(const char *path, size_t *len) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return NULL;
    struct stat st;
    uint8_t *buf = NULL;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size <= MAX_BUNDLE) {
        buf = malloc(st.st_size ? (size_t)st.st_size : 1);
        size_t got = 0;
        while (buf && got < (size_t)st.st_size) {
            ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
            if (n <= 0) {
                free(buf);
                buf = NULL;
                break;
            }
            got += (size_t)n;
        }
        *len = got;
    }
    close(fd);
    return buf;
}

static int is_pending(struct drop *d, const char *path) {
    pthread_mutex_lock(&d->lock);
    int found = 0;
    for (size_t i = 0; i < d->npending && !found; i++) found = strcmp(d->pending[i].path, path) == 0;
    pthread_mutex_unlock(&d->lock);
    return found;
}

static void *reader(void *arg) {
    struct drop *d = arg;
    while (atomic_load(&d->running)) {
        DIR *dir = opendir(d->inbox);
        struct dirent *e;
        while (dir && (e = readdir(dir)) != NULL && atomic_load(&d->running)) {
            size_t n = strlen(e->d_name);
            if (n < 7 || strcmp(e->d_name + n - 7, ".bundle") != 0) continue; /* .tmp, ., .. */
            char path[4096];
            if (snprintf(path, sizeof path, "%s/%s", d->inbox, e->d_name) >= (int)sizeof path) continue;
            if (is_pending(d, path)) continue;
            size_t len = 0;
            uint8_t *data = slurp(path, &len);
            if (!data) continue;
            pthread_mutex_lock(&d->lock);
            int room = d->npending < MAX_PENDING;
            uint64_t token = ++d->next_token;
            if (room) {
                d->pending[d->npending].token = token;
                strcpy(d->pending[d->npending].path, path);
                d->npending++;
            }
            pthread_mutex_unlock(&d->lock);
            if (room) d->host.bundle_received(d->host.ctx, PEER, data, len, token);
            free(data);
        }
        if (dir) closedir(dir);
        usleep(100 * 1000);
    }
    return NULL;
}

static int32_t drop_start(void *instance, FerryError *err) {
    struct drop *d = instance;
    atomic_store(&d->running, 1);
    if (pthread_create(&d->reader, NULL, reader, d) != 0) {
        fail(err, "drop: cannot start the reader thread");
        return FERRY_ERR_FAILED;
    }
    d->started = 1;
    char address[4200];
    int alen = snprintf(address, sizeof address, "drop://%s", d->outbox);
    FerryPeerInfo info = {(const uint8_t *)d->peer, strlen(d->peer), (const uint8_t *)address,
                          alen > 0 ? (size_t)alen : 0, 0, 0};
    d->host.peer_up(d->host.ctx, PEER, &info);
    logf_(d, FERRY_LOG_INFO, "drop: reading %s, writing %s for %s", d->inbox, d->outbox, d->peer);
    return FERRY_OK;
}

/* Write to a temporary name, fsync, rename, fsync the folder: once this
 * returns the bundle is durable in the outbox, so it counts as sent. */
static int32_t drop_transmit(void *instance, uint64_t peer, uint64_t transmit, const uint8_t *data, size_t len,
                             FerryError *err) {
    struct drop *d = instance;
    if (peer != PEER) {
        fail(err, "drop: unknown peer");
        return FERRY_ERR_INVALID;
    }
    char tmp[4200], dest[4200];
    snprintf(tmp, sizeof tmp, "%s/%d-%llu.tmp", d->outbox, (int)getpid(), (unsigned long long)transmit);
    snprintf(dest, sizeof dest, "%s/%d-%llu.bundle", d->outbox, (int)getpid(), (unsigned long long)transmit);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    size_t done = 0;
    while (fd >= 0 && done < len) {
        ssize_t n = write(fd, data + done, len - done);
        if (n <= 0) break;
        done += (size_t)n;
    }
    int ok = fd >= 0 && done == len && fsync(fd) == 0;
    if (fd >= 0) close(fd);
    ok = ok && rename(tmp, dest) == 0;
    int dfd = ok ? open(d->outbox, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    ok = ok && dfd >= 0 && fsync(dfd) == 0;
    if (dfd >= 0) close(dfd);
    if (!ok) {
        unlink(tmp);
        logf_(d, FERRY_LOG_WARN, "drop: cannot write %s: %s", dest, strerror(errno));
    }
    /* Queued and finished at once: the outcome follows right away. */
    d->host.transmit_done(d->host.ctx, transmit, ok ? FERRY_OUTCOME_SENT : FERRY_OUTCOME_FAILED);
    return FERRY_OK;
}

/* The node stored the bundle (or has it): the file may go. Otherwise it
 * stays, and is offered again at the next look. */
static void drop_verdict(void *instance, uint64_t token, int32_t verdict) {
    struct drop *d = instance;
    pthread_mutex_lock(&d->lock);
    for (size_t i = 0; i < d->npending; i++) {
        if (d->pending[i].token != token) continue;
        if (verdict == FERRY_VERDICT_ACCEPTED || verdict == FERRY_VERDICT_DUPLICATE) unlink(d->pending[i].path);
        else if (verdict == FERRY_VERDICT_INVALID) {
            char bad[4200];
            snprintf(bad, sizeof bad, "%s.rejected", d->pending[i].path);
            rename(d->pending[i].path, bad);
        }
        d->pending[i] = d->pending[--d->npending];
        break;
    }
    pthread_mutex_unlock(&d->lock);
}

static int32_t drop_connect(void *instance, const uint8_t *address, size_t len, FerryError *err) {
    (void)instance, (void)address, (void)len;
    fail(err, "drop: has one fixed peer; nothing to connect");
    return FERRY_ERR_INVALID;
}

static void drop_stop(void *instance) {
    struct drop *d = instance;
    if (!d->started) return;
    atomic_store(&d->running, 0);
    pthread_join(d->reader, NULL);
    d->started = 0;
    d->host.peer_down(d->host.ctx, PEER);
}

static void drop_destroy(void *instance) {
    struct drop *d = instance;
    drop_stop(d);
    pthread_mutex_destroy(&d->lock);
    free(d);
}

static const FerryClaDescriptor DESCRIPTOR = {
    .abi_major = FERRY_ABI_MAJOR,
    .abi_minor = FERRY_ABI_MINOR,
    .size = sizeof(FerryClaDescriptor),
    .name = "drop",
    .version = "0.1.0",
    .create = drop_create,
    .start = drop_start,
    .transmit = drop_transmit,
    .verdict = drop_verdict,
    .connect = drop_connect,
    .stop = drop_stop,
    .destroy = drop_destroy,
    .preparing = NULL,
};

const FerryClaDescriptor *ferry_cla_descriptor(void) { return &DESCRIPTOR; }
