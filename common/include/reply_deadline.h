/*  reply_deadline: when a request's reply is due (seed 002).

    deadline = send time + the channel's standard reply delay
               + transmission time of the request + transmission time of the
                 expected reply,
    transmission time = bytes x bits per character / baud, rounded up to the
    next millisecond. With baud 0 the link is not limited and both terms are 0.
*/
#ifndef REPLY_DEADLINE_H_INCLUDED
#define REPLY_DEADLINE_H_INCLUDED

#include <stddef.h>
#include <stdint.h>

//  Milliseconds to send `bytes` at `baud` with `bits_per_char`; 0 if baud is 0.
int64_t reply_tx_ms(size_t bytes, uint32_t bits_per_char, uint32_t baud);

//  The deadline of a request sent at `sent_ms`.
int64_t reply_deadline(int64_t sent_ms, uint32_t reply_delay_ms, uint32_t baud,
                       uint32_t bits_per_char, size_t request_bytes, size_t reply_bytes);

#endif
