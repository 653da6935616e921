/*  mbserve: answer one Modbus request for a simulated device.

    Transport independent: the request arrives as one complete ADU in the
    framing of the libmodbus context's backend (TCP: MBAP header; RTU: unit
    byte and CRC), already cut out of the byte stream by the transport, and
    the reply goes out through libmodbus on the descriptor given. The
    context is never connected: it only lends its backend (header length,
    response basis, send) and is pointed at the descriptor for each call.

    libmodbus 3.1.6's modbus_reply() trusts the request: on some bad counts
    and on unknown function codes it sleeps for the response timeout and
    then reads the socket dry (modbus_flush), which would stall the event
    loop and eat pipelined requests; for function 0x17 it checks the write
    address wrongly and can write outside the mapping. So every request is
    checked here first and only well-formed ones reach modbus_reply().
*/
#ifndef MBSERVE_H_INCLUDED
#define MBSERVE_H_INCLUDED

#include <modbus.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

//  Outcome of mbserve_reply(), for the counters.
typedef enum {
    MBSERVE_DATA = 0, //  a normal reply
    MBSERVE_EXCEPTION //  an exception reply (illegal function, address, value)
} mbserve_kind_t;

//  Check a request PDU (function code and data, pdu_len bytes). Returns 0
//  when modbus_reply() can answer it safely, else the Modbus exception code
//  to answer instead: 1 for a function code devsim does not serve, 3 for a
//  wrong length or count.
int mbserve_check(const uint8_t *pdu, size_t pdu_len);

//  Answer the request `adu` (adu_len bytes, of which the last trailer_len are
//  the backend's checksum: 0 for TCP, 2 for RTU) from `mapping`, writing the
//  reply to descriptor fd through ctx. Writes from the request land in the
//  mapping. Returns 0 when the whole reply was written, -1 (errno set) when
//  the write failed or would block; the caller then drops the connection.
int mbserve_reply(modbus_t *ctx, int fd, const uint8_t *adu, int adu_len, int trailer_len,
                  modbus_mapping_t *mapping, mbserve_kind_t *kind);

//  Answer the request `adu` with exception `code` (1..11). Returns as
//  mbserve_reply().
int mbserve_exception(modbus_t *ctx, int fd, const uint8_t *adu, int code);

//  Apply a broadcast request (RTU unit address 0) to `mapping` without
//  answering: ctx must be an RTU context, whose modbus_reply() sends
//  nothing for address 0. Returns 0 when it was applied, else the
//  exception code a unicast request would have had (nothing is written).
int mbserve_broadcast(modbus_t *ctx, const uint8_t *adu, int adu_len, int trailer_len,
                      modbus_mapping_t *mapping);

//  Self test; returns the number of failed checks (0 is good).
int mbserve_test(bool verbose);

#endif
