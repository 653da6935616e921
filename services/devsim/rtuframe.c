/*  rtuframe: Modbus RTU framing on the server side. See rtuframe.h. */
#include "rtuframe.h"
#include "tagsim.h"

#include <stdio.h>
#include <string.h>

uint16_t rtuframe_crc(const uint8_t *buf, size_t len)
{
    uint16_t crc = 0xFFFF;
    for (size_t i = 0; i < len; i++) {
        crc ^= buf[i];
        for (int bit = 0; bit < 8; bit++)
            crc = (crc & 1) ? (uint16_t)((crc >> 1) ^ 0xA001) : (uint16_t)(crc >> 1);
    }
    return crc;
}

size_t rtuframe_seal(uint8_t *buf, size_t len)
{
    uint16_t crc = rtuframe_crc(buf, len);
    buf[len] = (uint8_t)(crc & 0xFF);
    buf[len + 1] = (uint8_t)(crc >> 8);
    return len + 2;
}

int rtuframe_request_length(const uint8_t *buf, size_t len)
{
    if (len < 2)
        return 0;
    size_t n = 0;
    switch (buf[1]) {
    case 1: //  read coils, discrete inputs, holding, input registers
    case 2:
    case 3:
    case 4:
    case 5: //  write single coil, register
    case 6:
    case 8: //  diagnostics: sub-function and one data word
        n = 8;
        break;
    case 7:  //  read exception status
    case 11: //  get comm event counter
    case 12: //  get comm event log
    case 17: //  report server id
        n = 4;
        break;
    case 15: //  write multiple coils, registers: address, quantity, byte count
    case 16:
        if (len < 7)
            return 0;
        n = 9 + (size_t)buf[6];
        break;
    case 20: //  read, write file record: byte count first
    case 21:
        if (len < 3)
            return 0;
        n = 5 + (size_t)buf[2];
        break;
    case 22: //  mask write register: address, and mask, or mask
        n = 10;
        break;
    case 23: //  read/write multiple registers: 4 words, then byte count
        if (len < 11)
            return 0;
        n = 13 + (size_t)buf[10];
        break;
    case 24: //  read FIFO queue: pointer address
        n = 6;
        break;
    default:
        return -1;
    }
    return n <= RTUFRAME_MAX ? (int)n : -1;
}

rtuframe_scan_t rtuframe_scan(const uint8_t *buf, size_t len, size_t *frame_len)
{
    *frame_len = 0;
    int n = rtuframe_request_length(buf, len);
    if (n < 0)
        return RTUFRAME_JUNK;
    if (n == 0 || len < (size_t)n)
        return RTUFRAME_MORE;
    uint16_t crc = rtuframe_crc(buf, (size_t)n - 2);
    *frame_len = (size_t)n;
    if (buf[n - 2] != (crc & 0xFF) || buf[n - 1] != crc >> 8)
        return RTUFRAME_BADCRC;
    return RTUFRAME_FRAME;
}

int rtuframe_char_bits(char parity, int data_bits, int stop_bits)
{
    return 1 + data_bits + (parity == 'N' ? 0 : 1) + stop_bits;
}

uint32_t rtuframe_silence_us(uint32_t baud, int char_bits)
{
    if (baud == 0 || baud > 19200)
        return 1750;
    //  3.5 characters, rounded up.
    uint64_t us = ((uint64_t)char_bits * 3500000 + baud - 1) / baud;
    return (uint32_t)us;
}

static uint64_t s_next(uint64_t *rng)
{
    *rng = tagsim_mix(*rng);
    return *rng;
}

