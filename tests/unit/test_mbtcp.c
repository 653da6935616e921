/*  test_mbtcp: the Modbus TCP codec against worked byte vectors.

    The request and reply vectors follow the examples of the Modbus
    application protocol specification (unit 0x11, the spec's addresses and
    values), wrapped in an MBAP header. Every reply check of mb_decode_reply
    has a case that trips it, and each says whether it is malformed (close the
    stream) or a mismatch (drop the reply).
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "mbtcp.h"

#include <errno.h>
#include <string.h>

#define UNIT 0x11

//  Build an ADU from a PDU: MBAP header with the length field computed.
static size_t s_adu(uint8_t *buf, uint16_t tid, uint8_t unit, const uint8_t *pdu, size_t pdu_len)
{
    buf[0] = (uint8_t)(tid >> 8);
    buf[1] = (uint8_t)tid;
    buf[2] = 0;
    buf[3] = 0;
    buf[4] = (uint8_t)((pdu_len + 1) >> 8);
    buf[5] = (uint8_t)(pdu_len + 1);
    buf[6] = unit;
    memcpy(buf + 7, pdu, pdu_len);
    return pdu_len + 7;
}

//  Decode `adu` against `req` and return the result code, checking that a
//  failure always comes with a reason.
static int s_decode(const uint8_t *adu, size_t len, const mb_request_t *req, mb_reply_t *out)
{
    const char *why = NULL;
    int rc = mb_decode_reply(adu, len, req, out, &why);
    if (rc != MB_OK) {
        assert_non_null(why);
        assert_true(strlen(why) > 0);
    }
    return rc;
}

//  --------------------------------------------------------------------------
//  Encoding

static void test_encode_read_coils(void **state)
{
    uint8_t buf[MB_MAX_ADU_LEN];
    mb_request_t req;
    const uint8_t expect[] = {0x00, 0x01, 0x00, 0x00, 0x00, 0x06,
                              0x11, 0x01, 0x00, 0x13, 0x00, 0x25};
    assert_int_equal(mb_encode_read(buf, sizeof buf, &req, 1, UNIT, MB_FC_READ_COILS, 19, 37), 12);
    assert_memory_equal(buf, expect, sizeof expect);
    assert_int_equal(req.tid, 1);
    assert_int_equal(req.unit, UNIT);
    assert_int_equal(req.fc, MB_FC_READ_COILS);
    assert_int_equal(req.addr, 19);
    assert_int_equal(req.count, 37);
    assert_int_equal(req.value, 0);
}

static void test_encode_read_discrete_inputs(void **state)
{
    uint8_t buf[MB_MAX_ADU_LEN];
    mb_request_t req;
    const uint8_t expect[] = {0x12, 0x34, 0x00, 0x00, 0x00, 0x06,
                              0x11, 0x02, 0x00, 0xC4, 0x00, 0x16};
    assert_int_equal(
        mb_encode_read(buf, sizeof buf, &req, 0x1234, UNIT, MB_FC_READ_DISCRETE_INPUTS, 196, 22),
        12);
    assert_memory_equal(buf, expect, sizeof expect);
}

static void test_encode_read_holding(void **state)
{
    uint8_t buf[MB_MAX_ADU_LEN];
    mb_request_t req;
    const uint8_t expect[] = {0xFF, 0xFF, 0x00, 0x00, 0x00, 0x06,
                              0x11, 0x03, 0x00, 0x6B, 0x00, 0x03};
    assert_int_equal(
        mb_encode_read(buf, sizeof buf, &req, 0xFFFF, UNIT, MB_FC_READ_HOLDING, 107, 3), 12);
    assert_memory_equal(buf, expect, sizeof expect);
}

static void test_encode_read_input(void **state)
{
    uint8_t buf[12]; //  exactly the ADU
    mb_request_t req;
    const uint8_t expect[] = {0x00, 0x00, 0x00, 0x00, 0x00, 0x06,
                              0xFF, 0x04, 0xFF, 0xFF, 0x00, 0x01};
    assert_int_equal(mb_encode_read(buf, sizeof buf, &req, 0, 0xFF, MB_FC_READ_INPUT, 65535, 1),
                     12);
    assert_memory_equal(buf, expect, sizeof expect);
}

static void test_encode_write_single_coil(void **state)
{
    uint8_t buf[MB_MAX_ADU_LEN];
    mb_request_t req;
    const uint8_t on[] = {0x00, 0x07, 0x00, 0x00, 0x00, 0x06, 0x11, 0x05, 0x00, 0xAC, 0xFF, 0x00};
    assert_int_equal(mb_encode_write_single_coil(buf, sizeof buf, &req, 7, UNIT, 172, true), 12);
    assert_memory_equal(buf, on, sizeof on);
    assert_int_equal(req.fc, MB_FC_WRITE_SINGLE_COIL);
    assert_int_equal(req.count, 1);
    assert_int_equal(req.value, 0xFF00);

    const uint8_t off[] = {0x00, 0x08, 0x00, 0x00, 0x00, 0x06, 0x11, 0x05, 0x00, 0xAC, 0x00, 0x00};
    assert_int_equal(mb_encode_write_single_coil(buf, sizeof buf, &req, 8, UNIT, 172, false), 12);
    assert_memory_equal(buf, off, sizeof off);
    assert_int_equal(req.value, 0);
}

static void test_encode_write_single_register(void **state)
{
    uint8_t buf[MB_MAX_ADU_LEN];
    mb_request_t req;
    const uint8_t expect[] = {0x00, 0x09, 0x00, 0x00, 0x00, 0x06,
                              0x11, 0x06, 0x00, 0x01, 0x00, 0x03};
    assert_int_equal(mb_encode_write_single_register(buf, sizeof buf, &req, 9, UNIT, 1, 3), 12);
    assert_memory_equal(buf, expect, sizeof expect);
    assert_int_equal(req.fc, MB_FC_WRITE_SINGLE_REG);
    assert_int_equal(req.count, 1);
    assert_int_equal(req.value, 3);
}

static void test_encode_write_multiple_coils(void **state)
{
    uint8_t buf[MB_MAX_ADU_LEN];
    mb_request_t req;
    //  Coils 20..29 = 1011 0011 10 (spec example): bytes 0xCD 0x01.
    const uint8_t bits[] = {1, 0, 1, 1, 0, 0, 1, 1, 1, 0};
    const uint8_t expect[] = {0x00, 0x0A, 0x00, 0x00, 0x00, 0x09, 0x11, 0x0F,
                              0x00, 0x13, 0x00, 0x0A, 0x02, 0xCD, 0x01};
    assert_int_equal(mb_encode_write_multiple_coils(buf, sizeof buf, &req, 10, UNIT, 19, bits, 10),
                     15);
    assert_memory_equal(buf, expect, sizeof expect);
    assert_int_equal(req.fc, MB_FC_WRITE_MULTIPLE_COILS);
    assert_int_equal(req.count, 10);

    //  Any non-zero byte is an "on" coil, and padding bits are zero even when
    //  the buffer held garbage.
    const uint8_t loose[] = {7, 0, 0xFF};
    memset(buf, 0xEE, sizeof buf);
    assert_int_equal(mb_encode_write_multiple_coils(buf, sizeof buf, &req, 1, UNIT, 0, loose, 3),
                     14);
    assert_int_equal(buf[12], 1);
    assert_int_equal(buf[13], 0x05);
}

static void test_encode_write_multiple_registers(void **state)
{
    uint8_t buf[MB_MAX_ADU_LEN];
    mb_request_t req;
    const uint16_t regs[] = {0x000A, 0x0102};
    const uint8_t expect[] = {0x00, 0x0B, 0x00, 0x00, 0x00, 0x0B, 0x11, 0x10, 0x00,
                              0x01, 0x00, 0x02, 0x04, 0x00, 0x0A, 0x01, 0x02};
    assert_int_equal(
        mb_encode_write_multiple_registers(buf, sizeof buf, &req, 11, UNIT, 1, regs, 2), 17);
    assert_memory_equal(buf, expect, sizeof expect);
    assert_int_equal(req.fc, MB_FC_WRITE_MULTIPLE_REGS);
    assert_int_equal(req.count, 2);
}

static void test_encode_limits(void **state)
{
    uint8_t buf[MB_MAX_ADU_LEN];
    uint8_t bits[MB_MAX_WRITE_BITS + 1] = {0};
    uint16_t regs[MB_MAX_WRITE_REGS + 1] = {0};
    mb_request_t req;

    //  Count 0 is never a request.
    for (uint8_t fc = MB_FC_READ_COILS; fc <= MB_FC_READ_INPUT; fc++) {
        errno = 0;
        assert_int_equal(mb_encode_read(buf, sizeof buf, &req, 1, 1, fc, 0, 0), -1);
        assert_int_equal(errno, EINVAL);
    }
    assert_int_equal(mb_encode_write_multiple_coils(buf, sizeof buf, &req, 1, 1, 0, bits, 0), -1);
    assert_int_equal(mb_encode_write_multiple_registers(buf, sizeof buf, &req, 1, 1, 0, regs, 0),
                     -1);

    //  Register reads: 125 at most; bit reads: 2000 at most.
    assert_int_equal(mb_encode_read(buf, sizeof buf, &req, 1, 1, MB_FC_READ_HOLDING, 0, 125), 12);
    assert_int_equal(mb_encode_read(buf, sizeof buf, &req, 1, 1, MB_FC_READ_HOLDING, 0, 126), -1);
    assert_int_equal(mb_encode_read(buf, sizeof buf, &req, 1, 1, MB_FC_READ_INPUT, 0, 125), 12);
    assert_int_equal(mb_encode_read(buf, sizeof buf, &req, 1, 1, MB_FC_READ_INPUT, 0, 126), -1);
    assert_int_equal(mb_encode_read(buf, sizeof buf, &req, 1, 1, MB_FC_READ_COILS, 0, 2000), 12);
    assert_int_equal(mb_encode_read(buf, sizeof buf, &req, 1, 1, MB_FC_READ_COILS, 0, 2001), -1);
    assert_int_equal(
        mb_encode_read(buf, sizeof buf, &req, 1, 1, MB_FC_READ_DISCRETE_INPUTS, 0, 2000), 12);
    assert_int_equal(
        mb_encode_read(buf, sizeof buf, &req, 1, 1, MB_FC_READ_DISCRETE_INPUTS, 0, 2001), -1);

    //  Multiple writes: 1968 coils and 123 registers fill the 260-byte ADU.
    assert_int_equal(mb_encode_write_multiple_coils(buf, sizeof buf, &req, 1, 1, 0, bits, 1968),
                     259);
    assert_int_equal(mb_encode_write_multiple_coils(buf, sizeof buf, &req, 1, 1, 0, bits, 1969),
                     -1);
    assert_int_equal(mb_encode_write_multiple_registers(buf, sizeof buf, &req, 1, 1, 0, regs, 123),
                     259);
    assert_int_equal(mb_encode_write_multiple_registers(buf, sizeof buf, &req, 1, 1, 0, regs, 124),
                     -1);

    //  Not a read function code.
    assert_int_equal(mb_encode_read(buf, sizeof buf, &req, 1, 1, MB_FC_WRITE_SINGLE_REG, 0, 1), -1);
    assert_int_equal(mb_encode_read(buf, sizeof buf, &req, 1, 1, 0, 0, 1), -1);
    assert_int_equal(mb_encode_read(buf, sizeof buf, &req, 1, 1, 0x83, 0, 1), -1);

    //  Buffer one byte short, and exactly long enough.
    assert_int_equal(mb_encode_read(buf, 11, &req, 1, 1, MB_FC_READ_HOLDING, 0, 1), -1);
    assert_int_equal(mb_encode_write_single_coil(buf, 11, &req, 1, 1, 0, true), -1);
    assert_int_equal(mb_encode_write_single_register(buf, 11, &req, 1, 1, 0, 1), -1);
    assert_int_equal(mb_encode_write_multiple_coils(buf, 14, &req, 1, 1, 0, bits, 9), -1);
    assert_int_equal(mb_encode_write_multiple_coils(buf, 15, &req, 1, 1, 0, bits, 9), 15);
    assert_int_equal(mb_encode_write_multiple_registers(buf, 16, &req, 1, 1, 0, regs, 2), -1);
    assert_int_equal(mb_encode_write_multiple_registers(buf, 17, &req, 1, 1, 0, regs, 2), 17);

    //  A NULL request record is allowed: the caller may not need it.
    assert_int_equal(mb_encode_read(buf, sizeof buf, NULL, 1, 1, MB_FC_READ_HOLDING, 0, 1), 12);
}

//  --------------------------------------------------------------------------
//  Frame length

static void test_frame_length_partial(void **state)
{
    uint8_t buf[MB_MAX_ADU_LEN];
    const uint8_t pdu[] = {0x03, 0x06, 0x02, 0x2B, 0x00, 0x00, 0x00, 0x64};
    size_t len = s_adu(buf, 1, UNIT, pdu, sizeof pdu);
    assert_int_equal(len, 15);
    //  Every strict prefix needs more bytes; the whole frame is complete.
    for (size_t i = 0; i < len; i++)
        assert_int_equal(mb_frame_length(buf, i), 0);
    assert_int_equal(mb_frame_length(buf, len), 15);
    assert_int_equal(mb_frame_length(NULL, 0), 0);
}

static void test_frame_length_concatenated(void **state)
{
    uint8_t stream[3 * MB_MAX_ADU_LEN];
    const uint8_t pdu1[] = {0x03, 0x02, 0x12, 0x34};
    const uint8_t pdu2[] = {0x83, 0x02};
    const uint8_t pdu3[] = {0x06, 0x00, 0x01, 0x00, 0x03};
    size_t n1 = s_adu(stream, 1, UNIT, pdu1, sizeof pdu1);
    size_t n2 = s_adu(stream + n1, 2, UNIT, pdu2, sizeof pdu2);
    size_t n3 = s_adu(stream + n1 + n2, 3, UNIT, pdu3, sizeof pdu3);
    size_t total = n1 + n2 + n3;

    //  Walk the stream as a receive loop would, including a partial tail.
    size_t pos = 0;
    int len = mb_frame_length(stream + pos, total - pos);
    assert_int_equal(len, (int)n1);
    pos += (size_t)len;
    len = mb_frame_length(stream + pos, total - pos);
    assert_int_equal(len, (int)n2);
    pos += (size_t)len;
    assert_int_equal(mb_frame_length(stream + pos, n3 - 1), 0);
    len = mb_frame_length(stream + pos, total - pos);
    assert_int_equal(len, (int)n3);
    pos += (size_t)len;
    assert_int_equal(pos, total);
    assert_int_equal(mb_frame_length(stream + pos, 0), 0);
}

static void test_frame_length_malformed(void **state)
{
    //  Protocol id not 0 is refused as soon as it has arrived.
    const uint8_t proto[] = {0x00, 0x01, 0x00, 0x01};
    assert_int_equal(mb_frame_length(proto, 3), 0);
    assert_int_equal(mb_frame_length(proto, 4), MB_EMALFORMED);
    const uint8_t proto2[] = {0x00, 0x01, 0x80, 0x00, 0x00, 0x06, 0x11};
    assert_int_equal(mb_frame_length(proto2, sizeof proto2), MB_EMALFORMED);

    //  Length field: 2..254 (unit + 1..253 bytes of PDU).
    uint8_t hdr[MB_MAX_ADU_LEN + 8] = {0x00, 0x01, 0x00, 0x00, 0x00, 0x00};
    assert_int_equal(mb_frame_length(hdr, 6), MB_EMALFORMED);
    hdr[5] = 1;
    assert_int_equal(mb_frame_length(hdr, 6), MB_EMALFORMED);
    hdr[5] = 2;
    assert_int_equal(mb_frame_length(hdr, 6), 0);
    assert_int_equal(mb_frame_length(hdr, 8), 8);
    hdr[5] = 254;
    assert_int_equal(mb_frame_length(hdr, 259), 0);
    assert_int_equal(mb_frame_length(hdr, 260), 260);
    assert_int_equal(mb_frame_length(hdr, sizeof hdr), 260);
    hdr[5] = 255;
    assert_int_equal(mb_frame_length(hdr, 6), MB_EMALFORMED);
    hdr[4] = 0x01; //  256
    hdr[5] = 0x00;
    assert_int_equal(mb_frame_length(hdr, 6), MB_EMALFORMED);
    hdr[4] = 0xFF;
    hdr[5] = 0xFF;
    assert_int_equal(mb_frame_length(hdr, sizeof hdr), MB_EMALFORMED);
}

//  --------------------------------------------------------------------------
//  Decoding good replies

static void test_decode_read_coils(void **state)
{
    uint8_t req_buf[MB_MAX_ADU_LEN], adu[MB_MAX_ADU_LEN];
    mb_request_t req;
    mb_reply_t reply;
    mb_encode_read(req_buf, sizeof req_buf, &req, 0x0102, UNIT, MB_FC_READ_COILS, 19, 19);
    //  Coils 27..20 = CD, 35..28 = 6B, 38..36 = 5 (spec example).
    const uint8_t vec[] = {0x01, 0x02, 0x00, 0x00, 0x00, 0x06, 0x11, 0x01, 0x03, 0xCD, 0x6B, 0x05};
    memcpy(adu, vec, sizeof vec);
    assert_int_equal(mb_frame_length(adu, sizeof vec), (int)sizeof vec);
    assert_int_equal(s_decode(adu, sizeof vec, &req, &reply), MB_OK);
    assert_int_equal(reply.tid, 0x0102);
    assert_int_equal(reply.unit, UNIT);
    assert_int_equal(reply.fc, MB_FC_READ_COILS);
    assert_int_equal(reply.exception, 0);
    assert_int_equal(reply.count, 19);
    assert_int_equal(reply.datalen, 3);
    assert_ptr_equal(reply.data, adu + 9);
    const int expect[19] = {1, 0, 1, 1, 0, 0, 1, 1, 1, 1, 0, 1, 0, 1, 1, 0, 1, 0, 1};
    for (size_t i = 0; i < 19; i++)
        assert_int_equal(mb_reply_bit(&reply, i), expect[i]);
}

static void test_decode_read_discrete_inputs(void **state)
{
    uint8_t req_buf[MB_MAX_ADU_LEN];
    mb_request_t req;
    mb_reply_t reply;
    mb_encode_read(req_buf, sizeof req_buf, &req, 5, UNIT, MB_FC_READ_DISCRETE_INPUTS, 196, 22);
    const uint8_t vec[] = {0x00, 0x05, 0x00, 0x00, 0x00, 0x06, 0x11, 0x02, 0x03, 0xAC, 0xDB, 0x35};
    assert_int_equal(s_decode(vec, sizeof vec, &req, &reply), MB_OK);
    assert_int_equal(reply.fc, MB_FC_READ_DISCRETE_INPUTS);
    assert_int_equal(reply.count, 22);
    //  0xAC = 1010 1100: inputs 196..203 read LSB first.
    const int first[8] = {0, 0, 1, 1, 0, 1, 0, 1};
    for (size_t i = 0; i < 8; i++)
        assert_int_equal(mb_reply_bit(&reply, i), first[i]);
    //  0x35 = 0011 0101: inputs 212..217 are 1 0 1 0 1 1.
    assert_int_equal(mb_reply_bit(&reply, 16), 1);
    assert_int_equal(mb_reply_bit(&reply, 17), 0);
    assert_int_equal(mb_reply_bit(&reply, 21), 1);
}

static void test_decode_read_holding(void **state)
{
    uint8_t req_buf[MB_MAX_ADU_LEN];
    mb_request_t req;
    mb_reply_t reply;
    mb_encode_read(req_buf, sizeof req_buf, &req, 0xABCD, UNIT, MB_FC_READ_HOLDING, 107, 3);
    const uint8_t vec[] = {0xAB, 0xCD, 0x00, 0x00, 0x00, 0x09, 0x11, 0x03,
                           0x06, 0x02, 0x2B, 0x00, 0x00, 0x00, 0x64};
    assert_int_equal(s_decode(vec, sizeof vec, &req, &reply), MB_OK);
    assert_int_equal(reply.fc, MB_FC_READ_HOLDING);
    assert_int_equal(reply.count, 3);
    assert_int_equal(reply.datalen, 6);
    assert_int_equal(mb_reply_register(&reply, 0), 0x022B);
    assert_int_equal(mb_reply_register(&reply, 1), 0x0000);
    assert_int_equal(mb_reply_register(&reply, 2), 0x0064);
}

static void test_decode_read_input(void **state)
{
    uint8_t req_buf[MB_MAX_ADU_LEN];
    mb_request_t req;
    mb_reply_t reply;
    mb_encode_read(req_buf, sizeof req_buf, &req, 3, UNIT, MB_FC_READ_INPUT, 8, 1);
    const uint8_t vec[] = {0x00, 0x03, 0x00, 0x00, 0x00, 0x05, 0x11, 0x04, 0x02, 0x00, 0x0A};
    assert_int_equal(s_decode(vec, sizeof vec, &req, &reply), MB_OK);
    assert_int_equal(reply.fc, MB_FC_READ_INPUT);
    assert_int_equal(reply.count, 1);
    assert_int_equal(mb_reply_register(&reply, 0), 10);
}

static void test_decode_read_maximum(void **state)
{
    uint8_t req_buf[MB_MAX_ADU_LEN], adu[MB_MAX_ADU_LEN], pdu[MB_MAX_ADU_LEN];
    mb_request_t req;
    mb_reply_t reply;

    //  125 registers: byte count 250, a 257-byte ADU.
    mb_encode_read(req_buf, sizeof req_buf, &req, 1, UNIT, MB_FC_READ_HOLDING, 0, 125);
    pdu[0] = MB_FC_READ_HOLDING;
    pdu[1] = 250;
    for (int i = 0; i < 125; i++) {
        pdu[2 + 2 * i] = (uint8_t)(i >> 8);
        pdu[3 + 2 * i] = (uint8_t)(i * 3);
    }
    size_t len = s_adu(adu, 1, UNIT, pdu, 252);
    assert_int_equal(mb_frame_length(adu, len), (int)len);
    assert_int_equal(s_decode(adu, len, &req, &reply), MB_OK);
    assert_int_equal(reply.count, 125);
    assert_int_equal(mb_reply_register(&reply, 124), (uint16_t)(124 * 3 & 0xFF));

    //  2000 bits: byte count 250.
    mb_encode_read(req_buf, sizeof req_buf, &req, 2, UNIT, MB_FC_READ_COILS, 0, 2000);
    pdu[0] = MB_FC_READ_COILS;
    memset(pdu + 2, 0x80, 250);
    len = s_adu(adu, 2, UNIT, pdu, 252);
    assert_int_equal(s_decode(adu, len, &req, &reply), MB_OK);
    assert_int_equal(reply.count, 2000);
    assert_int_equal(mb_reply_bit(&reply, 1999), 1);
    assert_int_equal(mb_reply_bit(&reply, 1998), 0);
}

static void test_decode_writes(void **state)
{
    uint8_t req_buf[MB_MAX_ADU_LEN];
    mb_request_t req;
    mb_reply_t reply;

    mb_encode_write_single_coil(req_buf, sizeof req_buf, &req, 7, UNIT, 172, true);
    const uint8_t coil[] = {0x00, 0x07, 0x00, 0x00, 0x00, 0x06, 0x11, 0x05, 0x00, 0xAC, 0xFF, 0x00};
    assert_int_equal(s_decode(coil, sizeof coil, &req, &reply), MB_OK);
    assert_int_equal(reply.fc, MB_FC_WRITE_SINGLE_COIL);
    assert_int_equal(reply.count, 1);

    mb_encode_write_single_coil(req_buf, sizeof req_buf, &req, 7, UNIT, 172, false);
    const uint8_t coil_off[] = {0x00, 0x07, 0x00, 0x00, 0x00, 0x06,
                                0x11, 0x05, 0x00, 0xAC, 0x00, 0x00};
    assert_int_equal(s_decode(coil_off, sizeof coil_off, &req, &reply), MB_OK);

    mb_encode_write_single_register(req_buf, sizeof req_buf, &req, 9, UNIT, 1, 3);
    const uint8_t reg[] = {0x00, 0x09, 0x00, 0x00, 0x00, 0x06, 0x11, 0x06, 0x00, 0x01, 0x00, 0x03};
    assert_int_equal(s_decode(reg, sizeof reg, &req, &reply), MB_OK);
    assert_int_equal(reply.fc, MB_FC_WRITE_SINGLE_REG);
    assert_int_equal(reply.count, 1);

    const uint8_t bits[10] = {1, 0, 1, 1, 0, 0, 1, 1, 1, 0};
    mb_encode_write_multiple_coils(req_buf, sizeof req_buf, &req, 10, UNIT, 19, bits, 10);
    const uint8_t coils[] = {0x00, 0x0A, 0x00, 0x00, 0x00, 0x06,
                             0x11, 0x0F, 0x00, 0x13, 0x00, 0x0A};
    assert_int_equal(s_decode(coils, sizeof coils, &req, &reply), MB_OK);
    assert_int_equal(reply.fc, MB_FC_WRITE_MULTIPLE_COILS);
    assert_int_equal(reply.count, 10);

    const uint16_t regs[2] = {0x000A, 0x0102};
    mb_encode_write_multiple_registers(req_buf, sizeof req_buf, &req, 11, UNIT, 1, regs, 2);
    const uint8_t regs_reply[] = {0x00, 0x0B, 0x00, 0x00, 0x00, 0x06,
                                  0x11, 0x10, 0x00, 0x01, 0x00, 0x02};
    assert_int_equal(s_decode(regs_reply, sizeof regs_reply, &req, &reply), MB_OK);
    assert_int_equal(reply.fc, MB_FC_WRITE_MULTIPLE_REGS);
    assert_int_equal(reply.count, 2);
}

static void test_decode_exception(void **state)
{
    uint8_t req_buf[MB_MAX_ADU_LEN];
    mb_request_t req;
    mb_reply_t reply;
    const char *why = NULL;

    mb_encode_read(req_buf, sizeof req_buf, &req, 4, UNIT, MB_FC_READ_HOLDING, 0, 1);
    const uint8_t vec[] = {0x00, 0x04, 0x00, 0x00, 0x00, 0x03, 0x11, 0x83, 0x02};
    assert_int_equal(mb_frame_length(vec, sizeof vec), (int)sizeof vec);
    assert_int_equal(mb_decode_reply(vec, sizeof vec, &req, &reply, &why), MB_EXCEPTION);
    assert_int_equal(reply.fc, MB_FC_READ_HOLDING);
    assert_int_equal(reply.exception, 2);
    assert_null(reply.data);
    assert_string_equal(why, "illegal data address");

    //  An exception to every function we send.
    const uint8_t fcs[] = {1, 2, 3, 4, 5, 6, 15, 16};
    for (size_t i = 0; i < sizeof fcs; i++) {
        req.fc = fcs[i];
        const uint8_t pdu[] = {(uint8_t)(fcs[i] | 0x80), 0x04};
        uint8_t adu[16];
        size_t len = s_adu(adu, 4, UNIT, pdu, sizeof pdu);
        assert_int_equal(s_decode(adu, len, &req, &reply), MB_EXCEPTION);
        assert_int_equal(reply.exception, 4);
        assert_int_equal(reply.fc, fcs[i]);
    }

    //  An unknown code is still an exception; the text says it is unknown.
    req.fc = MB_FC_READ_HOLDING;
    const uint8_t odd[] = {0x00, 0x04, 0x00, 0x00, 0x00, 0x03, 0x11, 0x83, 0x7F};
    assert_int_equal(mb_decode_reply(odd, sizeof odd, &req, &reply, &why), MB_EXCEPTION);
    assert_int_equal(reply.exception, 0x7F);
    assert_string_equal(why, "unknown exception code");
}

static void test_exception_text(void **state)
{
    assert_string_equal(mb_exception_text(1), "illegal function");
    assert_string_equal(mb_exception_text(2), "illegal data address");
    assert_string_equal(mb_exception_text(3), "illegal data value");
    assert_string_equal(mb_exception_text(4), "server device failure");
    assert_string_equal(mb_exception_text(6), "server device busy");
    assert_string_equal(mb_exception_text(0x0B), "gateway target device failed to respond");
    assert_string_equal(mb_exception_text(0), "unknown exception code");
    assert_string_equal(mb_exception_text(0xFF), "unknown exception code");
}

//  --------------------------------------------------------------------------
//  Decoding bad replies: malformed

static void test_decode_truncated(void **state)
{
    uint8_t req_buf[MB_MAX_ADU_LEN];
    mb_request_t req;
    mb_reply_t reply;
    mb_encode_read(req_buf, sizeof req_buf, &req, 0xABCD, UNIT, MB_FC_READ_HOLDING, 107, 3);
    const uint8_t vec[] = {0xAB, 0xCD, 0x00, 0x00, 0x00, 0x09, 0x11, 0x03,
                           0x06, 0x02, 0x2B, 0x00, 0x00, 0x00, 0x64};
    //  Every truncation is malformed, never an overread (valgrind/ASan runs).
    for (size_t len = 0; len < sizeof vec; len++) {
        uint8_t *copy = test_malloc(len ? len : 1);
        memcpy(copy, vec, len);
        assert_int_equal(s_decode(copy, len, &req, &reply), MB_EMALFORMED);
        assert_null(reply.data);
        test_free(copy);
    }
    assert_int_equal(s_decode(NULL, 0, &req, &reply), MB_EMALFORMED);
}

static void test_decode_protocol_id(void **state)
{
    uint8_t req_buf[MB_MAX_ADU_LEN];
    mb_request_t req;
    mb_reply_t reply;
    const char *why;
    mb_encode_read(req_buf, sizeof req_buf, &req, 3, UNIT, MB_FC_READ_INPUT, 8, 1);
    const uint8_t vec[] = {0x00, 0x03, 0x00, 0x01, 0x00, 0x05, 0x11, 0x04, 0x02, 0x00, 0x0A};
    assert_int_equal(mb_decode_reply(vec, sizeof vec, &req, &reply, &why), MB_EMALFORMED);
    assert_string_equal(why, "protocol id is not 0");
    //  why may be NULL.
    assert_int_equal(mb_decode_reply(vec, sizeof vec, &req, &reply, NULL), MB_EMALFORMED);
}

static void test_decode_length_field(void **state)
{
    uint8_t req_buf[MB_MAX_ADU_LEN];
    mb_request_t req;
    mb_reply_t reply;
    mb_encode_read(req_buf, sizeof req_buf, &req, 3, UNIT, MB_FC_READ_INPUT, 8, 1);
    uint8_t vec[] = {0x00, 0x03, 0x00, 0x00, 0x00, 0x05, 0x11, 0x04, 0x02, 0x00, 0x0A, 0x00};
    size_t len = sizeof vec - 1;
    assert_int_equal(s_decode(vec, len, &req, &reply), MB_OK);
    //  Length field one short of the frame, one over it.
    vec[5] = 0x04;
    assert_int_equal(s_decode(vec, len, &req, &reply), MB_EMALFORMED);
    vec[5] = 0x06;
    assert_int_equal(s_decode(vec, len, &req, &reply), MB_EMALFORMED);
    //  Frame with a trailing byte the length field does not cover.
    vec[5] = 0x05;
    assert_int_equal(s_decode(vec, len + 1, &req, &reply), MB_EMALFORMED);
    //  Length field below 2 or over 254 (oversize).
    vec[5] = 0x01;
    assert_int_equal(s_decode(vec, len, &req, &reply), MB_EMALFORMED);
    vec[5] = 0x00;
    assert_int_equal(s_decode(vec, len, &req, &reply), MB_EMALFORMED);
    vec[4] = 0x01;
    assert_int_equal(s_decode(vec, len, &req, &reply), MB_EMALFORMED);
    vec[4] = 0xFF;
    vec[5] = 0xFF;
    assert_int_equal(s_decode(vec, len, &req, &reply), MB_EMALFORMED);
}

static void test_decode_oversize_length(void **state)
{
    //  A frame whose length field claims 255 (over the 254 maximum) with all
    //  its bytes present: the length alone makes it malformed.
    uint8_t req_buf[MB_MAX_ADU_LEN], adu[MB_MAX_ADU_LEN + 1], pdu[MB_MAX_ADU_LEN];
    mb_request_t req;
    mb_reply_t reply;
    mb_encode_read(req_buf, sizeof req_buf, &req, 1, UNIT, MB_FC_READ_COILS, 0, 2000);
    pdu[0] = MB_FC_READ_COILS;
    pdu[1] = 252;
    memset(pdu + 2, 0, 252);
    size_t len = s_adu(adu, 1, UNIT, pdu, 254);
    assert_int_equal(len, 261);
    assert_int_equal(mb_frame_length(adu, len), MB_EMALFORMED);
    assert_int_equal(s_decode(adu, len, &req, &reply), MB_EMALFORMED);

    //  Byte count 251 for bits fits the ADU but no bit read can return it.
    pdu[1] = 251;
    len = s_adu(adu, 1, UNIT, pdu, 253);
    assert_int_equal(mb_frame_length(adu, len), 260);
    assert_int_equal(s_decode(adu, len, &req, &reply), MB_EMALFORMED);
}

static void test_decode_byte_count(void **state)
{
    uint8_t req_buf[MB_MAX_ADU_LEN];
    mb_request_t req;
    mb_reply_t reply;
    const char *why;
    mb_encode_read(req_buf, sizeof req_buf, &req, 1, UNIT, MB_FC_READ_HOLDING, 107, 3);

    //  Byte count disagrees with the bytes that follow it: malformed.
    uint8_t vec[] = {0x00, 0x01, 0x00, 0x00, 0x00, 0x09, 0x11, 0x03,
                     0x07, 0x02, 0x2B, 0x00, 0x00, 0x00, 0x64};
    assert_int_equal(mb_decode_reply(vec, sizeof vec, &req, &reply, &why), MB_EMALFORMED);
    vec[8] = 0x05;
    assert_int_equal(s_decode(vec, sizeof vec, &req, &reply), MB_EMALFORMED);

    //  Odd byte count for registers, consistent with the frame: malformed.
    const uint8_t odd[] = {0x00, 0x01, 0x00, 0x00, 0x00, 0x06, 0x11, 0x03, 0x03, 0x02, 0x2B, 0x00};
    assert_int_equal(mb_decode_reply(odd, sizeof odd, &req, &reply, &why), MB_EMALFORMED);
    assert_string_equal(why, "odd byte count for registers");

    //  Byte count 0, and no byte count at all.
    const uint8_t zero[] = {0x00, 0x01, 0x00, 0x00, 0x00, 0x03, 0x11, 0x03, 0x00};
    assert_int_equal(s_decode(zero, sizeof zero, &req, &reply), MB_EMALFORMED);
    const uint8_t none[] = {0x00, 0x01, 0x00, 0x00, 0x00, 0x02, 0x11, 0x03};
    assert_int_equal(s_decode(none, sizeof none, &req, &reply), MB_EMALFORMED);

    //  Well formed, but 2 registers for a request of 3: a mismatch.
    const uint8_t two[] = {0x00, 0x01, 0x00, 0x00, 0x00, 0x07, 0x11,
                           0x03, 0x04, 0x02, 0x2B, 0x00, 0x00};
    assert_int_equal(mb_decode_reply(two, sizeof two, &req, &reply, &why), MB_EMISMATCH);
    assert_null(reply.data);
    assert_int_equal(reply.datalen, 0);

    //  Bits: 19 coils need 3 bytes; 2 or 4 is a mismatch.
    mb_encode_read(req_buf, sizeof req_buf, &req, 1, UNIT, MB_FC_READ_COILS, 19, 19);
    const uint8_t b2[] = {0x00, 0x01, 0x00, 0x00, 0x00, 0x05, 0x11, 0x01, 0x02, 0xCD, 0x6B};
    assert_int_equal(s_decode(b2, sizeof b2, &req, &reply), MB_EMISMATCH);
    const uint8_t b4[] = {0x00, 0x01, 0x00, 0x00, 0x00, 0x07, 0x11,
                          0x01, 0x04, 0xCD, 0x6B, 0x05, 0x00};
    assert_int_equal(s_decode(b4, sizeof b4, &req, &reply), MB_EMISMATCH);
}

static void test_decode_bad_exception(void **state)
{
    uint8_t req_buf[MB_MAX_ADU_LEN];
    mb_request_t req;
    mb_reply_t reply;
    mb_encode_read(req_buf, sizeof req_buf, &req, 4, UNIT, MB_FC_READ_HOLDING, 0, 1);
    //  Exception with an extra byte, without its code, with code 0.
    const uint8_t longer[] = {0x00, 0x04, 0x00, 0x00, 0x00, 0x04, 0x11, 0x83, 0x02, 0x00};
    assert_int_equal(s_decode(longer, sizeof longer, &req, &reply), MB_EMALFORMED);
    const uint8_t shorter[] = {0x00, 0x04, 0x00, 0x00, 0x00, 0x02, 0x11, 0x83};
    assert_int_equal(s_decode(shorter, sizeof shorter, &req, &reply), MB_EMALFORMED);
    const uint8_t zero[] = {0x00, 0x04, 0x00, 0x00, 0x00, 0x03, 0x11, 0x83, 0x00};
    assert_int_equal(s_decode(zero, sizeof zero, &req, &reply), MB_EMALFORMED);
    //  Exception bit on a function code we never send.
    const uint8_t unknown[] = {0x00, 0x04, 0x00, 0x00, 0x00, 0x03, 0x11, 0xAB, 0x01};
    assert_int_equal(s_decode(unknown, sizeof unknown, &req, &reply), MB_EMALFORMED);
}

static void test_decode_unknown_fc(void **state)
{
    uint8_t req_buf[MB_MAX_ADU_LEN];
    mb_request_t req;
    mb_reply_t reply;
    const char *why;
    mb_encode_read(req_buf, sizeof req_buf, &req, 4, UNIT, MB_FC_READ_HOLDING, 0, 1);
    const uint8_t fcs[] = {0x00, 0x07, 0x08, 0x11, 0x17, 0x2B, 0x7F};
    for (size_t i = 0; i < sizeof fcs; i++) {
        uint8_t adu[] = {0x00, 0x04, 0x00, 0x00, 0x00, 0x05, 0x11, fcs[i], 0x02, 0x00, 0x01};
        assert_int_equal(mb_decode_reply(adu, sizeof adu, &req, &reply, &why), MB_EMALFORMED);
        assert_string_equal(why, "unsupported function code");
    }
}

static void test_decode_bad_writes(void **state)
{
    uint8_t req_buf[MB_MAX_ADU_LEN];
    mb_request_t req;
    mb_reply_t reply;

    //  Single write replies are exactly 5 bytes of PDU.
    mb_encode_write_single_register(req_buf, sizeof req_buf, &req, 9, UNIT, 1, 3);
    const uint8_t short6[] = {0x00, 0x09, 0x00, 0x00, 0x00, 0x05, 0x11, 0x06, 0x00, 0x01, 0x00};
    assert_int_equal(s_decode(short6, sizeof short6, &req, &reply), MB_EMALFORMED);
    const uint8_t long6[] = {0x00, 0x09, 0x00, 0x00, 0x00, 0x07, 0x11,
                             0x06, 0x00, 0x01, 0x00, 0x03, 0x00};
    assert_int_equal(s_decode(long6, sizeof long6, &req, &reply), MB_EMALFORMED);

    //  A coil value other than 0xFF00 and 0x0000 does not exist.
    mb_encode_write_single_coil(req_buf, sizeof req_buf, &req, 7, UNIT, 172, true);
    const uint8_t coil[] = {0x00, 0x07, 0x00, 0x00, 0x00, 0x06, 0x11, 0x05, 0x00, 0xAC, 0x00, 0x01};
    assert_int_equal(s_decode(coil, sizeof coil, &req, &reply), MB_EMALFORMED);

    //  Multiple write replies: 5 bytes, count 1..max.
    const uint16_t regs[2] = {1, 2};
    mb_encode_write_multiple_registers(req_buf, sizeof req_buf, &req, 11, UNIT, 1, regs, 2);
    const uint8_t short16[] = {0x00, 0x0B, 0x00, 0x00, 0x00, 0x05, 0x11, 0x10, 0x00, 0x01, 0x00};
    assert_int_equal(s_decode(short16, sizeof short16, &req, &reply), MB_EMALFORMED);
    const uint8_t zero16[] = {0x00, 0x0B, 0x00, 0x00, 0x00, 0x06,
                              0x11, 0x10, 0x00, 0x01, 0x00, 0x00};
    assert_int_equal(s_decode(zero16, sizeof zero16, &req, &reply), MB_EMALFORMED);
    const uint8_t big16[] = {0x00, 0x0B, 0x00, 0x00, 0x00, 0x06, 0x11, 0x10, 0x00, 0x01, 0x00, 124};
    assert_int_equal(s_decode(big16, sizeof big16, &req, &reply), MB_EMALFORMED);
    const uint8_t bits[2] = {1, 1};
    mb_encode_write_multiple_coils(req_buf, sizeof req_buf, &req, 11, UNIT, 1, bits, 2);
    const uint8_t big15[] = {0x00, 0x0B, 0x00, 0x00, 0x00, 0x06,
                             0x11, 0x0F, 0x00, 0x01, 0x07, 0xB1};
    assert_int_equal(s_decode(big15, sizeof big15, &req, &reply), MB_EMALFORMED);
}

//  --------------------------------------------------------------------------
//  Decoding bad replies: mismatched

static void test_decode_wrong_tid(void **state)
{
    uint8_t req_buf[MB_MAX_ADU_LEN];
    mb_request_t req;
    mb_reply_t reply;
    const char *why;
    mb_encode_read(req_buf, sizeof req_buf, &req, 3, UNIT, MB_FC_READ_INPUT, 8, 1);
    //  A late reply to transaction 2 while we wait for 3.
    const uint8_t vec[] = {0x00, 0x02, 0x00, 0x00, 0x00, 0x05, 0x11, 0x04, 0x02, 0x00, 0x0A};
    assert_int_equal(mb_decode_reply(vec, sizeof vec, &req, &reply, &why), MB_EMISMATCH);
    assert_string_equal(why, "wrong transaction id");
    assert_int_equal(reply.tid, 2); //  for the I/O log
    assert_null(reply.data);
    //  An exception for another transaction is a mismatch, not an exception.
    const uint8_t exc[] = {0x00, 0x02, 0x00, 0x00, 0x00, 0x03, 0x11, 0x84, 0x02};
    assert_int_equal(s_decode(exc, sizeof exc, &req, &reply), MB_EMISMATCH);
}

static void test_decode_wrong_unit(void **state)
{
    uint8_t req_buf[MB_MAX_ADU_LEN];
    mb_request_t req;
    mb_reply_t reply;
    const char *why;
    mb_encode_read(req_buf, sizeof req_buf, &req, 3, UNIT, MB_FC_READ_INPUT, 8, 1);
    const uint8_t vec[] = {0x00, 0x03, 0x00, 0x00, 0x00, 0x05, 0x12, 0x04, 0x02, 0x00, 0x0A};
    assert_int_equal(mb_decode_reply(vec, sizeof vec, &req, &reply, &why), MB_EMISMATCH);
    assert_string_equal(why, "wrong unit id");
    assert_int_equal(reply.unit, 0x12);
}

static void test_decode_wrong_fc(void **state)
{
    uint8_t req_buf[MB_MAX_ADU_LEN];
    mb_request_t req;
    mb_reply_t reply;
    const char *why;
    mb_encode_read(req_buf, sizeof req_buf, &req, 3, UNIT, MB_FC_READ_HOLDING, 8, 1);
    //  A well-formed fc 4 reply to an fc 3 request, and an fc 4 exception.
    const uint8_t vec[] = {0x00, 0x03, 0x00, 0x00, 0x00, 0x05, 0x11, 0x04, 0x02, 0x00, 0x0A};
    assert_int_equal(mb_decode_reply(vec, sizeof vec, &req, &reply, &why), MB_EMISMATCH);
    assert_string_equal(why, "wrong function code");
    const uint8_t exc[] = {0x00, 0x03, 0x00, 0x00, 0x00, 0x03, 0x11, 0x84, 0x02};
    assert_int_equal(s_decode(exc, sizeof exc, &req, &reply), MB_EMISMATCH);
    //  A write echo to a read.
    const uint8_t echo[] = {0x00, 0x03, 0x00, 0x00, 0x00, 0x06, 0x11, 0x06, 0x00, 0x08, 0x00, 0x01};
    assert_int_equal(s_decode(echo, sizeof echo, &req, &reply), MB_EMISMATCH);
}

static void test_decode_write_echo(void **state)
{
    uint8_t req_buf[MB_MAX_ADU_LEN];
    mb_request_t req;
    mb_reply_t reply;
    const char *why;

    //  fc 5: address and value must both be echoed.
    mb_encode_write_single_coil(req_buf, sizeof req_buf, &req, 7, UNIT, 172, true);
    const uint8_t off[] = {0x00, 0x07, 0x00, 0x00, 0x00, 0x06, 0x11, 0x05, 0x00, 0xAC, 0x00, 0x00};
    assert_int_equal(mb_decode_reply(off, sizeof off, &req, &reply, &why), MB_EMISMATCH);
    assert_string_equal(why, "write reply echoes another value");
    const uint8_t addr5[] = {0x00, 0x07, 0x00, 0x00, 0x00, 0x06,
                             0x11, 0x05, 0x00, 0xAD, 0xFF, 0x00};
    assert_int_equal(mb_decode_reply(addr5, sizeof addr5, &req, &reply, &why), MB_EMISMATCH);
    assert_string_equal(why, "write reply echoes another address");

    //  fc 6.
    mb_encode_write_single_register(req_buf, sizeof req_buf, &req, 9, UNIT, 1, 3);
    const uint8_t val6[] = {0x00, 0x09, 0x00, 0x00, 0x00, 0x06, 0x11, 0x06, 0x00, 0x01, 0x00, 0x04};
    assert_int_equal(s_decode(val6, sizeof val6, &req, &reply), MB_EMISMATCH);
    const uint8_t addr6[] = {0x00, 0x09, 0x00, 0x00, 0x00, 0x06,
                             0x11, 0x06, 0x01, 0x01, 0x00, 0x03};
    assert_int_equal(s_decode(addr6, sizeof addr6, &req, &reply), MB_EMISMATCH);

    //  fc 15: address and count.
    const uint8_t bits[10] = {1, 0, 1, 1, 0, 0, 1, 1, 1, 0};
    mb_encode_write_multiple_coils(req_buf, sizeof req_buf, &req, 10, UNIT, 19, bits, 10);
    const uint8_t cnt15[] = {0x00, 0x0A, 0x00, 0x00, 0x00, 0x06,
                             0x11, 0x0F, 0x00, 0x13, 0x00, 0x09};
    assert_int_equal(mb_decode_reply(cnt15, sizeof cnt15, &req, &reply, &why), MB_EMISMATCH);
    assert_string_equal(why, "write reply echoes another count");
    const uint8_t addr15[] = {0x00, 0x0A, 0x00, 0x00, 0x00, 0x06,
                              0x11, 0x0F, 0x00, 0x14, 0x00, 0x0A};
    assert_int_equal(s_decode(addr15, sizeof addr15, &req, &reply), MB_EMISMATCH);

    //  fc 16: address and count.
    const uint16_t regs[2] = {0x000A, 0x0102};
    mb_encode_write_multiple_registers(req_buf, sizeof req_buf, &req, 11, UNIT, 1, regs, 2);
    const uint8_t cnt16[] = {0x00, 0x0B, 0x00, 0x00, 0x00, 0x06,
                             0x11, 0x10, 0x00, 0x01, 0x00, 0x03};
    assert_int_equal(s_decode(cnt16, sizeof cnt16, &req, &reply), MB_EMISMATCH);
    const uint8_t addr16[] = {0x00, 0x0B, 0x00, 0x00, 0x00, 0x06,
                              0x11, 0x10, 0x00, 0x00, 0x00, 0x02};
    assert_int_equal(s_decode(addr16, sizeof addr16, &req, &reply), MB_EMISMATCH);
}

static void test_decode_foreign_request(void **state)
{
    //  A request record not made by the encoders (fc 8) can match nothing.
    mb_request_t req = {.tid = 1, .unit = UNIT, .fc = 0x08, .addr = 0, .count = 1};
    mb_reply_t reply;
    const uint8_t vec[] = {0x00, 0x01, 0x00, 0x00, 0x00, 0x05, 0x11, 0x04, 0x02, 0x00, 0x0A};
    assert_int_equal(s_decode(vec, sizeof vec, &req, &reply), MB_EMISMATCH);
}

//  Every request the encoders make, answered with a correct reply built by
//  hand, decodes to MB_OK: the encoder and decoder agree on every field.
static void test_round_trip(void **state)
{
    uint8_t req_buf[MB_MAX_ADU_LEN], adu[MB_MAX_ADU_LEN], pdu[MB_MAX_ADU_LEN];
    mb_request_t req;
    mb_reply_t reply;
    uint16_t tid = 0xFFF0;
    const uint16_t counts[] = {1, 2, 7, 8, 9, 15, 16, 17, 124, 125, 126, 1999, 2000};
    for (uint8_t fc = MB_FC_READ_COILS; fc <= MB_FC_READ_INPUT; fc++) {
        for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++) {
            uint16_t count = counts[c];
            int bitwise = fc <= MB_FC_READ_DISCRETE_INPUTS;
            int n = mb_encode_read(req_buf, sizeof req_buf, &req, tid, UNIT, fc, 100, count);
            if (!bitwise && count > 125) {
                assert_int_equal(n, -1);
                continue;
            }
            assert_int_equal(n, 12);
            size_t nbytes = bitwise ? ((size_t)count + 7) / 8 : 2 * (size_t)count;
            pdu[0] = fc;
            pdu[1] = (uint8_t)nbytes;
            for (size_t i = 0; i < nbytes; i++)
                pdu[2 + i] = (uint8_t)(i * 37 + c);
            size_t len = s_adu(adu, tid, UNIT, pdu, nbytes + 2);
            assert_int_equal(mb_frame_length(adu, len), (int)len);
            assert_int_equal(s_decode(adu, len, &req, &reply), MB_OK);
            assert_int_equal(reply.count, count);
            if (bitwise)
                for (size_t i = 0; i < count; i++)
                    assert_int_equal(mb_reply_bit(&reply, i), (pdu[2 + i / 8] >> (i % 8)) & 1);
            else
                for (size_t i = 0; i < count; i++)
                    assert_int_equal(mb_reply_register(&reply, i),
                                     (pdu[2 + 2 * i] << 8) | pdu[3 + 2 * i]);
            tid++; //  wraps through 0
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encode_read_coils),
        cmocka_unit_test(test_encode_read_discrete_inputs),
        cmocka_unit_test(test_encode_read_holding),
        cmocka_unit_test(test_encode_read_input),
        cmocka_unit_test(test_encode_write_single_coil),
        cmocka_unit_test(test_encode_write_single_register),
        cmocka_unit_test(test_encode_write_multiple_coils),
        cmocka_unit_test(test_encode_write_multiple_registers),
        cmocka_unit_test(test_encode_limits),
        cmocka_unit_test(test_frame_length_partial),
        cmocka_unit_test(test_frame_length_concatenated),
        cmocka_unit_test(test_frame_length_malformed),
        cmocka_unit_test(test_decode_read_coils),
        cmocka_unit_test(test_decode_read_discrete_inputs),
        cmocka_unit_test(test_decode_read_holding),
        cmocka_unit_test(test_decode_read_input),
        cmocka_unit_test(test_decode_read_maximum),
        cmocka_unit_test(test_decode_writes),
        cmocka_unit_test(test_decode_exception),
        cmocka_unit_test(test_exception_text),
        cmocka_unit_test(test_decode_truncated),
        cmocka_unit_test(test_decode_protocol_id),
        cmocka_unit_test(test_decode_length_field),
        cmocka_unit_test(test_decode_oversize_length),
        cmocka_unit_test(test_decode_byte_count),
        cmocka_unit_test(test_decode_bad_exception),
        cmocka_unit_test(test_decode_unknown_fc),
        cmocka_unit_test(test_decode_bad_writes),
        cmocka_unit_test(test_decode_wrong_tid),
        cmocka_unit_test(test_decode_wrong_unit),
        cmocka_unit_test(test_decode_wrong_fc),
        cmocka_unit_test(test_decode_write_echo),
        cmocka_unit_test(test_decode_foreign_request),
        cmocka_unit_test(test_round_trip),
    };
    return cmocka_run_group_tests_name("mbtcp", tests, NULL, NULL);
}
