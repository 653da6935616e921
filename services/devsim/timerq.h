/*  timerq: a queue of (due time, key) pairs, earliest first.

    A binary min-heap ordered by due time, then by insertion order, so timers
    due at the same millisecond fire in the order they were added. Keys are
    opaque to the queue; there is no cancel: the owner ignores a popped key
    that no longer means anything (lazy deletion), which keeps every
    operation O(log n) and the queue free of back pointers.
*/
#ifndef TIMERQ_H_INCLUDED
#define TIMERQ_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct _timerq_t timerq_t;

//  Create an empty queue. Caller owns the return value; NULL on no memory.
timerq_t *timerq_new(void);

//  Destroy a queue; tolerates NULL and sets *self_p to NULL.
void timerq_destroy(timerq_t **self_p);

//  Add a timer. Returns 0, or -1 when memory runs out.
int timerq_push(timerq_t *self, int64_t due_ms, uint64_t key);

//  Due time of the earliest timer, or INT64_MAX when the queue is empty.
int64_t timerq_next(const timerq_t *self);

//  If the earliest timer is due at or before now_ms, remove it, store its key
//  and return true; else return false.
bool timerq_pop_due(timerq_t *self, int64_t now_ms, uint64_t *key);

//  Number of timers in the queue.
size_t timerq_size(const timerq_t *self);

//  Self test; returns the number of failed checks (0 is good).
int timerq_test(bool verbose);

#endif
