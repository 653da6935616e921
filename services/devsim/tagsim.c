/*  tagsim: how a simulated tag's value moves over time. See tagsim.h. */
#include "tagsim.h"

#include <float.h>
#include <math.h>
#include <stdio.h>

uint64_t tagsim_mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

//  Uniform double in [0, 1) from 53 random bits.
static double s_unit(uint64_t r)
{
    return (double)(r >> 11) * (1.0 / 9007199254740992.0);
}

static double s_clamp(double v, double lo, double hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

double tagsim_value(const site_sim_t *sim, int64_t t_ms, uint64_t key)
{
    //  The loader guarantees period_ms > 0; a zero here must not divide.
    double period = sim->period_ms ? (double)sim->period_ms : 1000.0;
    double lo = sim->min, hi = sim->max;
    if (t_ms < 0)
        t_ms = 0;
    int64_t k = t_ms / (int64_t)period;

    switch (sim->kind) {
    case SITE_SIM_RAMP: {
        if (!(hi > lo))
            return lo;
        double start = s_clamp((sim->initial - lo) / (hi - lo), 0.0, 1.0);
        return lo + (hi - lo) * fmod(start + (double)t_ms / period, 1.0);
    }
    case SITE_SIM_SINE: {
        double mid = (lo + hi) / 2, amp = (hi - lo) / 2;
        if (!(amp > 0))
            return mid;
        double phase = asin(s_clamp((sim->initial - mid) / amp, -1.0, 1.0));
        return mid + amp * sin(2 * M_PI * (double)t_ms / period + phase);
    }
    case SITE_SIM_NOISE:
        //  The first period shows initial so a fresh start has a known value.
        if (k == 0)
            return sim->initial;
        return lo + (hi - lo) * s_unit(tagsim_mix(key ^ tagsim_mix((uint64_t)k)));
    case SITE_SIM_TOGGLE: {
        bool near_max = fabs(sim->initial - hi) < fabs(sim->initial - lo);
        double first = near_max ? hi : lo, other = near_max ? lo : hi;
        return (k % 2 == 0) ? first : other;
    }
    case SITE_SIM_CONST:
    default:
        return sim->initial;
    }
}

double tagsim_quantize(const site_tag_t *tag, double value)
{
    if (isnan(value))
        value = 0;
    //  Bools carry 0 or 1 unscaled, wherever they live.
    if (tag->type == SITE_T_BOOL)
        return fabs(value) >= 0.5 ? 1 : 0;
    double scale = tag->scale != 0 ? tag->scale : 1;
    double raw = (value - tag->offset) / scale;
    double lo, hi;
    if (tag->area == SITE_AREA_CO || tag->area == SITE_AREA_DI) {
        lo = 0, hi = 1;
    } else {
        switch (tag->type) {
        case SITE_T_INT16:
            lo = -32768, hi = 32767;
            break;
        case SITE_T_UINT16:
            lo = 0, hi = 65535;
            break;
        case SITE_T_INT32:
            lo = -2147483648.0, hi = 2147483647.0;
            break;
        case SITE_T_UINT32:
            lo = 0, hi = 4294967295.0;
            break;
        case SITE_T_FLOAT32:
        default: {
            //  Round to what the two registers can carry.
            float f = (float)s_clamp(raw, -FLT_MAX, FLT_MAX);
            return (double)f * scale + tag->offset;
        }
        }
    }
    raw = s_clamp(round(s_clamp(raw, -1e300, 1e300)), lo, hi);
    return raw * scale + tag->offset;
}

//  --------------------------------------------------------------------------
//  Self test

static int s_failed;
#define s_check(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "tagsim_test: %s:%d: %s\n", __FILE__, __LINE__, #cond);                \
            s_failed++;                                                                            \
        }                                                                                          \
    } while (0)

static bool s_near(double a, double b)
{
    return fabs(a - b) < 1e-9;
}

