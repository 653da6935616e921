/*  mbserve: answer one Modbus request for a simulated device. See mbserve.h. */
#include "mbserve.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

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

int mbserve_broadcast(modbus_t *ctx, const uint8_t *adu, int adu_len, int trailer_len,
                      modbus_mapping_t *mapping)
{
    int header = modbus_get_header_length(ctx);
    int pdu_len = adu_len - header - trailer_len;
    if (pdu_len < 1)
        return MODBUS_EXCEPTION_ILLEGAL_DATA_VALUE;
    int code = mbserve_check(adu + header, (size_t)pdu_len);
    if (code)
        return code;
    //  No descriptor: should a reply be attempted after all, it fails (EBADF).
    modbus_set_socket(ctx, -1);
    modbus_reply(ctx, adu, adu_len, mapping);
    return 0;
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

    //  The RTU backend through a pipe: unit + PDU + CRC out, broadcasts silent.
    modbus_t *rtu = modbus_new_rtu("/dev/null", 9600, 'N', 8, 1);
    modbus_mapping_t *map = modbus_mapping_new(0, 0, 10, 0);
    int fds[2] = {-1, -1};
    s_check(rtu && map && pipe2(fds, O_NONBLOCK) == 0);
    if (rtu && map && fds[0] >= 0) {
        for (int i = 0; i < 10; i++)
            map->tab_registers[i] = (uint16_t)(i * 10);
        uint8_t out[64];
        mbserve_kind_t kind = MBSERVE_EXCEPTION;
        //  The request's CRC is the transport's business; mbserve skips it.
        const uint8_t read2[] = {0x07, 0x03, 0x00, 0x02, 0x00, 0x02, 0xEE, 0xEE};
        s_check(mbserve_reply(rtu, fds[1], read2, 8, 2, map, &kind) == 0);
        s_check(kind == MBSERVE_DATA);
        s_check(read(fds[0], out, sizeof out) == 9);
        s_check(out[0] == 7 && out[1] == 3 && out[2] == 4 && out[3] == 0 && out[4] == 20 &&
                out[5] == 0 && out[6] == 30);
        const uint8_t badcount[] = {0x07, 0x03, 0x00, 0x02, 0x00, 0x00, 0xEE, 0xEE};
        s_check(mbserve_reply(rtu, fds[1], badcount, 8, 2, map, &kind) == 0);
        s_check(kind == MBSERVE_EXCEPTION);
        s_check(read(fds[0], out, sizeof out) == 5 && out[1] == 0x83 && out[2] == 3);
        s_check(mbserve_exception(rtu, fds[1], read2, 6) == 0);
        s_check(read(fds[0], out, sizeof out) == 5 && out[0] == 7 && out[1] == 0x83 && out[2] == 6);
        const uint8_t bcast[] = {0x00, 0x06, 0x00, 0x01, 0x12, 0x34, 0xEE, 0xEE};
        s_check(mbserve_broadcast(rtu, bcast, 8, 2, map) == 0);
        s_check(map->tab_registers[1] == 0x1234);
        const uint8_t bbad[] = {0x00, 0x10, 0x00, 0x01, 0x00, 0x01, 0x03, 0, 0, 0, 0xEE, 0xEE};
        s_check(mbserve_broadcast(rtu, bbad, 12, 2, map) == 3);
        s_check(read(fds[0], out, sizeof out) == -1); //  nothing was sent for either
    }
    if (fds[0] >= 0) {
        close(fds[0]);
        close(fds[1]);
    }
    modbus_mapping_free(map);
    if (rtu)
        modbus_free(rtu);
    if (verbose)
        fprintf(stderr, "mbserve_test: %s\n", failed ? "FAILED" : "OK");
    return failed;
#undef s_check
}
