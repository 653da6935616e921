/*  mbframe: Modbus TCP framing on the server side.

    Cuts request ADUs out of a connection's byte stream using the MBAP
    length field, and makes the malformed replies of the `garbage` mode.
    Pure functions over byte buffers; no sockets.
*/
#ifndef MBFRAME_H_INCLUDED
#define MBFRAME_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MBFRAME_HEADER 7   //  MBAP: tid, protocol id, length, unit
#define MBFRAME_MAX    260 //  MBAP (7) + largest PDU (253)

//  Length of the first request ADU in buf[0..len), 0 when more bytes are
//  needed, or -1 when the stream is not Modbus TCP (protocol id not 0, or
//  a length field outside 2..254): a stream cannot be resynchronised after
//  that, so the caller drops the connection.
int mbframe_length(const uint8_t *buf, size_t len);

//  Fill out (cap >= MBFRAME_MAX + 40) with a malformed answer to request
//  `req` (req_len bytes) and return its length (>= 1). Each call picks one
//  of: random bytes of random length; a well-formed reply with the wrong
//  transaction id; a reply whose length field disagrees with its bytes; a
//  reply cut short; a non-zero protocol id. *rng is the caller's random state.
size_t mbframe_garbage(const uint8_t *req, size_t req_len, uint64_t *rng, uint8_t *out, size_t cap);

//  Self test; returns the number of failed checks (0 is good).
int mbframe_test(bool verbose);

#endif
