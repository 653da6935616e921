/*  fuzz_mbtcp: libFuzzer target for the Modbus TCP codec.

    Input layout (shorter inputs are padded with zeros):
        byte 0      function code selector (fc 1, 2, 3, 4, 5, 6, 15, 16)
        bytes 1-2   first address
        bytes 3-4   count, taken modulo the function's maximum, plus 1
        byte 5      unit id
        bytes 6-7   transaction id
        bytes 8-9   value for fc 6 (bit 0: the coil value for fc 5)
        bytes 10..  a received byte stream
    The request is encoded from the first ten bytes; the stream is cut into
    frames with mb_frame_length, and every frame is decoded against that
    request and against variants of it that the frame is more likely to
    answer (its own tid and unit, a count matching its byte count), so the
    fuzzer reaches the MB_OK paths as well as the refusals. Each frame is
    copied into a heap block of exactly its length, and every register or bit
    a decoded reply claims is read, so ASan reports any overread.
*/
#include "mbtcp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_HEADER 10

static const uint8_t s_fcs[8] = {MB_FC_READ_COILS,           MB_FC_READ_DISCRETE_INPUTS,
                                 MB_FC_READ_HOLDING,         MB_FC_READ_INPUT,
                                 MB_FC_WRITE_SINGLE_COIL,    MB_FC_WRITE_SINGLE_REG,
                                 MB_FC_WRITE_MULTIPLE_COILS, MB_FC_WRITE_MULTIPLE_REGS};

static void s_check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_mbtcp: invariant broken: %s\n", what);
        abort();
    }
}

static uint16_t s_max_count(uint8_t fc)
{
    switch (fc) {
    case MB_FC_READ_COILS:
    case MB_FC_READ_DISCRETE_INPUTS:
        return MB_MAX_READ_BITS;
    case MB_FC_READ_HOLDING:
    case MB_FC_READ_INPUT:
        return MB_MAX_READ_REGS;
    case MB_FC_WRITE_MULTIPLE_COILS:
        return MB_MAX_WRITE_BITS;
    case MB_FC_WRITE_MULTIPLE_REGS:
        return MB_MAX_WRITE_REGS;
    default:
        return 1;
    }
}

//  Encode the request the header describes; returns the encoder's result.
static int s_encode(const uint8_t *h, mb_request_t *req, size_t cap)
{
    static const uint8_t bits[MB_MAX_WRITE_BITS];
    static const uint16_t regs[MB_MAX_WRITE_REGS];
    uint8_t buf[MB_MAX_ADU_LEN];
    if (cap > sizeof buf)
        cap = sizeof buf;
    uint8_t fc = s_fcs[h[0] % 8];
    uint16_t addr = (uint16_t)(h[1] << 8 | h[2]);
    uint16_t count = (uint16_t)(1 + (uint16_t)(h[3] << 8 | h[4]) % s_max_count(fc));
    uint8_t unit = h[5];
    uint16_t tid = (uint16_t)(h[6] << 8 | h[7]);
    uint16_t value = (uint16_t)(h[8] << 8 | h[9]);
    int rc;
    switch (fc) {
    case MB_FC_WRITE_SINGLE_COIL:
        rc = mb_encode_write_single_coil(buf, cap, req, tid, unit, addr, value & 1);
        break;
    case MB_FC_WRITE_SINGLE_REG:
        rc = mb_encode_write_single_register(buf, cap, req, tid, unit, addr, value);
        break;
    case MB_FC_WRITE_MULTIPLE_COILS:
        rc = mb_encode_write_multiple_coils(buf, cap, req, tid, unit, addr, bits, count);
        break;
    case MB_FC_WRITE_MULTIPLE_REGS:
        rc = mb_encode_write_multiple_registers(buf, cap, req, tid, unit, addr, regs, count);
        break;
    default:
        rc = mb_encode_read(buf, cap, req, tid, unit, fc, addr, count);
        break;
    }
    s_check(rc == -1 || (rc >= 12 && (size_t)rc <= cap), "encoder length within cap");
    if (rc > 0) {
        s_check(mb_frame_length(buf, (size_t)rc) == rc, "encoded request frames itself");
        s_check(mb_frame_length(buf, (size_t)rc - 1) == 0, "encoded request prefix incomplete");
    }
    return rc;
}

