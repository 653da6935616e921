/*  reply_deadline: when a request's reply is due. See reply_deadline.h. */
#include "reply_deadline.h"

int64_t reply_tx_ms(size_t bytes, uint32_t bits_per_char, uint32_t baud)
{
    if (baud == 0)
        return 0;
    uint64_t bits = (uint64_t)bytes * bits_per_char * 1000;
    return (int64_t)((bits + baud - 1) / baud);
}

int64_t reply_deadline(int64_t sent_ms, uint32_t reply_delay_ms, uint32_t baud,
                       uint32_t bits_per_char, size_t request_bytes, size_t reply_bytes)
{
    return sent_ms + reply_delay_ms + reply_tx_ms(request_bytes, bits_per_char, baud) +
           reply_tx_ms(reply_bytes, bits_per_char, baud);
}
