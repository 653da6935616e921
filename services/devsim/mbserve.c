/*  mbserve: answer one Modbus request for a simulated device. See mbserve.h. */
#include "mbserve.h"

#include <errno.h>
#include <stdio.h>

static unsigned s_u16(const uint8_t *p)
{
    return (unsigned)p[0] << 8 | p[1];
}

int mbserve_check(const uint8_t *pdu, size_t pdu_len)
{
    if (pdu_len < 1)
        return MODBUS_EXCEPTION_ILLEGAL_DATA_VALUE;
    unsigned count = pdu_len >= 5 ? s_u16(pdu + 3) : 0;
    switch (pdu[0]) {
    case MODBUS_FC_READ_COILS:
    case MODBUS_FC_READ_DISCRETE_INPUTS:
        if (pdu_len != 5 || count < 1 || count > MODBUS_MAX_READ_BITS)
            return MODBUS_EXCEPTION_ILLEGAL_DATA_VALUE;
        return 0;
    case MODBUS_FC_READ_HOLDING_REGISTERS:
    case MODBUS_FC_READ_INPUT_REGISTERS:
        if (pdu_len != 5 || count < 1 || count > MODBUS_MAX_READ_REGISTERS)
            return MODBUS_EXCEPTION_ILLEGAL_DATA_VALUE;
        return 0;
    case MODBUS_FC_WRITE_SINGLE_COIL:
    case MODBUS_FC_WRITE_SINGLE_REGISTER:
        return pdu_len == 5 ? 0 : MODBUS_EXCEPTION_ILLEGAL_DATA_VALUE;
    case MODBUS_FC_WRITE_MULTIPLE_COILS:
        if (pdu_len < 6 || count < 1 || count > MODBUS_MAX_WRITE_BITS ||
            pdu[5] != (count + 7) / 8 || pdu_len != 6 + (size_t)pdu[5])
            return MODBUS_EXCEPTION_ILLEGAL_DATA_VALUE;
        return 0;
    case MODBUS_FC_WRITE_MULTIPLE_REGISTERS:
        if (pdu_len < 6 || count < 1 || count > MODBUS_MAX_WRITE_REGISTERS || pdu[5] != count * 2 ||
            pdu_len != 6 + (size_t)pdu[5])
            return MODBUS_EXCEPTION_ILLEGAL_DATA_VALUE;
        return 0;
    case MODBUS_FC_MASK_WRITE_REGISTER:
        return pdu_len == 7 ? 0 : MODBUS_EXCEPTION_ILLEGAL_DATA_VALUE;
    case MODBUS_FC_REPORT_SLAVE_ID:
        return pdu_len == 1 ? 0 : MODBUS_EXCEPTION_ILLEGAL_DATA_VALUE;
    default:
        //  Includes 0x07 (libmodbus answers nothing) and 0x17 (unsafe in 3.1.6).
        return MODBUS_EXCEPTION_ILLEGAL_FUNCTION;
    }
}

//  modbus_reply*() return the bytes sent or -1; a short send is -1 already.
static int s_sent(int rc)
{
    if (rc > 0)
        return 0;
    if (rc == 0)
        errno = EIO;
    return -1;
}

int mbserve_reply(modbus_t *ctx, int fd, const uint8_t *adu, int adu_len, int trailer_len,
                  modbus_mapping_t *mapping, mbserve_kind_t *kind)
{
    int header = modbus_get_header_length(ctx);
    int pdu_len = adu_len - header - trailer_len;
    int code = pdu_len >= 1 ? mbserve_check(adu + header, (size_t)pdu_len)
                            : MODBUS_EXCEPTION_ILLEGAL_DATA_VALUE;
    if (code || pdu_len < 1) {
        *kind = MBSERVE_EXCEPTION;
        return mbserve_exception(ctx, fd, adu, code);
    }
    modbus_set_socket(ctx, fd);
    int rc = modbus_reply(ctx, adu, adu_len, mapping);
    modbus_set_socket(ctx, -1);
    //  Illegal-address answers that modbus_reply() makes from the mapping's
    //  bounds count as data: libmodbus does not tell them apart.
    *kind = MBSERVE_DATA;
    return s_sent(rc);
}

int mbserve_exception(modbus_t *ctx, int fd, const uint8_t *adu, int code)
{
    modbus_set_socket(ctx, fd);
    int rc = modbus_reply_exception(ctx, adu, (unsigned)code);
    modbus_set_socket(ctx, -1);
    return s_sent(rc);
}

int mbserve_test(bool verbose)
{
    int failed = 0;
#define s_check(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "mbserve_test: %s:%d: %s\n", __FILE__, __LINE__, #cond);               \
            failed++;                                                                              \
        }                                                                                          \
    } while (0)
    s_check(mbserve_check((const uint8_t *)"\x03\x00\x00\x00\x01", 5) == 0);
    s_check(mbserve_check((const uint8_t *)"\x03\x00\x00\x00\x7d", 5) == 0);
    s_check(mbserve_check((const uint8_t *)"\x03\x00\x00\x00\x7e", 5) == 3);
    s_check(mbserve_check((const uint8_t *)"\x04\x00\x00\x00\x00", 5) == 3);
    s_check(mbserve_check((const uint8_t *)"\x03\x00\x00\x00", 4) == 3);
    s_check(mbserve_check((const uint8_t *)"\x01\x00\x00\x07\xd0", 5) == 0);
    s_check(mbserve_check((const uint8_t *)"\x02\x00\x00\x07\xd1", 5) == 3);
    s_check(mbserve_check((const uint8_t *)"\x05\x00\x01\xff\x00", 5) == 0);
    s_check(mbserve_check((const uint8_t *)"\x06\x00\x01\x12\x34\x00", 6) == 3);
    s_check(mbserve_check((const uint8_t *)"\x10\x00\x00\x00\x02\x04\x00\x01\x00\x02", 10) == 0);
    s_check(mbserve_check((const uint8_t *)"\x10\x00\x00\x00\x02\x04\x00\x01\x00", 9) == 3);
    s_check(mbserve_check((const uint8_t *)"\x10\x00\x00\x00\x02\x03\x00\x01\x00", 9) == 3);
    s_check(mbserve_check((const uint8_t *)"\x0f\x00\x00\x00\x0a\x02\xff\x03", 8) == 0);
    s_check(mbserve_check((const uint8_t *)"\x0f\x00\x00\x00\x0a\x01\xff", 7) == 3);
    s_check(mbserve_check((const uint8_t *)"\x16\x00\x00\xff\x00\x00\x0f", 7) == 0);
    s_check(mbserve_check((const uint8_t *)"\x17\x00\x00\x00\x01\x00\x00\x00\x01\x02\x00\x01",
                          12) == 1);
    s_check(mbserve_check((const uint8_t *)"\x07", 1) == 1);
    s_check(mbserve_check((const uint8_t *)"\x2b", 1) == 1);
    s_check(mbserve_check((const uint8_t *)"\x11", 1) == 0);
    s_check(mbserve_check((const uint8_t *)"", 0) == 3);
    if (verbose)
        fprintf(stderr, "mbserve_test: %s\n", failed ? "FAILED" : "OK");
    return failed;
#undef s_check
}
