/*  offer_table: offers of every I/O server and the best offer per device.
    See offer_table.h.

    Layout: a device holds a small array of cells, one per I/O server that
    offers it (usually one to three), so memory is proportional to the
    offers, not to devices x I/O servers. Name lookups go through arrays of
    pointers sorted by name (bsearch). A change marks a device with the kind
    of event and the I/O server involved; reason texts are formatted only for
    what is reported, into a buffer the table owns.
*/
#include "offer_table.h"

#include "best_offer.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  Why a device was marked, or why its reported best offer is what it is.
typedef enum {
    R_NONE = 0,   //  "no offer registered"
    R_REGISTERED, //  "<io> registered"
    R_DEAD,       //  "<io> stopped heartbeating"
    R_OFFLINE,    //  "<dev> offline at <io>"
    R_ONLINE,     //  "<dev> online at <io>"
    R_PRIORITY    //  "<dev> priority changed at <io>"
} s_reason_t;

typedef struct {
    uint32_t io;  //  index of the offering I/O server
    int priority; //  1 is the highest
    bool online;  //  the unit answers there
} s_cell_t;

typedef struct {
    char *name;
    s_cell_t *cells; //  one per offering I/O server, unordered
    size_t ncells, cap;
    long best;          //  I/O server of the reported best offer, -1: none
    uint64_t best_gen;  //  that server's endpoint generation when reported
    s_reason_t rep_why; //  reason of the reported best offer
    uint32_t rep_io;
    bool marked;         //  in the marked list
    s_reason_t mark_why; //  the latest event that touched it since the last report
    uint32_t mark_io;
} s_dev_t;

typedef struct {
    char *name;
    ot_io_state_t state;
    bool known;           //  registered at least once
    uint64_t incarnation; //  of the last REGISTER
    int64_t last_seen;    //  now of its last accepted message
    char *publish;        //  endpoints of the last REGISTER (owned, may be NULL)
    char *control;
    uint64_t gen; //  +1 whenever the endpoints change
} s_io_t;

struct _offer_table_t {
    s_dev_t *devs;
    size_t ndevs;
    s_dev_t **devs_by_name; //  sorted by name
    s_io_t *ios;
    size_t nios;
    s_io_t **ios_by_name;
    int64_t dead_after_ms;
    size_t *marked; //  device indexes marked since the last report
    size_t nmarked;
    uint64_t unknown_devices;
    //  Report buffers (offer_table_changes, offer_table_best)
    ot_best_t *changes;
    char *text; //  reason texts of the changes
    size_t text_cap;
    char one[512];    //  reason text of offer_table_best
    offer_t *scratch; //  best_offer() input, nios entries
};

//  --------------------------------------------------------------------------
//  Lookups

static int s_cmp_dev(const void *a, const void *b)
{
    return strcmp((*(s_dev_t *const *)a)->name, (*(s_dev_t *const *)b)->name);
}

static int s_cmp_io(const void *a, const void *b)
{
    return strcmp((*(s_io_t *const *)a)->name, (*(s_io_t *const *)b)->name);
}

static int s_key_dev(const void *key, const void *elem)
{
    return strcmp((const char *)key, (*(s_dev_t *const *)elem)->name);
}

static int s_key_io(const void *key, const void *elem)
{
    return strcmp((const char *)key, (*(s_io_t *const *)elem)->name);
}

long offer_table_device_index(offer_table_t *self, const char *device)
{
    assert(self);
    if (!device || self->ndevs == 0)
        return -1;
    s_dev_t **p = (s_dev_t **)bsearch(device, self->devs_by_name, self->ndevs,
                                      sizeof *self->devs_by_name, s_key_dev);
    return p ? (long)(*p - self->devs) : -1;
}

long offer_table_io_index(offer_table_t *self, const char *io)
{
    assert(self);
    if (!io || self->nios == 0)
        return -1;
    s_io_t **p =
        (s_io_t **)bsearch(io, self->ios_by_name, self->nios, sizeof *self->ios_by_name, s_key_io);
    return p ? (long)(*p - self->ios) : -1;
}

static s_cell_t *s_cell(s_dev_t *dev, uint32_t io)
{
    for (size_t c = 0; c < dev->ncells; c++)
        if (dev->cells[c].io == io)
            return &dev->cells[c];
    return NULL;
}

//  --------------------------------------------------------------------------
//  Life cycle

