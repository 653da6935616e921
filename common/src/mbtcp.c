/*  mbtcp: a non-blocking Modbus TCP codec. See mbtcp.h.

    Decoding runs in two passes. The first checks that the bytes are a
    well-formed reply on their own (MBAP header, function code, every length);
    anything wrong there is MB_EMALFORMED, and the stream that carried it can
    no longer be trusted. Only then is the reply compared with the request it
    should answer; a difference there is MB_EMISMATCH, typically a late reply
    to an earlier request that timed out, which the caller drops while keeping
    the connection.
*/
#include "mbtcp.h"

#include <assert.h>
#include <errno.h>
#include <string.h>

//  MBAP length field: unit byte plus PDU, and the PDU is 1..253 bytes.
#define S_LENGTH_MIN 2
#define S_LENGTH_MAX (MB_MAX_ADU_LEN - MB_HEADER_LEN + 1)

//  Bytes of a read-bits reply carrying 2000 bits, and of a read-registers
//  reply carrying 125 registers: the largest byte counts a reply may claim.
#define S_MAX_BIT_BYTES ((MB_MAX_READ_BITS + 7) / 8)
#define S_MAX_REG_BYTES (2 * MB_MAX_READ_REGS)

#define S_COIL_ON  0xFF00
#define S_COIL_OFF 0x0000

static void s_put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)(v & 0xFF);
}

static uint16_t s_get16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static int s_fail(void)
{
    errno = EINVAL;
    return -1;
}

static int s_is_read(uint8_t fc)
{
    return fc >= MB_FC_READ_COILS && fc <= MB_FC_READ_INPUT;
}

static int s_is_bit_read(uint8_t fc)
{
    return fc == MB_FC_READ_COILS || fc == MB_FC_READ_DISCRETE_INPUTS;
}

//  Write the MBAP header and function code for a PDU of pdu_len bytes, and
//  fill the request record. The caller has checked that the ADU fits.
static void s_start(uint8_t *buf, mb_request_t *req, uint16_t tid, uint8_t unit, uint8_t fc,
                    uint16_t addr, uint16_t count, uint16_t value, size_t pdu_len)
{
    s_put16(buf, tid);
    s_put16(buf + 2, 0);
    s_put16(buf + 4, (uint16_t)(pdu_len + 1));
    buf[6] = unit;
    buf[7] = fc;
    if (req) {
        req->tid = tid;
        req->unit = unit;
        req->fc = fc;
        req->addr = addr;
        req->count = count;
        req->value = value;
    }
}

int mb_encode_read(uint8_t *buf, size_t cap, mb_request_t *req, uint16_t tid, uint8_t unit,
                   uint8_t fc, uint16_t addr, uint16_t count)
{
    if (!buf || !s_is_read(fc) || count == 0)
        return s_fail();
    if (count > (s_is_bit_read(fc) ? MB_MAX_READ_BITS : MB_MAX_READ_REGS))
        return s_fail();
    size_t adu_len = MB_HEADER_LEN + 5;
    if (cap < adu_len)
        return s_fail();
    s_start(buf, req, tid, unit, fc, addr, count, 0, 5);
    s_put16(buf + 8, addr);
    s_put16(buf + 10, count);
    return (int)adu_len;
}

//  fc 5 and fc 6 share one layout: address, then value.
static int s_encode_single(uint8_t *buf, size_t cap, mb_request_t *req, uint16_t tid, uint8_t unit,
                           uint8_t fc, uint16_t addr, uint16_t value)
{
    size_t adu_len = MB_HEADER_LEN + 5;
    if (!buf || cap < adu_len)
        return s_fail();
    s_start(buf, req, tid, unit, fc, addr, 1, value, 5);
    s_put16(buf + 8, addr);
    s_put16(buf + 10, value);
    return (int)adu_len;
}

