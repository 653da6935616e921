/*  serial_actor: Modbus RTU on a serial port, through libmodbus, in a thread.
    See serial_actor.h for the protocol on the pipe. */
#include "serial_actor.h"

#include "mbtcp.h"
#include "slog.h"

#include <errno.h>
#include <modbus.h>
#include <poll.h>

uint32_t serial_bits_per_char(const site_channel_t *ch)
{
    return 1u + ch->data_bits + (ch->parity == 'N' ? 0u : 1u) + ch->stop_bits;
}

typedef struct {
    site_channel_t *ch;
    modbus_t *ctx; //  open port, or NULL
} s_serial_t;

static void s_close(s_serial_t *self)
{
    if (self->ctx) {
        modbus_close(self->ctx);
        modbus_free(self->ctx);
        self->ctx = NULL;
    }
}

static void s_open(s_serial_t *self, zsock_t *pipe)
{
    s_close(self);
    site_channel_t *ch = self->ch;
    self->ctx =
        modbus_new_rtu(ch->serial_port, (int)ch->baud, ch->parity, ch->data_bits, ch->stop_bits);
    if (!self->ctx) {
        zsock_send(pipe, "ss", "OPEN_FAILED", modbus_strerror(errno));
        return;
    }
    if (modbus_connect(self->ctx) != 0) {
        const char *why = modbus_strerror(errno);
        modbus_free(self->ctx);
        self->ctx = NULL;
        zsock_send(pipe, "ss", "OPEN_FAILED", why);
        return;
    }
    //  Bytes left on the line from before (a reply that came too late).
    modbus_flush(self->ctx);
    zsock_send(pipe, "s", "OPENED");
}

//  Build the Modbus TCP ADU that carries the same PDU as an RTU reply.
static size_t s_adu(uint8_t *adu, uint16_t tid, uint8_t unit, const uint8_t *pdu, size_t pdulen)
{
    adu[0] = (uint8_t)(tid >> 8);
    adu[1] = (uint8_t)tid;
    adu[2] = adu[3] = 0;
    adu[4] = (uint8_t)((pdulen + 1) >> 8);
    adu[5] = (uint8_t)(pdulen + 1);
    adu[6] = unit;
    memcpy(adu + 7, pdu, pdulen);
    return pdulen + 7;
}

//  Send a result: kind, the tid frame, and an optional payload.
static void s_result(zsock_t *pipe, const char *kind, uint16_t tid, const void *data, size_t len)
{
    zmsg_t *msg = zmsg_new();
    zmsg_addstr(msg, kind);
    zmsg_addmem(msg, &tid, sizeof tid);
    if (data)
        zmsg_addmem(msg, data, len);
    zmsg_send(&msg, pipe);
}