offer_table_t *offer_table_new(const char *const *devices, size_t ndevices,
                               const char *const *ioservers, size_t nios, int64_t dead_after_ms)
{
    offer_table_t *self = (offer_table_t *)calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->dead_after_ms = dead_after_ms;
    self->devs = (s_dev_t *)calloc(ndevices + 1, sizeof *self->devs);
    self->devs_by_name = (s_dev_t **)calloc(ndevices + 1, sizeof *self->devs_by_name);
    self->marked = (size_t *)calloc(ndevices + 1, sizeof *self->marked);
    self->changes = (ot_best_t *)calloc(ndevices + 1, sizeof *self->changes);
    self->ios = (s_io_t *)calloc(nios + 1, sizeof *self->ios);
    self->ios_by_name = (s_io_t **)calloc(nios + 1, sizeof *self->ios_by_name);
    self->scratch = (offer_t *)calloc(nios + 1, sizeof *self->scratch);
    if (!self->devs || !self->devs_by_name || !self->marked || !self->changes || !self->ios ||
        !self->ios_by_name || !self->scratch) {
        offer_table_destroy(&self);
        return NULL;
    }
    for (size_t i = 0; i < ndevices; i++) {
        s_dev_t *dev = &self->devs[i];
        self->ndevs++;
        dev->best = -1;
        if (!(dev->name = strdup(devices[i]))) {
            offer_table_destroy(&self);
            return NULL;
        }
        self->devs_by_name[i] = dev;
    }
    for (size_t i = 0; i < nios; i++) {
        s_io_t *io = &self->ios[i];
        self->nios++;
        if (!(io->name = strdup(ioservers[i]))) {
            offer_table_destroy(&self);
            return NULL;
        }
        self->ios_by_name[i] = io;
    }
    qsort(self->devs_by_name, self->ndevs, sizeof *self->devs_by_name, s_cmp_dev);
    qsort(self->ios_by_name, self->nios, sizeof *self->ios_by_name, s_cmp_io);
    return self;
}

void offer_table_destroy(offer_table_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    offer_table_t *self = *self_p;
    for (size_t i = 0; i < self->ndevs; i++) {
        free(self->devs[i].name);
        free(self->devs[i].cells);
    }
    for (size_t i = 0; i < self->nios; i++) {
        free(self->ios[i].name);
        free(self->ios[i].publish);
        free(self->ios[i].control);
    }
    free(self->devs);
    free(self->devs_by_name);
    free(self->marked);
    free(self->changes);
    free(self->ios);
    free(self->ios_by_name);
    free(self->scratch);
    free(self->text);
    free(self);
    *self_p = NULL;
}

//  --------------------------------------------------------------------------
//  Changes

static void s_mark(offer_table_t *self, s_dev_t *dev, s_reason_t why, uint32_t io)
{
    if (!dev->marked) {
        dev->marked = true;
        self->marked[self->nmarked++] = (size_t)(dev - self->devs);
    }
    dev->mark_why = why;
    dev->mark_io = io;
}

//  Set (add or update) the offer of `io` for `dev`. Returns -1 only when
//  memory runs out (the offer is then ignored).
static int s_cell_set(s_dev_t *dev, uint32_t io, int priority, bool online)
{
    s_cell_t *cell = s_cell(dev, io);
    if (!cell) {
        if (dev->ncells == dev->cap) {
            size_t cap = dev->cap ? dev->cap * 2 : 2;
            s_cell_t *cells = (s_cell_t *)realloc(dev->cells, cap * sizeof *cells);
            if (!cells)
                return -1;
            dev->cells = cells;
            dev->cap = cap;
        }
        cell = &dev->cells[dev->ncells++];
        cell->io = io;
    }
    cell->priority = priority;
    cell->online = online;
    return 0;
}

