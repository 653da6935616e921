/*  mbplan: request merging.

    Given the tags of one device that share one scan period, plan the read
    requests: tags of the same area are sorted by address and merged into as
    few requests as possible, never over MB_MAX_READ_REGS registers or
    MB_MAX_READ_BITS bits, bridging holes of at most max_gap registers or bits
    (reading a few unused registers is cheaper than another round trip).
*/
#ifndef MBPLAN_H_INCLUDED
#define MBPLAN_H_INCLUDED

#include "site.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    site_area_t area;
    uint16_t start;      //  first register or bit
    uint16_t count;      //  registers or bits
    size_t first;        //  index into the plan's tag array of the first tag in this block
    size_t ntags;        //  tags[first .. first+ntags-1] lie inside this block
} mbplan_block_t;

typedef struct {
    site_tag_t **tags;      //  the planned tags, sorted by area then address (owned array)
    size_t ntags;
    mbplan_block_t *blocks; //  owned array
    size_t nblocks;
} mbplan_t;

//  Plan reads for tags[0..ntags-1] (pointers, not owned; all of one device).
//  A tag that would cross the 65535 address limit is not planned and counted in
//  *rejected if rejected is not NULL. Returns NULL only on allocation failure.
//  Caller owns the return value.
mbplan_t *mbplan_new(site_tag_t *const *tags, size_t ntags, uint32_t max_gap, size_t *rejected);

//  Destroy a plan; tolerates NULL, sets *self_p to NULL.
void mbplan_destroy(mbplan_t **self_p);

#endif
