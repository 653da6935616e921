/*  simdev: one simulated Modbus device.

    Holds the device's libmodbus mapping (sized to cover its tags, area by
    area), moves its tags' values by their site sims, and carries its fault
    mode and counters. It knows nothing of sockets: the transport asks it for
    the mapping and the mode, and counts into its stats.
*/
#ifndef SIMDEV_H_INCLUDED
#define SIMDEV_H_INCLUDED

#include "site.h"

#include <modbus.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct _simdev_t simdev_t;

//  What the device does with a request.
typedef enum {
    SIMDEV_NORMAL = 0, //  answers from its mapping
    SIMDEV_SILENT,     //  reads requests and never answers
    SIMDEV_REFUSE,     //  not listening (behind a gateway: the gateway says target failed)
    SIMDEV_DELAY,      //  answers delay_ms late, in order
    SIMDEV_EXCEPTION,  //  answers every request with one exception code
    SIMDEV_GARBAGE,    //  answers with malformed frames
    SIMDEV_FLAP        //  intermittent: answers for up_ms (delay_ms late, or at once), then
                       //  is silent for down_ms, and again
} simdev_mode_t;

//  Counters since start; the transport increments them.
typedef struct {
    uint64_t requests;   //  complete request frames addressed to the device
    uint64_t replies;    //  answers written: data, exceptions and garbage
    uint64_t exceptions; //  exception answers among them
    uint64_t garbage;    //  garbage answers among them
    uint64_t ignored;    //  requests left unanswered on purpose (silent)
} simdev_stats_t;

//  Create a device with its mapping and every tag at its sim's initial
//  value. `seed` picks the noise streams. Returns NULL (and a reason in err)
//  when the mapping cannot be made. Caller owns the return value.
simdev_t *simdev_new(const site_device_t *device, uint64_t seed, char *err, size_t errlen);

//  Destroy a device; tolerates NULL and sets *self_p to NULL.
void simdev_destroy(simdev_t **self_p);

//  The site's device (owned by the site).
const site_device_t *simdev_device(const simdev_t *self);

//  The mapping libmodbus answers from; owned by the device.
modbus_mapping_t *simdev_mapping(simdev_t *self);

//  Move every non-const tag to its value at t_ms after start, writing the
//  mapping only where the value changed, so a client's write to a tag stays
//  until its sim moves it again (const tags keep written values forever).
//  Returns the number of tags written.
int simdev_tick(simdev_t *self, int64_t t_ms);

//  Set `tag` (one of this device's) to an engineering value now and freeze
//  its sim to const. Returns 0, or -1 with a static reason in *why when the
//  value does not fit the tag's type.
int simdev_set(simdev_t *self, const site_tag_t *tag, double value, const char **why);

//  Current engineering value of `tag` as the mapping holds it (client writes
//  included).
double simdev_get(simdev_t *self, const site_tag_t *tag);

//  The fault mode; `arg` is the delay in ms (SIMDEV_DELAY) or the exception
//  code (SIMDEV_EXCEPTION), ignored otherwise. SIMDEV_FLAP is set with
//  simdev_set_flap().
void simdev_set_mode(simdev_t *self, simdev_mode_t mode, int arg);
simdev_mode_t simdev_mode(const simdev_t *self);

//  How late answers go out: SIMDEV_DELAY's delay, or a flapping device's
//  delay while up; 0 otherwise.
int simdev_delay_ms(const simdev_t *self);
int simdev_exception_code(const simdev_t *self);

//  Make the device intermittent from now_ms on: up (answering, delay_ms
//  late when delay_ms > 0) for up_ms, then silent for down_ms, and so on,
//  starting up, until another mode replaces it. up_ms and down_ms > 0.
void simdev_set_flap(simdev_t *self, uint32_t up_ms, uint32_t down_ms, int delay_ms,
                     int64_t now_ms);

//  The mode in force at now_ms: a flapping device is SIMDEV_NORMAL (or
//  SIMDEV_DELAY, with a delay) while up and SIMDEV_SILENT while down; any
//  other mode is itself.
simdev_mode_t simdev_acting(const simdev_t *self, int64_t now_ms);

//  A flapping device's cycle at now_ms.
typedef struct {
    uint32_t up_ms, down_ms;
    int delay_ms;    //  of the answers while up
    bool up;         //  answering now
    int64_t next_ms; //  until it goes down (up) or up (down)
} simdev_flap_t;

//  Fills *out and returns true for a flapping device; false otherwise.
bool simdev_flap(const simdev_t *self, int64_t now_ms, simdev_flap_t *out);

//  True once each time a flapping device went up or down since the last
//  call (*up says which); for the log.
bool simdev_flap_turned(simdev_t *self, int64_t now_ms, bool *up);

//  "normal", "silent", "refuse", "delay", "exception", "garbage", "flap".
const char *simdev_mode_name(simdev_mode_t mode);

//  The device's counters, for the transport to increment.
simdev_stats_t *simdev_stats(simdev_t *self);

//  The device's random state (garbage answers); seeded from the run's seed.
uint64_t *simdev_rng(simdev_t *self);

#endif
