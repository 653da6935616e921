/*  mbtcp: a non-blocking Modbus TCP codec.

    Pure functions over byte buffers: encode requests into a caller's buffer,
    find where a reply ends in a stream, decode and check a reply against the
    request it answers. No sockets, no allocation, no blocking: the I/O server
    owns the sockets on its event loop (libmodbus blocks in select() and breaks
    on descriptors >= 1024, so it is not used on the TCP path).

    A Modbus TCP ADU is the 7-byte MBAP header (transaction id, protocol id 0,
    length = unit byte + PDU, unit id) followed by the PDU (function code and
    data). Replies are hostile input: every decode checks every length.
*/
#ifndef MBTCP_H_INCLUDED
#define MBTCP_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MB_FC_READ_COILS           0x01
#define MB_FC_READ_DISCRETE_INPUTS 0x02
#define MB_FC_READ_HOLDING         0x03
#define MB_FC_READ_INPUT           0x04
#define MB_FC_WRITE_SINGLE_COIL    0x05
#define MB_FC_WRITE_SINGLE_REG     0x06
#define MB_FC_WRITE_MULTIPLE_COILS 0x0F
#define MB_FC_WRITE_MULTIPLE_REGS  0x10

#define MB_MAX_READ_REGS  125  //  per request (fc 3, 4)
#define MB_MAX_READ_BITS  2000 //  per request (fc 1, 2)
#define MB_MAX_WRITE_REGS 123  //  per request (fc 16)
#define MB_MAX_WRITE_BITS 1968 //  per request (fc 15)
#define MB_HEADER_LEN     7    //  MBAP
#define MB_MAX_ADU_LEN    260  //  MBAP + 253-byte PDU

//  Result codes of mb_decode_reply (and mb_frame_length for MB_EMALFORMED).
#define MB_OK          0
#define MB_EXCEPTION   1  //  a well-formed exception reply; out->exception holds the code
#define MB_EMALFORMED  -2 //  the bytes are not a valid reply (lengths, protocol id, fc)
#define MB_EMISMATCH   -3 //  a valid reply, but not to this request (tid, unit, fc, count)

//  What was asked; filled by the encoders, kept by the caller until the reply.
typedef struct {
    uint16_t tid;   //  transaction id
    uint8_t unit;   //  unit id
    uint8_t fc;     //  function code
    uint16_t addr;  //  first register or bit
    uint16_t count; //  registers or bits (1 for single writes)
    uint16_t value; //  fc 5 and 6: the value sent (0xFF00 or 0 for a coil), so that the
                    //  reply's echo can be checked; 0 for every other function
} mb_request_t;

//  A decoded reply. `data` points into the caller's buffer.
typedef struct {
    uint16_t tid;
    uint8_t unit;
    uint8_t fc;        //  function code without the exception bit
    uint8_t exception; //  exception code (MB_EXCEPTION), else 0
    uint16_t count;    //  registers or bits returned (reads), or written (writes)
    const uint8_t *data; //  reads: register bytes (big-endian pairs) or packed bits
    size_t datalen;
} mb_reply_t;

//  Encode a read request (fc 1-4). Returns the ADU length, or -1 (errno EINVAL)
//  if the count is 0 or over the function's maximum, or cap is too small.
int mb_encode_read(uint8_t *buf, size_t cap, mb_request_t *req, uint16_t tid, uint8_t unit,
                   uint8_t fc, uint16_t addr, uint16_t count);

//  Encode fc 5 (value true/false) or fc 6. Returns ADU length or -1.
int mb_encode_write_single_coil(uint8_t *buf, size_t cap, mb_request_t *req, uint16_t tid,
                                uint8_t unit, uint16_t addr, bool value);
int mb_encode_write_single_register(uint8_t *buf, size_t cap, mb_request_t *req, uint16_t tid,
                                    uint8_t unit, uint16_t addr, uint16_t value);

//  Encode fc 15 (bits[i] is 0 or 1) or fc 16. Returns ADU length or -1.
int mb_encode_write_multiple_coils(uint8_t *buf, size_t cap, mb_request_t *req, uint16_t tid,
                                   uint8_t unit, uint16_t addr, const uint8_t *bits,
                                   uint16_t count);
int mb_encode_write_multiple_registers(uint8_t *buf, size_t cap, mb_request_t *req, uint16_t tid,
                                       uint8_t unit, uint16_t addr, const uint16_t *regs,
                                       uint16_t count);

//  Given the first `len` bytes received, return the length of the complete ADU
//  at the start of buf (> 0), 0 if more bytes are needed, or MB_EMALFORMED if
//  the header cannot start a valid ADU (protocol id not 0, length field < 2 or
//  > 254). A stream that returns MB_EMALFORMED cannot be resynchronised: close it.
int mb_frame_length(const uint8_t *buf, size_t len);

//  Decode a complete ADU (len as returned by mb_frame_length) as the reply to
//  `req`. Returns MB_OK, MB_EXCEPTION, MB_EMALFORMED or MB_EMISMATCH; on any
//  return other than MB_OK, *why (if not NULL) points at a static text naming
//  the problem, e.g. "wrong transaction id", "byte count 7 for 4 registers".
int mb_decode_reply(const uint8_t *adu, size_t len, const mb_request_t *req, mb_reply_t *out,
                    const char **why);

//  Register i (0-based from the request's first address) of a read reply.
uint16_t mb_reply_register(const mb_reply_t *reply, size_t i);
//  Bit i of a read-bits reply, 0 or 1.
int mb_reply_bit(const mb_reply_t *reply, size_t i);

//  Text for an exception code ("illegal data address", ...).
const char *mb_exception_text(uint8_t code);

#endif
