/*  best_offer: which I/O server should serve a tag (seed 001).

    Several I/O servers may offer the same device, each at a priority (1 is
    the highest). The best offer is the highest-priority offer whose I/O
    server is alive (heartbeating) and whose unit is online there. Ties are
    broken deterministically by I/O server name, so every broker and resolver
    picks the same one. Pure: the caller says what is alive and online.
*/
#ifndef BEST_OFFER_H_INCLUDED
#define BEST_OFFER_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *ioserver; //  name of the offering I/O server
    int priority;         //  1 is the highest
    bool alive;           //  its I/O server heartbeats
    bool unit_online;     //  the device answers at that I/O server
} offer_t;

//  Index of the best offer among offers[0..n-1], or -1 if none is usable
//  (no offer alive with its unit online).
int best_offer(const offer_t *offers, size_t n);

//  The wait before re-asking an unanswered resolve, in ms:
//  backoff_ms x min(attempt, 3)^2, attempt counted from 1 (0 is taken as 1).
//  So 1x, 4x, then 9x backoff_ms for every later attempt.
uint64_t resolve_retry_ms(uint32_t backoff_ms, uint32_t attempt);

#endif
