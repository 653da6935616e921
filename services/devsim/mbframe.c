/*  mbframe: Modbus TCP framing on the server side. See mbframe.h. */
#include "mbframe.h"
#include "tagsim.h"

#include <stdio.h>
#include <string.h>

int mbframe_length(const uint8_t *buf, size_t len)
{
    if (len < MBFRAME_HEADER)
        return 0;
    unsigned proto = (unsigned)buf[2] << 8 | buf[3];
    unsigned length = (unsigned)buf[4] << 8 | buf[5];
    if (proto != 0 || length < 2 || length > MBFRAME_MAX - 6)
        return -1;
    return len >= 6 + length ? (int)(6 + length) : 0;
}

static uint64_t s_next(uint64_t *rng)
{
    *rng = tagsim_mix(*rng);
    return *rng;
}

size_t mbframe_garbage(const uint8_t *req, size_t req_len, uint64_t *rng, uint8_t *out, size_t cap)
{
    uint8_t tid0 = req_len > 0 ? req[0] : 0, tid1 = req_len > 1 ? req[1] : 0;
    uint8_t unit = req_len > 6 ? req[6] : 1, fc = req_len > 7 ? req[7] : 3;
    //  A plausible body: byte count and data, as if registers were read.
    size_t body = 1 + (size_t)(s_next(rng) % 20) * 2;
    uint8_t frame[MBFRAME_MAX + 40];
    frame[0] = tid0, frame[1] = tid1, frame[2] = 0, frame[3] = 0;
    frame[4] = 0, frame[5] = (uint8_t)(2 + body);
    frame[6] = unit, frame[7] = fc;
    frame[8] = (uint8_t)(body - 1);
    for (size_t i = 9; i < 8 + body; i++)
        frame[i] = (uint8_t)s_next(rng);
    size_t len = 8 + body;

    switch (s_next(rng) % 5) {
    case 0: //  noise of random length
        len = 1 + s_next(rng) % (MBFRAME_MAX + 30);
        for (size_t i = 0; i < len; i++)
            frame[i] = (uint8_t)s_next(rng);
        break;
    case 1: //  somebody else's transaction
        frame[1] ^= (uint8_t)(1 + s_next(rng) % 255);
        break;
    case 2: //  length field says more or less than what follows
        frame[5] = (uint8_t)(frame[5] + 1 + s_next(rng) % 40);
        if (s_next(rng) & 1)
            frame[5] = (uint8_t)(s_next(rng) % 3);
        break;
    case 3: //  cut short: the header promises bytes that never come
        len = 1 + s_next(rng) % (len - 1);
        break;
    default: //  not Modbus: protocol id other than 0
        frame[2] = (uint8_t)(1 + s_next(rng) % 255);
        break;
    }
    if (len > cap)
        len = cap;
    memcpy(out, frame, len);
    return len;
}

int mbframe_test(bool verbose)
{
    int failed = 0;
#define s_check(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "mbframe_test: %s:%d: %s\n", __FILE__, __LINE__, #cond);               \
            failed++;                                                                              \
        }                                                                                          \
    } while (0)
    const uint8_t req[] = {0x12, 0x34, 0, 0, 0, 6, 1, 3, 0, 0, 0, 2, 0xAA};
    s_check(mbframe_length(req, 0) == 0);
    s_check(mbframe_length(req, 6) == 0);
    s_check(mbframe_length(req, 11) == 0);
    s_check(mbframe_length(req, 12) == 12);
    s_check(mbframe_length(req, 13) == 12);
    uint8_t bad[12];
    memcpy(bad, req, 12);
    bad[3] = 1;
    s_check(mbframe_length(bad, 12) == -1);
    bad[3] = 0, bad[5] = 1;
    s_check(mbframe_length(bad, 12) == -1);
    bad[4] = 1, bad[5] = 0; //  256: longer than any ADU
    s_check(mbframe_length(bad, 12) == -1);
    bad[4] = 0, bad[5] = 254;
    s_check(mbframe_length(bad, 12) == 0);

    uint64_t rng = 42;
    uint8_t out[MBFRAME_MAX + 40];
    int valid = 0;
    for (int i = 0; i < 2000; i++) {
        size_t n = mbframe_garbage(req, 12, &rng, out, sizeof out);
        s_check(n >= 1 && n <= sizeof out);
        //  Never a correct answer: right tid, protocol 0 and a length that matches.
        if (n >= 8 && out[0] == 0x12 && out[1] == 0x34 && out[2] == 0 && out[3] == 0 &&
            (size_t)(out[4] << 8 | out[5]) + 6 == n && out[7] == 3 && out[8] + 9u == n)
            valid++;
    }
    s_check(valid < 5); //  only random noise can look right, and hardly ever
    if (verbose)
        fprintf(stderr, "mbframe_test: %s\n", failed ? "FAILED" : "OK");
    return failed;
#undef s_check
}
