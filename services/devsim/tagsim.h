/*  tagsim: how a simulated tag's value moves over time.

    Pure functions: the value of a site_sim_t at `t` milliseconds after the
    simulation started, and the nearest value a tag's type can hold. No clocks,
    no state: noise is a hash of (seed, tag key, period number), so a run with
    the same --seed repeats exactly and a value can be recomputed at any time.
*/
#ifndef TAGSIM_H_INCLUDED
#define TAGSIM_H_INCLUDED

#include "site.h"

#include <stdbool.h>
#include <stdint.h>

//  Engineering value of `sim` at t_ms >= 0. `key` selects the noise stream
//  (mix the run's seed with something unique to the tag).
//    const   initial
//    ramp    min..max over period_ms, starting at initial, then wraps to min
//    sine    between min and max with period_ms, starting at initial (rising)
//    noise   initial during the first period, then uniform in [min, max],
//            a new value every period_ms
//    toggle  starts at whichever of min/max is nearer to initial and flips
//            between them every period_ms
double tagsim_value(const site_sim_t *sim, int64_t t_ms, uint64_t key);

//  The value nearest to `value` that the tag can hold: integer types are
//  unscaled, rounded and clamped to the type's range, then scaled back;
//  bools and bit tags become 0 or 1 (|value| >= 0.5 is 1); float32 is
//  rounded to single precision; NaN becomes 0.
double tagsim_quantize(const site_tag_t *tag, double value);

//  A 64-bit mix (splitmix64 finaliser): the one random source of devsim.
uint64_t tagsim_mix(uint64_t x);

//  Self test; returns the number of failed checks (0 is good).
int tagsim_test(bool verbose);

#endif