int mb_encode_write_single_coil(uint8_t *buf, size_t cap, mb_request_t *req, uint16_t tid,
                                uint8_t unit, uint16_t addr, bool value)
{
    return s_encode_single(buf, cap, req, tid, unit, MB_FC_WRITE_SINGLE_COIL, addr,
                           value ? S_COIL_ON : S_COIL_OFF);
}

int mb_encode_write_single_register(uint8_t *buf, size_t cap, mb_request_t *req, uint16_t tid,
                                    uint8_t unit, uint16_t addr, uint16_t value)
{
    return s_encode_single(buf, cap, req, tid, unit, MB_FC_WRITE_SINGLE_REG, addr, value);
}

int mb_encode_write_multiple_coils(uint8_t *buf, size_t cap, mb_request_t *req, uint16_t tid,
                                   uint8_t unit, uint16_t addr, const uint8_t *bits, uint16_t count)
{
    if (!buf || !bits || count == 0 || count > MB_MAX_WRITE_BITS)
        return s_fail();
    size_t nbytes = ((size_t)count + 7) / 8;
    size_t adu_len = MB_HEADER_LEN + 6 + nbytes;
    if (cap < adu_len)
        return s_fail();
    s_start(buf, req, tid, unit, MB_FC_WRITE_MULTIPLE_COILS, addr, count, 0, 6 + nbytes);
    s_put16(buf + 8, addr);
    s_put16(buf + 10, count);
    buf[12] = (uint8_t)nbytes;
    //  Bit 0 of the first data byte is the first coil; padding bits stay 0.
    uint8_t *data = buf + 13;
    memset(data, 0, nbytes);
    for (size_t i = 0; i < count; i++)
        if (bits[i])
            data[i / 8] |= (uint8_t)(1u << (i % 8));
    return (int)adu_len;
}

int mb_encode_write_multiple_registers(uint8_t *buf, size_t cap, mb_request_t *req, uint16_t tid,
                                       uint8_t unit, uint16_t addr, const uint16_t *regs,
                                       uint16_t count)
{
    if (!buf || !regs || count == 0 || count > MB_MAX_WRITE_REGS)
        return s_fail();
    size_t nbytes = (size_t)count * 2;
    size_t adu_len = MB_HEADER_LEN + 6 + nbytes;
    if (cap < adu_len)
        return s_fail();
    s_start(buf, req, tid, unit, MB_FC_WRITE_MULTIPLE_REGS, addr, count, 0, 6 + nbytes);
    s_put16(buf + 8, addr);
    s_put16(buf + 10, count);
    buf[12] = (uint8_t)nbytes;
    for (size_t i = 0; i < count; i++)
        s_put16(buf + 13 + 2 * i, regs[i]);
    return (int)adu_len;
}

int mb_frame_length(const uint8_t *buf, size_t len)
{
    //  Judge the header as soon as its fields arrive: a peer that talks
    //  something other than Modbus TCP is refused after 4 bytes rather than
    //  after it has filled a buffer.
    if (len >= 4 && s_get16(buf + 2) != 0)
        return MB_EMALFORMED;
    if (len < 6)
        return 0;
    uint16_t length = s_get16(buf + 4);
    if (length < S_LENGTH_MIN || length > S_LENGTH_MAX)
        return MB_EMALFORMED;
    size_t adu_len = 6 + (size_t)length;
    return len < adu_len ? 0 : (int)adu_len;
}

static int s_error(const char **why, int rc, const char *text)
{
    if (why)
        *why = text;
    return rc;
}

