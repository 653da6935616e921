/*  connect_window: the I/O server's own connect scheduler. See the header for
    the rules; this file holds the data structures.

    Every device is one entry. An entry wanting a slot sits in one of three
    binary min-heaps, each an array of entry ids with the entry's position
    kept in the entry so it can be removed in O(log n):
        HEAP_RECENT   waiting devices that were online recently, keyed by the
                      time they become eligible
        HEAP_NEW      waiting devices never tried, keyed likewise
        HEAP_DEAD     waiting dead devices, keyed likewise
        HEAP_FLIGHT   attempts in flight, keyed by their deadline
    Ties are broken by id so the order is deterministic.
*/
#include "connect_window.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

enum {
    HEAP_NONE = -1,
    HEAP_RECENT = 0,
    HEAP_NEW = 1,
    HEAP_DEAD = 2,
    HEAP_FLIGHT = 3,
    HEAP_COUNT = 4
};

typedef struct {
    cw_state_t state;  //  CW_IDLE, CW_OFFLINE (waiting, queued or not), CW_CONNECTING, CW_ONLINE
    int heap;          //  which heap holds it, HEAP_NONE if none
    size_t pos;        //  its index in that heap
    int64_t key;       //  eligible time (waiting) or deadline (in flight)
    int64_t started;   //  when the attempt in flight started
    int64_t lost;      //  when it was last online (0: never)
    bool ever_tried;   //  an attempt was ever started
    bool dead_probe;   //  the attempt in flight is not for a recently online device
    uint32_t failures; //  consecutive failed attempts
    uint32_t srtt_ms;  //  smoothed connect time, 0 if unknown
} s_entry_t;

typedef struct {
    int *ids;
    size_t size, cap;
} s_heap_t;

struct _cw_t {
    cw_config_t cfg;
    uint32_t reserve; //  effective reserve
    s_entry_t *entries;
    size_t nentries, cap;
    s_heap_t heaps[HEAP_COUNT];
    size_t in_flight_dead; //  attempts in flight for new or dead devices
    size_t online;
    uint64_t rng; //  xorshift64 state
    uint64_t attempts, timeouts, failures;
};

//  --------------------------------------------------------------------------
//  Heaps

static bool s_less(const cw_t *self, int a, int b)
{
    const s_entry_t *ea = &self->entries[a], *eb = &self->entries[b];
    return ea->key < eb->key || (ea->key == eb->key && a < b);
}

static void s_heap_swap(cw_t *self, s_heap_t *h, size_t i, size_t j)
{
    int t = h->ids[i];
    h->ids[i] = h->ids[j];
    h->ids[j] = t;
    self->entries[h->ids[i]].pos = i;
    self->entries[h->ids[j]].pos = j;
}

static void s_heap_up(cw_t *self, s_heap_t *h, size_t i)
{
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!s_less(self, h->ids[i], h->ids[parent]))
            break;
        s_heap_swap(self, h, i, parent);
        i = parent;
    }
}

static void s_heap_down(cw_t *self, s_heap_t *h, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < h->size && s_less(self, h->ids[l], h->ids[m]))
            m = l;
        if (r < h->size && s_less(self, h->ids[r], h->ids[m]))
            m = r;
        if (m == i)
            break;
        s_heap_swap(self, h, i, m);
        i = m;
    }
}

//  Heaps are sized for every entry at cw_add time, so pushing never allocates.
static void s_heap_push(cw_t *self, int which, int id, int64_t key)
{
    s_heap_t *h = &self->heaps[which];
    s_entry_t *e = &self->entries[id];
    assert(e->heap == HEAP_NONE);
    assert(h->size < h->cap);
    e->key = key;
    e->heap = which;
    e->pos = h->size;
    h->ids[h->size++] = id;
    s_heap_up(self, h, e->pos);
}

