/* proto/tensord_frame.h — the wire's framing, beside the message contract (tensord.proto).
**
** Every frame, both ways, is a fixed header, then meta_len bytes of one protobuf message, then
** data_len raw bytes (docs/DESIGN.md: Wire protocol). The header is
**     u32 meta_len, u64 data_len, big-endian.
** This is the one definition of its size: the server's net (which reads headers) and rpc (which
** writes reply frames) and the C client (both) include it; it includes nothing, so any layer
** that speaks the wire may. The Python client packs the same header with struct ">IQ".
*/
#ifndef TENSORD_FRAME_H
#define TENSORD_FRAME_H

#define TD_FRAME_HEADER_BYTES 12 /* 4-byte meta_len + 8-byte data_len */

#endif