int tagsim_test(bool verbose)
{
    s_failed = 0;
    site_sim_t sim = {
        .kind = SITE_SIM_CONST, .min = 0, .max = 100, .period_ms = 1000, .initial = 42};
    s_check(tagsim_value(&sim, 0, 1) == 42);
    s_check(tagsim_value(&sim, 123456, 1) == 42);

    sim.kind = SITE_SIM_RAMP;
    sim.initial = 0;
    s_check(s_near(tagsim_value(&sim, 0, 1), 0));
    s_check(s_near(tagsim_value(&sim, 250, 1), 25));
    s_check(s_near(tagsim_value(&sim, 1250, 1), 25));
    sim.initial = 50;
    s_check(s_near(tagsim_value(&sim, 0, 1), 50));
    s_check(s_near(tagsim_value(&sim, 600, 1), 10));
    sim.max = sim.min; //  empty range: stays at min, no division by zero
    s_check(tagsim_value(&sim, 600, 1) == 0);
    sim.max = 100;

    sim.kind = SITE_SIM_SINE;
    sim.initial = 50;
    s_check(s_near(tagsim_value(&sim, 0, 1), 50));
    s_check(s_near(tagsim_value(&sim, 250, 1), 100));
    s_check(s_near(tagsim_value(&sim, 750, 1), 0));
    sim.initial = 100;
    s_check(s_near(tagsim_value(&sim, 0, 1), 100));

    sim.kind = SITE_SIM_NOISE;
    sim.initial = 7;
    s_check(tagsim_value(&sim, 999, 1) == 7);
    double a = tagsim_value(&sim, 1000, 1), b = tagsim_value(&sim, 1999, 1);
    s_check(a == b && a >= 0 && a <= 100);
    s_check(tagsim_value(&sim, 1000, 2) != a);
    s_check(tagsim_value(&sim, 2000, 1) != a);
    for (int i = 1; i < 1000; i++) {
        double v = tagsim_value(&sim, i * 1000, 99);
        s_check(v >= 0 && v <= 100);
    }

    sim.kind = SITE_SIM_TOGGLE;
    sim.min = 0, sim.max = 1, sim.initial = 1;
    s_check(tagsim_value(&sim, 0, 1) == 1);
    s_check(tagsim_value(&sim, 1000, 1) == 0);
    s_check(tagsim_value(&sim, 2500, 1) == 1);
    sim.initial = 0;
    s_check(tagsim_value(&sim, 0, 1) == 0);
    sim.period_ms = 0; //  must not divide by zero
    s_check(tagsim_value(&sim, 1500, 1) == 1);

    site_tag_t tag = {.area = SITE_AREA_HR, .type = SITE_T_UINT16, .scale = 1, .offset = 0};
    s_check(tagsim_quantize(&tag, 12.4) == 12);
    s_check(tagsim_quantize(&tag, -5) == 0);
    s_check(tagsim_quantize(&tag, 1e9) == 65535);
    s_check(tagsim_quantize(&tag, NAN) == 0);
    tag.type = SITE_T_INT16;
    s_check(tagsim_quantize(&tag, -40000) == -32768);
    tag.scale = 0.1;
    s_check(s_near(tagsim_quantize(&tag, 12.34), 12.3));
    tag.type = SITE_T_UINT32;
    tag.scale = 1;
    s_check(tagsim_quantize(&tag, 4294967295.0) == 4294967295.0);
    tag.type = SITE_T_FLOAT32;
    s_check(tagsim_quantize(&tag, 12.5) == 12.5);
    s_check(tagsim_quantize(&tag, 0.1) == (double)0.1f);
    tag.type = SITE_T_BOOL;
    s_check(tagsim_quantize(&tag, 0.7) == 1 && tagsim_quantize(&tag, 0.2) == 0);
    tag.type = SITE_T_UINT16;
    tag.area = SITE_AREA_CO;
    s_check(tagsim_quantize(&tag, 7) == 1);

    if (verbose)
        fprintf(stderr, "tagsim_test: %s\n", s_failed ? "FAILED" : "OK");
    return s_failed;
}