static void s_heap_remove(cw_t *self, int id)
{
    s_entry_t *e = &self->entries[id];
    if (e->heap == HEAP_NONE)
        return;
    s_heap_t *h = &self->heaps[e->heap];
    size_t i = e->pos;
    h->size--;
    if (i != h->size) {
        h->ids[i] = h->ids[h->size];
        self->entries[h->ids[i]].pos = i;
        s_heap_down(self, h, i);
        s_heap_up(self, h, i);
    }
    e->heap = HEAP_NONE;
}

static int s_heap_top(const cw_t *self, int which)
{
    const s_heap_t *h = &self->heaps[which];
    return h->size ? h->ids[0] : -1;
}

//  --------------------------------------------------------------------------
//  Jitter: xorshift64, deterministic for a given seed.

static double s_random(cw_t *self)
{
    uint64_t x = self->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    self->rng = x;
    return (double)(x >> 11) / (double)(1ULL << 53);
}

//  --------------------------------------------------------------------------

cw_t *cw_new(const cw_config_t *config)
{
    if (!config || config->window == 0 || config->timeout_ms == 0 || config->timeout_min_ms == 0 ||
        config->timeout_min_ms > config->timeout_ms || config->reconnect_min_ms == 0 ||
        config->reconnect_min_ms > config->reconnect_max_ms)
        return NULL;
    cw_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->cfg = *config;
    if (config->reserve < 0)
        self->reserve = config->window >= 2 ? (config->window / 5 ? config->window / 5 : 1) : 0;
    else
        self->reserve = (uint32_t)config->reserve;
    //  A dead probe must always be possible, or dead devices would never be retried.
    if (self->reserve >= config->window)
        self->reserve = config->window - 1;
    self->rng = config->seed ? config->seed : 0x9E3779B97F4A7C15ULL;
    return self;
}

void cw_destroy(cw_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    cw_t *self = *self_p;
    for (int i = 0; i < HEAP_COUNT; i++)
        free(self->heaps[i].ids);
    free(self->entries);
    free(self);
    *self_p = NULL;
}

int cw_add(cw_t *self)
{
    if (self->nentries == self->cap) {
        size_t cap = self->cap ? self->cap * 2 : 64;
        s_entry_t *entries = realloc(self->entries, cap * sizeof *entries);
        if (!entries)
            return -1;
        self->entries = entries;
        for (int i = 0; i < HEAP_COUNT; i++) {
            int *ids = realloc(self->heaps[i].ids, cap * sizeof *ids);
            if (!ids)
                return -1;
            self->heaps[i].ids = ids;
            self->heaps[i].cap = cap;
        }
        self->cap = cap;
    }
    int id = (int)self->nentries++;
    s_entry_t *e = &self->entries[id];
    memset(e, 0, sizeof *e);
    e->state = CW_IDLE;
    e->heap = HEAP_NONE;
    return id;
}

static s_entry_t *s_entry(const cw_t *self, int id)
{
    assert(id >= 0 && (size_t)id < self->nentries);
    return &self->entries[id];
}

//  Put a device back in line after an attempt failed or a connection was lost.
static void s_schedule_retry(cw_t *self, int id, int64_t now)
{
    s_entry_t *e = s_entry(self, id);
    e->state = CW_OFFLINE;
    bool recent = e->lost > 0 && now - e->lost < (int64_t)self->cfg.recent_ms;
    double delay;
    if (recent) {
        delay = self->cfg.reconnect_min_ms * (1.0 + 0.25 * s_random(self));
    } else {
        //  Exponential in the failures since the device went dead.
        double d = self->cfg.reconnect_min_ms;
        for (uint32_t i = 1; i < e->failures && d < self->cfg.reconnect_max_ms; i++)
            d *= 2;
        if (d > self->cfg.reconnect_max_ms)
            d = self->cfg.reconnect_max_ms;
        delay = d / 2 + d / 2 * s_random(self);
        if (delay < self->cfg.reconnect_min_ms)
            delay = self->cfg.reconnect_min_ms;
    }
    s_heap_push(self, recent ? HEAP_RECENT : HEAP_DEAD, id, now + (int64_t)delay);
}

