/*  test_mbtcp_libmodbus: the codec against libmodbus as a second opinion.

    A small Modbus TCP server runs in a thread on a loopback port. It answers
    every request from a made-up device memory (register and bit values are
    a function of their address) and records the last request and reply
    bytes. The test drives libmodbus against it, then checks that:
    - the request bytes libmodbus sent are exactly what our encoders produce
      for the same transaction id;
    - our decoder, given the reply bytes libmodbus received, yields the same
      values libmodbus returned (and the same refusals for bad replies).
    The server builds replies by hand from the request bytes, not with the
    codec, so an error in the codec cannot hide itself on both sides.

    It also checks tagval's float32 decoding against libmodbus's float helpers
    in both word orders.
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "mbtcp.h"
#include "tagval.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <modbus.h>
#include <netinet/in.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define UNIT 0x11

//  Addresses from here on answer "illegal data address".
#define EXCEPTION_ADDR 0xF000

typedef enum {
    TWIST_NONE = 0,   //  a correct reply
    TWIST_TID,        //  reply carries the next transaction id
    TWIST_SHORT_READ, //  reply to a read returns one register or 8 bits fewer
} twist_t;

typedef struct {
    int listen_fd;
    pthread_t thread;
    pthread_mutex_t lock;
    twist_t twist;                   //  applied to the next reply only
    uint8_t request[MB_MAX_ADU_LEN]; //  last request received
    size_t request_len;
    uint8_t reply[MB_MAX_ADU_LEN + 8]; //  last reply sent
    size_t reply_len;
    modbus_t *ctx; //  the libmodbus client
} fixture_t;

//  --------------------------------------------------------------------------
//  The device memory: values depend on area and address only.

static uint16_t s_reg(uint8_t fc, uint32_t addr)
{
    return (uint16_t)(addr * 40503u + (fc == MB_FC_READ_HOLDING ? 0x1234u : 0x8765u));
}

static int s_bit(uint8_t fc, uint32_t addr)
{
    return (int)(((addr * 2654435761u) >> (fc == MB_FC_READ_COILS ? 7 : 13)) & 1);
}

//  --------------------------------------------------------------------------
//  The server thread

static int s_read_full(int fd, uint8_t *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = recv(fd, buf + got, len - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        got += (size_t)n;
    }
    return 0;
}

//  Build the reply to `req` into `out` by hand; returns its length.
static size_t s_answer(const uint8_t *req, twist_t twist, uint8_t *out)
{
    uint8_t fc = req[7];
    uint16_t addr = (uint16_t)(req[8] << 8 | req[9]);
    uint16_t count = (uint16_t)(req[10] << 8 | req[11]);
    uint8_t *pdu = out + 7;
    size_t pdu_len;

    if (addr >= EXCEPTION_ADDR) {
        pdu[0] = fc | 0x80;
        pdu[1] = 0x02;
        pdu_len = 2;
    } else if (fc == MB_FC_READ_COILS || fc == MB_FC_READ_DISCRETE_INPUTS) {
        if (twist == TWIST_SHORT_READ)
            count = count > 8 ? count - 8 : 0;
        size_t nbytes = ((size_t)count + 7) / 8;
        pdu[0] = fc;
        pdu[1] = (uint8_t)nbytes;
        memset(pdu + 2, 0, nbytes);
        for (uint32_t i = 0; i < count; i++)
            if (s_bit(fc, addr + i))
                pdu[2 + i / 8] |= (uint8_t)(1u << (i % 8));
        pdu_len = 2 + nbytes;
    } else if (fc == MB_FC_READ_HOLDING || fc == MB_FC_READ_INPUT) {
        if (twist == TWIST_SHORT_READ)
            count--;
        pdu[0] = fc;
        pdu[1] = (uint8_t)(2 * count);
        for (uint32_t i = 0; i < count; i++) {
            uint16_t v = s_reg(fc, addr + i);
            pdu[2 + 2 * i] = (uint8_t)(v >> 8);
            pdu[3 + 2 * i] = (uint8_t)v;
        }
        pdu_len = 2 + 2 * (size_t)count;
    } else {
        //  Writes: fc 5 and 6 echo the request, fc 15 and 16 its first 5 bytes.
        memcpy(pdu, req + 7, 5);
        pdu_len = 5;
    }
    uint16_t tid = (uint16_t)(req[0] << 8 | req[1]);
    if (twist == TWIST_TID)
        tid++;
    out[0] = (uint8_t)(tid >> 8);
    out[1] = (uint8_t)tid;
    out[2] = 0;
    out[3] = 0;
    out[4] = (uint8_t)((pdu_len + 1) >> 8);
    out[5] = (uint8_t)(pdu_len + 1);
    out[6] = req[6];
    return 7 + pdu_len;
}

static void *s_server(void *arg)
{
    fixture_t *self = arg;
    int fd = accept(self->listen_fd, NULL, NULL);
    if (fd < 0)
        return NULL;
    uint8_t req[MB_MAX_ADU_LEN], reply[MB_MAX_ADU_LEN + 8];
    while (1) {
        //  MBAP: the length field at bytes 4-5 counts the unit byte and PDU.
        if (s_read_full(fd, req, 6))
            break;
        size_t length = (size_t)(req[4] << 8 | req[5]);
        if (length < 2 || length > MB_MAX_ADU_LEN - 6 || s_read_full(fd, req + 6, length))
            break;
        size_t req_len = 6 + length;
        pthread_mutex_lock(&self->lock);
        twist_t twist = self->twist;
        self->twist = TWIST_NONE;
        size_t reply_len = s_answer(req, twist, reply);
        memcpy(self->request, req, req_len);
        self->request_len = req_len;
        memcpy(self->reply, reply, reply_len);
        self->reply_len = reply_len;
        pthread_mutex_unlock(&self->lock);
        if (send(fd, reply, reply_len, MSG_NOSIGNAL) != (ssize_t)reply_len)
            break;
    }
    close(fd);
    return NULL;
}

static int s_setup(void **state)
{
    fixture_t *self = test_calloc(1, sizeof *self);
    assert_non_null(self);
    pthread_mutex_init(&self->lock, NULL);
    self->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(self->listen_fd >= 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = 0; //  ephemeral: tests may run in parallel
    assert_int_equal(bind(self->listen_fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(self->listen_fd, 1), 0);
    socklen_t salen = sizeof sa;
    assert_int_equal(getsockname(self->listen_fd, (struct sockaddr *)&sa, &salen), 0);
    assert_int_equal(pthread_create(&self->thread, NULL, s_server, self), 0);

    self->ctx = modbus_new_tcp("127.0.0.1", ntohs(sa.sin_port));
    assert_non_null(self->ctx);
    assert_int_equal(modbus_set_slave(self->ctx, UNIT), 0);
    //  Valgrind slows everything down: give replies time.
    modbus_set_response_timeout(self->ctx, 5, 0);
    assert_int_equal(modbus_connect(self->ctx), 0);
    *state = self;
    return 0;
}

static int s_teardown(void **state)
{
    fixture_t *self = *state;
    //  Closing the client ends the server's receive loop.
    modbus_close(self->ctx);
    modbus_free(self->ctx);
    pthread_join(self->thread, NULL);
    close(self->listen_fd);
    pthread_mutex_destroy(&self->lock);
    test_free(self);
    return 0;
}

//  Copy out the last exchange.
static void s_last(fixture_t *self, uint8_t *request, size_t *request_len, uint8_t *reply,
                   size_t *reply_len)
{
    pthread_mutex_lock(&self->lock);
    memcpy(request, self->request, self->request_len);
    *request_len = self->request_len;
    memcpy(reply, self->reply, self->reply_len);
    *reply_len = self->reply_len;
    pthread_mutex_unlock(&self->lock);
}

static void s_twist(fixture_t *self, twist_t twist)
{
    pthread_mutex_lock(&self->lock);
    self->twist = twist;
    pthread_mutex_unlock(&self->lock);
}

static uint16_t s_tid(const uint8_t *adu)
{
    return (uint16_t)(adu[0] << 8 | adu[1]);
}

//  Our encoding must equal libmodbus's request: byte for byte after the
//  transaction id whatever tid we pick, and entirely with libmodbus's tid.
static void s_same_request(const uint8_t *ours_tid0, int ours_len0, const uint8_t *ours,
                           int ours_len, const uint8_t *theirs, size_t theirs_len)
{
    assert_int_equal(ours_len0, (int)theirs_len);
    assert_memory_equal(ours_tid0 + 2, theirs + 2, theirs_len - 2);
    assert_int_equal(ours_len, (int)theirs_len);
    assert_memory_equal(ours, theirs, theirs_len);
}

//  --------------------------------------------------------------------------
//  Reads

static void s_check_read_bits(fixture_t *self, uint8_t fc, uint16_t addr, uint16_t count)
{
    uint8_t values[MODBUS_MAX_READ_BITS];
    int n = fc == MB_FC_READ_COILS ? modbus_read_bits(self->ctx, addr, count, values)
                                   : modbus_read_input_bits(self->ctx, addr, count, values);
    assert_int_equal(n, count);

    uint8_t req_bytes[MB_MAX_ADU_LEN], reply_bytes[MB_MAX_ADU_LEN + 8];
    size_t req_len, reply_len;
    s_last(self, req_bytes, &req_len, reply_bytes, &reply_len);
    uint16_t tid = s_tid(req_bytes);

    uint8_t zero[MB_MAX_ADU_LEN], ours[MB_MAX_ADU_LEN];
    mb_request_t req;
    int len0 = mb_encode_read(zero, sizeof zero, &req, 0, UNIT, fc, addr, count);
    int len = mb_encode_read(ours, sizeof ours, &req, tid, UNIT, fc, addr, count);
    s_same_request(zero, len0, ours, len, req_bytes, req_len);

    mb_reply_t reply;
    const char *why = NULL;
    assert_int_equal(mb_frame_length(reply_bytes, reply_len), (int)reply_len);
    assert_int_equal(mb_decode_reply(reply_bytes, reply_len, &req, &reply, &why), MB_OK);
    assert_int_equal(reply.count, count);
    for (uint16_t i = 0; i < count; i++) {
        assert_int_equal(mb_reply_bit(&reply, i), values[i]);
        assert_int_equal(values[i], s_bit(fc, (uint32_t)addr + i));
    }
}

static void s_check_read_registers(fixture_t *self, uint8_t fc, uint16_t addr, uint16_t count)
{
    uint16_t values[MODBUS_MAX_READ_REGISTERS];
    int n = fc == MB_FC_READ_HOLDING ? modbus_read_registers(self->ctx, addr, count, values)
                                     : modbus_read_input_registers(self->ctx, addr, count, values);
    assert_int_equal(n, count);

    uint8_t req_bytes[MB_MAX_ADU_LEN], reply_bytes[MB_MAX_ADU_LEN + 8];
    size_t req_len, reply_len;
    s_last(self, req_bytes, &req_len, reply_bytes, &reply_len);
    uint16_t tid = s_tid(req_bytes);

    uint8_t zero[MB_MAX_ADU_LEN], ours[MB_MAX_ADU_LEN];
    mb_request_t req;
    int len0 = mb_encode_read(zero, sizeof zero, &req, 0, UNIT, fc, addr, count);
    int len = mb_encode_read(ours, sizeof ours, &req, tid, UNIT, fc, addr, count);
    s_same_request(zero, len0, ours, len, req_bytes, req_len);

    mb_reply_t reply;
    const char *why = NULL;
    assert_int_equal(mb_frame_length(reply_bytes, reply_len), (int)reply_len);
    assert_int_equal(mb_decode_reply(reply_bytes, reply_len, &req, &reply, &why), MB_OK);
    assert_int_equal(reply.count, count);
    for (uint16_t i = 0; i < count; i++) {
        assert_int_equal(mb_reply_register(&reply, i), values[i]);
        assert_int_equal(values[i], s_reg(fc, (uint32_t)addr + i));
    }
}

static void test_read_coils(void **state)
{
    fixture_t *self = *state;
    const uint16_t cases[][2] = {{0, 1},     {19, 37},   {100, 8},  {7, 9},
                                 {1000, 16}, {1, 2000},  {500, 17}, {EXCEPTION_ADDR - 1, 1},
                                 {0, 1999},  {333, 255}, {4, 1024}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        s_check_read_bits(self, MB_FC_READ_COILS, cases[i][0], cases[i][1]);
}

static void test_read_discrete_inputs(void **state)
{
    fixture_t *self = *state;
    const uint16_t cases[][2] = {{196, 22}, {0, 1}, {8, 8}, {12345, 2000}, {3, 15}, {60000, 100}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        s_check_read_bits(self, MB_FC_READ_DISCRETE_INPUTS, cases[i][0], cases[i][1]);
}

static void test_read_holding(void **state)
{
    fixture_t *self = *state;
    const uint16_t cases[][2] = {{107, 3}, {0, 1}, {0, 125}, {40000, 124}, {1, 2}, {999, 64}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        s_check_read_registers(self, MB_FC_READ_HOLDING, cases[i][0], cases[i][1]);
}

static void test_read_input(void **state)
{
    fixture_t *self = *state;
    const uint16_t cases[][2] = {{8, 1}, {0, 125}, {30001, 10}, {EXCEPTION_ADDR - 2, 2}, {77, 33}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        s_check_read_registers(self, MB_FC_READ_INPUT, cases[i][0], cases[i][1]);
}

//  --------------------------------------------------------------------------
//  Writes

//  After a write libmodbus accepted, our encoding of the same write must
//  equal its request, and our decoder must accept the device's echo.
static void s_check_write(fixture_t *self, int rc, int expect_rc, mb_request_t *req,
                          int (*encode)(uint8_t *, size_t, mb_request_t *, uint16_t, void *),
                          void *args)
{
    assert_int_equal(rc, expect_rc);
    uint8_t req_bytes[MB_MAX_ADU_LEN], reply_bytes[MB_MAX_ADU_LEN + 8];
    size_t req_len, reply_len;
    s_last(self, req_bytes, &req_len, reply_bytes, &reply_len);
    uint8_t zero[MB_MAX_ADU_LEN], ours[MB_MAX_ADU_LEN];
    int len0 = encode(zero, sizeof zero, req, 0, args);
    int len = encode(ours, sizeof ours, req, s_tid(req_bytes), args);
    s_same_request(zero, len0, ours, len, req_bytes, req_len);
    mb_reply_t reply;
    const char *why = NULL;
    assert_int_equal(mb_decode_reply(reply_bytes, reply_len, req, &reply, &why), MB_OK);
    assert_int_equal(reply.count, req->count);
}

typedef struct {
    uint16_t addr;
    uint16_t value;
    const uint8_t *bits;
    const uint16_t *regs;
    uint16_t count;
} write_args_t;

static int s_enc_coil(uint8_t *buf, size_t cap, mb_request_t *req, uint16_t tid, void *args)
{
    write_args_t *a = args;
    return mb_encode_write_single_coil(buf, cap, req, tid, UNIT, a->addr, a->value != 0);
}

static int s_enc_reg(uint8_t *buf, size_t cap, mb_request_t *req, uint16_t tid, void *args)
{
    write_args_t *a = args;
    return mb_encode_write_single_register(buf, cap, req, tid, UNIT, a->addr, a->value);
}

static int s_enc_coils(uint8_t *buf, size_t cap, mb_request_t *req, uint16_t tid, void *args)
{
    write_args_t *a = args;
    return mb_encode_write_multiple_coils(buf, cap, req, tid, UNIT, a->addr, a->bits, a->count);
}

static int s_enc_regs(uint8_t *buf, size_t cap, mb_request_t *req, uint16_t tid, void *args)
{
    write_args_t *a = args;
    return mb_encode_write_multiple_registers(buf, cap, req, tid, UNIT, a->addr, a->regs, a->count);
}

static void test_write_single_coil(void **state)
{
    fixture_t *self = *state;
    mb_request_t req;
    const uint16_t addrs[] = {0, 172, EXCEPTION_ADDR - 1};
    for (size_t i = 0; i < 3; i++) {
        for (int on = 0; on <= 1; on++) {
            write_args_t a = {.addr = addrs[i], .value = (uint16_t)on};
            s_check_write(self, modbus_write_bit(self->ctx, a.addr, on), 1, &req, s_enc_coil, &a);
            assert_int_equal(req.value, on ? 0xFF00 : 0);
        }
    }
}

static void test_write_single_register(void **state)
{
    fixture_t *self = *state;
    mb_request_t req;
    const uint16_t cases[][2] = {{1, 3}, {0, 0}, {EXCEPTION_ADDR - 1, 0xFFFF}, {40001, 0x8000}};
    for (size_t i = 0; i < 4; i++) {
        write_args_t a = {.addr = cases[i][0], .value = cases[i][1]};
        s_check_write(self, modbus_write_register(self->ctx, a.addr, a.value), 1, &req, s_enc_reg,
                      &a);
    }
}

static void test_write_multiple_coils(void **state)
{
    fixture_t *self = *state;
    mb_request_t req;
    uint8_t bits[MODBUS_MAX_WRITE_BITS];
    for (size_t i = 0; i < sizeof bits; i++)
        bits[i] = (uint8_t)((i * 7 + i / 3) % 2);
    const uint16_t cases[][2] = {{19, 10}, {0, 1}, {8, 8}, {100, 9}, {0, 1968}, {5000, 1001}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_args_t a = {.addr = cases[i][0], .bits = bits, .count = cases[i][1]};
        s_check_write(self, modbus_write_bits(self->ctx, a.addr, a.count, bits), a.count, &req,
                      s_enc_coils, &a);
    }
}

static void test_write_multiple_registers(void **state)
{
    fixture_t *self = *state;
    mb_request_t req;
    uint16_t regs[MODBUS_MAX_WRITE_REGISTERS];
    for (size_t i = 0; i < MODBUS_MAX_WRITE_REGISTERS; i++)
        regs[i] = (uint16_t)(i * 0x0101 + 0x00FF);
    const uint16_t cases[][2] = {{1, 2}, {0, 1}, {0, 123}, {60000, 50}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_args_t a = {.addr = cases[i][0], .regs = regs, .count = cases[i][1]};
        s_check_write(self, modbus_write_registers(self->ctx, a.addr, a.count, regs), a.count, &req,
                      s_enc_regs, &a);
    }
}

//  --------------------------------------------------------------------------
//  Replies both sides refuse

static void test_exception(void **state)
{
    fixture_t *self = *state;
    uint16_t values[4];
    errno = 0;
    assert_int_equal(modbus_read_registers(self->ctx, EXCEPTION_ADDR, 4, values), -1);
    assert_int_equal(errno, EMBXILADD);

    uint8_t req_bytes[MB_MAX_ADU_LEN], reply_bytes[MB_MAX_ADU_LEN + 8], ours[MB_MAX_ADU_LEN];
    size_t req_len, reply_len;
    s_last(self, req_bytes, &req_len, reply_bytes, &reply_len);
    mb_request_t req;
    int len = mb_encode_read(ours, sizeof ours, &req, s_tid(req_bytes), UNIT, MB_FC_READ_HOLDING,
                             EXCEPTION_ADDR, 4);
    assert_int_equal(len, (int)req_len);
    assert_memory_equal(ours, req_bytes, req_len);
    mb_reply_t reply;
    const char *why = NULL;
    assert_int_equal(mb_decode_reply(reply_bytes, reply_len, &req, &reply, &why), MB_EXCEPTION);
    assert_int_equal(reply.exception, 2);
    assert_string_equal(why, "illegal data address");

    //  The same for a write.
    errno = 0;
    assert_int_equal(modbus_write_register(self->ctx, EXCEPTION_ADDR + 5, 1), -1);
    assert_int_equal(errno, EMBXILADD);
    s_last(self, req_bytes, &req_len, reply_bytes, &reply_len);
    mb_encode_write_single_register(ours, sizeof ours, &req, s_tid(req_bytes), UNIT,
                                    EXCEPTION_ADDR + 5, 1);
    assert_int_equal(mb_decode_reply(reply_bytes, reply_len, &req, &reply, &why), MB_EXCEPTION);
    assert_int_equal(reply.fc, MB_FC_WRITE_SINGLE_REG);
}

static void s_check_refused(fixture_t *self, twist_t twist, uint8_t fc, uint16_t addr,
                            uint16_t count)
{
    uint16_t regs[MODBUS_MAX_READ_REGISTERS];
    uint8_t bits[MODBUS_MAX_READ_BITS];
    s_twist(self, twist);
    errno = 0;
    int n;
    if (fc == MB_FC_READ_HOLDING)
        n = modbus_read_registers(self->ctx, addr, count, regs);
    else
        n = modbus_read_bits(self->ctx, addr, count, bits);
    assert_int_equal(n, -1);
    assert_int_equal(errno, EMBBADDATA);

    uint8_t req_bytes[MB_MAX_ADU_LEN], reply_bytes[MB_MAX_ADU_LEN + 8], ours[MB_MAX_ADU_LEN];
    size_t req_len, reply_len;
    s_last(self, req_bytes, &req_len, reply_bytes, &reply_len);
    mb_request_t req;
    mb_encode_read(ours, sizeof ours, &req, s_tid(req_bytes), UNIT, fc, addr, count);
    mb_reply_t reply;
    const char *why = NULL;
    //  Well formed, but not an answer to this request.
    assert_int_equal(mb_frame_length(reply_bytes, reply_len), (int)reply_len);
    assert_int_equal(mb_decode_reply(reply_bytes, reply_len, &req, &reply, &why), MB_EMISMATCH);
    assert_null(reply.data);
}

static void test_refused_replies(void **state)
{
    fixture_t *self = *state;
    s_check_refused(self, TWIST_TID, MB_FC_READ_HOLDING, 10, 4);
    s_check_refused(self, TWIST_SHORT_READ, MB_FC_READ_HOLDING, 10, 4);
    s_check_refused(self, TWIST_SHORT_READ, MB_FC_READ_COILS, 0, 20);
    //  The connection is still usable after each: both sides stay in step.
    s_check_read_registers(self, MB_FC_READ_HOLDING, 10, 4);
}

//  --------------------------------------------------------------------------
//  Float32 word orders against libmodbus's helpers

static void s_check_float(const uint16_t *regs)
{
    site_tag_t tag;
    memset(&tag, 0, sizeof tag);
    tag.area = SITE_AREA_HR;
    tag.type = SITE_T_FLOAT32;
    tag.scale = 1;
    tag.word_order = SITE_WO_BIG;
    double big = tagval_from_registers(&tag, regs);
    tag.word_order = SITE_WO_LITTLE;
    double little = tagval_from_registers(&tag, regs);
    float abcd = modbus_get_float_abcd(regs);
    float cdab = modbus_get_float_cdab(regs);
    //  Compare NaNs as NaNs; everything else must be identical.
    if (isnan(abcd))
        assert_true(isnan(big));
    else
        assert_true(big == (double)abcd);
    if (isnan(cdab))
        assert_true(isnan(little));
    else
        assert_true(little == (double)cdab);
}

static void test_float_word_orders(void **state)
{
    fixture_t *self = *state;
    //  Known values: 123.456 is 0x42F6E979.
    const uint16_t abcd[2] = {0x42F6, 0xE979};
    const uint16_t cdab[2] = {0xE979, 0x42F6};
    assert_true(modbus_get_float_abcd(abcd) == 123.456f);
    assert_true(modbus_get_float_cdab(cdab) == 123.456f);
    s_check_float(abcd);
    s_check_float(cdab);

    //  A sweep of patterns, including NaN, infinities and subnormals.
    for (uint64_t word = 0; word <= 0xFFFFFFFFu; word += 0x000F0F0Fu) {
        uint16_t regs[2] = {(uint16_t)(word >> 16), (uint16_t)word};
        s_check_float(regs);
    }
    const uint16_t special[][2] = {{0x7F80, 0}, {0xFF80, 0}, {0x7FC0, 0},
                                   {0, 1},      {0x8000, 0}, {0x7F7F, 0xFFFF}};
    for (size_t i = 0; i < sizeof special / sizeof special[0]; i++)
        s_check_float(special[i]);

    //  And registers that crossed the wire: read two holding registers
    //  through libmodbus and decode them both ways.
    for (uint16_t addr = 0; addr < 64; addr += 7) {
        uint16_t regs[2];
        assert_int_equal(modbus_read_registers(self->ctx, addr, 2, regs), 2);
        s_check_float(regs);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_read_coils, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_read_discrete_inputs, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_read_holding, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_read_input, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_write_single_coil, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_write_single_register, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_write_multiple_coils, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_write_multiple_registers, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_exception, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_refused_replies, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_float_word_orders, s_setup, s_teardown),
    };
    return cmocka_run_group_tests_name("mbtcp_libmodbus", tests, NULL, NULL);
}
