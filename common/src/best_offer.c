/*  best_offer: which I/O server should serve a tag. See best_offer.h. */
#include "best_offer.h"

#include <string.h>

//  True if offer a is better than offer b (both usable).
static bool s_better(const offer_t *a, const offer_t *b)
{
    if (a->priority != b->priority)
        return a->priority < b->priority;
    const char *na = a->ioserver ? a->ioserver : "";
    const char *nb = b->ioserver ? b->ioserver : "";
    return strcmp(na, nb) < 0;
}

int best_offer(const offer_t *offers, size_t n)
{
    int best = -1;
    for (size_t i = 0; i < n; i++) {
        const offer_t *o = &offers[i];
        if (!o->alive || !o->unit_online || o->priority < 1)
            continue;
        if (best < 0 || s_better(o, &offers[best]))
            best = (int)i;
    }
    return best;
}

uint64_t resolve_retry_ms(uint32_t backoff_ms, uint32_t attempt)
{
    uint64_t k = attempt == 0 ? 1 : attempt > 3 ? 3 : attempt;
    return (uint64_t)backoff_ms * k * k;
}