void cw_want(cw_t *self, int id, int64_t now)
{
    s_entry_t *e = s_entry(self, id);
    if (e->state != CW_IDLE)
        return;
    e->state = CW_OFFLINE;
    int which = HEAP_DEAD;
    if (e->lost > 0 && now - e->lost < (int64_t)self->cfg.recent_ms)
        which = HEAP_RECENT;
    else if (!e->ever_tried)
        which = HEAP_NEW;
    s_heap_push(self, which, id, now);
}

static void s_leave_flight(cw_t *self, s_entry_t *e, int id)
{
    assert(e->state == CW_CONNECTING);
    s_heap_remove(self, id);
    if (e->dead_probe) {
        assert(self->in_flight_dead > 0);
        self->in_flight_dead--;
        e->dead_probe = false;
    }
}

void cw_cancel(cw_t *self, int id)
{
    s_entry_t *e = s_entry(self, id);
    if (e->state == CW_CONNECTING)
        s_leave_flight(self, e, id);
    else
        s_heap_remove(self, id);
    if (e->state == CW_ONLINE) {
        self->online--;
        e->lost = 1; //  any non-zero: it was online
    }
    e->state = CW_IDLE;
}

static uint32_t s_timeout_for(const cw_t *self, const s_entry_t *e, bool dead_probe)
{
    if (dead_probe || e->srtt_ms == 0)
        return self->cfg.timeout_ms;
    uint64_t t = (uint64_t)e->srtt_ms * 4;
    if (t < self->cfg.timeout_min_ms)
        t = self->cfg.timeout_min_ms;
    if (t > self->cfg.timeout_ms)
        t = self->cfg.timeout_ms;
    return (uint32_t)t;
}

int cw_start(cw_t *self, int64_t now, int *id, uint32_t *timeout_ms)
{
    size_t in_flight = self->heaps[HEAP_FLIGHT].size;
    if (in_flight >= self->cfg.window)
        return 0;
    //  Recently online first, then never tried, then dead; the last two may
    //  not take the reserved slots.
    int which = -1, top = -1;
    for (int h = HEAP_RECENT; h <= HEAP_DEAD && which < 0; h++) {
        top = s_heap_top(self, h);
        if (top < 0 || self->entries[top].key > now)
            continue;
        if (h != HEAP_RECENT && self->in_flight_dead >= self->cfg.window - self->reserve)
            break;
        which = h;
    }
    if (which < 0)
        return 0;
    s_entry_t *e = &self->entries[top];
    s_heap_remove(self, top);
    e->state = CW_CONNECTING;
    e->ever_tried = true;
    e->started = now;
    e->dead_probe = (which != HEAP_RECENT);
    if (e->dead_probe)
        self->in_flight_dead++;
    uint32_t timeout = s_timeout_for(self, e, which == HEAP_DEAD);
    s_heap_push(self, HEAP_FLIGHT, top, now + timeout);
    self->attempts++;
    *id = top;
    *timeout_ms = timeout;
    return 1;
}

int cw_expired(cw_t *self, int64_t now, int *id)
{
    int top = s_heap_top(self, HEAP_FLIGHT);
    if (top < 0 || self->entries[top].key > now)
        return 0;
    s_entry_t *e = &self->entries[top];
    s_leave_flight(self, e, top);
    e->failures++;
    self->timeouts++;
    s_schedule_retry(self, top, now);
    *id = top;
    return 1;
}

void cw_connected(cw_t *self, int id, int64_t now)
{
    s_entry_t *e = s_entry(self, id);
    if (e->state != CW_CONNECTING)
        return;
    s_leave_flight(self, e, id);
    uint32_t t = now > e->started ? (uint32_t)(now - e->started) : 1;
    if (t == 0)
        t = 1;
    //  Smoothed like TCP's SRTT: new = 7/8 old + 1/8 sample.
    e->srtt_ms = e->srtt_ms ? (e->srtt_ms * 7 + t) / 8 : t;
    if (e->srtt_ms == 0)
        e->srtt_ms = 1;
    e->state = CW_ONLINE;
    self->online++;
}

