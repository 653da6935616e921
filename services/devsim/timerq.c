/*  timerq: a queue of (due time, key) pairs, earliest first. See timerq.h. */
#include "timerq.h"

#include <stdio.h>
#include <stdlib.h>

typedef struct {
    int64_t due;  //  monotonic milliseconds
    uint64_t seq; //  insertion order, breaks ties so equal due times stay FIFO
    uint64_t key; //  the owner's
} s_entry_t;

struct _timerq_t {
    s_entry_t *heap; //  heap[0] is the earliest; children of i at 2i+1, 2i+2
    size_t size;
    size_t cap;
    uint64_t seq; //  next insertion number
};

timerq_t *timerq_new(void)
{
    return calloc(1, sizeof(timerq_t));
}

void timerq_destroy(timerq_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free((*self_p)->heap);
    free(*self_p);
    *self_p = NULL;
}

static bool s_before(const s_entry_t *a, const s_entry_t *b)
{
    return a->due < b->due || (a->due == b->due && a->seq < b->seq);
}

int timerq_push(timerq_t *self, int64_t due_ms, uint64_t key)
{
    if (self->size == self->cap) {
        size_t cap = self->cap ? self->cap * 2 : 64;
        s_entry_t *heap = realloc(self->heap, cap * sizeof *heap);
        if (!heap)
            return -1;
        self->heap = heap;
        self->cap = cap;
    }
    s_entry_t entry = {due_ms, self->seq++, key};
    size_t i = self->size++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!s_before(&entry, &self->heap[parent]))
            break;
        self->heap[i] = self->heap[parent];
        i = parent;
    }
    self->heap[i] = entry;
    return 0;
}

int64_t timerq_next(const timerq_t *self)
{
    return self->size ? self->heap[0].due : INT64_MAX;
}

bool timerq_pop_due(timerq_t *self, int64_t now_ms, uint64_t *key)
{
    if (self->size == 0 || self->heap[0].due > now_ms)
        return false;
    *key = self->heap[0].key;
    s_entry_t last = self->heap[--self->size];
    size_t i = 0;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= self->size)
            break;
        if (child + 1 < self->size && s_before(&self->heap[child + 1], &self->heap[child]))
            child++;
        if (!s_before(&self->heap[child], &last))
            break;
        self->heap[i] = self->heap[child];
        i = child;
    }
    if (self->size)
        self->heap[i] = last;
    return true;
}

size_t timerq_size(const timerq_t *self)
{
    return self->size;
}

int timerq_test(bool verbose)
{
    int failed = 0;
#define s_check(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "timerq_test: %s:%d: %s\n", __FILE__, __LINE__, #cond);                \
            failed++;                                                                              \
        }                                                                                          \
    } while (0)
    timerq_t *q = timerq_new();
    uint64_t key = 0;
    s_check(timerq_next(q) == INT64_MAX);
    s_check(!timerq_pop_due(q, 1000, &key));
    //  Pseudo-random due times, many equal, must come out sorted and FIFO on ties.
    uint64_t x = 12345;
    for (uint64_t i = 0; i < 5000; i++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        s_check(timerq_push(q, (int64_t)((x >> 33) % 100), i) == 0);
    }
    s_check(timerq_size(q) == 5000);
    s_check(!timerq_pop_due(q, -1, &key));
    int64_t last_due = -1;
    uint64_t last_key = 0;
    size_t n = 0;
    while (timerq_size(q)) {
        int64_t due = timerq_next(q);
        s_check(timerq_pop_due(q, due, &key));
        s_check(due >= last_due);
        if (due == last_due)
            s_check(key > last_key);
        last_due = due, last_key = key;
        n++;
    }
    s_check(n == 5000);
    timerq_destroy(&q);
    timerq_destroy(&q);
    s_check(q == NULL);
    if (verbose)
        fprintf(stderr, "timerq_test: %s\n", failed ? "FAILED" : "OK");
    return failed;
#undef s_check
}
