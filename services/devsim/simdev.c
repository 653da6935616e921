/*  simdev: one simulated Modbus device. See simdev.h. */
#include "simdev.h"
#include "slog.h"
#include "tagsim.h"
#include "tagval.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  Per tag, parallel to device->tags.
typedef struct {
    site_sim_t sim; //  a copy: `set` freezes it without touching the site
    uint64_t key;   //  noise stream of this tag
    double shown;   //  last value written to the mapping (quantized)
    bool written;   //  shown is valid
    bool warned;    //  an encoding failure was logged already
} s_tag_t;

struct _simdev_t {
    const site_device_t *device; //  owned by the site
    modbus_mapping_t *mapping;   //  libmodbus registers and bits
    s_tag_t *tags;               //  device->ntags entries
    simdev_mode_t mode;
    int delay_ms;  //  SIMDEV_DELAY
    int exception; //  SIMDEV_EXCEPTION
    struct {       //  SIMDEV_FLAP
        uint32_t up_ms, down_ms;
        int delay_ms;
        int64_t start; //  monotonic ms the first up phase began
        bool was_up;   //  as last reported by simdev_flap_turned()
    } flap;
    simdev_stats_t stats;
    uint64_t rng; //  garbage answers
};

//  FNV-1a: tag names give each tag its own noise stream, independent of
//  which devices this run serves.
static uint64_t s_hash(const char *text)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *text; text++)
        h = (h ^ (uint8_t)*text) * 1099511628211ULL;
    return h;
}

static bool s_is_bit(const site_tag_t *tag)
{
    return tag->area == SITE_AREA_CO || tag->area == SITE_AREA_DI;
}

//  Where a tag's first register or bit sits in the mapping, or NULL.
static uint16_t *s_regs(simdev_t *self, const site_tag_t *tag)
{
    modbus_mapping_t *m = self->mapping;
    if (tag->area == SITE_AREA_HR)
        return m->tab_registers + (tag->address - m->start_registers);
    return m->tab_input_registers + (tag->address - m->start_input_registers);
}

static uint8_t *s_bit(simdev_t *self, const site_tag_t *tag)
{
    modbus_mapping_t *m = self->mapping;
    if (tag->area == SITE_AREA_CO)
        return m->tab_bits + (tag->address - m->start_bits);
    return m->tab_input_bits + (tag->address - m->start_input_bits);
}

//  Encode value into the mapping. Returns 0, or -1 with *why.
static int s_store(simdev_t *self, const site_tag_t *tag, double value, const char **why)
{
    if (s_is_bit(tag)) {
        int bit = 0;
        if (tagval_to_bit(tag, value, &bit, why) != 0)
            return -1;
        *s_bit(self, tag) = bit ? 1 : 0;
    } else {
        uint16_t regs[2];
        if (tagval_to_registers(tag, value, regs, why) != 0)
            return -1;
        memcpy(s_regs(self, tag), regs, sizeof(uint16_t) * (size_t)site_type_width(tag->type));
    }
    return 0;
}

simdev_t *simdev_new(const site_device_t *device, uint64_t seed, char *err, size_t errlen)
{
    //  Span of each area: [lo, hi) over the device's tags.
    int lo[4] = {65536, 65536, 65536, 65536}, hi[4] = {0, 0, 0, 0};
    for (size_t i = 0; i < device->ntags; i++) {
        const site_tag_t *tag = &device->tags[i];
        int width = s_is_bit(tag) ? 1 : site_type_width(tag->type);
        int a = (int)tag->area & 3;
        if (tag->address < lo[a])
            lo[a] = tag->address;
        if (tag->address + width > hi[a])
            hi[a] = tag->address + width;
    }
    for (int a = 0; a < 4; a++)
        if (hi[a] == 0)
            lo[a] = 0;
    if (hi[SITE_AREA_HR] > 65536 || hi[SITE_AREA_IR] > 65536) {
        snprintf(err, errlen, "device %s: a 32-bit tag runs past register 65535", device->name);
        return NULL;
    }
    simdev_t *self = calloc(1, sizeof *self);
    if (self)
        self->tags = calloc(device->ntags ? device->ntags : 1, sizeof *self->tags);
    if (self && self->tags)
        self->mapping = modbus_mapping_new_start_address(
            (unsigned)lo[SITE_AREA_CO], (unsigned)(hi[SITE_AREA_CO] - lo[SITE_AREA_CO]),
            (unsigned)lo[SITE_AREA_DI], (unsigned)(hi[SITE_AREA_DI] - lo[SITE_AREA_DI]),
            (unsigned)lo[SITE_AREA_HR], (unsigned)(hi[SITE_AREA_HR] - lo[SITE_AREA_HR]),
            (unsigned)lo[SITE_AREA_IR], (unsigned)(hi[SITE_AREA_IR] - lo[SITE_AREA_IR]));
    if (!self || !self->mapping) {
        snprintf(err, errlen, "device %s: out of memory for its mapping", device->name);
        simdev_destroy(&self);
        return NULL;
    }
    self->device = device;
    self->rng = tagsim_mix(seed ^ s_hash(device->name));
    for (size_t i = 0; i < device->ntags; i++) {
        self->tags[i].sim = device->tags[i].sim;
        self->tags[i].key = tagsim_mix(seed) ^ s_hash(device->tags[i].name);
    }
    simdev_tick(self, 0);
    return self;
}

