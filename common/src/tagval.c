/*  tagval: Modbus registers and bits to engineering values, and back. See tagval.h.

    Raw values are kept in double on the way: every raw value of every
    supported type (up to 32-bit integers and float32) is exact in a double,
    so scaling is the only step that rounds.
*/
#include "tagval.h"

#include <assert.h>
#include <float.h>
#include <math.h>
#include <string.h>

//  Join two registers into the 32-bit word they carry, honouring word order.
static uint32_t s_join(const site_tag_t *tag, const uint16_t *regs)
{
    if (tag->word_order == SITE_WO_LITTLE)
        return ((uint32_t)regs[1] << 16) | regs[0];
    return ((uint32_t)regs[0] << 16) | regs[1];
}

static void s_split(const site_tag_t *tag, uint32_t word, uint16_t *regs)
{
    uint16_t high = (uint16_t)(word >> 16);
    uint16_t low = (uint16_t)(word & 0xFFFF);
    if (tag->word_order == SITE_WO_LITTLE) {
        regs[0] = low;
        regs[1] = high;
    } else {
        regs[0] = high;
        regs[1] = low;
    }
}

static double s_scale(const site_tag_t *tag, double raw)
{
    return raw * tag->scale + tag->offset;
}

static int s_reject(const char **why, const char *text)
{
    if (why)
        *why = text;
    return -1;
}

double tagval_from_registers(const site_tag_t *tag, const uint16_t *regs)
{
    assert(tag);
    assert(regs);
    switch (tag->type) {
    case SITE_T_BOOL:
        //  A flag in a register: any set bit means on, and a flag is never scaled.
        return regs[0] != 0;
    case SITE_T_INT16:
        return s_scale(tag, (int16_t)regs[0]);
    case SITE_T_UINT16:
        return s_scale(tag, regs[0]);
    case SITE_T_INT32:
        return s_scale(tag, (int32_t)s_join(tag, regs));
    case SITE_T_UINT32:
        return s_scale(tag, s_join(tag, regs));
    case SITE_T_FLOAT32: {
        uint32_t word = s_join(tag, regs);
        float f;
        memcpy(&f, &word, sizeof f);
        //  A device that reports NaN or infinity says its value is bad; scaling
        //  could turn infinity into NaN and lose that, so pass it on untouched.
        if (!isfinite(f))
            return f;
        return s_scale(tag, f);
    }
    }
    assert(!"unknown tag type");
    return NAN;
}

double tagval_from_bit(const site_tag_t *tag, int bit)
{
    assert(tag);
    double raw = bit ? 1 : 0;
    return tag->type == SITE_T_BOOL ? raw : s_scale(tag, raw);
}

//  Engineering value back to the raw value the device holds; -1 when the
//  result cannot be represented at all.
static int s_unscale(const site_tag_t *tag, double value, double *raw, const char **why)
{
    if (isnan(value))
        return s_reject(why, "value is not a number");
    if (isinf(value))
        return s_reject(why, "value is infinite");
    if (tag->scale == 0 || !isfinite(tag->scale) || !isfinite(tag->offset))
        return s_reject(why, "tag scaling cannot be inverted");
    *raw = (value - tag->offset) / tag->scale;
    if (!isfinite(*raw))
        return s_reject(why, "value out of range after unscaling");
    return 0;
}

//  Round an unscaled value to the nearest integer (halves away from zero, so
//  the result does not depend on the floating-point rounding mode) and check
//  it lies in [min, max].
static int s_round(double raw, double min, double max, double *out, const char **why,
                   const char *range_text)
{
    double r = round(raw);
    if (r < min || r > max)
        return s_reject(why, range_text);
    *out = r;
    return 0;
}

int tagval_to_registers(const site_tag_t *tag, double value, uint16_t *regs, const char **why)
{
    assert(tag);
    assert(regs);
    if (tag->type == SITE_T_BOOL) {
        //  A flag takes exactly 0 or 1: 0.7 is an operator's mistake, not "on".
        if (value != 0 && value != 1)
            return s_reject(why, "bool value must be 0 or 1");
        regs[0] = value == 1;
        return 0;
    }
    double raw, r;
    if (s_unscale(tag, value, &raw, why))
        return -1;
    switch (tag->type) {
    case SITE_T_INT16:
        if (s_round(raw, INT16_MIN, INT16_MAX, &r, why, "value out of range for int16"))
            return -1;
        regs[0] = (uint16_t)(int16_t)r;
        return 0;
    case SITE_T_UINT16:
        if (s_round(raw, 0, UINT16_MAX, &r, why, "value out of range for uint16"))
            return -1;
        regs[0] = (uint16_t)r;
        return 0;
    case SITE_T_INT32:
        if (s_round(raw, INT32_MIN, INT32_MAX, &r, why, "value out of range for int32"))
            return -1;
        s_split(tag, (uint32_t)(int32_t)r, regs);
        return 0;
    case SITE_T_UINT32:
        if (s_round(raw, 0, UINT32_MAX, &r, why, "value out of range for uint32"))
            return -1;
        s_split(tag, (uint32_t)r, regs);
        return 0;
    case SITE_T_FLOAT32: {
        //  Values just over FLT_MAX would round to infinity, which the device
        //  would read as a fault; refuse them instead.
        if (fabs(raw) > FLT_MAX)
            return s_reject(why, "value out of range for float32");
        float f = (float)raw;
        uint32_t word;
        memcpy(&word, &f, sizeof word);
        s_split(tag, word, regs);
        return 0;
    }
    case SITE_T_BOOL:
        break;
    }
    assert(!"unknown tag type");
    return s_reject(why, "unknown tag type");
}

int tagval_to_bit(const site_tag_t *tag, double value, int *bit, const char **why)
{
    assert(tag);
    assert(bit);
    if (tag->type == SITE_T_BOOL) {
        if (value != 0 && value != 1)
            return s_reject(why, "bool value must be 0 or 1");
        *bit = value == 1;
        return 0;
    }
    //  A numeric tag on a coil is scaled like any other: unscale, round, and
    //  the raw value must then be a bit.
    double raw, r;
    if (s_unscale(tag, value, &raw, why))
        return -1;
    if (s_round(raw, 0, 1, &r, why, "value is neither 0 nor 1 after unscaling"))
        return -1;
    *bit = r == 1;
    return 0;
}

int tagval_is_finite(double value)
{
    return isfinite(value) != 0;
}
