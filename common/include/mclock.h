/*  mclock: the clocks the suite uses.

    Decisions (deadlines, backoff, scheduling) run on the monotonic clock in
    milliseconds; values carry wall-clock source timestamps in milliseconds
    since the Unix epoch. Pure modules never call these: their callers pass
    `now` in.
*/
#ifndef MCLOCK_H_INCLUDED
#define MCLOCK_H_INCLUDED

#include <stdint.h>
#include <time.h>

static inline int64_t mclock_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline int64_t mclock_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif
