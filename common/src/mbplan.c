/*  mbplan: request merging. See mbplan.h.

    One pass over the tags sorted by (area, address): a block grows while the
    next tag is in the same area, the hole before it is at most max_gap, and
    the block including the whole tag stays within the read limit of its
    area. Otherwise the tag starts a new block. A tag is only ever added whole,
    so a 32-bit tag is never split between two requests.
*/
#include "mbplan.h"
#include "mbtcp.h"

#include <assert.h>
#include <stdlib.h>

//  A tag with the position it had in the caller's array, so that tags with
//  the same area and address keep their order and a plan is reproducible.
typedef struct {
    site_tag_t *tag;
    size_t index;
} s_entry_t;

static int s_is_bit_area(site_area_t area)
{
    return area == SITE_AREA_CO || area == SITE_AREA_DI;
}

//  Registers or bits a tag occupies: a bit is a bit whatever its type.
static uint32_t s_width(const site_tag_t *tag)
{
    if (s_is_bit_area(tag->area))
        return 1;
    int width = site_type_width(tag->type);
    assert(width == 1 || width == 2);
    return (uint32_t)width;
}

static uint32_t s_limit(site_area_t area)
{
    return s_is_bit_area(area) ? MB_MAX_READ_BITS : MB_MAX_READ_REGS;
}

static int s_compare(const void *a, const void *b)
{
    const s_entry_t *x = a, *y = b;
    if (x->tag->area != y->tag->area)
        return x->tag->area < y->tag->area ? -1 : 1;
    if (x->tag->address != y->tag->address)
        return x->tag->address < y->tag->address ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

mbplan_t *mbplan_new(site_tag_t *const *tags, size_t ntags, uint32_t max_gap, size_t *rejected)
{
    assert(tags || ntags == 0);
    mbplan_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    if (rejected)
        *rejected = 0;
    if (ntags == 0)
        return self;

    s_entry_t *entries = calloc(ntags, sizeof *entries);
    self->tags = calloc(ntags, sizeof *self->tags);
    self->blocks = calloc(ntags, sizeof *self->blocks); //  at most one block per tag
    if (!entries || !self->tags || !self->blocks) {
        free(entries);
        mbplan_destroy(&self);
        return NULL;
    }
    size_t kept = 0;
    for (size_t i = 0; i < ntags; i++) {
        assert(tags[i]);
        //  The last register of a 32-bit tag at 65535 would be 65536: no
        //  request can read it.
        if ((uint32_t)tags[i]->address + s_width(tags[i]) > 0x10000) {
            if (rejected)
                (*rejected)++;
            continue;
        }
        entries[kept].tag = tags[i];
        entries[kept].index = i;
        kept++;
    }
    qsort(entries, kept, sizeof *entries, s_compare);

    mbplan_block_t *block = NULL;
    uint32_t end = 0; //  one past the last register or bit of the current block
    for (size_t i = 0; i < kept; i++) {
        site_tag_t *tag = entries[i].tag;
        self->tags[i] = tag;
        uint32_t start = tag->address;
        uint32_t stop = start + s_width(tag);
        if (block && block->area == tag->area) {
            //  Overlapping tags (stop <= end) join for free; for the rest the
            //  hole before them is start - end, 0 when they touch or overlap.
            uint32_t gap = start > end ? start - end : 0;
            uint32_t new_end = stop > end ? stop : end;
            if (gap <= max_gap && new_end - block->start <= s_limit(tag->area)) {
                end = new_end;
                block->count = (uint16_t)(end - block->start);
                block->ntags++;
                continue;
            }
        }
        block = &self->blocks[self->nblocks++];
        block->area = tag->area;
        block->start = (uint16_t)start;
        block->count = (uint16_t)(stop - start);
        block->first = i;
        block->ntags = 1;
        end = stop;
    }
    self->ntags = kept;
    free(entries);
    return self;
}

void mbplan_destroy(mbplan_t **self_p)
{
    assert(self_p);
    mbplan_t *self = *self_p;
    if (self) {
        free(self->tags);
        free(self->blocks);
        free(self);
        *self_p = NULL;
    }
}