//  First pass: is the PDU a well-formed reply of its own function code? Fills
//  out->fc, exception, count, data and datalen from the PDU alone.
static int s_check_pdu(const uint8_t *pdu, size_t pdu_len, mb_reply_t *out, const char **why)
{
    uint8_t fc = pdu[0];
    out->fc = fc & 0x7F;
    if (fc & 0x80) {
        //  Exception: function code | 0x80, then one code byte, nothing else.
        if (!s_is_read(out->fc) && out->fc != MB_FC_WRITE_SINGLE_COIL &&
            out->fc != MB_FC_WRITE_SINGLE_REG && out->fc != MB_FC_WRITE_MULTIPLE_COILS &&
            out->fc != MB_FC_WRITE_MULTIPLE_REGS)
            return s_error(why, MB_EMALFORMED, "exception for an unsupported function code");
        if (pdu_len != 2)
            return s_error(why, MB_EMALFORMED, "exception reply is not 2 bytes");
        if (pdu[1] == 0)
            return s_error(why, MB_EMALFORMED, "exception code 0");
        out->exception = pdu[1];
        return MB_EXCEPTION;
    }
    switch (fc) {
    case MB_FC_READ_COILS:
    case MB_FC_READ_DISCRETE_INPUTS:
    case MB_FC_READ_HOLDING:
    case MB_FC_READ_INPUT: {
        if (pdu_len < 2)
            return s_error(why, MB_EMALFORMED, "read reply without byte count");
        size_t nbytes = pdu[1];
        if (nbytes != pdu_len - 2)
            return s_error(why, MB_EMALFORMED, "byte count does not match the frame length");
        if (nbytes == 0)
            return s_error(why, MB_EMALFORMED, "byte count 0");
        if (s_is_bit_read(fc)) {
            if (nbytes > S_MAX_BIT_BYTES)
                return s_error(why, MB_EMALFORMED, "byte count over 250 for bits");
        } else {
            if (nbytes % 2)
                return s_error(why, MB_EMALFORMED, "odd byte count for registers");
            if (nbytes > S_MAX_REG_BYTES)
                return s_error(why, MB_EMALFORMED, "byte count over 250 for registers");
            out->count = (uint16_t)(nbytes / 2);
        }
        out->data = pdu + 2;
        out->datalen = nbytes;
        return MB_OK;
    }
    case MB_FC_WRITE_SINGLE_COIL:
    case MB_FC_WRITE_SINGLE_REG:
        if (pdu_len != 5)
            return s_error(why, MB_EMALFORMED, "single write reply is not 5 bytes");
        if (fc == MB_FC_WRITE_SINGLE_COIL && s_get16(pdu + 3) != S_COIL_ON &&
            s_get16(pdu + 3) != S_COIL_OFF)
            return s_error(why, MB_EMALFORMED, "coil value neither 0xFF00 nor 0x0000");
        out->count = 1;
        return MB_OK;
    case MB_FC_WRITE_MULTIPLE_COILS:
    case MB_FC_WRITE_MULTIPLE_REGS: {
        if (pdu_len != 5)
            return s_error(why, MB_EMALFORMED, "multiple write reply is not 5 bytes");
        uint16_t count = s_get16(pdu + 3);
        uint16_t max = fc == MB_FC_WRITE_MULTIPLE_COILS ? MB_MAX_WRITE_BITS : MB_MAX_WRITE_REGS;
        if (count == 0 || count > max)
            return s_error(why, MB_EMALFORMED, "multiple write reply count out of range");
        out->count = count;
        return MB_OK;
    }
    default:
        return s_error(why, MB_EMALFORMED, "unsupported function code");
    }
}

