/*  serial_actor: Modbus RTU on a serial port, through libmodbus, in a thread.

    libmodbus blocks in select() while it waits for a reply, so each serial
    channel gets an actor of its own; the I/O server's loop never waits on the
    port. The engine sends commands on the actor's pipe and reads results from
    it, all as string + integer frames (zsock_send pictures):

      engine -> actor
        "OPEN"                                  open and configure the port
        "CLOSE"                                 close it (de-assign)
        "REQ" serial_req_t                      one request (a struct frame: both
                                                ends are this process)
      actor -> engine (tid: a uint16_t frame in host order)
        "OPENED" | "OPEN_FAILED" reason
        "REPLY" tid adu                         a Modbus TCP ADU built from the
                                                result (normal or exception), so
                                                the engine decodes RTU and TCP alike
        "TIMEOUT" tid                           no reply in time
        "WTIMEOUT" tid                          the port did not become writable in
                                                time (a stalled line): not sent
        "BAD" tid reason                        a reply that was unusable (CRC,
                                                wrong length): counted, not fatal
        "ERROR" tid reason                      the port failed (I/O error)
*/
#ifndef SERIAL_ACTOR_H_INCLUDED
#define SERIAL_ACTOR_H_INCLUDED

#include "site.h"

#include <czmq.h>

typedef struct {
    uint16_t tid, unit, fc, addr, count;
    uint32_t timeout_ms;       //  how long to wait for the reply
    uint32_t write_timeout_ms; //  how long the port may take to accept the request
    uint8_t data[4];           //  writes: big-endian registers, or one byte per coil
    uint8_t dlen;
} serial_req_t;

//  Actor body: zactor_new(serial_actor, channel). The channel (not owned)
//  must outlive the actor.
void serial_actor(zsock_t *pipe, void *channel);

//  Bits per character on the line: start + data + parity + stop.
uint32_t serial_bits_per_char(const site_channel_t *channel);

#endif
