/*  rmsg: the resolver's wire messages (scada.ResolverMsg, proto/scada.proto).

    Every frame a peer sends is hostile until rmsg_decode() has unpacked it
    and checked that it carries the fields its kind needs; the handlers then
    read a message they can trust. Sending is never blocking: a peer that
    does not take its messages loses them.
*/
#ifndef RMSG_H_INCLUDED
#define RMSG_H_INCLUDED

#include "scada.pb-c.h"

#include <czmq.h>
#include <stdbool.h>
#include <stddef.h>

//  Longest peer name, device or tag name accepted (bytes).
#define RMSG_NAME_MAX 255

//  Decode one frame and check it is a message the resolver serves:
//  REGISTER (name, incarnation, publish, control, offers with a device),
//  HEARTBEAT, UNIT_STATE and HELLO (name, incarnation), RESOLVE (id), or
//  ERROR. Returns the message, or NULL with the reason in `why` (whylen
//  bytes, always terminated) and, when the frame decoded, its kind in *kind
//  (else -1). Caller owns the return value (rmsg_free).
Scada__ResolverMsg *rmsg_decode(const void *data, size_t size, int *kind, char *why, size_t whylen);

//  Free a decoded message; tolerates NULL, sets *msg_p to NULL.
void rmsg_free(Scada__ResolverMsg **msg_p);

//  Send `msg` to the peer with routing id `rid` on a ROUTER, never waiting.
//  Returns 0 if handed to ZeroMQ, -1 if dropped (the peer's queue is full or
//  memory ran out).
int rmsg_send(zsock_t *router, zframe_t *rid, const Scada__ResolverMsg *msg);

//  Send an ERROR carrying `text`. Same returns.
int rmsg_send_error(zsock_t *router, zframe_t *rid, const char *text);

//  "REGISTER", "HEARTBEAT", ...; "unknown" for anything else.
const char *rmsg_kind_name(int kind);

#endif