//  Second pass: does this well-formed reply answer `req`?
static int s_match(const uint8_t *pdu, const mb_request_t *req, mb_reply_t *out, const char **why)
{
    if (out->tid != req->tid)
        return s_error(why, MB_EMISMATCH, "wrong transaction id");
    if (out->unit != req->unit)
        return s_error(why, MB_EMISMATCH, "wrong unit id");
    if (out->fc != req->fc)
        return s_error(why, MB_EMISMATCH, "wrong function code");
    if (out->exception)
        return MB_EXCEPTION;
    switch (req->fc) {
    case MB_FC_READ_COILS:
    case MB_FC_READ_DISCRETE_INPUTS:
        //  Bits come packed: the count itself is not on the wire, only bytes.
        if (out->datalen != ((size_t)req->count + 7) / 8)
            return s_error(why, MB_EMISMATCH, "byte count does not match the bits requested");
        out->count = req->count;
        return MB_OK;
    case MB_FC_READ_HOLDING:
    case MB_FC_READ_INPUT:
        if (out->datalen != (size_t)req->count * 2)
            return s_error(why, MB_EMISMATCH, "byte count does not match the registers requested");
        return MB_OK;
    case MB_FC_WRITE_SINGLE_COIL:
    case MB_FC_WRITE_SINGLE_REG:
        if (s_get16(pdu + 1) != req->addr)
            return s_error(why, MB_EMISMATCH, "write reply echoes another address");
        if (s_get16(pdu + 3) != req->value)
            return s_error(why, MB_EMISMATCH, "write reply echoes another value");
        return MB_OK;
    case MB_FC_WRITE_MULTIPLE_COILS:
    case MB_FC_WRITE_MULTIPLE_REGS:
        if (s_get16(pdu + 1) != req->addr)
            return s_error(why, MB_EMISMATCH, "write reply echoes another address");
        if (out->count != req->count)
            return s_error(why, MB_EMISMATCH, "write reply echoes another count");
        return MB_OK;
    default:
        //  The request was not made by our encoders; nothing can answer it.
        return s_error(why, MB_EMISMATCH, "request has an unsupported function code");
    }
}

int mb_decode_reply(const uint8_t *adu, size_t len, const mb_request_t *req, mb_reply_t *out,
                    const char **why)
{
    assert(req);
    assert(out);
    memset(out, 0, sizeof *out);
    if (!adu || len < MB_HEADER_LEN + 1)
        return s_error(why, MB_EMALFORMED, "frame shorter than header and function code");
    if (s_get16(adu + 2) != 0)
        return s_error(why, MB_EMALFORMED, "protocol id is not 0");
    uint16_t length = s_get16(adu + 4);
    if (length < S_LENGTH_MIN || length > S_LENGTH_MAX)
        return s_error(why, MB_EMALFORMED, "length field out of range");
    if ((size_t)length + 6 != len)
        return s_error(why, MB_EMALFORMED, "length field does not match the frame length");

    //  Known from here on even when the rest is rejected: useful in the I/O log.
    out->tid = s_get16(adu);
    out->unit = adu[6];
    const uint8_t *pdu = adu + MB_HEADER_LEN;
    size_t pdu_len = len - MB_HEADER_LEN;

    int rc = s_check_pdu(pdu, pdu_len, out, why);
    if (rc == MB_EMALFORMED)
        return rc;
    rc = s_match(pdu, req, out, why);
    if (rc == MB_EXCEPTION)
        return s_error(why, rc, mb_exception_text(out->exception));
    if (rc != MB_OK) {
        //  Never hand out data that does not belong to the request.
        out->data = NULL;
        out->datalen = 0;
    }
    return rc;
}

uint16_t mb_reply_register(const mb_reply_t *reply, size_t i)
{
    assert(reply);
    assert(i < reply->datalen / 2);
    if (!reply->data || i >= reply->datalen / 2)
        return 0;
    return s_get16(reply->data + 2 * i);
}

int mb_reply_bit(const mb_reply_t *reply, size_t i)
{
    assert(reply);
    assert(i / 8 < reply->datalen);
    if (!reply->data || i / 8 >= reply->datalen)
        return 0;
    return (reply->data[i / 8] >> (i % 8)) & 1;
}

const char *mb_exception_text(uint8_t code)
{
    switch (code) {
    case 0x01:
        return "illegal function";
    case 0x02:
        return "illegal data address";
    case 0x03:
        return "illegal data value";
    case 0x04:
        return "server device failure";
    case 0x05:
        return "acknowledge";
    case 0x06:
        return "server device busy";
    case 0x08:
        return "memory parity error";
    case 0x0A:
        return "gateway path unavailable";
    case 0x0B:
        return "gateway target device failed to respond";
    default:
        return "unknown exception code";
    }
}