void simdev_destroy(simdev_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    simdev_t *self = *self_p;
    if (self->mapping)
        modbus_mapping_free(self->mapping);
    free(self->tags);
    free(self);
    *self_p = NULL;
}

const site_device_t *simdev_device(const simdev_t *self)
{
    return self->device;
}

modbus_mapping_t *simdev_mapping(simdev_t *self)
{
    return self->mapping;
}

int simdev_tick(simdev_t *self, int64_t t_ms)
{
    int written = 0;
    for (size_t i = 0; i < self->device->ntags; i++) {
        s_tag_t *state = &self->tags[i];
        //  Const tags are written once, so client writes to them stick.
        if (state->written && state->sim.kind == SITE_SIM_CONST)
            continue;
        const site_tag_t *tag = &self->device->tags[i];
        double value = tagsim_quantize(tag, tagsim_value(&state->sim, t_ms, state->key));
        if (state->written && value == state->shown)
            continue;
        const char *why = NULL;
        if (s_store(self, tag, value, &why) != 0) {
            if (!state->warned)
                slog_warn("tag %s: sim value %g not encodable: %s", tag->name, value,
                          why ? why : "?");
            state->warned = true;
        }
        //  Remember it either way, so a failing value is not retried every tick.
        state->shown = value;
        state->written = true;
        written++;
    }
    return written;
}

int simdev_set(simdev_t *self, const site_tag_t *tag, double value, const char **why)
{
    assert(tag->device == self->device);
    size_t i = (size_t)(tag - self->device->tags);
    assert(i < self->device->ntags);
    if (s_store(self, tag, value, why) != 0)
        return -1;
    s_tag_t *state = &self->tags[i];
    state->sim.kind = SITE_SIM_CONST;
    state->sim.initial = simdev_get(self, tag);
    state->shown = state->sim.initial;
    state->written = true;
    return 0;
}

double simdev_get(simdev_t *self, const site_tag_t *tag)
{
    if (s_is_bit(tag))
        return tagval_from_bit(tag, *s_bit(self, tag));
    return tagval_from_registers(tag, s_regs(self, tag));
}

void simdev_set_mode(simdev_t *self, simdev_mode_t mode, int arg)
{
    self->mode = mode;
    if (mode == SIMDEV_DELAY)
        self->delay_ms = arg;
    if (mode == SIMDEV_EXCEPTION)
        self->exception = arg;
}

simdev_mode_t simdev_mode(const simdev_t *self)
{
    return self->mode;
}

int simdev_delay_ms(const simdev_t *self)
{
    if (self->mode == SIMDEV_FLAP)
        return self->flap.delay_ms;
    return self->mode == SIMDEV_DELAY ? self->delay_ms : 0;
}

void simdev_set_flap(simdev_t *self, uint32_t up_ms, uint32_t down_ms, int delay_ms, int64_t now_ms)
{
    assert(up_ms > 0 && down_ms > 0);
    self->mode = SIMDEV_FLAP;
    self->flap.up_ms = up_ms;
    self->flap.down_ms = down_ms;
    self->flap.delay_ms = delay_ms;
    self->flap.start = now_ms;
    self->flap.was_up = true;
}

bool simdev_flap(const simdev_t *self, int64_t now_ms, simdev_flap_t *out)
{
    if (self->mode != SIMDEV_FLAP)
        return false;
    int64_t up = self->flap.up_ms, cycle = up + self->flap.down_ms;
    int64_t t = now_ms > self->flap.start ? now_ms - self->flap.start : 0;
    int64_t pos = t % cycle;
    *out = (simdev_flap_t){.up_ms = self->flap.up_ms,
                           .down_ms = self->flap.down_ms,
                           .delay_ms = self->flap.delay_ms,
                           .up = pos < up,
                           .next_ms = pos < up ? up - pos : cycle - pos};
    return true;
}

simdev_mode_t simdev_acting(const simdev_t *self, int64_t now_ms)
{
    simdev_flap_t flap;
    if (!simdev_flap(self, now_ms, &flap))
        return self->mode;
    if (!flap.up)
        return SIMDEV_SILENT;
    return flap.delay_ms > 0 ? SIMDEV_DELAY : SIMDEV_NORMAL;
}

bool simdev_flap_turned(simdev_t *self, int64_t now_ms, bool *up)
{
    simdev_flap_t flap;
    if (!simdev_flap(self, now_ms, &flap) || flap.up == self->flap.was_up)
        return false;
    self->flap.was_up = flap.up;
    *up = flap.up;
    return true;
}

int simdev_exception_code(const simdev_t *self)
{
    return self->mode == SIMDEV_EXCEPTION ? self->exception : 0;
}

const char *simdev_mode_name(simdev_mode_t mode)
{
    static const char *names[] = {"normal",    "silent",  "refuse", "delay",
                                  "exception", "garbage", "flap"};
    return (unsigned)mode < sizeof names / sizeof names[0] ? names[mode] : "?";
}

simdev_stats_t *simdev_stats(simdev_t *self)
{
    return &self->stats;
}

uint64_t *simdev_rng(simdev_t *self)
{
    return &self->rng;
}
