/*  offer_table: every offer of every I/O server, and the best offer per
    device (seed 001), as the resolver keeps them.

    Rows are the devices of the site, columns the I/O servers of the site;
    a cell is one offer: the I/O server serves the device at a priority and
    says whether the unit answers there. An I/O server is
        unregistered  never registered since the table was made;
        alive         registered, and heard from (REGISTER, HEARTBEAT,
                      UNIT_STATE with its current incarnation) within
                      dead_after_ms;
        dead          silent for longer: its offers are not usable, and it
                      must register again (any later message of its old
                      incarnation is answered with "register again").
    The best offer of a device is best_offer() over its cells, with
    alive = its I/O server is alive, unit_online = the cell's online flag.

    Every change (a registration, a unit state, an expiry) marks the devices
    it touched, with a short reason ("io1 registered", "plc3 offline at io1",
    "io1 stopped heartbeating"). offer_table_changes() then compares each
    marked device's best offer with the one last reported and returns the
    devices whose best offer moved: that is the delta the resolver sends to
    brokers. Pure: no I/O, no clock; `now` (monotonic ms) is passed in.
*/
#ifndef OFFER_TABLE_H_INCLUDED
#define OFFER_TABLE_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct _offer_table_t offer_table_t;

typedef enum { OT_IO_UNREGISTERED = 0, OT_IO_ALIVE, OT_IO_DEAD } ot_io_state_t;

//  What a message from an I/O server did.
typedef enum {
    OT_OK = 0,         //  applied
    OT_REREGISTER = 1, //  unknown incarnation, or the server is dead or unregistered:
                       //  it must send REGISTER (nothing was applied)
    OT_UNKNOWN_IO = 2  //  no I/O server of that name in the table (nothing was applied)
} ot_result_t;

//  One offer as an I/O server states it.
typedef struct {
    const char *device; //  device name
    int priority;       //  1 is the highest; 0: not stated (UNIT_STATE keeps the known one)
    bool online;        //  the unit answers at that I/O server
} ot_offer_t;

//  The best offer of one device. Strings belong to the table and stay valid
//  until the next call that changes it.
typedef struct {
    const char *device;
    const char *ioserver; //  NULL: no usable offer
    const char *publish;  //  that I/O server's endpoints (NULL when none)
    const char *control;
    const char *reason;   //  why it changed, or why there is none
    bool previous_usable; //  the best offer reported before is still alive and online
                          //  (a better one came back): move without a quality dip
} ot_best_t;

typedef struct {
    size_t devices;               //  rows
    size_t devices_without_offer; //  rows whose best offer (as last reported) is none
    size_t ioservers;             //  columns
    size_t ioservers_alive;
    size_t ioservers_known;   //  registered at least once (alive or dead)
    uint64_t unknown_devices; //  offers naming a device not in the table, ignored
} ot_stats_t;

//  Create a table of `ndevices` devices and `nios` I/O servers (names copied;
//  duplicates are a programming error). An I/O server is dead once silent for
//  more than dead_after_ms. Every device starts without an offer and is not
//  reported as a change. Caller owns the return value; NULL on allocation
//  failure.
offer_table_t *offer_table_new(const char *const *devices, size_t ndevices,
                               const char *const *ioservers, size_t nios, int64_t dead_after_ms);

//  Destroy; tolerates NULL, sets *self_p to NULL.
void offer_table_destroy(offer_table_t **self_p);

//  REGISTER from I/O server `io`: its offers replace every offer it made
//  before (whatever the incarnation); it is alive from `now`. Offers naming a
//  device not in the table, or with priority < 1, are ignored and counted
//  (*ignored, if not NULL, gets this call's count, and *first_ignored the
//  first such device name, pointing into `offers`). A device listed twice
//  takes its last offer. The endpoints are copied.
ot_result_t offer_table_register(offer_table_t *self, const char *io, uint64_t incarnation,
                                 const char *publish, const char *control, const ot_offer_t *offers,
                                 size_t n, int64_t now, size_t *ignored,
                                 const char **first_ignored);

//  HEARTBEAT from `io`: OT_OK (and it is heard from at `now`) only for the
//  current incarnation of an alive server.
ot_result_t offer_table_heartbeat(offer_table_t *self, const char *io, uint64_t incarnation,
                                  int64_t now);

//  UNIT_STATE from `io`: the online flag (and the priority, when stated) of
//  each listed device. A device it did not offer before is added when a
//  priority is stated; devices not in the table, or not offered and without
//  priority, are ignored and counted as for register. Same results as
//  heartbeat; on OT_OK it is heard from at `now`.
ot_result_t offer_table_unit_state(offer_table_t *self, const char *io, uint64_t incarnation,
                                   const ot_offer_t *offers, size_t n, int64_t now, size_t *ignored,
                                   const char **first_ignored);

//  Mark dead every alive I/O server not heard from for more than
//  dead_after_ms before `now`. Returns how many died; their names are
//  available through offer_table_io_state() and the change reasons.
size_t offer_table_expire(offer_table_t *self, int64_t now);

//  Devices whose best offer (server or its endpoints) differs from the one
//  last reported, among those marked since the last call; they become the
//  reported ones. *changes points to an array owned by the table, valid until
//  the next call that changes the table. Returns the count (0: nothing moved).
size_t offer_table_changes(offer_table_t *self, const ot_best_t **changes);

//  The best offer of device number i (0..ndevices-1, the order given to new)
//  as last reported by offer_table_changes(). Returns false if i is out of
//  range.
bool offer_table_best(offer_table_t *self, size_t i, ot_best_t *out);

//  Device index by name; -1 if not in the table.
long offer_table_device_index(offer_table_t *self, const char *device);

//  State of I/O server number i (0..nios-1); OT_IO_UNREGISTERED if out of range.
ot_io_state_t offer_table_io_state(offer_table_t *self, size_t i);

//  Name of I/O server number i; NULL if out of range.
const char *offer_table_io_name(offer_table_t *self, size_t i);

//  I/O server index by name; -1 if not in the table.
long offer_table_io_index(offer_table_t *self, const char *io);

//  "alive", "dead", "unregistered".
const char *ot_io_state_name(ot_io_state_t state);

void offer_table_stats(offer_table_t *self, ot_stats_t *st);

#endif