static void s_request(s_serial_t *self, zsock_t *pipe, const serial_req_t *r)
{
    uint16_t tid = r->tid, unit = r->unit, fc = r->fc, addr = r->addr, count = r->count;
    uint32_t timeout_ms = r->timeout_ms;
    if (!self->ctx) {
        s_result(pipe, "ERROR", tid, "port not open", strlen("port not open"));
        return;
    }
    slog_debug("serial %s: request unit %u fc %u addr %u count %u timeout %u ms", self->ch->name,
               (unsigned)unit, (unsigned)fc, (unsigned)addr, (unsigned)count, (unsigned)timeout_ms);
    //  A stalled line (flow control, a far end that stopped reading) shows as
    //  a port that does not become writable: a write timeout, not sent.
    struct pollfd pfd = {.fd = modbus_get_socket(self->ctx), .events = POLLOUT};
    if (poll(&pfd, 1, (int)r->write_timeout_ms) != 1 || !(pfd.revents & POLLOUT)) {
        s_result(pipe, "WTIMEOUT", tid, NULL, 0);
        return;
    }
    modbus_set_slave(self->ctx, unit);
    if (timeout_ms < 1)
        timeout_ms = 1;
    modbus_set_response_timeout(self->ctx, timeout_ms / 1000, (timeout_ms % 1000) * 1000);
    uint8_t pdu[260];
    size_t pdulen = 0;
    int rc = -1;
    uint16_t regs[MB_MAX_READ_REGS];
    uint8_t bits[MB_MAX_READ_BITS];
    const uint8_t *d = r->data;
    size_t dlen = r->dlen;
    switch (fc) {
    case MB_FC_READ_COILS:
    case MB_FC_READ_DISCRETE_INPUTS:
        if (count > MB_MAX_READ_BITS)
            break;
        rc = fc == MB_FC_READ_COILS ? modbus_read_bits(self->ctx, addr, count, bits)
                                    : modbus_read_input_bits(self->ctx, addr, count, bits);
        if (rc == count) {
            pdu[0] = (uint8_t)fc;
            pdu[1] = (uint8_t)((count + 7) / 8);
            memset(pdu + 2, 0, pdu[1]);
            for (int i = 0; i < count; i++)
                if (bits[i])
                    pdu[2 + i / 8] |= (uint8_t)(1 << (i % 8));
            pdulen = 2u + pdu[1];
        }
        break;
    case MB_FC_READ_HOLDING:
    case MB_FC_READ_INPUT:
        if (count > MB_MAX_READ_REGS)
            break;
        rc = fc == MB_FC_READ_HOLDING ? modbus_read_registers(self->ctx, addr, count, regs)
                                      : modbus_read_input_registers(self->ctx, addr, count, regs);
        if (rc == count) {
            pdu[0] = (uint8_t)fc;
            pdu[1] = (uint8_t)(2 * count);
            for (int i = 0; i < count; i++) {
                pdu[2 + 2 * i] = (uint8_t)(regs[i] >> 8);
                pdu[3 + 2 * i] = (uint8_t)regs[i];
            }
            pdulen = 2u + pdu[1];
        }
        break;
    case MB_FC_WRITE_SINGLE_COIL:
        if (dlen >= 1 && (rc = modbus_write_bit(self->ctx, addr, d[0] ? 1 : 0)) == 1) {
            uint8_t p[] = {(uint8_t)fc, (uint8_t)(addr >> 8), (uint8_t)addr, d[0] ? 0xFF : 0, 0};
            memcpy(pdu, p, 5);
            pdulen = 5;
        }
        break;
    case MB_FC_WRITE_SINGLE_REG:
        if (dlen >= 2 &&
            (rc = modbus_write_register(self->ctx, addr, (uint16_t)(d[0] << 8 | d[1]))) == 1) {
            uint8_t p[] = {(uint8_t)fc, (uint8_t)(addr >> 8), (uint8_t)addr, d[0], d[1]};
            memcpy(pdu, p, 5);
            pdulen = 5;
        }
        break;
    case MB_FC_WRITE_MULTIPLE_REGS:
        if (dlen >= 2u * count && count <= MB_MAX_WRITE_REGS) {
            for (int i = 0; i < count; i++)
                regs[i] = (uint16_t)(d[2 * i] << 8 | d[2 * i + 1]);
            if ((rc = modbus_write_registers(self->ctx, addr, count, regs)) == count) {
                uint8_t p[] = {(uint8_t)fc, (uint8_t)(addr >> 8), (uint8_t)addr,
                               (uint8_t)(count >> 8), (uint8_t)count};
                memcpy(pdu, p, 5);
                pdulen = 5;
            }
        }
        break;
    default:
        break;
    }
    if (pdulen > 0) {
        uint8_t adu[MB_MAX_ADU_LEN + 8];
        size_t len = s_adu(adu, tid, (uint8_t)unit, pdu, pdulen);
        s_result(pipe, "REPLY", tid, adu, len);
        return;
    }
    int err = errno;
    if (rc >= 0 || (err >= EMBXILFUN && err <= EMBXGTAR)) {
        //  An exception reply (libmodbus maps code N to EMBXILFUN + N - 1).
        uint8_t code = rc >= 0 ? 4 : (uint8_t)(err - EMBXILFUN + 1);
        uint8_t p[] = {(uint8_t)(fc | 0x80), code};
        uint8_t adu[16];
        size_t len = s_adu(adu, tid, (uint8_t)unit, p, 2);
        s_result(pipe, "REPLY", tid, adu, len);
    } else if (err == ETIMEDOUT)
        s_result(pipe, "TIMEOUT", tid, NULL, 0);
    else if (err == EMBBADCRC || err == EMBBADDATA || err == EMBBADSLAVE || err == EMBBADEXC ||
             err == EMBUNKEXC || err == EMBMDATA)
        s_result(pipe, "BAD", tid, modbus_strerror(err), strlen(modbus_strerror(err)));
    else {
        s_result(pipe, "ERROR", tid, modbus_strerror(err), strlen(modbus_strerror(err)));
        //  The port is unusable (the far end went away): close it so the
        //  engine's re-open sees the truth.
        s_close(self);
    }
}

void serial_actor(zsock_t *pipe, void *channel)
{
    s_serial_t self = {.ch = (site_channel_t *)channel, .ctx = NULL};
    zsock_signal(pipe, 0);
    while (true) {
        zmsg_t *msg = zmsg_recv(pipe);
        if (!msg)
            break;
        char *cmd = zmsg_popstr(msg);
        if (!cmd || streq(cmd, "$TERM")) {
            zstr_free(&cmd);
            zmsg_destroy(&msg);
            break;
        }
        if (streq(cmd, "OPEN"))
            s_open(&self, pipe);
        else if (streq(cmd, "CLOSE"))
            s_close(&self);
        else if (streq(cmd, "REQ")) {
            zframe_t *f = zmsg_pop(msg);
            serial_req_t req;
            if (f && zframe_size(f) == sizeof req) {
                memcpy(&req, zframe_data(f), sizeof req);
                s_request(&self, pipe, &req);
            }
            zframe_destroy(&f);
        }
        zstr_free(&cmd);
        zmsg_destroy(&msg);
    }
    s_close(&self);
}
