/*  rtuframe: Modbus RTU framing on the server (slave) side.

    An RTU frame is the unit address, the PDU (function code and data) and
    a CRC-16/Modbus sent low byte first. There is no length field: the
    length of a request follows from its function code (and, for the
    variable ones, a byte count inside), and a frame is only known to be a
    frame when its CRC checks. So the scanner looks at the start of the
    bytes read from the line and says: here is a whole frame, wait for more
    bytes, or skip one byte (garbage, or a frame with a bad CRC) and look
    again, which resynchronises on the next good frame after any noise.
    Pure functions over byte buffers; no descriptors.
*/
#ifndef RTUFRAME_H_INCLUDED
#define RTUFRAME_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RTUFRAME_MAX 256 //  address (1) + largest PDU (253) + CRC (2)
#define RTUFRAME_MIN 4   //  address, function code, CRC

//  What is at the start of the bytes read.
typedef enum {
    RTUFRAME_MORE = 0, //  a frame may start here: wait for more bytes
    RTUFRAME_FRAME,    //  a whole request with a good CRC
    RTUFRAME_BADCRC,   //  a request of the right length whose CRC is wrong: skip one byte
    RTUFRAME_JUNK      //  no request starts here (unknown function code, byte count too
                       //  large): skip one byte
} rtuframe_scan_t;

//  CRC-16/Modbus (polynomial 0xA001 reflected, initial 0xFFFF) of buf.
//  On the line the low byte goes first: 01 03 00 00 00 0A has CRC 0xCDC5,
//  sent as C5 CD.
uint16_t rtuframe_crc(const uint8_t *buf, size_t len);

//  Append the CRC of buf[0..len) at buf[len], buf[len + 1] (the caller has
//  room); returns len + 2.
size_t rtuframe_seal(uint8_t *buf, size_t len);

//  Length of the request frame starting at buf[0] (len bytes there), CRC
//  included, from its function code: 8 for 1..6 and 8, 4 for 7, 11, 12, 17,
//  9 + byte count for 15 and 16, 5 + byte count for 20 and 21, 10 for 22,
//  13 + byte count for 23, 6 for 24. Returns 0 when more bytes are needed
//  to tell, or -1 when no request can start here (a function code outside
//  that list, or a byte count that makes the frame longer than
//  RTUFRAME_MAX).
int rtuframe_request_length(const uint8_t *buf, size_t len);

//  Look at buf[0..len): see rtuframe_scan_t. *frame_len is the frame's
//  length for RTUFRAME_FRAME, the length the frame would have had for
//  RTUFRAME_BADCRC (so a caller can tell the bytes of one bad frame from
//  the next one), else 0.
rtuframe_scan_t rtuframe_scan(const uint8_t *buf, size_t len, size_t *frame_len);

//  Bits per character on the line: start bit, data bits, parity bit unless
//  parity is 'N', stop bits. 10 for 8N1, 11 for 8E1 and 8N2.
int rtuframe_char_bits(char parity, int data_bits, int stop_bits);

//  The inter-frame silence t3.5 in microseconds: 3.5 character times at
//  `baud`, or the fixed 1750 us the standard prescribes above 19200 baud
//  (and when baud is 0).
uint32_t rtuframe_silence_us(uint32_t baud, int char_bits);

//  Fill out (cap >= RTUFRAME_MAX + 40) with a malformed answer to request
//  `req` (req_len bytes, a whole frame) and return its length (>= 1). Each
//  call picks one of: random bytes of random length; a well-formed reply
//  with a wrong CRC; a reply from another unit address (CRC good); a reply
//  cut short; a reply whose byte count disagrees with its data (CRC good).
//  *rng is the caller's random state.
size_t rtuframe_garbage(const uint8_t *req, size_t req_len, uint64_t *rng, uint8_t *out,
                        size_t cap);

//  Self test; returns the number of failed checks (0 is good).
int rtuframe_test(bool verbose);

#endif