size_t rtuframe_garbage(const uint8_t *req, size_t req_len, uint64_t *rng, uint8_t *out, size_t cap)
{
    uint8_t unit = req_len > 0 ? req[0] : 1, fc = req_len > 1 ? req[1] : 3;
    //  A plausible reply: byte count and data, as if registers were read.
    size_t count = (size_t)(s_next(rng) % 20) * 2;
    uint8_t frame[RTUFRAME_MAX + 40];
    frame[0] = unit, frame[1] = fc, frame[2] = (uint8_t)count;
    for (size_t i = 3; i < 3 + count; i++)
        frame[i] = (uint8_t)s_next(rng);
    size_t len = rtuframe_seal(frame, 3 + count);

    switch (s_next(rng) % 5) {
    case 0: //  noise of random length
        len = 1 + s_next(rng) % (RTUFRAME_MAX + 30);
        for (size_t i = 0; i < len; i++)
            frame[i] = (uint8_t)s_next(rng);
        break;
    case 1: //  a bit error on the line: the CRC does not check
        frame[len - 1 - s_next(rng) % 2] ^= (uint8_t)(1 + s_next(rng) % 255);
        break;
    case 2: //  somebody else's answer: another unit address
        frame[0] ^= (uint8_t)(1 + s_next(rng) % 255);
        rtuframe_seal(frame, len - 2);
        break;
    case 3: //  cut short: the line went quiet mid-frame
        len = 1 + s_next(rng) % (len - 1);
        break;
    default: //  the byte count says more or less than what follows
        frame[2] = (uint8_t)(frame[2] + 1 + s_next(rng) % 40);
        if (s_next(rng) & 1)
            frame[2] = (uint8_t)(count ? s_next(rng) % count : 1);
        rtuframe_seal(frame, len - 2);
        break;
    }
    if (len > cap)
        len = cap;
    memcpy(out, frame, len);
    return len;
}

