/* tests/fuzz/seeds/record_rpc_wrap.c — records the frames tests/rpc/test_rpc.c hands to rpc, so
** its requests become fuzz seeds too.
**
** record_seeds.py links test_rpc.o with this file and `-Wl,--wrap=td_rpc_peer_new
** -Wl,--wrap=td_rpc_handle -Wl,--wrap=td_rpc_peer_close`: every peer the tests open gets a file
** $TD_RECORD_DIR/rpc-<pid>-<seq>, and every frame handed to it is appended there as it would
** cross the wire (the 12-byte header, meta, data), so the converter treats these files exactly
** like the daemon's recorded connections. The tests run unchanged; only the file writes are added.
*/
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "rpc/rpc.h"

#define MAX_PEERS 64

int __real_td_rpc_peer_new(struct td_rpc_peer **out, struct td_rpc_server *srv,
                           td_rpc_reply_fn *reply, void *user);
void __real_td_rpc_peer_close(struct td_rpc_peer *p);
void __real_td_rpc_handle(struct td_rpc_peer *p, const uint8_t *meta, size_t meta_len, void *data,
                          size_t data_len);
int __wrap_td_rpc_peer_new(struct td_rpc_peer **out, struct td_rpc_server *srv,
                           td_rpc_reply_fn *reply, void *user);
void __wrap_td_rpc_peer_close(struct td_rpc_peer *p);
void __wrap_td_rpc_handle(struct td_rpc_peer *p, const uint8_t *meta, size_t meta_len, void *data,
                          size_t data_len);

static struct {
    struct td_rpc_peer *peer;
    int seq;
} peers[MAX_PEERS];
static int next_seq;

int __wrap_td_rpc_peer_new(struct td_rpc_peer **out, struct td_rpc_server *srv,
                           td_rpc_reply_fn *reply, void *user)
{
    int rc = __real_td_rpc_peer_new(out, srv, reply, user);
    if (rc != 0) {
        return rc;
    }
    for (int i = 0; i < MAX_PEERS; i++) {
        if (peers[i].peer == NULL) {
            peers[i].peer = *out;
            peers[i].seq = ++next_seq;
            break;
        }
    }
    return rc;
}

void __wrap_td_rpc_peer_close(struct td_rpc_peer *p)
{
    for (int i = 0; i < MAX_PEERS; i++) {
        if (peers[i].peer == p) {
            peers[i].peer = NULL;
        }
    }
    __real_td_rpc_peer_close(p);
}

void __wrap_td_rpc_handle(struct td_rpc_peer *p, const uint8_t *meta, size_t meta_len, void *data,
                          size_t data_len)
{
    const char *dir = getenv("TD_RECORD_DIR");
    for (int i = 0; dir != NULL && i < MAX_PEERS; i++) {
        if (peers[i].peer != p) {
            continue;
        }
        char path[4096];
        snprintf(path, sizeof path, "%s/rpc-%d-%06d", dir, (int)getpid(), peers[i].seq);
        FILE *f = fopen(path, "ab");
        if (f == NULL) {
            break;
        }
        uint8_t h[12];
        for (int k = 0; k < 4; k++) {
            h[k] = (uint8_t)(meta_len >> (8 * (3 - k))); /* u32 meta_len, big-endian */
        }
        for (int k = 0; k < 8; k++) {
            h[4 + k] = (uint8_t)((uint64_t)data_len >> (8 * (7 - k))); /* u64 data_len */
        }
        fwrite(h, 1, sizeof h, f);
        if (meta_len > 0) {
            fwrite(meta, 1, meta_len, f);
        }
        if (data_len > 0) {
            fwrite(data, 1, data_len, f);
        }
        fclose(f);
        break;
    }
    /* td_rpc_handle takes ownership of data; it is handed on untouched. */
    __real_td_rpc_handle(p, meta, meta_len, data, data_len);
}
