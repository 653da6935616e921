/*  tagval: Modbus registers and bits to engineering values, and back.

    Pure conversions over a tag's type, word order and scaling:
    bool, int16, uint16, int32, uint32, float32 (IEEE 754, 32-bit types in two
    registers, word order big = high word first (ABCD) or little (CDAB)).
    engineering = raw * scale + offset.
*/
#ifndef TAGVAL_H_INCLUDED
#define TAGVAL_H_INCLUDED

#include "site.h"

#include <stddef.h>
#include <stdint.h>

//  Decode a register tag from regs[0..width-1] (width from site_type_width).
//  Returns the engineering value. For SITE_T_BOOL on a register, any non-zero
//  register is 1. A float32 that is NaN or infinite is returned as it is; the
//  caller decides its quality (tagval_is_finite).
double tagval_from_registers(const site_tag_t *tag, const uint16_t *regs);

//  Decode a bit tag (coil or discrete input): 0 or 1, then scaled (bools unscaled).
double tagval_from_bit(const site_tag_t *tag, int bit);

//  Encode an engineering value for writing: regs gets site_type_width() words.
//  Returns 0, or -1 with a static reason in *why when the value does not fit the
//  type after unscaling (out of range, not an integer for integer types, NaN).
int tagval_to_registers(const site_tag_t *tag, double value, uint16_t *regs, const char **why);

//  Encode a value for a coil: 0 or 1. Returns -1 with *why unless value is 0 or 1.
int tagval_to_bit(const site_tag_t *tag, double value, int *bit, const char **why);

int tagval_is_finite(double value);

#endif