int rtuframe_test(bool verbose)
{
    int failed = 0;
#define s_check(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "rtuframe_test: %s:%d: %s\n", __FILE__, __LINE__, #cond);              \
            failed++;                                                                              \
        }                                                                                          \
    } while (0)
    //  Known vectors: the Modbus spec's read of 10 registers, and the
    //  CRC-16/MODBUS check value of "123456789".
    const uint8_t read10[] = {0x01, 0x03, 0x00, 0x00, 0x00, 0x0A, 0xC5, 0xCD};
    s_check(rtuframe_crc(read10, 6) == 0xCDC5);
    s_check(rtuframe_crc(read10, 8) == 0); //  a good frame's CRC over itself is 0
    s_check(rtuframe_crc((const uint8_t *)"123456789", 9) == 0x4B37);
    s_check(rtuframe_crc(NULL, 0) == 0xFFFF);
    uint8_t sealed[8] = {0x01, 0x03, 0x00, 0x00, 0x00, 0x0A};
    s_check(rtuframe_seal(sealed, 6) == 8 && sealed[6] == 0xC5 && sealed[7] == 0xCD);
    //  Write single register 1 <- 3 at unit 0x11: 11 06 00 01 00 03 9A 9B (Modbus spec).
    const uint8_t write1[] = {0x11, 0x06, 0x00, 0x01, 0x00, 0x03, 0x9A, 0x9B};
    s_check(rtuframe_crc(write1, 6) == 0x9B9A);

    //  Lengths from the function code.
    size_t n = 99;
    s_check(rtuframe_request_length(read10, 0) == 0);
    s_check(rtuframe_request_length(read10, 1) == 0);
    s_check(rtuframe_request_length(read10, 2) == 8);
    s_check(rtuframe_scan(read10, 7, &n) == RTUFRAME_MORE && n == 0);
    s_check(rtuframe_scan(read10, 8, &n) == RTUFRAME_FRAME && n == 8);
    uint8_t buf[RTUFRAME_MAX + 40];
    memcpy(buf, read10, 8);
    buf[8] = 0x55; //  a trailing byte is the next frame's
    s_check(rtuframe_scan(buf, 9, &n) == RTUFRAME_FRAME && n == 8);
    buf[7] ^= 0x01;
    s_check(rtuframe_scan(buf, 9, &n) == RTUFRAME_BADCRC && n == 8);
    const uint8_t wmr[] = {0x01, 0x10, 0x00, 0x01, 0x00, 0x02, 0x04, 0x00, 0x0A, 0x01, 0x02};
    memcpy(buf, wmr, sizeof wmr);
    size_t wlen = rtuframe_seal(buf, sizeof wmr);
    s_check(wlen == 13);
    s_check(rtuframe_request_length(buf, 6) == 0);
    s_check(rtuframe_request_length(buf, 7) == 13);
    s_check(rtuframe_scan(buf, 12, &n) == RTUFRAME_MORE);
    s_check(rtuframe_scan(buf, 13, &n) == RTUFRAME_FRAME && n == 13);
    buf[6] = 250; //  longer than any frame
    s_check(rtuframe_request_length(buf, 13) == -1);
    buf[6] = 247; //  9 + 247 = 256: the longest there is
    s_check(rtuframe_request_length(buf, 13) == 256);
    const uint8_t rsid[] = {0x05, 0x11};
    s_check(rtuframe_request_length(rsid, 2) == 4);
    const uint8_t mask[] = {0x05, 0x16};
    s_check(rtuframe_request_length(mask, 2) == 10);
    const uint8_t rwmr[] = {0x05, 0x17, 0, 0, 0, 1, 0, 0, 0, 1, 2};
    s_check(rtuframe_request_length(rwmr, 10) == 0);
    s_check(rtuframe_request_length(rwmr, 11) == 15);
    const uint8_t unknown[] = {0x01, 0x2B, 0x0E, 0x01, 0x00};
    s_check(rtuframe_request_length(unknown, 5) == -1);
    s_check(rtuframe_scan(unknown, 5, &n) == RTUFRAME_JUNK);
    const uint8_t reply[] = {0x01, 0x83, 0x02};
    s_check(rtuframe_scan(reply, 3, &n) == RTUFRAME_JUNK); //  replies are not requests

    //  Resynchronisation: noise, a bad frame, then a good frame; skipping a
    //  byte at a time on JUNK and BADCRC finds the good one, whole.
    uint8_t line[64];
    size_t len = 0;
    const uint8_t noise[] = {0xFF, 0x00, 0x01, 0x03, 0x00};
    memcpy(line + len, noise, sizeof noise), len += sizeof noise;
    memcpy(line + len, read10, 8), len += 8;
    line[len - 1] ^= 0x40; //  the bad one
    memcpy(line + len, write1, 8), len += 8;
    //  Counting a bad CRC only where no counted bad frame's bytes remain
    //  counts the one bad frame once, whatever the noise before it.
    size_t at = 0, skipped = 0, frames = 0, bad = 0, bad_left = 0;
    while (at < len) {
        rtuframe_scan_t r = rtuframe_scan(line + at, len - at, &n);
        if (r == RTUFRAME_MORE)
            break;
        if (r == RTUFRAME_FRAME) {
            s_check(n == 8 && memcmp(line + at, write1, 8) == 0);
            frames++;
            at += n;
            continue;
        }
        if (r == RTUFRAME_BADCRC && bad_left == 0) {
            bad++;
            bad_left = n;
        }
        if (bad_left)
            bad_left--;
        skipped++;
        at++;
    }
    s_check(frames == 1 && at == len && skipped == 13 && bad >= 1 && bad <= 2);
    //  Two bad frames back to back count twice.
    memcpy(line, read10, 8);
    memcpy(line + 8, read10, 8);
    line[7] ^= 1, line[15] ^= 1;
    memcpy(line + 16, write1, 8);
    at = frames = bad = bad_left = 0;
    while (at < 24) {
        rtuframe_scan_t r = rtuframe_scan(line + at, 24 - at, &n);
        if (r == RTUFRAME_FRAME) {
            frames++;
            at += n;
            continue;
        }
        if (r == RTUFRAME_BADCRC && bad_left == 0) {
            bad++;
            bad_left = n;
        }
        if (bad_left)
            bad_left--;
        at++;
    }
    s_check(frames == 1 && bad == 2);

    //  Character bits and t3.5.
    s_check(rtuframe_char_bits('N', 8, 1) == 10);
    s_check(rtuframe_char_bits('E', 8, 1) == 11);
    s_check(rtuframe_char_bits('N', 8, 2) == 11);
    s_check(rtuframe_char_bits('O', 7, 1) == 10);
    s_check(rtuframe_silence_us(9600, 11) == 4011); //  3.5 * 11 / 9600 s, rounded up
    s_check(rtuframe_silence_us(19200, 10) == 1823);
    s_check(rtuframe_silence_us(38400, 10) == 1750);
    s_check(rtuframe_silence_us(0, 10) == 1750);

    //  Garbage is never a correct answer: right unit and function code, a
    //  byte count that matches the length and a good CRC.
    uint64_t rng = 7;
    uint8_t out[RTUFRAME_MAX + 40];
    int valid = 0;
    for (int i = 0; i < 2000; i++) {
        size_t g = rtuframe_garbage(read10, 8, &rng, out, sizeof out);
        s_check(g >= 1 && g <= sizeof out);
        if (g >= 5 && out[0] == 0x01 && out[1] == 0x03 && out[2] + 5u == g &&
            rtuframe_crc(out, g) == 0)
            valid++;
    }
    s_check(valid < 5); //  only random noise can look right, and hardly ever
    if (verbose)
        fprintf(stderr, "rtuframe_test: %s\n", failed ? "FAILED" : "OK");
    return failed;
#undef s_check
}