static void s_decode(const uint8_t *adu, size_t len, const mb_request_t *req)
{
    mb_reply_t reply;
    const char *why = NULL;
    int rc = mb_decode_reply(adu, len, req, &reply, &why);
    s_check(rc == MB_OK || rc == MB_EXCEPTION || rc == MB_EMALFORMED || rc == MB_EMISMATCH,
            "known result code");
    if (rc != MB_OK) {
        s_check(why != NULL && why[0] != '\0', "a reason for every refusal");
        s_check(reply.data == NULL, "no data handed out on refusal");
        (void)strlen(why);
        return;
    }
    s_check(reply.tid == req->tid && reply.unit == req->unit && reply.fc == req->fc,
            "reply matches request");
    if (reply.data)
        s_check(reply.data >= adu && reply.data + reply.datalen <= adu + len,
                "data inside the frame");
    //  Read everything the reply claims; an overread lands outside the
    //  exactly-sized block and ASan stops here.
    volatile unsigned sink = 0;
    switch (reply.fc) {
    case MB_FC_READ_COILS:
    case MB_FC_READ_DISCRETE_INPUTS:
        s_check(reply.count == req->count, "bit count");
        for (size_t i = 0; i < reply.count; i++)
            sink += (unsigned)mb_reply_bit(&reply, i);
        break;
    case MB_FC_READ_HOLDING:
    case MB_FC_READ_INPUT:
        s_check(reply.count == req->count, "register count");
        for (size_t i = 0; i < reply.count; i++)
            sink += mb_reply_register(&reply, i);
        break;
    case MB_FC_WRITE_SINGLE_COIL:
    case MB_FC_WRITE_SINGLE_REG:
        s_check(reply.count == 1, "single write count");
        break;
    default:
        s_check(reply.count == req->count, "write count echoed");
        break;
    }
    (void)sink;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t h[S_HEADER] = {0};
    memcpy(h, data, size < S_HEADER ? size : S_HEADER);
    const uint8_t *stream = size > S_HEADER ? data + S_HEADER : data + size;
    size_t left = size > S_HEADER ? size - S_HEADER : 0;

    mb_request_t req;
    memset(&req, 0, sizeof req);
    //  A capacity from the input too, so the too-small-buffer path runs.
    int enc = s_encode(h, &req, 8 + (size_t)(h[9] % 8) * 40);
    if (enc < 0)
        s_encode(h, &req, MB_MAX_ADU_LEN);

    //  Every prefix of the stream's first frame is incomplete or refused.
    int first = mb_frame_length(stream, left);
    for (size_t i = 0; first > 0 && i < (size_t)first; i++) {
        int n = mb_frame_length(stream, i);
        s_check(n == 0 || n == MB_EMALFORMED, "prefix of a frame is not a frame");
    }

    while (left > 0) {
        uint8_t *copy = malloc(left);
        if (!copy)
            return 0;
        memcpy(copy, stream, left);
        int len = mb_frame_length(copy, left);
        free(copy);
        s_check(len == 0 || len == MB_EMALFORMED || (len >= 8 && len <= MB_MAX_ADU_LEN),
                "frame length range");
        s_check(len <= 0 || (size_t)len <= left, "frame within the bytes given");
        //  Decode what there is even when it is not a frame: mb_decode_reply
        //  must refuse it on its own.
        size_t n = len > 0 ? (size_t)len : left;
        uint8_t *adu = malloc(n ? n : 1);
        if (!adu)
            return 0;
        memcpy(adu, stream, n);

        s_decode(adu, n, &req);
        if (n >= MB_HEADER_LEN) {
            //  The same request as if we had sent it with this frame's ids.
            mb_request_t own = req;
            own.tid = (uint16_t)(adu[0] << 8 | adu[1]);
            own.unit = adu[6];
            s_decode(adu, n, &own);
            //  And with the count its byte count answers.
            if (n >= MB_HEADER_LEN + 2) {
                own.fc = adu[7] & 0x7F;
                if (own.fc == MB_FC_READ_HOLDING || own.fc == MB_FC_READ_INPUT)
                    own.count = adu[8] / 2;
                else if (own.fc == MB_FC_READ_COILS || own.fc == MB_FC_READ_DISCRETE_INPUTS)
                    own.count = (uint16_t)(adu[8] * 8 - (h[4] % 8));
                s_decode(adu, n, &own);
            }
        }
        free(adu);
        if (len <= 0)
            break;
        stream += len;
        left -= (size_t)len;
    }
    return 0;
}