static bool s_same(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static void s_set_text(char **dst, const char *src)
{
    free(*dst);
    *dst = src ? strdup(src) : NULL;
}

ot_result_t offer_table_register(offer_table_t *self, const char *io, uint64_t incarnation,
                                 const char *publish, const char *control, const ot_offer_t *offers,
                                 size_t n, int64_t now, size_t *ignored, const char **first_ignored)
{
    assert(self);
    size_t skipped = 0;
    const char *first = NULL;
    long i = offer_table_io_index(self, io);
    if (i < 0) {
        if (ignored)
            *ignored = 0;
        if (first_ignored)
            *first_ignored = NULL;
        return OT_UNKNOWN_IO;
    }
    s_io_t *srv = &self->ios[i];
    if (!s_same(srv->publish, publish) || !s_same(srv->control, control)) {
        s_set_text(&srv->publish, publish);
        s_set_text(&srv->control, control);
        srv->gen++;
    }
    srv->state = OT_IO_ALIVE;
    srv->known = true;
    srv->incarnation = incarnation;
    srv->last_seen = now;
    //  Forget what it offered before.
    for (size_t d = 0; d < self->ndevs; d++) {
        s_dev_t *dev = &self->devs[d];
        s_cell_t *cell = s_cell(dev, (uint32_t)i);
        if (cell) {
            *cell = dev->cells[--dev->ncells];
            s_mark(self, dev, R_REGISTERED, (uint32_t)i);
        }
    }
    for (size_t k = 0; k < n; k++) {
        long d = offer_table_device_index(self, offers[k].device);
        if (d < 0 || offers[k].priority < 1 ||
            s_cell_set(&self->devs[d], (uint32_t)i, offers[k].priority, offers[k].online) < 0) {
            if (!first)
                first = offers[k].device;
            skipped++;
            continue;
        }
        s_mark(self, &self->devs[d], R_REGISTERED, (uint32_t)i);
    }
    self->unknown_devices += skipped;
    if (ignored)
        *ignored = skipped;
    if (first_ignored)
        *first_ignored = first;
    return OT_OK;
}

//  The server `io` may speak with `incarnation`: OT_OK, or why not.
static ot_result_t s_check(offer_table_t *self, long i, uint64_t incarnation)
{
    if (i < 0)
        return OT_UNKNOWN_IO;
    s_io_t *srv = &self->ios[i];
    if (srv->state != OT_IO_ALIVE || srv->incarnation != incarnation)
        return OT_REREGISTER;
    return OT_OK;
}

ot_result_t offer_table_heartbeat(offer_table_t *self, const char *io, uint64_t incarnation,
                                  int64_t now)
{
    assert(self);
    long i = offer_table_io_index(self, io);
    ot_result_t rc = s_check(self, i, incarnation);
    if (rc == OT_OK)
        self->ios[i].last_seen = now;
    return rc;
}

ot_result_t offer_table_unit_state(offer_table_t *self, const char *io, uint64_t incarnation,
                                   const ot_offer_t *offers, size_t n, int64_t now, size_t *ignored,
                                   const char **first_ignored)
{
    assert(self);
    size_t skipped = 0;
    const char *first = NULL;
    long i = offer_table_io_index(self, io);
    ot_result_t rc = s_check(self, i, incarnation);
    if (rc == OT_OK) {
        self->ios[i].last_seen = now;
        for (size_t k = 0; k < n; k++) {
            const ot_offer_t *o = &offers[k];
            long d = offer_table_device_index(self, o->device);
            s_dev_t *dev = d < 0 ? NULL : &self->devs[d];
            s_cell_t *cell = dev ? s_cell(dev, (uint32_t)i) : NULL;
            if (!dev || (!cell && o->priority < 1)) {
                if (!first)
                    first = o->device;
                skipped++;
                continue;
            }
            int priority = o->priority >= 1 ? o->priority : cell->priority;
            if (cell && cell->online == o->online && cell->priority == priority)
                continue; //  nothing new
            s_reason_t why = (cell && cell->online == o->online)
                                 ? R_PRIORITY
                                 : (o->online ? R_ONLINE : R_OFFLINE);
            if (s_cell_set(dev, (uint32_t)i, priority, o->online) < 0) {
                if (!first)
                    first = o->device;
                skipped++;
                continue;
            }
            s_mark(self, dev, why, (uint32_t)i);
        }
        self->unknown_devices += skipped;
    }
    if (ignored)
        *ignored = skipped;
    if (first_ignored)
        *first_ignored = first;
    return rc;
}

size_t offer_table_expire(offer_table_t *self, int64_t now)
{
    assert(self);
    size_t died = 0;
    for (size_t i = 0; i < self->nios; i++) {
        s_io_t *srv = &self->ios[i];
        if (srv->state != OT_IO_ALIVE || now - srv->last_seen <= self->dead_after_ms)
            continue;
        srv->state = OT_IO_DEAD;
        died++;
        for (size_t d = 0; d < self->ndevs; d++)
            if (s_cell(&self->devs[d], (uint32_t)i))
                s_mark(self, &self->devs[d], R_DEAD, (uint32_t)i);
    }
    return died;
}

//  The I/O server of dev's best offer now, -1 if none.
static long s_best_now(offer_table_t *self, s_dev_t *dev)
{
    for (size_t c = 0; c < dev->ncells; c++) {
        s_cell_t *cell = &dev->cells[c];
        s_io_t *srv = &self->ios[cell->io];
        self->scratch[c] = (offer_t){.ioserver = srv->name,
                                     .priority = cell->priority,
                                     .alive = srv->state == OT_IO_ALIVE,
                                     .unit_online = cell->online};
    }
    int k = best_offer(self->scratch, dev->ncells);
    return k < 0 ? -1 : (long)dev->cells[k].io;
}

//  The offer of `io` for dev is usable now.
static bool s_usable(offer_table_t *self, s_dev_t *dev, long io)
{
    if (io < 0)
        return false;
    s_cell_t *cell = s_cell(dev, (uint32_t)io);
    return cell && cell->online && cell->priority >= 1 && self->ios[io].state == OT_IO_ALIVE;
}

//  Write the reason text of (why, io) for dev into buf; returns its length
//  as snprintf does.
static int s_reason(offer_table_t *self, s_dev_t *dev, s_reason_t why, uint32_t io, char *buf,
                    size_t len)
{
    const char *ion = io < self->nios ? self->ios[io].name : "?";
    switch (why) {
    case R_REGISTERED:
        return snprintf(buf, len, "%s registered", ion);
    case R_DEAD:
        return snprintf(buf, len, "%s stopped heartbeating", ion);
    case R_OFFLINE:
        return snprintf(buf, len, "%s offline at %s", dev->name, ion);
    case R_ONLINE:
        return snprintf(buf, len, "%s online at %s", dev->name, ion);
    case R_PRIORITY:
        return snprintf(buf, len, "%s priority changed at %s", dev->name, ion);
    case R_NONE:
    default:
        return snprintf(buf, len, "no offer registered");
    }
}

static void s_fill(offer_table_t *self, s_dev_t *dev, ot_best_t *out)
{
    out->device = dev->name;
    out->ioserver = dev->best >= 0 ? self->ios[dev->best].name : NULL;
    out->publish = dev->best >= 0 ? self->ios[dev->best].publish : NULL;
    out->control = dev->best >= 0 ? self->ios[dev->best].control : NULL;
    out->previous_usable = false;
    out->reason = NULL;
}

size_t offer_table_changes(offer_table_t *self, const ot_best_t **changes)
{
    assert(self);
    size_t n = 0, text = 0;
    for (size_t m = 0; m < self->nmarked; m++) {
        s_dev_t *dev = &self->devs[self->marked[m]];
        dev->marked = false;
        long now_best = s_best_now(self, dev);
        bool moved = now_best != dev->best;
        if (!moved && (now_best < 0 || self->ios[now_best].gen == dev->best_gen))
            continue; //  same server, same endpoints
        bool prev_ok = moved && s_usable(self, dev, dev->best);
        dev->best = now_best;
        dev->best_gen = now_best >= 0 ? self->ios[now_best].gen : 0;
        dev->rep_why = dev->mark_why;
        dev->rep_io = dev->mark_io;
        //  Changed devices move to the front of the marked list (n <= m).
        self->marked[n] = self->marked[m];
        ot_best_t *c = &self->changes[n++];
        s_fill(self, dev, c);
        c->previous_usable = prev_ok;
        text += (size_t)s_reason(self, dev, dev->rep_why, dev->rep_io, NULL, 0) + 1;
    }
    self->nmarked = 0;
    //  Reason texts, once every change is known (the buffer may move).
    if (text > self->text_cap) {
        char *buf = (char *)realloc(self->text, text);
        if (buf) {
            self->text = buf;
            self->text_cap = text;
        }
    }
    size_t off = 0;
    for (size_t k = 0; k < n; k++) {
        s_dev_t *dev = &self->devs[self->marked[k]];
        if (off < self->text_cap) {
            int len = s_reason(self, dev, dev->rep_why, dev->rep_io, self->text + off,
                               self->text_cap - off);
            self->changes[k].reason = self->text + off;
            off += (size_t)len + 1;
        } else
            self->changes[k].reason = ""; //  out of memory: no text
    }
    if (changes)
        *changes = self->changes;
    return n;
}

bool offer_table_best(offer_table_t *self, size_t i, ot_best_t *out)
{
    assert(self);
    if (i >= self->ndevs)
        return false;
    s_dev_t *dev = &self->devs[i];
    s_fill(self, dev, out);
    s_reason(self, dev, dev->rep_why, dev->rep_io, self->one, sizeof self->one);
    out->reason = self->one;
    return true;
}

//  --------------------------------------------------------------------------
//  State

ot_io_state_t offer_table_io_state(offer_table_t *self, size_t i)
{
    assert(self);
    return i < self->nios ? self->ios[i].state : OT_IO_UNREGISTERED;
}

const char *offer_table_io_name(offer_table_t *self, size_t i)
{
    assert(self);
    return i < self->nios ? self->ios[i].name : NULL;
}

const char *ot_io_state_name(ot_io_state_t state)
{
    switch (state) {
    case OT_IO_ALIVE:
        return "alive";
    case OT_IO_DEAD:
        return "dead";
    case OT_IO_UNREGISTERED:
    default:
        return "unregistered";
    }
}

void offer_table_stats(offer_table_t *self, ot_stats_t *st)
{
    assert(self && st);
    memset(st, 0, sizeof *st);
    st->devices = self->ndevs;
    st->ioservers = self->nios;
    st->unknown_devices = self->unknown_devices;
    for (size_t d = 0; d < self->ndevs; d++)
        st->devices_without_offer += self->devs[d].best < 0;
    for (size_t i = 0; i < self->nios; i++) {
        st->ioservers_alive += self->ios[i].state == OT_IO_ALIVE;
        st->ioservers_known += self->ios[i].known;
    }
}