void cw_failed(cw_t *self, int id, int64_t now)
{
    s_entry_t *e = s_entry(self, id);
    if (e->state != CW_CONNECTING)
        return;
    s_leave_flight(self, e, id);
    e->failures++;
    self->failures++;
    s_schedule_retry(self, id, now);
}

void cw_lost(cw_t *self, int id, int64_t now)
{
    s_entry_t *e = s_entry(self, id);
    if (e->state != CW_ONLINE)
        return;
    self->online--;
    e->lost = now > 0 ? now : 1;
    e->failures = 0;
    s_schedule_retry(self, id, now);
}

void cw_answered(cw_t *self, int id)
{
    s_entry_t *e = s_entry(self, id);
    if (e->state == CW_ONLINE)
        e->failures = 0;
}

void cw_dropped(cw_t *self, int id, int64_t now)
{
    s_entry_t *e = s_entry(self, id);
    if (e->state != CW_ONLINE)
        return;
    self->online--;
    e->failures++;
    self->failures++;
    s_schedule_retry(self, id, now);
}

int64_t cw_next_event(const cw_t *self, int64_t now)
{
    int64_t next = INT64_MAX;
    int top = s_heap_top(self, HEAP_FLIGHT);
    if (top >= 0)
        next = self->entries[top].key;
    if (self->heaps[HEAP_FLIGHT].size < self->cfg.window) {
        for (int h = HEAP_RECENT; h <= HEAP_DEAD; h++) {
            top = s_heap_top(self, h);
            if (top >= 0 && self->entries[top].key < next &&
                (h == HEAP_RECENT || self->in_flight_dead < self->cfg.window - self->reserve))
                next = self->entries[top].key;
        }
    }
    return next < now && next != INT64_MAX ? now : next;
}

cw_state_t cw_state(const cw_t *self, int id, int64_t now)
{
    const s_entry_t *e = s_entry(self, id);
    if (e->state == CW_OFFLINE && e->key <= now)
        return CW_QUEUED;
    return e->state;
}

const char *cw_state_name(cw_state_t state)
{
    static const char *names[] = {"idle", "offline", "queued", "connecting", "online"};
    return (unsigned)state < 5 ? names[state] : "unknown";
}

uint32_t cw_failures(const cw_t *self, int id)
{
    return s_entry(self, id)->failures;
}

uint32_t cw_connect_ms(const cw_t *self, int id)
{
    return s_entry(self, id)->srtt_ms;
}

//  Count the entries of a waiting heap that are eligible at `now`: walk only
//  the subtrees whose root is eligible (a heap's children are never earlier).
static size_t s_count_eligible(const cw_t *self, int which, size_t i, int64_t now)
{
    const s_heap_t *h = &self->heaps[which];
    if (i >= h->size || self->entries[h->ids[i]].key > now)
        return 0;
    return 1 + s_count_eligible(self, which, 2 * i + 1, now) +
           s_count_eligible(self, which, 2 * i + 2, now);
}

void cw_stats(const cw_t *self, int64_t now, cw_stats_t *stats)
{
    memset(stats, 0, sizeof *stats);
    stats->entries = self->nentries;
    stats->in_flight = self->heaps[HEAP_FLIGHT].size;
    stats->in_flight_dead = self->in_flight_dead;
    stats->online = self->online;
    size_t waiting =
        self->heaps[HEAP_RECENT].size + self->heaps[HEAP_NEW].size + self->heaps[HEAP_DEAD].size;
    stats->queued = s_count_eligible(self, HEAP_RECENT, 0, now) +
                    s_count_eligible(self, HEAP_NEW, 0, now) +
                    s_count_eligible(self, HEAP_DEAD, 0, now);
    stats->waiting = waiting - stats->queued;
    stats->dead = self->heaps[HEAP_DEAD].size;
    int top = s_heap_top(self, HEAP_DEAD);
    if (top >= 0 && self->entries[top].key < now)
        stats->dead_lag_ms = now - self->entries[top].key;
    stats->starved = stats->dead_lag_ms > (int64_t)self->cfg.reconnect_max_ms;
    stats->attempts = self->attempts;
    stats->timeouts = self->timeouts;
    stats->failures = self->failures;
}
