/*  site: loads and validates a site file into the plain structs of site.h.

    The loader walks libyaml's event stream once, without building a document
    tree, so a site of 100,000 tags costs a few megabytes while it loads
    instead of a few hundred. Every mapping is read against a declarative key
    table (name, kind, bounds, where the value goes); a key that is not in the
    table is an error, so a typo never passes silently. Checks that need a
    sibling key the file may give later (the channel type for device
    addresses, the device's scan_ms for its tags, the I/O servers that a
    device's servers list names) run when the enclosing mapping or the whole
    file is complete, with the lines remembered.

    The loader keeps a path of keys and list indexes as it descends, so any
    error names the key as "channels[0].devices[2].tags[1].type". The first
    error stops the load.

    Scalar values (never keys) may name environment variables: ${NAME},
    ${NAME:-default}, and $$ for a literal $. They are expanded as each
    event is read, before the value is interpreted, so a number, a boolean
    or an endpoint can come from the environment alike. To tell keys from
    values the loader keeps its own stack of the collections it is in.
*/
#include "site.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

//  ---------------------------------------------------------------------------
//  Name index: open addressing with linear probing over FNV-1a hashes.

typedef struct {
    const char *name; //  owned by the struct it names (NULL: free slot)
    void *ptr;        //  that struct, set once the whole file is read
    int line;         //  line of the name, for "first defined at line N"
} s_entry_t;

typedef struct {
    s_entry_t *slots; //  cap slots, cap a power of two, at most half used
    size_t cap;
    size_t count;
} s_index_t;

struct site_index_s {
    s_index_t ioservers;
    s_index_t channels;
    s_index_t devices;
    s_index_t tags;
};

static uint64_t s_hash(const char *name)
{
    uint64_t hash = 14695981039346656037ULL;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        hash = (hash ^ *p) * 1099511628211ULL;
    return hash;
}

static s_entry_t *s_index_find(const s_index_t *index, const char *name)
{
    if (index->cap == 0)
        return NULL;
    size_t mask = index->cap - 1;
    for (size_t i = (size_t)s_hash(name) & mask;; i = (i + 1) & mask) {
        s_entry_t *entry = &index->slots[i];
        if (!entry->name)
            return NULL;
        if (strcmp(entry->name, name) == 0)
            return entry;
    }
}

//  Add a name. Returns 0 if added, 1 if the name is there already (*dup is
//  set to that entry), -1 if out of memory.
static int s_index_add(s_index_t *index, const char *name, int line, s_entry_t **dup)
{
    if ((index->count + 1) * 2 > index->cap) {
        size_t cap = index->cap ? index->cap * 2 : 64;
        s_entry_t *slots = calloc(cap, sizeof *slots);
        if (!slots)
            return -1;
        for (size_t i = 0; i < index->cap; i++) {
            if (!index->slots[i].name)
                continue;
            size_t j = (size_t)s_hash(index->slots[i].name) & (cap - 1);
            while (slots[j].name)
                j = (j + 1) & (cap - 1);
            slots[j] = index->slots[i];
        }
        free(index->slots);
        index->slots = slots;
        index->cap = cap;
    }
    size_t mask = index->cap - 1;
    size_t i = (size_t)s_hash(name) & mask;
    for (; index->slots[i].name; i = (i + 1) & mask) {
        if (strcmp(index->slots[i].name, name) == 0) {
            *dup = &index->slots[i];
            return 1;
        }
    }
    index->slots[i] = (s_entry_t){name, NULL, line};
    index->count++;
    return 0;
}

//  ---------------------------------------------------------------------------
//  Loader state

#define S_MAX_DEPTH 16
#define S_MAX_KEYS  24

typedef struct {
    const char *key; //  a mapping key, or NULL for a list index
    size_t index;
} s_seg_t;

//  A device's servers entry, checked against ioservers once the file is read.
typedef struct {
    size_t ch, dev, k; //  channels[ch].devices[dev].servers[k]
    int line;
    bool mapping; //  written as {ioserver: X} rather than a plain name
} s_ref_t;

//  What a device's own checks leave for its channel's (which needs the type).
typedef struct {
    int line;         //  of the device
    int address_line; //  0: no address key
    int unit_line;    //  0: no unit key
} s_devx_t;

//  Per tag of the current device: which inherited keys the tag gave itself.
#define S_TAG_OWN_WORD_ORDER 1
#define S_TAG_OWN_SCAN       2

typedef struct {
    const char *file; //  name used in messages
    const char *text; //  the whole input, for reader-error line numbers
    size_t len;
    yaml_parser_t parser;
    yaml_event_t ev; //  current event
    bool have_ev;
    char *err;
    size_t errlen;
    bool failed;
    s_seg_t path[S_MAX_DEPTH];
    int depth;
    site_t *site;
    s_ref_t *refs;
    size_t nrefs;
    s_devx_t *devx; //  indexed like the current channel's devices
    uint8_t *tagx;  //  indexed like the current device's tags
    char *val;      //  the current scalar with its ${...} expanded; NULL: as read
    uint8_t *nest;  //  the collections the current event is in (S_NEST_*)
    size_t nnest, capnest;
} s_loader_t;

//  What the current event is inside: a list, or a mapping whose next node is
//  a key or a value.
enum { S_NEST_LIST, S_NEST_KEY, S_NEST_VALUE };

//  Which keys of a mapping were given, and where.
typedef struct {
    uint32_t bits;            //  1 << key index
    int line;                 //  line of the mapping itself
    int key_line[S_MAX_KEYS]; //  line of each key given
} s_seen_t;

#define S_HAS(seen, k) (((seen)->bits >> (k)) & 1u)

typedef int(s_custom_fn)(s_loader_t *ld, void *obj, void *spec);

typedef enum {
    S_NAME,    //  char *, non-empty, no blanks or control characters
    S_STR,     //  char *, non-empty
    S_U8,      //  uint8_t within min..max
    S_U16,     //  uint16_t within min..max
    S_U32,     //  uint32_t within min..max
    S_INT,     //  int within min..max (min >= 0)
    S_BOOL,    //  bool
    S_DOUBLE,  //  double, finite
    S_UDOUBLE, //  double, finite, >= 0
    S_CUSTOM   //  custom() reads it
} s_kind_t;

typedef struct {
    const char *name;
    s_kind_t kind;
    size_t offset; //  where the value goes in the mapping's struct
    unsigned long long min, max;
    bool required;
    s_custom_fn *custom;
} s_key_t;

//  Tag being read: what the tag's keys leave for its final checks.
typedef struct {
    double raw[2], eng[2];
    s_seen_t sim; //  keys of the sim mapping (only "kind" for the short form)
} s_tagspec_t;

static const char *const s_chtype_names[] = {"network", "tcp", "serial", "listen"};
static const char *const s_area_names[] = {"co", "di", "hr", "ir"};
static const char *const s_type_names[] = {"bool", "int16", "uint16", "int32", "uint32", "float32"};
static const char *const s_wo_names[] = {"big", "little"};
static const char *const s_sim_names[] = {"const", "ramp", "sine", "noise", "toggle"};

#define S_COUNT(a) (sizeof(a) / sizeof((a)[0]))

//  ---------------------------------------------------------------------------
//  Paths and errors

//  The nesting of a site file is fixed and shallower than S_MAX_DEPTH.
static void s_push_key(s_loader_t *ld, const char *key)
{
    assert(ld->depth < S_MAX_DEPTH);
    if (ld->depth < S_MAX_DEPTH)
        ld->path[ld->depth++] = (s_seg_t){key, 0};
}

static void s_push_index(s_loader_t *ld, size_t index)
{
    assert(ld->depth < S_MAX_DEPTH);
    if (ld->depth < S_MAX_DEPTH)
        ld->path[ld->depth++] = (s_seg_t){NULL, index};
}

static void s_pop(s_loader_t *ld)
{
    if (ld->depth > 0)
        ld->depth--;
}

static void s_path(const s_loader_t *ld, char *buf, size_t size)
{
    size_t n = 0;
    buf[0] = 0;
    for (int i = 0; i < ld->depth && n < size; i++) {
        const s_seg_t *seg = &ld->path[i];
        int k;
        if (seg->key)
            k = snprintf(buf + n, size - n, "%s%s", i ? "." : "", seg->key);
        else
            k = snprintf(buf + n, size - n, "[%zu]", seg->index);
        if (k < 0)
            break;
        n += (size_t)k;
    }
}

//  Record the load's one error as "FILE:LINE: PATH: message" (LINE left out
//  when 0, PATH when empty). Always returns -1.
static int s_fail(s_loader_t *ld, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int s_fail(s_loader_t *ld, int line, const char *fmt, ...)
{
    if (ld->failed)
        return -1;
    ld->failed = true;
    if (!ld->err || ld->errlen == 0)
        return -1;
    char path[256];
    s_path(ld, path, sizeof path);
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char where[32] = "";
    if (line > 0)
        snprintf(where, sizeof where, ":%d", line);
    snprintf(ld->err, ld->errlen, "%s%s: %s%s%s", ld->file, where, path, *path ? ": " : "", msg);
    return -1;
}

static int s_oom(s_loader_t *ld)
{
    return s_fail(ld, 0, "out of memory");
}

//  Line of the current event, 1-based.
static int s_line(const s_loader_t *ld)
{
    return (int)ld->ev.start_mark.line + 1;
}

//  Make room for one more element in an array whose capacity is implied by
//  its count (4, then doubling). Returns the array, moved or not, or NULL.
static void *s_room(void *array, size_t count, size_t size)
{
    if (count > 0 && (count < 4 || (count & (count - 1)) != 0))
        return array;
    size_t cap = count == 0 ? 4 : count * 2;
    return realloc(array, cap * size);
}

//  ---------------------------------------------------------------------------
//  Events

static int s_syntax_error(s_loader_t *ld)
{
    yaml_parser_t *p = &ld->parser;
    const char *problem = p->problem ? p->problem : "unreadable input";
    if (p->error == YAML_READER_ERROR) {
        //  Encoding problems carry a byte offset, not a mark.
        int line = 1;
        for (size_t i = 0; i < p->problem_offset && i < ld->len; i++)
            if (ld->text[i] == '\n')
                line++;
        return s_fail(ld, line, "cannot read the file: %s", problem);
    }
    int line = (int)p->problem_mark.line + 1;
    int column = (int)p->problem_mark.column + 1;
    if (p->context)
        return s_fail(ld, line, "YAML syntax error at column %d: %s (%s at line %d)", column,
                      problem, p->context, (int)p->context_mark.line + 1);
    return s_fail(ld, line, "YAML syntax error at column %d: %s", column, problem);
}

static const char *s_text(const s_loader_t *ld)
{
    return ld->val ? ld->val : (const char *)ld->ev.data.scalar.value;
}

//  A text that grows; on no memory `failed` is set and the text is lost.
typedef struct {
    char *data;
    size_t len, cap;
    bool failed;
} s_text_t;

static void s_append(s_text_t *out, const char *text, size_t len)
{
    if (out->failed)
        return;
    if (out->len + len + 1 > out->cap) {
        size_t cap = out->cap ? out->cap : 64;
        while (cap < out->len + len + 1)
            cap *= 2;
        char *data = realloc(out->data, cap);
        if (!data) {
            out->failed = true;
            return;
        }
        out->data = data;
        out->cap = cap;
    }
    memcpy(out->data + out->len, text, len);
    out->len += len;
    out->data[out->len] = 0;
}

static bool s_is_name_char(char c)
{
    return isalnum((unsigned char)c) || c == '_';
}

//  Expand the environment references of the current scalar into ld->val:
//  ${NAME}, ${NAME:-default} (the default when NAME is unset or empty) and
//  $$ (a literal $). A $ followed by anything else stays as it is. What an
//  expansion yields is not looked at again. Returns 0, or -1 after s_fail().
static int s_expand(s_loader_t *ld)
{
    const char *text = (const char *)ld->ev.data.scalar.value;
    if (!strchr(text, '$'))
        return 0;
    //  In a flow collection a plain scalar ends at "{": "port: ${X}" inside
    //  {...} reads as "$" followed by a mapping.
    size_t end = ld->ev.end_mark.index;
    size_t len = ld->ev.data.scalar.length;
    if (ld->ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE && len && text[len - 1] == '$' &&
        end < ld->len && ld->text[end] == '{')
        return s_fail(ld, s_line(ld),
                      "inside {...} or [...] a value with ${...} must be quoted, e.g. "
                      "\"${NAME}\"");
    s_text_t out = {0};
    for (const char *p = text; *p;) {
        const char *dollar = strchr(p, '$');
        if (!dollar) {
            s_append(&out, p, strlen(p));
            break;
        }
        s_append(&out, p, (size_t)(dollar - p));
        if (dollar[1] != '{') {
            //  "$$" is one "$"; a "$" before anything else is kept.
            s_append(&out, "$", 1);
            p = dollar + (dollar[1] == '$' ? 2 : 1);
            continue;
        }
        const char *name = dollar + 2;
        const char *close = strchr(name, '}');
        if (!close) {
            free(out.data);
            return s_fail(ld, s_line(ld),
                          "\"${\" without \"}\" in \"%.80s\" (write ${NAME} or "
                          "${NAME:-default}, and $$ for a literal $)",
                          text);
        }
        size_t nlen = 0;
        while (s_is_name_char(name[nlen]))
            nlen++;
        int reflen = (int)(close + 1 - dollar);
        if (nlen == 0 || isdigit((unsigned char)name[0])) {
            free(out.data);
            return s_fail(ld, s_line(ld),
                          "bad reference \"%.*s\": a variable name is letters, digits and _, "
                          "not starting with a digit",
                          reflen > 80 ? 80 : reflen, dollar);
        }
        const char *after = name + nlen;
        const char *def = NULL;
        if (after[0] == ':' && after[1] == '-')
            def = after + 2;
        else if (after != close) {
            free(out.data);
            return s_fail(ld, s_line(ld),
                          "bad reference \"%.*s\": expected } or :-default after the name %.*s",
                          reflen > 80 ? 80 : reflen, dollar, (int)(nlen > 64 ? 64 : nlen), name);
        }
        if (def && memmem(def, (size_t)(close - def), "${", 2)) {
            free(out.data);
            return s_fail(ld, s_line(ld),
                          "\"%.80s\": a default cannot hold another reference (no nested ${...})",
                          text);
        }
        char var[256];
        if (nlen >= sizeof var) {
            free(out.data);
            return s_fail(ld, s_line(ld), "bad reference: the variable name %.40s... is too long",
                          name);
        }
        memcpy(var, name, nlen);
        var[nlen] = 0;
        const char *value = getenv(var);
        if (value && *value)
            s_append(&out, value, strlen(value));
        else if (def)
            s_append(&out, def, (size_t)(close - def));
        else if (!value) {
            free(out.data);
            return s_fail(ld, s_line(ld),
                          "environment variable %s is not set (write ${%s:-default} to give a "
                          "default)",
                          var, var);
        }
        p = close + 1;
    }
    if (out.failed) {
        free(out.data);
        return s_oom(ld);
    }
    if (!out.data && !(out.data = strdup("")))
        return s_oom(ld);
    ld->val = out.data;
    return 0;
}

//  Keep the stack of collections in step with the event just read. Returns
//  true when the event is a mapping key.
static bool s_nest(s_loader_t *ld)
{
    uint8_t *top = ld->nnest ? &ld->nest[ld->nnest - 1] : NULL;
    bool key = top && *top == S_NEST_KEY;
    switch (ld->ev.type) {
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT:
        if (ld->nnest == ld->capnest) {
            size_t cap = ld->capnest ? ld->capnest * 2 : 16;
            uint8_t *nest = realloc(ld->nest, cap);
            if (!nest)
                return key; //  s_next() sees nnest unchanged and fails
            ld->nest = nest;
            ld->capnest = cap;
        }
        ld->nest[ld->nnest++] = ld->ev.type == YAML_SEQUENCE_START_EVENT ? S_NEST_LIST : S_NEST_KEY;
        return key;
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
        if (ld->nnest)
            ld->nnest--;
        top = ld->nnest ? &ld->nest[ld->nnest - 1] : NULL;
        break;
    case YAML_SCALAR_EVENT:
    case YAML_ALIAS_EVENT:
        break;
    default:
        return false;
    }
    //  A node ended: in a mapping, a key is followed by a value and a value by a key.
    if (top && *top != S_NEST_LIST)
        *top = *top == S_NEST_KEY ? S_NEST_VALUE : S_NEST_KEY;
    return key;
}

//  Move to the next event. Returns 0, or -1 on a syntax error or a bad
//  environment reference in a value.
static int s_next(s_loader_t *ld)
{
    if (ld->have_ev)
        yaml_event_delete(&ld->ev);
    ld->have_ev = false;
    free(ld->val);
    ld->val = NULL;
    if (!yaml_parser_parse(&ld->parser, &ld->ev)) {
        int depth = ld->depth;
        ld->depth = 0; //  the path says where we were, not where the error is
        s_syntax_error(ld);
        ld->depth = depth;
        return -1;
    }
    ld->have_ev = true;
    size_t nnest = ld->nnest;
    bool key = s_nest(ld);
    if ((ld->ev.type == YAML_SEQUENCE_START_EVENT || ld->ev.type == YAML_MAPPING_START_EVENT) &&
        ld->nnest == nnest)
        return s_oom(ld);
    if (ld->ev.type == YAML_SCALAR_EVENT && !key)
        return s_expand(ld);
    return 0;
}

static bool s_is_null(const s_loader_t *ld)
{
    if (ld->ev.type != YAML_SCALAR_EVENT || ld->ev.data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *t = s_text(ld);
    return !*t || !strcmp(t, "~") || !strcmp(t, "null") || !strcmp(t, "Null") || !strcmp(t, "NULL");
}

//  What the current event starts, for "expected X, got Y".
static const char *s_got(const s_loader_t *ld)
{
    switch (ld->ev.type) {
    case YAML_SEQUENCE_START_EVENT:
        return "a list";
    case YAML_MAPPING_START_EVENT:
        return "a mapping";
    case YAML_ALIAS_EVENT:
        return "an alias (aliases are not supported)";
    case YAML_SCALAR_EVENT:
        return s_is_null(ld) ? "nothing" : "a single value";
    default:
        return "something else";
    }
}

//  Checks that the current event is a scalar; `what` names what was expected.
static int s_want_scalar(s_loader_t *ld, const char *what)
{
    if (ld->ev.type == YAML_SCALAR_EVENT)
        return 0;
    return s_fail(ld, s_line(ld), "expected %s, got %s", what, s_got(ld));
}

//  Skip the node that starts at the current event, however deep.
static int s_skip(s_loader_t *ld)
{
    int depth = 0;
    for (;;) {
        switch (ld->ev.type) {
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT:
            depth++;
            break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            depth--;
            break;
        default:
            break;
        }
        if (depth == 0)
            return 0;
        if (s_next(ld))
            return -1;
    }
}

//  ---------------------------------------------------------------------------
//  Scalars

static int s_uint(s_loader_t *ld, unsigned long long min, unsigned long long max,
                  unsigned long long *out)
{
    if (s_want_scalar(ld, "an integer"))
        return -1;
    const char *t = s_text(ld);
    if (s_is_null(ld))
        return s_fail(ld, s_line(ld), "expected an integer, got nothing");
    const char *d = t;
    if (*d == '+')
        d++;
    bool digits = *d != 0;
    for (const char *p = d; *p; p++)
        if (!isdigit((unsigned char)*p))
            digits = false;
    if (!digits) {
        if (*t == '-' && t[1] && strspn(t + 1, "0123456789") == strlen(t + 1))
            return s_fail(ld, s_line(ld), "must not be negative (got %.40s)", t);
        return s_fail(ld, s_line(ld), "expected an integer, got \"%.40s\"", t);
    }
    errno = 0;
    unsigned long long v = strtoull(d, NULL, 10);
    if (errno == ERANGE || v < min || v > max) {
        bool too_small = errno != ERANGE && v < min;
        if (max - min == 1)
            return s_fail(ld, s_line(ld), "must be %llu or %llu (got %.40s)", min, max, t);
        //  Keys bounded only by their C type say the bound that was crossed.
        if ((max == UINT32_MAX || max == INT_MAX) && too_small)
            return s_fail(ld, s_line(ld), "must be >= %llu (got %.40s)", min, t);
        if (min == 0 || max == UINT32_MAX || max == INT_MAX)
            return s_fail(ld, s_line(ld), "must be <= %llu (got %.40s)", max, t);
        return s_fail(ld, s_line(ld), "must be between %llu and %llu (got %.40s)", min, max, t);
    }
    *out = v;
    return 0;
}

static int s_double(s_loader_t *ld, bool nonneg, double *out)
{
    if (s_want_scalar(ld, "a number"))
        return -1;
    if (s_is_null(ld))
        return s_fail(ld, s_line(ld), "expected a number, got nothing");
    const char *t = s_text(ld);
    char *end = NULL;
    double v = 0;
    //  strtod also takes hex, "inf" and "nan"; a site file has no use for them.
    if (strspn(t, "0123456789+-.eE") == strlen(t)) {
        errno = 0;
        v = strtod(t, &end);
    }
    if (!end || end == t || *end || errno == ERANGE || !isfinite(v))
        return s_fail(ld, s_line(ld), "expected a number, got \"%.40s\"", t);
    if (nonneg && v < 0)
        return s_fail(ld, s_line(ld), "must be >= 0 (got %.40s)", t);
    *out = v;
    return 0;
}

static int s_bool(s_loader_t *ld, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on"};
    static const char *const no[] = {"false", "no", "off"};
    if (s_want_scalar(ld, "true or false"))
        return -1;
    const char *t = s_text(ld);
    for (int i = 0; i < 3; i++) {
        if (strcasecmp(t, yes[i]) == 0)
            return *out = true, 0;
        if (strcasecmp(t, no[i]) == 0)
            return *out = false, 0;
    }
    return s_fail(ld, s_line(ld), "expected true or false (or yes/no, on/off), got \"%.40s\"", t);
}

//  A string; a name may not contain blanks or control characters.
static int s_string(s_loader_t *ld, bool name, char **out)
{
    if (s_want_scalar(ld, name ? "a name" : "a string"))
        return -1;
    if (s_is_null(ld) || !*s_text(ld))
        return s_fail(ld, s_line(ld), "must not be empty");
    const char *t = s_text(ld);
    if (name)
        for (const unsigned char *p = (const unsigned char *)t; *p; p++)
            if (*p <= ' ' || *p == 0x7f)
                return s_fail(ld, s_line(ld),
                              "\"%.40s\": names may not contain blanks or control characters", t);
    *out = strdup(t);
    return *out ? 0 : s_oom(ld);
}

//  One of `names`, case-insensitively; `what` names it in the message.
static int s_enum(s_loader_t *ld, const char *const *names, size_t n, const char *what, int *out)
{
    char want[64];
    snprintf(want, sizeof want, "a %s", what);
    if (s_want_scalar(ld, want))
        return -1;
    const char *t = s_text(ld);
    for (size_t i = 0; i < n; i++)
        if (strcasecmp(t, names[i]) == 0)
            return *out = (int)i, 0;
    char list[160] = "";
    size_t len = 0;
    for (size_t i = 0; i < n && len < sizeof list; i++) {
        int k = snprintf(list + len, sizeof list - len, "%s%s", i ? ", " : "", names[i]);
        if (k < 0)
            break;
        len += (size_t)k;
    }
    if (s_is_null(ld))
        return s_fail(ld, s_line(ld), "%s is empty (expected %s)", what, list);
    return s_fail(ld, s_line(ld), "unknown %s \"%.40s\" (expected %s)", what, t, list);
}

//  "host:port" or "[v6 address]:port". Returns NULL, or what is wrong.
static const char *s_hostport(const char *text, char **host, uint16_t *port)
{
    const char *colon;
    const char *h = text;
    size_t hlen;
    if (*text == '[') {
        const char *close = strchr(text, ']');
        if (!close || close[1] != ':')
            return "an IPv6 address needs the form [address]:port";
        h = text + 1;
        hlen = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(text, ':');
        if (!colon)
            return "no port";
        if (memchr(text, ':', (size_t)(colon - text)))
            return "an IPv6 address goes in brackets, e.g. [::1]:502";
        hlen = (size_t)(colon - text);
    }
    if (hlen == 0)
        return "no host";
    const char *p = colon + 1;
    if (!*p || strspn(p, "0123456789") != strlen(p))
        return "the port is not a number";
    unsigned long v = strlen(p) > 5 ? 0 : strtoul(p, NULL, 10);
    if (v < 1 || v > 65535)
        return "the port must be between 1 and 65535";
    char *copy = strndup(h, hlen);
    if (!copy)
        return "out of memory";
    *host = copy;
    *port = (uint16_t)v;
    return NULL;
}

//  ---------------------------------------------------------------------------
//  Mappings against key tables

//  Edit distance, for "did you mean"; small strings only.
static size_t s_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 40 || lb > 40)
        return 99;
    size_t row[41];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t cost =
                tolower((unsigned char)a[i - 1]) == tolower((unsigned char)b[j - 1]) ? 0 : 1;
            size_t best = diag + cost;
            if (row[j] + 1 < best)
                best = row[j] + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

static int s_unknown_key(s_loader_t *ld, const s_key_t *keys, size_t nkeys)
{
    const char *key = s_text(ld);
    int line = s_line(ld);
    size_t best = 99, pick = 0;
    for (size_t i = 0; i < nkeys; i++) {
        size_t d = s_distance(key, keys[i].name);
        if (d < best)
            best = d, pick = i;
    }
    s_push_key(ld, key);
    if (best <= 2 && best < strlen(key))
        return s_fail(ld, line, "unknown key (did you mean \"%s\"?)", keys[pick].name);
    char list[400] = "";
    size_t len = 0;
    for (size_t i = 0; i < nkeys && len < sizeof list; i++) {
        int k = snprintf(list + len, sizeof list - len, "%s%s", i ? ", " : "", keys[i].name);
        if (k < 0)
            break;
        len += (size_t)k;
    }
    return s_fail(ld, line, "unknown key (allowed here: %s)", list);
}

static int s_simple(s_loader_t *ld, const s_key_t *key, void *obj)
{
    char *at = (char *)obj + key->offset;
    unsigned long long u;
    switch (key->kind) {
    case S_NAME:
    case S_STR:
        return s_string(ld, key->kind == S_NAME, (char **)at);
    case S_U8:
        if (s_uint(ld, key->min, key->max, &u))
            return -1;
        *(uint8_t *)at = (uint8_t)u;
        return 0;
    case S_U16:
        if (s_uint(ld, key->min, key->max, &u))
            return -1;
        *(uint16_t *)at = (uint16_t)u;
        return 0;
    case S_U32:
        if (s_uint(ld, key->min, key->max, &u))
            return -1;
        *(uint32_t *)at = (uint32_t)u;
        return 0;
    case S_INT:
        if (s_uint(ld, key->min, key->max, &u))
            return -1;
        *(int *)at = (int)u;
        return 0;
    case S_BOOL:
        return s_bool(ld, (bool *)at);
    case S_DOUBLE:
    case S_UDOUBLE:
        return s_double(ld, key->kind == S_UDOUBLE, (double *)at);
    case S_CUSTOM:
        break;
    }
    return -1;
}

//  Read the mapping that starts at the current event into obj, key by key,
//  against the table; a required key that is missing is an error. On return
//  the current event is the mapping's end.
static int s_mapping(s_loader_t *ld, const s_key_t *keys, size_t nkeys, void *obj, void *spec,
                     s_seen_t *seen)
{
    *seen = (s_seen_t){0};
    seen->line = s_line(ld);
    if (ld->ev.type != YAML_MAPPING_START_EVENT)
        return s_fail(ld, s_line(ld), "expected a mapping (key: value), got %s", s_got(ld));
    for (;;) {
        if (s_next(ld))
            return -1;
        if (ld->ev.type == YAML_MAPPING_END_EVENT)
            break;
        if (ld->ev.type != YAML_SCALAR_EVENT)
            return s_fail(ld, s_line(ld), "expected a key, got %s", s_got(ld));
        size_t i = 0;
        while (i < nkeys && strcmp(s_text(ld), keys[i].name) != 0)
            i++;
        if (i == nkeys)
            return s_unknown_key(ld, keys, nkeys);
        s_push_key(ld, keys[i].name);
        if (S_HAS(seen, i))
            return s_fail(ld, s_line(ld), "duplicate key (first given at line %d)",
                          seen->key_line[i]);
        seen->bits |= 1u << i;
        seen->key_line[i] = s_line(ld);
        if (s_next(ld))
            return -1;
        int rc =
            keys[i].kind == S_CUSTOM ? keys[i].custom(ld, obj, spec) : s_simple(ld, &keys[i], obj);
        if (rc)
            return -1;
        s_pop(ld);
    }
    for (size_t i = 0; i < nkeys; i++) {
        if (keys[i].required && !S_HAS(seen, i)) {
            s_push_key(ld, keys[i].name);
            return s_fail(ld, seen->line, "required key is missing");
        }
    }
    return 0;
}

//  Error at key k of a mapping already read: the key's line if it was
//  given, else the mapping's. The path gains the key.
static int s_fail_key(s_loader_t *ld, const s_seen_t *seen, const s_key_t *keys, int k,
                      const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static int s_fail_key(s_loader_t *ld, const s_seen_t *seen, const s_key_t *keys, int k,
                      const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    s_push_key(ld, keys[k].name);
    return s_fail(ld, S_HAS(seen, k) ? seen->key_line[k] : seen->line, "%s", msg);
}

//  Read the list that starts at the current event, calling item() for each
//  element with the path extended by its index. A key left empty ("tags:")
//  is an empty list.
static int s_list(s_loader_t *ld, int (*item)(s_loader_t *ld, void *obj, size_t i), void *obj)
{
    if (s_is_null(ld))
        return 0;
    if (ld->ev.type != YAML_SEQUENCE_START_EVENT)
        return s_fail(ld, s_line(ld), "expected a list, got %s", s_got(ld));
    for (size_t i = 0;; i++) {
        //  The index first, so an error in reading the element names it.
        s_push_index(ld, i);
        if (s_next(ld))
            return -1;
        if (ld->ev.type == YAML_SEQUENCE_END_EVENT) {
            s_pop(ld);
            return 0;
        }
        if (item(ld, obj, i))
            return -1;
        s_pop(ld);
    }
}

//  ---------------------------------------------------------------------------
//  Tags

enum {
    T_NAME,
    T_ADDRESS,
    T_TYPE,
    T_WORD_ORDER,
    T_SCALE,
    T_OFFSET,
    T_RAW,
    T_ENG,
    T_SCAN_MS,
    T_DEADBAND,
    T_ALWAYS_SCAN,
    T_WRITABLE,
    T_SIM,
    T_ALARMS,
    T_AREA,
    T_NKEYS
};

enum { M_KIND, M_MIN, M_MAX, M_PERIOD_MS, M_INITIAL, M_NKEYS };

static int s_tag_address(s_loader_t *ld, void *obj, void *spec)
{
    site_tag_t *tag = obj;
    if (s_want_scalar(ld, "an address like \"hr:12\""))
        return -1;
    const char *t = s_text(ld);
    const char *colon = strchr(t, ':');
    const char *n = colon ? colon + 1 : NULL;
    if (!colon || !*n || strspn(n, "0123456789") != strlen(n))
        return s_fail(ld, s_line(ld),
                      "bad address \"%.40s\" (expected AREA:N, AREA one of co, di, hr, ir and N "
                      "0..65535, e.g. \"hr:12\")",
                      t);
    size_t alen = (size_t)(colon - t);
    int area = -1;
    for (int i = 0; i < 4; i++)
        if (alen == 2 && strncasecmp(t, s_area_names[i], 2) == 0)
            area = i;
    if (area < 0)
        return s_fail(ld, s_line(ld),
                      "unknown area \"%.*s\" in \"%.40s\" (expected co, di, hr or ir)",
                      (int)(alen > 20 ? 20 : alen), t, t);
    unsigned long v = strlen(n) > 6 ? 100000 : strtoul(n, NULL, 10);
    if (v > 65535)
        return s_fail(ld, s_line(ld), "%s %.20s out of range (0..65535) in \"%.40s\"",
                      area <= SITE_AREA_DI ? "bit" : "register", n, t);
    tag->area = (site_area_t)area;
    tag->address = (uint16_t)v;
    return 0;
}

static int s_tag_type(s_loader_t *ld, void *obj, void *spec)
{
    int v;
    if (s_enum(ld, s_type_names, S_COUNT(s_type_names), "type", &v))
        return -1;
    ((site_tag_t *)obj)->type = (site_type_t)v;
    return 0;
}

static int s_tag_word_order(s_loader_t *ld, void *obj, void *spec)
{
    int v;
    if (s_enum(ld, s_wo_names, S_COUNT(s_wo_names), "word order", &v))
        return -1;
    ((site_tag_t *)obj)->word_order = (site_word_order_t)v;
    return 0;
}

static int s_pair(s_loader_t *ld, double pair[2])
{
    if (ld->ev.type != YAML_SEQUENCE_START_EVENT)
        return s_fail(ld, s_line(ld), "expected a pair [lo, hi], got %s", s_got(ld));
    int line = s_line(ld);
    size_t n = 0;
    for (;;) {
        if (s_next(ld))
            return -1;
        if (ld->ev.type == YAML_SEQUENCE_END_EVENT)
            break;
        if (n < 2 && s_double(ld, false, &pair[n]))
            return -1;
        if (n >= 2 && s_skip(ld))
            return -1;
        n++;
    }
    if (n != 2)
        return s_fail(ld, line, "expected a pair [lo, hi], got %zu value%s", n, n == 1 ? "" : "s");
    return 0;
}

static int s_tag_raw(s_loader_t *ld, void *obj, void *spec)
{
    return s_pair(ld, ((s_tagspec_t *)spec)->raw);
}

static int s_tag_eng(s_loader_t *ld, void *obj, void *spec)
{
    return s_pair(ld, ((s_tagspec_t *)spec)->eng);
}

static int s_sim_kind(s_loader_t *ld, void *obj, void *spec)
{
    int v;
    if (s_enum(ld, s_sim_names, S_COUNT(s_sim_names), "sim kind", &v))
        return -1;
    ((site_sim_t *)obj)->kind = (site_sim_kind_t)v;
    return 0;
}

static const s_key_t s_sim_keys[] = {
    [M_KIND] = {.name = "kind", .kind = S_CUSTOM, .custom = s_sim_kind},
    [M_MIN] = {.name = "min", .kind = S_DOUBLE, .offset = offsetof(site_sim_t, min)},
    [M_MAX] = {.name = "max", .kind = S_DOUBLE, .offset = offsetof(site_sim_t, max)},
    [M_PERIOD_MS] = {.name = "period_ms",
                     .kind = S_U32,
                     .offset = offsetof(site_sim_t, period_ms),
                     .min = 1,
                     .max = UINT32_MAX},
    [M_INITIAL] = {.name = "initial", .kind = S_DOUBLE, .offset = offsetof(site_sim_t, initial)},
};

static int s_tag_sim(s_loader_t *ld, void *obj, void *spec)
{
    site_tag_t *tag = obj;
    s_tagspec_t *ts = spec;
    if (ld->ev.type == YAML_SCALAR_EVENT) {
        ts->sim = (s_seen_t){.bits = 1u << M_KIND, .line = s_line(ld)};
        ts->sim.key_line[M_KIND] = s_line(ld);
        return s_sim_kind(ld, &tag->sim, NULL);
    }
    if (ld->ev.type != YAML_MAPPING_START_EVENT)
        return s_fail(ld, s_line(ld),
                      "expected a sim kind (%s) or a mapping {kind, min, max, "
                      "period_ms, initial}, got %s",
                      "const, ramp, sine, noise, toggle", s_got(ld));
    return s_mapping(ld, s_sim_keys, M_NKEYS, &tag->sim, NULL, &ts->sim);
}

//  Alarms of a tag.
enum { L_LIMIT, L_PRIORITY, L_MESSAGE, L_NKEYS };

static const s_key_t s_limit_keys[] = {
    [L_LIMIT] = {.name = "limit",
                 .kind = S_DOUBLE,
                 .offset = offsetof(site_limit_t, limit),
                 .required = true},
    [L_PRIORITY] = {.name = "priority",
                    .kind = S_INT,
                    .offset = offsetof(site_limit_t, priority),
                    .min = 1,
                    .max = 1000},
    [L_MESSAGE] = {.name = "message", .kind = S_STR, .offset = offsetof(site_limit_t, message)},
};

//  A limit: a number, or {limit, priority, message}.
static int s_limit(s_loader_t *ld, site_limit_t *lim)
{
    lim->set = true;
    if (ld->ev.type == YAML_MAPPING_START_EVENT) {
        s_seen_t seen;
        return s_mapping(ld, s_limit_keys, L_NKEYS, lim, NULL, &seen);
    }
    if (ld->ev.type != YAML_SCALAR_EVENT)
        return s_fail(ld, s_line(ld), "expected a number or {limit, priority, message}, got %s",
                      s_got(ld));
    return s_double(ld, false, &lim->limit);
}

static int s_al_hihi(s_loader_t *ld, void *obj, void *spec)
{
    return s_limit(ld, &((site_alarms_t *)obj)->hihi);
}
static int s_al_hi(s_loader_t *ld, void *obj, void *spec)
{
    return s_limit(ld, &((site_alarms_t *)obj)->hi);
}
static int s_al_lo(s_loader_t *ld, void *obj, void *spec)
{
    return s_limit(ld, &((site_alarms_t *)obj)->lo);
}
static int s_al_lolo(s_loader_t *ld, void *obj, void *spec)
{
    return s_limit(ld, &((site_alarms_t *)obj)->lolo);
}
static const s_key_t s_state_keys[] = {
    [L_LIMIT] = {.name = "value",
                 .kind = S_DOUBLE,
                 .offset = offsetof(site_limit_t, limit),
                 .required = true},
    [L_PRIORITY] = {.name = "priority",
                    .kind = S_INT,
                    .offset = offsetof(site_limit_t, priority),
                    .min = 1,
                    .max = 1000},
    [L_MESSAGE] = {.name = "message", .kind = S_STR, .offset = offsetof(site_limit_t, message)},
};

//  A state alarm: the value, or {value, priority, message}.
static int s_al_state(s_loader_t *ld, void *obj, void *spec)
{
    site_alarms_t *al = obj;
    site_limit_t lim = {0};
    if (ld->ev.type == YAML_MAPPING_START_EVENT) {
        s_seen_t seen;
        if (s_mapping(ld, s_state_keys, L_NKEYS, &lim, NULL, &seen)) {
            free(lim.message); //  read before the key that failed
            return -1;
        }
    } else if (ld->ev.type != YAML_SCALAR_EVENT)
        return s_fail(ld, s_line(ld), "expected a number or {value, priority, message}, got %s",
                      s_got(ld));
    else if (s_double(ld, false, &lim.limit))
        return -1;
    al->has_state = true;
    al->state = lim.limit;
    al->state_priority = lim.priority;
    al->state_message = lim.message;
    return 0;
}

enum {
    A_HIHI,
    A_HI,
    A_LO,
    A_LOLO,
    A_STATE,
    A_DEADBAND,
    A_ON_DELAY,
    A_PRIORITY,
    A_AREA,
    A_COMM,
    A_NKEYS
};

static const s_key_t s_alarms_keys[] = {
    [A_HIHI] = {.name = "hihi", .kind = S_CUSTOM, .custom = s_al_hihi},
    [A_HI] = {.name = "hi", .kind = S_CUSTOM, .custom = s_al_hi},
    [A_LO] = {.name = "lo", .kind = S_CUSTOM, .custom = s_al_lo},
    [A_LOLO] = {.name = "lolo", .kind = S_CUSTOM, .custom = s_al_lolo},
    [A_STATE] = {.name = "state", .kind = S_CUSTOM, .custom = s_al_state},
    [A_DEADBAND] = {.name = "deadband",
                    .kind = S_UDOUBLE,
                    .offset = offsetof(site_alarms_t, deadband)},
    [A_ON_DELAY] = {.name = "on_delay_ms",
                    .kind = S_U32,
                    .offset = offsetof(site_alarms_t, on_delay_ms),
                    .min = 0,
                    .max = 86400000},
    [A_PRIORITY] = {.name = "priority",
                    .kind = S_INT,
                    .offset = offsetof(site_alarms_t, priority),
                    .min = 1,
                    .max = 1000},
    [A_AREA] = {.name = "area", .kind = S_NAME, .offset = offsetof(site_alarms_t, area)},
    [A_COMM] = {.name = "comm", .kind = S_BOOL, .offset = offsetof(site_alarms_t, comm)},
};

static int s_tag_alarms(s_loader_t *ld, void *obj, void *spec)
{
    site_tag_t *tag = obj;
    site_alarms_t *al = &tag->alarms;
    al->comm = true;
    al->priority = 3;
    if (s_is_null(ld))
        return 0;
    s_seen_t seen;
    if (s_mapping(ld, s_alarms_keys, A_NKEYS, al, NULL, &seen))
        return -1;
    const s_key_t *K = s_alarms_keys;
    //  Limits in order: hihi >= hi > lo >= lolo, for those given.
    const site_limit_t *lims[4] = {&al->hihi, &al->hi, &al->lo, &al->lolo};
    static const char *const names[4] = {"hihi", "hi", "lo", "lolo"};
    for (int a = 0; a < 4; a++)
        for (int b = a + 1; b < 4; b++) {
            if (!lims[a]->set || !lims[b]->set)
                continue;
            bool strict = a <= 1 && b >= 2;
            if (lims[a]->limit < lims[b]->limit || (strict && lims[a]->limit == lims[b]->limit))
                return s_fail_key(ld, &seen, K, b, "%s (%g) must be below %s (%g)", names[b],
                                  lims[b]->limit, names[a], lims[a]->limit);
        }
    site_limit_t *all[4] = {&al->hihi, &al->hi, &al->lo, &al->lolo};
    for (int a = 0; a < 4; a++)
        if (all[a]->set && all[a]->priority == 0)
            all[a]->priority =
                a == 0 || a == 3 ? (al->priority > 1 ? al->priority - 1 : 1) : al->priority;
    if (al->has_state && al->state_priority == 0)
        al->state_priority = al->priority;
    if (al->has_state && (al->hihi.set || al->hi.set || al->lo.set || al->lolo.set))
        return s_fail_key(ld, &seen, K, A_STATE,
                          "a tag has either limit alarms (hihi, hi, lo, lolo) or a state "
                          "alarm, not both");
    al->any = true; //  area: the tag's plant area unless given (s_finish)
    return 0;
}

static const s_key_t s_tag_keys[] = {
    [T_NAME] = {.name = "name",
                .kind = S_NAME,
                .offset = offsetof(site_tag_t, name),
                .required = true},
    [T_ADDRESS] = {.name = "address", .kind = S_CUSTOM, .required = true, .custom = s_tag_address},
    [T_TYPE] = {.name = "type", .kind = S_CUSTOM, .custom = s_tag_type},
    [T_WORD_ORDER] = {.name = "word_order", .kind = S_CUSTOM, .custom = s_tag_word_order},
    [T_SCALE] = {.name = "scale", .kind = S_DOUBLE, .offset = offsetof(site_tag_t, scale)},
    [T_OFFSET] = {.name = "offset", .kind = S_DOUBLE, .offset = offsetof(site_tag_t, offset)},
    [T_RAW] = {.name = "raw", .kind = S_CUSTOM, .custom = s_tag_raw},
    [T_ENG] = {.name = "eng", .kind = S_CUSTOM, .custom = s_tag_eng},
    [T_SCAN_MS] = {.name = "scan_ms",
                   .kind = S_U32,
                   .offset = offsetof(site_tag_t, scan_ms),
                   .min = 10,
                   .max = UINT32_MAX},
    [T_DEADBAND] = {.name = "deadband",
                    .kind = S_UDOUBLE,
                    .offset = offsetof(site_tag_t, deadband)},
    [T_ALWAYS_SCAN] = {.name = "always_scan",
                       .kind = S_BOOL,
                       .offset = offsetof(site_tag_t, always_scan)},
    [T_WRITABLE] = {.name = "writable", .kind = S_BOOL, .offset = offsetof(site_tag_t, writable)},
    [T_SIM] = {.name = "sim", .kind = S_CUSTOM, .custom = s_tag_sim},
    [T_ALARMS] = {.name = "alarms", .kind = S_CUSTOM, .custom = s_tag_alarms},
    [T_AREA] = {.name = "area", .kind = S_NAME, .offset = offsetof(site_tag_t, area_key)},
};

//  Checks and defaults that need several keys of the tag.
static int s_tag_end(s_loader_t *ld, site_tag_t *tag, s_tagspec_t *ts, const s_seen_t *seen)
{
    const s_key_t *K = s_tag_keys;
    bool bit = tag->area == SITE_AREA_CO || tag->area == SITE_AREA_DI;
    if (!S_HAS(seen, T_TYPE))
        tag->type = bit ? SITE_T_BOOL : SITE_T_UINT16;
    else if (bit && tag->type != SITE_T_BOOL)
        return s_fail_key(ld, seen, K, T_TYPE,
                          "%s tags are single bits: type must be bool (got %s)",
                          s_area_names[tag->area], s_type_names[tag->type]);
    int width = site_type_width(tag->type);
    if (width == 2 && tag->address == 65535)
        return s_fail_key(ld, seen, K, T_ADDRESS,
                          "%s needs two registers, but %s:65535 is the last one",
                          s_type_names[tag->type], s_area_names[tag->area]);
    if (S_HAS(seen, T_WORD_ORDER) && width != 2)
        return s_fail_key(ld, seen, K, T_WORD_ORDER,
                          "only for 32-bit types (int32, uint32, float32), not %s",
                          s_type_names[tag->type]);
    bool read_only = tag->area == SITE_AREA_DI || tag->area == SITE_AREA_IR;
    if (!S_HAS(seen, T_WRITABLE))
        tag->writable = !read_only;
    else if (tag->writable && read_only)
        return s_fail_key(ld, seen, K, T_WRITABLE, "%s tags are read-only and cannot be writable",
                          s_area_names[tag->area]);

    bool raw = S_HAS(seen, T_RAW), eng = S_HAS(seen, T_ENG);
    bool linear = S_HAS(seen, T_SCALE) || S_HAS(seen, T_OFFSET);
    if (tag->type == SITE_T_BOOL && (raw || eng || linear)) {
        int k = raw ? T_RAW : eng ? T_ENG : S_HAS(seen, T_SCALE) ? T_SCALE : T_OFFSET;
        return s_fail_key(ld, seen, K, k, "bool tags are not scaled");
    }
    if (raw != eng)
        return s_fail_key(ld, seen, K, raw ? T_RAW : T_ENG,
                          "raw and eng go together: give both pairs or neither");
    if (raw && linear)
        return s_fail_key(ld, seen, K, S_HAS(seen, T_SCALE) ? T_SCALE : T_OFFSET,
                          "give either scale/offset or raw/eng, not both");
    if (raw) {
        if (ts->raw[0] == ts->raw[1])
            return s_fail_key(ld, seen, K, T_RAW, "raw lo and hi must differ (both %g)",
                              ts->raw[0]);
        tag->scale = (ts->eng[1] - ts->eng[0]) / (ts->raw[1] - ts->raw[0]);
        tag->offset = ts->eng[0] - ts->raw[0] * tag->scale;
    }
    if (tag->scale == 0)
        return s_fail_key(ld, seen, K, raw ? T_ENG : T_SCALE,
                          raw ? "eng lo and hi must differ" : "must not be 0");

    //  Simulation: defaults, then sanity.
    site_sim_t *sim = &tag->sim;
    const s_seen_t *ss = &ts->sim;
    if (!S_HAS(ss, M_MIN))
        sim->min = 0;
    if (!S_HAS(ss, M_MAX))
        sim->max = tag->type == SITE_T_BOOL ? 1 : 100;
    if (!S_HAS(ss, M_INITIAL))
        sim->initial = S_HAS(seen, T_SIM) ? sim->min : 0;
    if (sim->max < sim->min) {
        s_push_key(ld, "sim");
        return s_fail_key(ld, ss, s_sim_keys, S_HAS(ss, M_MAX) ? M_MAX : M_MIN,
                          "sim max (%g) is below min (%g)", sim->max, sim->min);
    }
    return 0;
}

static int s_tag_item(s_loader_t *ld, void *obj, size_t i)
{
    site_device_t *dev = obj;
    site_tag_t *tags = s_room(dev->tags, dev->ntags, sizeof *tags);
    uint8_t *tagx = s_room(ld->tagx, dev->ntags, 1);
    if (tags)
        dev->tags = tags;
    if (tagx)
        ld->tagx = tagx;
    if (!tags || !tagx)
        return s_oom(ld);
    site_tag_t *tag = &tags[dev->ntags++];
    *tag = (site_tag_t){
        .scale = 1,
        .sim = {.kind = SITE_SIM_CONST, .period_ms = 10000},
        .line = s_line(ld),
    };
    s_tagspec_t ts;
    memset(&ts, 0, sizeof ts);
    s_seen_t seen;
    if (s_mapping(ld, s_tag_keys, T_NKEYS, tag, &ts, &seen) || s_tag_end(ld, tag, &ts, &seen))
        return -1;
    ld->tagx[i] = (S_HAS(&seen, T_WORD_ORDER) ? S_TAG_OWN_WORD_ORDER : 0) |
                  (S_HAS(&seen, T_SCAN_MS) ? S_TAG_OWN_SCAN : 0);
    s_entry_t *dup;
    int rc = s_index_add(&ld->site->index->tags, tag->name, seen.key_line[T_NAME], &dup);
    if (rc < 0)
        return s_oom(ld);
    if (rc > 0)
        return s_fail_key(ld, &seen, s_tag_keys, T_NAME,
                          "duplicate tag name \"%s\" (first defined at line %d)", tag->name,
                          dup->line);
    return 0;
}

static int s_device_tags(s_loader_t *ld, void *obj, void *spec)
{
    return s_list(ld, s_tag_item, obj);
}

//  ---------------------------------------------------------------------------
//  Devices

enum { D_NAME, D_ADDRESS, D_UNIT, D_WORD_ORDER, D_SCAN_MS, D_SERVERS, D_TAGS, D_AREA, D_NKEYS };
enum { O_IOSERVER, O_PRIORITY, O_NKEYS };

static const s_key_t s_offer_keys[] = {
    [O_IOSERVER] = {.name = "ioserver",
                    .kind = S_NAME,
                    .offset = offsetof(site_offer_t, ioserver),
                    .required = true},
    [O_PRIORITY] = {.name = "priority",
                    .kind = S_INT,
                    .offset = offsetof(site_offer_t, priority),
                    .min = 1,
                    .max = INT_MAX},
};

static int s_offer_item(s_loader_t *ld, void *obj, size_t i)
{
    site_device_t *dev = obj;
    site_offer_t *servers = s_room(dev->servers, dev->nservers, sizeof *servers);
    if (!servers)
        return s_oom(ld);
    dev->servers = servers;
    site_offer_t *offer = &servers[dev->nservers++];
    *offer = (site_offer_t){NULL, (int)(i + 1)};
    int line = s_line(ld);
    bool mapping = ld->ev.type == YAML_MAPPING_START_EVENT;
    if (mapping) {
        s_seen_t seen;
        if (s_mapping(ld, s_offer_keys, O_NKEYS, offer, NULL, &seen))
            return -1;
        line = seen.key_line[O_IOSERVER];
    } else if (ld->ev.type != YAML_SCALAR_EVENT) {
        return s_fail(ld, line,
                      "expected an I/O server name or {ioserver: NAME, priority: N}, "
                      "got %s",
                      s_got(ld));
    } else if (s_string(ld, true, &offer->ioserver)) {
        return -1;
    }
    for (size_t k = 0; k + 1 < dev->nservers; k++)
        if (strcmp(servers[k].ioserver, offer->ioserver) == 0) {
            if (mapping)
                s_push_key(ld, "ioserver");
            return s_fail(ld, line, "I/O server \"%s\" is listed twice", offer->ioserver);
        }
    s_ref_t *refs = s_room(ld->refs, ld->nrefs, sizeof *refs);
    if (!refs)
        return s_oom(ld);
    ld->refs = refs;
    site_t *site = ld->site;
    refs[ld->nrefs++] = (s_ref_t){
        site->nchannels - 1, site->channels[site->nchannels - 1].ndevices - 1, i, line, mapping};
    return 0;
}

static int s_device_servers(s_loader_t *ld, void *obj, void *spec)
{
    site_device_t *dev = obj;
    int line = s_line(ld);
    if (s_list(ld, s_offer_item, obj))
        return -1;
    if (dev->nservers == 0)
        return s_fail(ld, line, "must name at least one I/O server");
    return 0;
}

static int s_device_word_order(s_loader_t *ld, void *obj, void *spec)
{
    int v;
    if (s_enum(ld, s_wo_names, S_COUNT(s_wo_names), "word order", &v))
        return -1;
    ((site_device_t *)obj)->word_order = (site_word_order_t)v;
    return 0;
}

static const s_key_t s_device_keys[] = {
    [D_NAME] = {.name = "name",
                .kind = S_NAME,
                .offset = offsetof(site_device_t, name),
                .required = true},
    //  Kept as text in host until the channel's type is known.
    [D_ADDRESS] = {.name = "address", .kind = S_STR, .offset = offsetof(site_device_t, host)},
    [D_UNIT] = {.name = "unit",
                .kind = S_U8,
                .offset = offsetof(site_device_t, unit),
                .min = 0,
                .max = 255},
    [D_WORD_ORDER] = {.name = "word_order", .kind = S_CUSTOM, .custom = s_device_word_order},
    [D_SCAN_MS] = {.name = "scan_ms",
                   .kind = S_U32,
                   .offset = offsetof(site_device_t, scan_ms),
                   .min = 10,
                   .max = UINT32_MAX},
    [D_SERVERS] = {.name = "servers",
                   .kind = S_CUSTOM,
                   .required = true,
                   .custom = s_device_servers},
    [D_TAGS] = {.name = "tags", .kind = S_CUSTOM, .custom = s_device_tags},
    [D_AREA] = {.name = "area", .kind = S_NAME, .offset = offsetof(site_device_t, area_key)},
};

static int s_device_item(s_loader_t *ld, void *obj, size_t i)
{
    site_channel_t *ch = obj;
    site_device_t *devs = s_room(ch->devices, ch->ndevices, sizeof *devs);
    s_devx_t *devx = s_room(ld->devx, ch->ndevices, sizeof *devx);
    if (devs)
        ch->devices = devs;
    if (devx)
        ld->devx = devx;
    if (!devs || !devx)
        return s_oom(ld);
    site_device_t *dev = &devs[ch->ndevices++];
    *dev = (site_device_t){.unit = 1, .scan_ms = 1000, .line = s_line(ld)};
    s_seen_t seen;
    if (s_mapping(ld, s_device_keys, D_NKEYS, dev, NULL, &seen))
        return -1;
    for (size_t k = 0; k < dev->ntags; k++) {
        if (!(ld->tagx[k] & S_TAG_OWN_WORD_ORDER))
            dev->tags[k].word_order = dev->word_order;
        if (!(ld->tagx[k] & S_TAG_OWN_SCAN))
            dev->tags[k].scan_ms = dev->scan_ms;
    }
    ld->devx[i] = (s_devx_t){dev->line, S_HAS(&seen, D_ADDRESS) ? seen.key_line[D_ADDRESS] : 0,
                             S_HAS(&seen, D_UNIT) ? seen.key_line[D_UNIT] : 0};
    s_entry_t *dup;
    int rc = s_index_add(&ld->site->index->devices, dev->name, seen.key_line[D_NAME], &dup);
    if (rc < 0)
        return s_oom(ld);
    if (rc > 0)
        return s_fail_key(ld, &seen, s_device_keys, D_NAME,
                          "duplicate device name \"%s\" (first defined at line %d)", dev->name,
                          dup->line);
    return 0;
}

//  ---------------------------------------------------------------------------
//  Channels

enum {
    C_NAME,
    C_TYPE,
    C_REPLY_DELAY,
    C_BAUD,
    C_MAX_READ,
    C_MAX_WRITE,
    C_MAX_GAP,
    C_ADDRESS,
    C_SERIAL_PORT,
    C_PARITY,
    C_DATA_BITS,
    C_STOP_BITS,
    C_IOLOG,
    C_DEVICES,
    C_AREA,
    C_NKEYS
};

static int s_channel_type(s_loader_t *ld, void *obj, void *spec)
{
    int v;
    if (s_enum(ld, s_chtype_names, S_COUNT(s_chtype_names), "channel type", &v))
        return -1;
    ((site_channel_t *)obj)->type = (site_chtype_t)v;
    return 0;
}

static int s_channel_parity(s_loader_t *ld, void *obj, void *spec)
{
    if (s_want_scalar(ld, "a parity"))
        return -1;
    const char *t = s_text(ld);
    if (strlen(t) != 1 || !strchr("NEOneo", t[0]))
        return s_fail(ld, s_line(ld), "parity must be N, E or O (got \"%.40s\")", t);
    ((site_channel_t *)obj)->parity = (char)toupper((unsigned char)t[0]);
    return 0;
}

static int s_channel_devices(s_loader_t *ld, void *obj, void *spec)
{
    return s_list(ld, s_device_item, obj);
}

static const s_key_t s_channel_keys[] = {
    [C_NAME] = {.name = "name",
                .kind = S_NAME,
                .offset = offsetof(site_channel_t, name),
                .required = true},
    [C_TYPE] = {.name = "type", .kind = S_CUSTOM, .required = true, .custom = s_channel_type},
    [C_REPLY_DELAY] = {.name = "standard_reply_delay_ms",
                       .kind = S_U32,
                       .offset = offsetof(site_channel_t, standard_reply_delay_ms),
                       .min = 1,
                       .max = UINT32_MAX},
    [C_BAUD] = {.name = "baud",
                .kind = S_U32,
                .offset = offsetof(site_channel_t, baud),
                .min = 0,
                .max = 100000000},
    [C_MAX_READ] = {.name = "max_read_timeouts",
                    .kind = S_U32,
                    .offset = offsetof(site_channel_t, max_read_timeouts),
                    .min = 1,
                    .max = UINT32_MAX},
    [C_MAX_WRITE] = {.name = "max_write_timeouts",
                     .kind = S_U32,
                     .offset = offsetof(site_channel_t, max_write_timeouts),
                     .min = 1,
                     .max = UINT32_MAX},
    [C_MAX_GAP] = {.name = "max_gap",
                   .kind = S_U32,
                   .offset = offsetof(site_channel_t, max_gap),
                   .min = 0,
                   .max = 125},
    //  Kept as text in host until the type is known.
    [C_ADDRESS] = {.name = "address", .kind = S_STR, .offset = offsetof(site_channel_t, host)},
    [C_SERIAL_PORT] = {.name = "serial_port",
                       .kind = S_STR,
                       .offset = offsetof(site_channel_t, serial_port)},
    [C_PARITY] = {.name = "parity", .kind = S_CUSTOM, .custom = s_channel_parity},
    [C_DATA_BITS] = {.name = "data_bits",
                     .kind = S_U8,
                     .offset = offsetof(site_channel_t, data_bits),
                     .min = 7,
                     .max = 8},
    [C_STOP_BITS] = {.name = "stop_bits",
                     .kind = S_U8,
                     .offset = offsetof(site_channel_t, stop_bits),
                     .min = 1,
                     .max = 2},
    [C_IOLOG] = {.name = "iolog", .kind = S_BOOL, .offset = offsetof(site_channel_t, iolog)},
    [C_DEVICES] = {.name = "devices", .kind = S_CUSTOM, .custom = s_channel_devices},
    [C_AREA] = {.name = "area", .kind = S_NAME, .offset = offsetof(site_channel_t, area_key)},
};

//  Device addresses, now that the channel type is known.
static int s_channel_device_addresses(s_loader_t *ld, site_channel_t *ch)
{
    const char *type = s_chtype_names[ch->type];
    size_t unit_owner[256]; //  device index + 1 per unit id, tcp and serial only
    memset(unit_owner, 0, sizeof unit_owner);
    for (size_t j = 0; j < ch->ndevices; j++) {
        site_device_t *dev = &ch->devices[j];
        const s_devx_t *dx = &ld->devx[j];
        char *text = dev->host;
        dev->host = NULL;
        if (ch->type == SITE_CH_NETWORK) {
            s_push_key(ld, "devices");
            s_push_index(ld, j);
            s_push_key(ld, "address");
            if (!text)
                return s_fail(ld, dx->line,
                              "required key is missing (every device of a network channel has "
                              "its own host:port)");
            const char *why = s_hostport(text, &dev->host, &dev->port);
            if (why) {
                s_fail(ld, dx->address_line,
                       "bad address \"%.60s\": %s (expected host:port, e.g. 127.0.0.1:502)", text,
                       why);
                free(text);
                return -1;
            }
            free(text);
            ld->depth -= 3;
            continue;
        }
        if (text) {
            //  On a gateway, bus or listen channel an address can only be the unit id.
            bool number = strspn(text, "0123456789") == strlen(text) && strlen(text) <= 3;
            unsigned long unit = number ? strtoul(text, NULL, 10) : 0;
            s_push_key(ld, "devices");
            s_push_index(ld, j);
            s_push_key(ld, "address");
            if (!number || unit > 255) {
                s_fail(ld, dx->address_line,
                       "\"%.60s\" is not a unit id: on a %s channel %s, and a device only "
                       "gives its unit (0..255)",
                       text, type,
                       ch->type == SITE_CH_SERIAL ? "there is no network address"
                                                  : "the channel has the host:port");
                free(text);
                return -1;
            }
            free(text);
            if (dx->unit_line)
                return s_fail(ld, dx->address_line,
                              "give either address or unit, not both (unit at line %d)",
                              dx->unit_line);
            dev->unit = (uint8_t)unit;
            ld->depth -= 3;
        }
        if (ch->type == SITE_CH_TCP || ch->type == SITE_CH_SERIAL) {
            size_t owner = unit_owner[dev->unit];
            if (owner) {
                s_push_key(ld, "devices");
                s_push_index(ld, j);
                s_push_key(ld, dx->unit_line ? "unit" : "address");
                int line = dx->unit_line      ? dx->unit_line
                           : dx->address_line ? dx->address_line
                                              : dx->line;
                return s_fail(ld, line, "unit %u is already used by device \"%s\" on this channel",
                              dev->unit, ch->devices[owner - 1].name);
            }
            unit_owner[dev->unit] = j + 1;
        }
    }
    return 0;
}

static int s_channel_end(s_loader_t *ld, site_channel_t *ch, const s_seen_t *seen)
{
    const s_key_t *K = s_channel_keys;
    const char *type = s_chtype_names[ch->type];
    if (ch->type == SITE_CH_SERIAL) {
        if (!ch->serial_port)
            return s_fail_key(ld, seen, K, C_SERIAL_PORT,
                              "required key is missing (serial channels need a serial port)");
        if (ch->baud == 0)
            return s_fail_key(ld, seen, K, C_BAUD,
                              S_HAS(seen, C_BAUD) ? "serial channels need baud > 0"
                                                  : "required key is missing (serial channels "
                                                    "need baud > 0)");
    } else {
        static const int serial_keys[] = {C_SERIAL_PORT, C_PARITY, C_DATA_BITS, C_STOP_BITS};
        for (size_t i = 0; i < S_COUNT(serial_keys); i++)
            if (S_HAS(seen, serial_keys[i]))
                return s_fail_key(ld, seen, K, serial_keys[i],
                                  "only for serial channels (this one is %s)", type);
    }
    char *text = ch->host;
    ch->host = NULL;
    if (ch->type == SITE_CH_TCP || ch->type == SITE_CH_LISTEN) {
        if (!text)
            return s_fail_key(ld, seen, K, C_ADDRESS,
                              "required key is missing (a %s channel needs host:port %s)", type,
                              ch->type == SITE_CH_TCP ? "of the gateway" : "to listen on");
        const char *why = s_hostport(text, &ch->host, &ch->port);
        if (why) {
            s_fail_key(ld, seen, K, C_ADDRESS,
                       "bad address \"%.60s\": %s (expected host:port, e.g. 127.0.0.1:502)", text,
                       why);
            free(text);
            return -1;
        }
        free(text);
    } else if (text) {
        free(text);
        return s_fail_key(ld, seen, K, C_ADDRESS,
                          ch->type == SITE_CH_NETWORK
                              ? "not used on network channels: each device has its own address "
                                "host:port"
                              : "not used on serial channels: give serial_port");
    }
    if (s_channel_device_addresses(ld, ch))
        return -1;
    s_entry_t *dup;
    int rc = s_index_add(&ld->site->index->channels, ch->name, seen->key_line[C_NAME], &dup);
    if (rc < 0)
        return s_oom(ld);
    if (rc > 0)
        return s_fail_key(ld, seen, K, C_NAME,
                          "duplicate channel name \"%s\" (first defined at line %d)", ch->name,
                          dup->line);
    return 0;
}

static int s_channel_item(s_loader_t *ld, void *obj, size_t i)
{
    site_t *site = obj;
    site_channel_t *chs = s_room(site->channels, site->nchannels, sizeof *chs);
    if (!chs)
        return s_oom(ld);
    site->channels = chs;
    site_channel_t *ch = &chs[site->nchannels++];
    *ch = (site_channel_t){
        .standard_reply_delay_ms = 200,
        .max_read_timeouts = 3,
        .max_write_timeouts = 3,
        .max_gap = 16,
        .parity = 'N',
        .data_bits = 8,
        .stop_bits = 1,
        .line = s_line(ld),
    };
    s_seen_t seen;
    if (s_mapping(ld, s_channel_keys, C_NKEYS, ch, NULL, &seen))
        return -1;
    return s_channel_end(ld, ch, &seen);
}

//  ---------------------------------------------------------------------------
//  I/O servers

enum {
    I_NAME,
    I_WINDOW,
    I_TIMEOUT,
    I_TIMEOUT_MIN,
    I_RECONNECT_MIN,
    I_RECONNECT_MAX,
    I_RECENT,
    I_INTEGRITY,
    I_PUBLISH,
    I_CONTROL,
    I_IOLOG_DIR,
    I_IOLOG_MAX,
    I_IOLOG_KEEP,
    I_ALWAYS_SCAN,
    I_UNIT_PROBE,
    I_NKEYS
};

#define S_MS_KEY(key, field)                                                                       \
    {                                                                                              \
        .name = key, .kind = S_U32, .offset = offsetof(site_ioserver_t, field), .min = 1,          \
        .max = UINT32_MAX                                                                          \
    }

static const s_key_t s_ioserver_keys[] = {
    [I_NAME] = {.name = "name",
                .kind = S_NAME,
                .offset = offsetof(site_ioserver_t, name),
                .required = true},
    [I_WINDOW] = {.name = "connect_window",
                  .kind = S_U32,
                  .offset = offsetof(site_ioserver_t, connect_window),
                  .min = 1,
                  .max = 10000},
    [I_TIMEOUT] = S_MS_KEY("connect_timeout_ms", connect_timeout_ms),
    [I_TIMEOUT_MIN] = S_MS_KEY("connect_timeout_min_ms", connect_timeout_min_ms),
    [I_RECONNECT_MIN] = S_MS_KEY("reconnect_min_ms", reconnect_min_ms),
    [I_RECONNECT_MAX] = S_MS_KEY("reconnect_max_ms", reconnect_max_ms),
    [I_RECENT] = S_MS_KEY("recent_ms", recent_ms),
    [I_INTEGRITY] = S_MS_KEY("integrity_ms", integrity_ms),
    [I_PUBLISH] = {.name = "publish", .kind = S_STR, .offset = offsetof(site_ioserver_t, publish)},
    [I_CONTROL] = {.name = "control", .kind = S_STR, .offset = offsetof(site_ioserver_t, control)},
    [I_IOLOG_DIR] = {.name = "iolog_dir",
                     .kind = S_STR,
                     .offset = offsetof(site_ioserver_t, iolog_dir)},
    [I_IOLOG_MAX] = {.name = "iolog_max_kb",
                     .kind = S_U32,
                     .offset = offsetof(site_ioserver_t, iolog_max_kb),
                     .min = 1,
                     .max = 1048576},
    [I_IOLOG_KEEP] = {.name = "iolog_keep",
                      .kind = S_U32,
                      .offset = offsetof(site_ioserver_t, iolog_keep),
                      .min = 0,
                      .max = 100},
    [I_ALWAYS_SCAN] = {.name = "always_scan",
                       .kind = S_BOOL,
                       .offset = offsetof(site_ioserver_t, always_scan)},
    [I_UNIT_PROBE] = {.name = "unit_probe_ms",
                      .kind = S_U32,
                      .offset = offsetof(site_ioserver_t, unit_probe_ms),
                      .min = 10,
                      .max = UINT32_MAX},
};

static int s_ioserver_item(s_loader_t *ld, void *obj, size_t i)
{
    site_t *site = obj;
    site_ioserver_t *ios = s_room(site->ioservers, site->nioservers, sizeof *ios);
    if (!ios)
        return s_oom(ld);
    site->ioservers = ios;
    site_ioserver_t *io = &ios[site->nioservers++];
    *io = (site_ioserver_t){
        .connect_window = 10,
        .connect_timeout_ms = 3000,
        .connect_timeout_min_ms = 250,
        .reconnect_min_ms = 1000,
        .reconnect_max_ms = 60000,
        .recent_ms = 600000,
        .integrity_ms = 30000,
        .iolog_max_kb = 10240,
        .iolog_keep = 5,
        .unit_probe_ms = 5000,
        .line = s_line(ld),
    };
    s_seen_t seen;
    if (s_mapping(ld, s_ioserver_keys, I_NKEYS, io, NULL, &seen))
        return -1;
    const s_key_t *K = s_ioserver_keys;
    if (io->reconnect_max_ms < io->reconnect_min_ms)
        return s_fail_key(ld, &seen, K,
                          S_HAS(&seen, I_RECONNECT_MAX) ? I_RECONNECT_MAX : I_RECONNECT_MIN,
                          "reconnect_max_ms (%u) is below reconnect_min_ms (%u)",
                          io->reconnect_max_ms, io->reconnect_min_ms);
    if (io->connect_timeout_ms < io->connect_timeout_min_ms)
        return s_fail_key(ld, &seen, K, S_HAS(&seen, I_TIMEOUT_MIN) ? I_TIMEOUT_MIN : I_TIMEOUT,
                          "connect_timeout_min_ms (%u) is above connect_timeout_ms (%u)",
                          io->connect_timeout_min_ms, io->connect_timeout_ms);
    if (!io->iolog_dir && !(io->iolog_dir = strdup("iolog")))
        return s_oom(ld);
    char endpoint[64];
    if (!io->publish) {
        snprintf(endpoint, sizeof endpoint, "tcp://127.0.0.1:%zu", 5600 + 10 * i);
        if (!(io->publish = strdup(endpoint)))
            return s_oom(ld);
    }
    if (!io->control) {
        snprintf(endpoint, sizeof endpoint, "tcp://127.0.0.1:%zu", 5601 + 10 * i);
        if (!(io->control = strdup(endpoint)))
            return s_oom(ld);
    }
    s_entry_t *dup;
    int rc = s_index_add(&site->index->ioservers, io->name, seen.key_line[I_NAME], &dup);
    if (rc < 0)
        return s_oom(ld);
    if (rc > 0)
        return s_fail_key(ld, &seen, K, I_NAME,
                          "duplicate I/O server name \"%s\" (first defined at line %d)", io->name,
                          dup->line);
    //  Two sockets cannot bind one endpoint.
    for (size_t k = 0; k < site->nioservers; k++) {
        const char *mine[2] = {io->publish, io->control};
        const char *theirs[2] = {ios[k].publish, ios[k].control};
        for (int a = 0; a < 2; a++)
            for (int b = 0; b < 2; b++) {
                if ((k == i && a <= b) || strcmp(mine[a], theirs[b]) != 0)
                    continue;
                return s_fail_key(ld, &seen, K, a ? I_CONTROL : I_PUBLISH,
                                  "endpoint \"%s\" is already the %s endpoint of I/O server "
                                  "\"%s\"",
                                  mine[a], b ? "control" : "publish", ios[k].name);
            }
    }
    return 0;
}

//  ---------------------------------------------------------------------------
//  Top level

enum {
    K_SITE,
    K_REDIS,
    K_PING,
    K_BACKOFF,
    K_DEVSIM,
    K_IOSERVERS,
    K_CHANNELS,
    K_RESOLVER,
    K_BROKERS,
    K_ALARM,
    K_SECURITY,
    K_NKEYS
};

static const s_key_t s_redis_keys[] = {
    {.name = "host", .kind = S_STR, .offset = offsetof(site_t, redis_host)},
    {.name = "port", .kind = S_U16, .offset = offsetof(site_t, redis_port), .min = 1, .max = 65535},
    {.name = "user", .kind = S_STR, .offset = offsetof(site_t, redis_user)},
    {.name = "password_file", .kind = S_STR, .offset = offsetof(site_t, redis_password_file)},
    {.name = "password_env", .kind = S_STR, .offset = offsetof(site_t, redis_password_env)},
};

//  The Redis password, from the file or the variable the site names (never
//  from the site file itself: it is mounted read-only for every process and
//  often kept in version control).
static int s_redis_password(s_loader_t *ld, site_t *site)
{
    if (site->redis_password_file && site->redis_password_env)
        return s_fail(ld, site->redis_line, "redis: give password_file or password_env, not both");
    if (site->redis_password_env) {
        const char *v = getenv(site->redis_password_env);
        if (v && *v && !(site->redis_password = strdup(v)))
            return s_oom(ld);
        return 0;
    }
    if (!site->redis_password_file)
        return 0;
    char *path = site_path(site, site->redis_password_file);
    if (!path)
        return s_oom(ld);
    FILE *f = fopen(path, "r");
    if (!f) {
        int err = errno;
        s_fail(ld, site->redis_line, "redis.password_file: cannot read %s: %s", path,
               strerror(err));
        free(path);
        return -1;
    }
    char buf[512] = "";
    bool got = fgets(buf, sizeof buf, f) != NULL;
    fclose(f);
    buf[strcspn(buf, "\r\n")] = 0;
    if (!got || !*buf) {
        s_fail(ld, site->redis_line, "redis.password_file: %s is empty", path);
        free(path);
        return -1;
    }
    free(path);
    site->redis_password = strdup(buf);
    explicit_bzero(buf, sizeof buf);
    return site->redis_password ? 0 : s_oom(ld);
}

//  devsim.start: control commands scada-devsim applies to itself at start.
static int s_devsim_start_item(s_loader_t *ld, void *obj, size_t i)
{
    site_t *site = obj;
    if (ld->ev.type != YAML_SCALAR_EVENT)
        return s_fail(ld, s_line(ld),
                      "expected a control command (a string such as \"silent plc1\"), got %s",
                      s_got(ld));
    size_t n = site->ndevsim_start;
    char **cmds = s_room(site->devsim_start, n, sizeof *cmds);
    if (cmds)
        site->devsim_start = cmds;
    int *lines = s_room(site->devsim_start_line, n, sizeof *lines);
    if (lines)
        site->devsim_start_line = lines;
    if (!cmds || !lines)
        return s_oom(ld);
    cmds[n] = NULL;
    lines[n] = s_line(ld);
    site->ndevsim_start++;
    return s_string(ld, false, &cmds[n]);
}

static int s_devsim_start(s_loader_t *ld, void *obj, void *spec)
{
    return s_list(ld, s_devsim_start_item, obj);
}

static const s_key_t s_devsim_keys[] = {
    {.name = "control", .kind = S_STR, .offset = offsetof(site_t, devsim_control)},
    {.name = "start", .kind = S_CUSTOM, .custom = s_devsim_start},
};

//  security.roles: {NAME: {read: [AREA...], write: [AREA...]}, ...}
static int s_role_areas(s_loader_t *ld, char ***areas, size_t *n)
{
    if (s_is_null(ld))
        return 0;
    if (ld->ev.type == YAML_SCALAR_EVENT) { //  read: "*" for [*]
        char **one = (char **)calloc(1, sizeof *one);
        if (!one)
            return s_oom(ld);
        *areas = one;
        *n = 1;
        return s_string(ld, true, &one[0]);
    }
    if (ld->ev.type != YAML_SEQUENCE_START_EVENT)
        return s_fail(ld, s_line(ld), "expected a list of areas (or \"*\"), got %s", s_got(ld));
    for (size_t i = 0;; i++) {
        s_push_index(ld, i);
        if (s_next(ld))
            return -1;
        if (ld->ev.type == YAML_SEQUENCE_END_EVENT) {
            s_pop(ld);
            return 0;
        }
        char **more = s_room(*areas, *n, sizeof **areas);
        if (!more)
            return s_oom(ld);
        *areas = more;
        (*areas)[*n] = NULL;
        if (s_string(ld, true, &(*areas)[(*n)++]))
            return -1;
        s_pop(ld);
    }
}

static int s_role_read(s_loader_t *ld, void *obj, void *spec)
{
    site_role_t *role = obj;
    return s_role_areas(ld, &role->read, &role->nread);
}

static int s_role_write(s_loader_t *ld, void *obj, void *spec)
{
    site_role_t *role = obj;
    return s_role_areas(ld, &role->write, &role->nwrite);
}

static const s_key_t s_role_keys[] = {
    {.name = "read", .kind = S_CUSTOM, .custom = s_role_read},
    {.name = "write", .kind = S_CUSTOM, .custom = s_role_write},
};

//  A mapping whose keys are names the file chooses (roles, users): each()
//  reads the value of key `name`, the current event.
static int s_named_mapping(s_loader_t *ld, site_t *site,
                           int (*each)(s_loader_t *ld, site_t *site, char *name, int line))
{
    if (s_is_null(ld))
        return 0;
    if (ld->ev.type != YAML_MAPPING_START_EVENT)
        return s_fail(ld, s_line(ld), "expected a mapping (name: ...), got %s", s_got(ld));
    for (;;) {
        if (s_next(ld))
            return -1;
        if (ld->ev.type == YAML_MAPPING_END_EVENT)
            return 0;
        char *name = NULL;
        int line = s_line(ld);
        if (s_string(ld, true, &name))
            return -1;
        if (s_next(ld)) {
            free(name);
            return -1;
        }
        if (each(ld, site, name, line)) //  takes name
            return -1;
    }
}

static int s_role_item(s_loader_t *ld, site_t *site, char *name, int line)
{
    site_role_t *roles = s_room(site->roles, site->nroles, sizeof *roles);
    if (!roles) {
        free(name);
        return s_oom(ld);
    }
    site->roles = roles;
    site_role_t *role = &roles[site->nroles++];
    *role = (site_role_t){.name = name, .line = line};
    s_push_key(ld, role->name);
    for (size_t i = 0; i + 1 < site->nroles; i++)
        if (strcmp(site->roles[i].name, name) == 0)
            return s_fail(ld, line, "duplicate role (first defined at line %d)",
                          site->roles[i].line);
    s_seen_t seen;
    if (s_mapping(ld, s_role_keys, S_COUNT(s_role_keys), role, NULL, &seen))
        return -1;
    if (role->nread + role->nwrite == 0)
        return s_fail(ld, line, "a role gives read or write (or both): a list of areas, or \"*\"");
    s_pop(ld);
    return 0;
}

static int s_security_roles(s_loader_t *ld, void *obj, void *spec)
{
    return s_named_mapping(ld, obj, s_role_item);
}

static int s_user_item(s_loader_t *ld, site_t *site, char *name, int line)
{
    site_user_t *users = s_room(site->users, site->nusers, sizeof *users);
    if (!users) {
        free(name);
        return s_oom(ld);
    }
    site->users = users;
    site_user_t *u = &users[site->nusers++];
    *u = (site_user_t){.user = name, .line = line};
    s_push_key(ld, u->user);
    for (size_t i = 0; i + 1 < site->nusers; i++)
        if (strcmp(site->users[i].user, name) == 0)
            return s_fail(ld, line, "duplicate user (first given at line %d)", site->users[i].line);
    if (s_string(ld, true, &u->role_name))
        return -1;
    s_pop(ld);
    return 0;
}

static int s_security_users(s_loader_t *ld, void *obj, void *spec)
{
    return s_named_mapping(ld, obj, s_user_item);
}

enum { SEC_KEYS, SEC_PLAIN, SEC_ROLES, SEC_USERS, SEC_DEFAULT_ROLE, SEC_AUDIT_DIR, SEC_NKEYS };

static const s_key_t s_security_keys[] = {
    [SEC_KEYS] = {.name = "keys", .kind = S_STR, .offset = offsetof(site_t, security_keys)},
    [SEC_PLAIN] = {.name = "plain", .kind = S_BOOL, .offset = offsetof(site_t, security_plain)},
    [SEC_ROLES] = {.name = "roles", .kind = S_CUSTOM, .custom = s_security_roles},
    [SEC_USERS] = {.name = "users", .kind = S_CUSTOM, .custom = s_security_users},
    [SEC_DEFAULT_ROLE] = {.name = "default_role",
                          .kind = S_NAME,
                          .offset = offsetof(site_t, default_role_name)},
    [SEC_AUDIT_DIR] = {.name = "audit_dir",
                       .kind = S_STR,
                       .offset = offsetof(site_t, security_audit_dir)},
};

//  Is `area` the plant area of some tag, or the area of some alarm? (roles
//  must not name others: a typo would silently give no right)
static bool s_area_used(const site_t *site, const char *area)
{
    if (strcmp(site->alarm.comm_area, area) == 0)
        return true; //  communication alarms
    for (size_t i = 0; i < site->ntags; i++) {
        const site_tag_t *tag = site->tags_by_id[i];
        if (strcmp(tag->plant_area, area) == 0 ||
            (tag->alarms.area && strcmp(tag->alarms.area, area) == 0))
            return true;
    }
    return false;
}

static const site_role_t *s_role_named(const site_t *site, const char *name)
{
    for (size_t i = 0; i < site->nroles; i++)
        if (strcmp(site->roles[i].name, name) == 0)
            return &site->roles[i];
    return NULL;
}

//  Roles, users and default_role checked against each other and the areas.
static int s_security_finish(s_loader_t *ld, site_t *site)
{
    bool any = site->nroles || site->nusers || site->default_role_name;
    if (!any)
        return 0;
    s_push_key(ld, "security");
    if (site->security_plain)
        return s_fail(ld, site->security_line,
                      "roles need CURVE certificates to tell users apart: a plain site "
                      "(plain: true) cannot have roles, users or default_role");
    if (!site->nroles)
        return s_fail(ld, site->security_line,
                      "users and default_role name roles, but there is no roles: section");
    char list[200] = "";
    size_t len = 0;
    for (size_t i = 0; i < site->nroles && len < sizeof list; i++) {
        int k = snprintf(list + len, sizeof list - len, "%s%s", i ? ", " : "", site->roles[i].name);
        if (k < 0)
            break;
        len += (size_t)k;
    }
    for (size_t i = 0; i < site->nusers; i++) {
        site_user_t *u = &site->users[i];
        if (!(u->role = s_role_named(site, u->role_name))) {
            s_push_key(ld, "users");
            s_push_key(ld, u->user);
            return s_fail(ld, u->line, "unknown role \"%s\" (roles: %s)", u->role_name, list);
        }
    }
    if (site->default_role_name &&
        !(site->default_role = s_role_named(site, site->default_role_name))) {
        s_push_key(ld, "default_role");
        return s_fail(ld, site->security_line, "unknown role \"%s\" (roles: %s)",
                      site->default_role_name, list);
    }
    for (size_t r = 0; r < site->nroles; r++) {
        const site_role_t *role = &site->roles[r];
        for (int w = 0; w < 2; w++) {
            char **areas = w ? role->write : role->read;
            size_t n = w ? role->nwrite : role->nread;
            for (size_t i = 0; i < n; i++) {
                if (strcmp(areas[i], "*") == 0 || s_area_used(site, areas[i]))
                    continue;
                s_push_key(ld, "roles");
                s_push_key(ld, role->name);
                s_push_key(ld, w ? "write" : "read");
                s_push_index(ld, i);
                return s_fail(ld, role->line,
                              "no tag or alarm is in area \"%s\" (give tags, devices or channels "
                              "area: %s, or use \"*\" for every area)",
                              areas[i], areas[i]);
            }
        }
    }
    s_pop(ld);
    return 0;
}

static int s_top_security(s_loader_t *ld, void *obj, void *spec)
{
    ((site_t *)obj)->security_line = s_line(ld);
    s_seen_t seen;
    return s_mapping(ld, s_security_keys, SEC_NKEYS, obj, NULL, &seen);
}

static int s_top_redis(s_loader_t *ld, void *obj, void *spec)
{
    ((site_t *)obj)->redis_line = s_line(ld);
    s_seen_t seen;
    return s_mapping(ld, s_redis_keys, S_COUNT(s_redis_keys), obj, NULL, &seen);
}

static int s_top_devsim(s_loader_t *ld, void *obj, void *spec)
{
    s_seen_t seen;
    return s_mapping(ld, s_devsim_keys, S_COUNT(s_devsim_keys), obj, NULL, &seen);
}

static const s_key_t s_resolver_keys[] = {
    {.name = "endpoint", .kind = S_STR, .offset = offsetof(site_resolver_t, endpoint)},
};

static int s_top_resolver(s_loader_t *ld, void *obj, void *spec)
{
    site_t *site = obj;
    site->resolver.line = s_line(ld);
    if (s_is_null(ld))
        return 0;
    s_seen_t seen;
    return s_mapping(ld, s_resolver_keys, S_COUNT(s_resolver_keys), &site->resolver, NULL, &seen);
}

//  The alarm service.
static const char *const s_sync_names[] = {"batch", "each", "none"};

static int s_alarm_sync(s_loader_t *ld, void *obj, void *spec)
{
    int v;
    if (s_enum(ld, s_sync_names, S_COUNT(s_sync_names), "sync policy", &v))
        return -1;
    ((site_alarm_t *)obj)->sync = (site_sync_t)v;
    return 0;
}

static const s_key_t s_alarm_keys[] = {
    {.name = "publish", .kind = S_STR, .offset = offsetof(site_alarm_t, publish)},
    {.name = "control", .kind = S_STR, .offset = offsetof(site_alarm_t, control)},
    {.name = "journal", .kind = S_STR, .offset = offsetof(site_alarm_t, journal)},
    {.name = "sync", .kind = S_CUSTOM, .custom = s_alarm_sync},
    {.name = "journal_max_kb",
     .kind = S_U32,
     .offset = offsetof(site_alarm_t, journal_max_kb),
     .min = 64,
     .max = 16777216},
    {.name = "comm_priority",
     .kind = S_INT,
     .offset = offsetof(site_alarm_t, comm_priority),
     .min = 1,
     .max = 1000},
    {.name = "comm_area", .kind = S_NAME, .offset = offsetof(site_alarm_t, comm_area)},
    {.name = "device_alarms", .kind = S_BOOL, .offset = offsetof(site_alarm_t, device_alarms)},
    {.name = "comm_delay_ms",
     .kind = S_U32,
     .offset = offsetof(site_alarm_t, comm_delay_ms),
     .min = 0,
     .max = 3600000},
    {.name = "broker", .kind = S_NAME, .offset = offsetof(site_alarm_t, broker)},
};

static int s_top_alarm(s_loader_t *ld, void *obj, void *spec)
{
    site_t *site = obj;
    site->alarm.line = s_line(ld);
    if (s_is_null(ld))
        return 0;
    s_seen_t seen;
    return s_mapping(ld, s_alarm_keys, S_COUNT(s_alarm_keys), &site->alarm, NULL, &seen);
}

enum {
    B_NAME,
    B_ENDPOINT,
    B_RESOLVE_ON_STARTUP,
    B_SUBSCRIBE_ON_STARTUP,
    B_UPDATE_INTERVAL,
    B_CLIENT_HEARTBEAT,
    B_INITIAL_WAIT,
    B_WRITE_TIMEOUT,
    B_NKEYS
};

#define S_BROKER_MS(key, field, lo)                                                                \
    {                                                                                              \
        .name = key, .kind = S_U32, .offset = offsetof(site_broker_t, field), .min = lo,           \
        .max = 3600000                                                                             \
    }

static const s_key_t s_broker_keys[] = {
    [B_NAME] = {.name = "name",
                .kind = S_NAME,
                .offset = offsetof(site_broker_t, name),
                .required = true},
    [B_ENDPOINT] = {.name = "endpoint", .kind = S_STR, .offset = offsetof(site_broker_t, endpoint)},
    [B_RESOLVE_ON_STARTUP] = {.name = "resolve_on_startup",
                              .kind = S_BOOL,
                              .offset = offsetof(site_broker_t, resolve_on_startup)},
    [B_SUBSCRIBE_ON_STARTUP] = {.name = "subscribe_on_startup",
                                .kind = S_BOOL,
                                .offset = offsetof(site_broker_t, subscribe_on_startup)},
    [B_UPDATE_INTERVAL] = S_BROKER_MS("update_interval_ms", update_interval_ms, 0),
    [B_CLIENT_HEARTBEAT] = S_BROKER_MS("client_heartbeat_ms", client_heartbeat_ms, 100),
    [B_INITIAL_WAIT] = S_BROKER_MS("initial_wait_ms", initial_wait_ms, 0),
    [B_WRITE_TIMEOUT] = S_BROKER_MS("write_timeout_ms", write_timeout_ms, 10),
};

static void s_broker_defaults(site_broker_t *b)
{
    b->update_interval_ms = 100;
    b->client_heartbeat_ms = 5000;
    b->initial_wait_ms = 200;
    b->write_timeout_ms = 5000;
}

static int s_broker_item(s_loader_t *ld, void *obj, size_t i)
{
    site_t *site = obj;
    site_broker_t *bs = s_room(site->brokers, site->nbrokers, sizeof *bs);
    if (!bs)
        return s_oom(ld);
    site->brokers = bs;
    site_broker_t *b = &bs[site->nbrokers++];
    *b = (site_broker_t){.line = s_line(ld)};
    s_broker_defaults(b);
    s_seen_t seen;
    if (s_mapping(ld, s_broker_keys, B_NKEYS, b, NULL, &seen))
        return -1;
    if (!b->endpoint) {
        char endpoint[64];
        snprintf(endpoint, sizeof endpoint, "tcp://127.0.0.1:%zu", 5700 + 10 * i);
        if (!(b->endpoint = strdup(endpoint)))
            return s_oom(ld);
    }
    for (size_t k = 0; k < i; k++) {
        if (strcmp(bs[k].name, b->name) == 0)
            return s_fail_key(ld, &seen, s_broker_keys, B_NAME,
                              "duplicate broker name \"%s\" (first defined at line %d)", b->name,
                              bs[k].line);
        if (strcmp(bs[k].endpoint, b->endpoint) == 0)
            return s_fail_key(ld, &seen, s_broker_keys, B_ENDPOINT,
                              "endpoint \"%s\" is already the endpoint of broker \"%s\"",
                              b->endpoint, bs[k].name);
    }
    return 0;
}

static int s_top_brokers(s_loader_t *ld, void *obj, void *spec)
{
    if (s_is_null(ld))
        return 0;
    return s_list(ld, s_broker_item, obj);
}

static int s_top_ioservers(s_loader_t *ld, void *obj, void *spec)
{
    int line = s_line(ld);
    if (s_list(ld, s_ioserver_item, obj))
        return -1;
    if (((site_t *)obj)->nioservers == 0)
        return s_fail(ld, line, "must list at least one I/O server");
    return 0;
}

static int s_top_channels(s_loader_t *ld, void *obj, void *spec)
{
    return s_list(ld, s_channel_item, obj);
}

static const s_key_t s_top_keys[] = {
    [K_SITE] = {.name = "site", .kind = S_NAME, .offset = offsetof(site_t, site), .required = true},
    [K_REDIS] = {.name = "redis", .kind = S_CUSTOM, .custom = s_top_redis},
    [K_PING] = {.name = "ping_time_ms",
                .kind = S_U32,
                .offset = offsetof(site_t, ping_time_ms),
                .min = 10,
                .max = UINT32_MAX},
    [K_BACKOFF] = {.name = "resolve_retry_backoff_ms",
                   .kind = S_U32,
                   .offset = offsetof(site_t, resolve_retry_backoff_ms),
                   .min = 1,
                   .max = UINT32_MAX},
    [K_DEVSIM] = {.name = "devsim", .kind = S_CUSTOM, .custom = s_top_devsim},
    [K_IOSERVERS] = {.name = "ioservers",
                     .kind = S_CUSTOM,
                     .required = true,
                     .custom = s_top_ioservers},
    [K_CHANNELS] = {.name = "channels",
                    .kind = S_CUSTOM,
                    .required = true,
                    .custom = s_top_channels},
    [K_RESOLVER] = {.name = "resolver", .kind = S_CUSTOM, .custom = s_top_resolver},
    [K_BROKERS] = {.name = "brokers", .kind = S_CUSTOM, .custom = s_top_brokers},
    [K_ALARM] = {.name = "alarm", .kind = S_CUSTOM, .custom = s_top_alarm},
    [K_SECURITY] = {.name = "security", .kind = S_CUSTOM, .custom = s_top_security},
};

//  Checks that need the whole file, then the indexes and back pointers.
static int s_finish(s_loader_t *ld)
{
    site_t *site = ld->site;
    struct site_index_s *index = site->index;
    for (size_t r = 0; r < ld->nrefs; r++) {
        const s_ref_t *ref = &ld->refs[r];
        const char *name = site->channels[ref->ch].devices[ref->dev].servers[ref->k].ioserver;
        if (s_index_find(&index->ioservers, name))
            continue;
        s_push_key(ld, "channels");
        s_push_index(ld, ref->ch);
        s_push_key(ld, "devices");
        s_push_index(ld, ref->dev);
        s_push_key(ld, "servers");
        s_push_index(ld, ref->k);
        if (ref->mapping)
            s_push_key(ld, "ioserver");
        char list[200] = "";
        size_t len = 0;
        for (size_t i = 0; i < site->nioservers && len < sizeof list; i++) {
            int k = snprintf(list + len, sizeof list - len, "%s%s", i ? ", " : "",
                             site->ioservers[i].name);
            if (k < 0)
                break;
            len += (size_t)k;
        }
        return s_fail(ld, ref->line, "unknown I/O server \"%s\" (ioservers lists: %s)", name, list);
    }
    if (!site->redis_host && !(site->redis_host = strdup("127.0.0.1")))
        return s_oom(ld);
    if (s_redis_password(ld, site) < 0)
        return -1;
    if ((!site->security_keys && !(site->security_keys = strdup("keys"))) ||
        (!site->security_audit_dir && !(site->security_audit_dir = strdup("audit"))))
        return s_oom(ld);
    if (!site->devsim_control && !(site->devsim_control = strdup("tcp://127.0.0.1:5590")))
        return s_oom(ld);
    if (!site->resolver.endpoint && !(site->resolver.endpoint = strdup("tcp://127.0.0.1:5500")))
        return s_oom(ld);
    site_alarm_t *al = &site->alarm;
    if ((!al->publish && !(al->publish = strdup("tcp://127.0.0.1:5800"))) ||
        (!al->control && !(al->control = strdup("tcp://127.0.0.1:5801"))) ||
        (!al->journal && !(al->journal = strdup("alarms.journal"))) ||
        (!al->comm_area && !(al->comm_area = strdup("comm"))))
        return s_oom(ld);
    s_broker_defaults(&site->default_broker);
    if (!(site->default_broker.name = strdup("b1")) ||
        !(site->default_broker.endpoint = strdup("tcp://127.0.0.1:5700")))
        return s_oom(ld);

    for (size_t i = 0; i < site->nioservers; i++)
        s_index_find(&index->ioservers, site->ioservers[i].name)->ptr = &site->ioservers[i];
    for (size_t c = 0; c < site->nchannels; c++) {
        site_channel_t *ch = &site->channels[c];
        s_index_find(&index->channels, ch->name)->ptr = ch;
        for (size_t d = 0; d < ch->ndevices; d++) {
            site_device_t *dev = &ch->devices[d];
            dev->channel = ch;
            s_index_find(&index->devices, dev->name)->ptr = dev;
            for (size_t t = 0; t < dev->ntags; t++) {
                site_tag_t *tag = &dev->tags[t];
                tag->device = dev;
                s_index_find(&index->tags, tag->name)->ptr = tag;
                tag->plant_area = tag->area_key   ? tag->area_key
                                  : dev->area_key ? dev->area_key
                                  : ch->area_key  ? ch->area_key
                                                  : "default";
                if (tag->alarms.any && !tag->alarms.area &&
                    !(tag->alarms.area = strdup(tag->plant_area)))
                    return s_oom(ld);
            }
            site->ntags += dev->ntags;
        }
        site->ndevices += ch->ndevices;
    }
    site->tags_by_id = (site_tag_t **)calloc(site->ntags + 1, sizeof *site->tags_by_id);
    if (!site->tags_by_id)
        return s_oom(ld);
    uint32_t id = 0;
    for (size_t c = 0; c < site->nchannels; c++)
        for (size_t d = 0; d < site->channels[c].ndevices; d++) {
            site_device_t *dev = &site->channels[c].devices[d];
            for (size_t t = 0; t < dev->ntags; t++) {
                dev->tags[t].id = ++id;
                site->tags_by_id[id - 1] = &dev->tags[t];
            }
        }
    return s_security_finish(ld, site);
}

static int s_stream(s_loader_t *ld)
{
    if (s_next(ld))
        return -1; //  STREAM_START
    if (s_next(ld))
        return -1;
    if (ld->ev.type == YAML_STREAM_END_EVENT)
        return s_fail(ld, 1, "the file is empty (expected site:, ioservers: and channels:)");
    //  DOCUMENT_START, then the top node
    if (s_next(ld))
        return -1;
    if (ld->ev.type != YAML_MAPPING_START_EVENT)
        return s_fail(ld, s_line(ld),
                      "the top level must be a mapping with site:, ioservers: and channels:, got "
                      "%s",
                      s_got(ld));
    s_seen_t seen;
    if (s_mapping(ld, s_top_keys, K_NKEYS, ld->site, NULL, &seen))
        return -1;
    if (s_next(ld) || s_next(ld))
        return -1; //  DOCUMENT_END, then STREAM_END or another document
    if (ld->ev.type != YAML_STREAM_END_EVENT)
        return s_fail(ld, s_line(ld),
                      "a site file holds one YAML document; a second one starts "
                      "here");
    return s_finish(ld);
}

//  ---------------------------------------------------------------------------
//  Public API

//  Load and check a site from text in memory; `name` stands for the file in
//  messages. Returns NULL and one message in err on any error. Caller owns
//  the return value.
site_t *site_load_string(const char *text, size_t len, const char *name, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = 0;
    if (!name)
        name = "(string)";
    s_loader_t ld = {.file = name, .text = text, .len = len, .err = err, .errlen = errlen};
    site_t *site = calloc(1, sizeof *site);
    if (site)
        site->index = calloc(1, sizeof *site->index);
    if (site)
        site->path = strdup(name);
    if (!site || !site->index || !site->path) {
        s_oom(&ld);
        site_destroy(&site);
        return NULL;
    }
    site->redis_port = 6379;
    site->ping_time_ms = 1000;
    site->resolve_retry_backoff_ms = 500;
    site->alarm.comm_priority = 1;
    site->alarm.device_alarms = true;
    site->alarm.comm_delay_ms = 10000;
    site->alarm.journal_max_kb = 65536;
    ld.site = site;
    if (!yaml_parser_initialize(&ld.parser)) {
        s_oom(&ld);
        site_destroy(&site);
        return NULL;
    }
    yaml_parser_set_input_string(&ld.parser, (const unsigned char *)text, len);
    int rc = s_stream(&ld);
    if (ld.have_ev)
        yaml_event_delete(&ld.ev);
    yaml_parser_delete(&ld.parser);
    free(ld.refs);
    free(ld.devx);
    free(ld.tagx);
    free(ld.val);
    free(ld.nest);
    if (rc)
        site_destroy(&site);
    return site;
}

//  Load and check a site file: reads it whole, then as site_load_string().
//  Caller owns the return value.
site_t *site_load(const char *path, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = 0;
    FILE *file = fopen(path, "rb");
    char *text = NULL;
    size_t len = 0, cap = 0;
    int error = file ? 0 : errno;
    while (file && !error) {
        if (len == cap) {
            cap = cap ? cap * 2 : 65536;
            char *bigger = realloc(text, cap);
            if (!bigger) {
                error = ENOMEM;
                break;
            }
            text = bigger;
        }
        size_t n = fread(text + len, 1, cap - len, file);
        len += n;
        if (n == 0) {
            if (ferror(file))
                error = errno ? errno : EIO;
            break;
        }
    }
    if (file)
        fclose(file);
    site_t *site = NULL;
    if (error) {
        if (err && errlen)
            snprintf(err, errlen, "%s: cannot read the site file: %s", path, strerror(error));
    } else if (len == 0) {
        if (err && errlen)
            snprintf(err, errlen,
                     "%s:1: the file is empty (expected site:, ioservers: and "
                     "channels:)",
                     path);
    } else
        site = site_load_string(text, len, path, err, errlen);
    free(text);
    return site;
}

static void s_index_free(s_index_t *index)
{
    free(index->slots);
}

//  Free a site and everything it owns; tolerates NULL, sets *self_p to NULL.
void site_destroy(site_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    site_t *self = *self_p;
    for (size_t i = 0; i < self->nioservers; i++) {
        free(self->ioservers[i].name);
        free(self->ioservers[i].publish);
        free(self->ioservers[i].control);
        free(self->ioservers[i].iolog_dir);
    }
    free(self->ioservers);
    for (size_t i = 0; i < self->nbrokers; i++) {
        free(self->brokers[i].name);
        free(self->brokers[i].endpoint);
    }
    free(self->brokers);
    free(self->default_broker.name);
    free(self->default_broker.endpoint);
    free(self->resolver.endpoint);
    free(self->alarm.publish);
    free(self->alarm.control);
    free(self->alarm.journal);
    free(self->alarm.comm_area);
    free(self->alarm.broker);
    free(self->tags_by_id);
    for (size_t c = 0; c < self->nchannels; c++) {
        site_channel_t *ch = &self->channels[c];
        for (size_t d = 0; d < ch->ndevices; d++) {
            site_device_t *dev = &ch->devices[d];
            for (size_t t = 0; t < dev->ntags; t++) {
                site_alarms_t *al = &dev->tags[t].alarms;
                free(dev->tags[t].name);
                free(dev->tags[t].area_key);
                free(al->area);
                free(al->hihi.message);
                free(al->hi.message);
                free(al->lo.message);
                free(al->lolo.message);
                free(al->state_message);
            }
            free(dev->tags);
            for (size_t s = 0; s < dev->nservers; s++)
                free(dev->servers[s].ioserver);
            free(dev->servers);
            free(dev->name);
            free(dev->host);
            free(dev->area_key);
        }
        free(ch->devices);
        free(ch->name);
        free(ch->host);
        free(ch->serial_port);
        free(ch->area_key);
    }
    free(self->channels);
    for (size_t r = 0; r < self->nroles; r++) {
        site_role_t *role = &self->roles[r];
        for (size_t i = 0; i < role->nread; i++)
            free(role->read[i]);
        for (size_t i = 0; i < role->nwrite; i++)
            free(role->write[i]);
        free(role->read);
        free(role->write);
        free(role->name);
    }
    free(self->roles);
    for (size_t i = 0; i < self->nusers; i++) {
        free(self->users[i].user);
        free(self->users[i].role_name);
    }
    free(self->users);
    free(self->default_role_name);
    free(self->security_audit_dir);
    if (self->index) {
        s_index_free(&self->index->ioservers);
        s_index_free(&self->index->channels);
        s_index_free(&self->index->devices);
        s_index_free(&self->index->tags);
        free(self->index);
    }
    free(self->path);
    free(self->site);
    free(self->redis_host);
    free(self->security_keys);
    free(self->redis_user);
    free(self->redis_password_file);
    free(self->redis_password_env);
    if (self->redis_password) {
        explicit_bzero(self->redis_password, strlen(self->redis_password));
        free(self->redis_password);
    }
    free(self->devsim_control);
    for (size_t i = 0; i < self->ndevsim_start; i++)
        free(self->devsim_start[i]);
    free(self->devsim_start);
    free(self->devsim_start_line);
    free(self);
    *self_p = NULL;
}

//  Lookups by name: a hash lookup on a loaded site, a scan on one built by
//  hand (index NULL). NULL if there is none.
site_ioserver_t *site_ioserver(const site_t *self, const char *name)
{
    if (!self || !name)
        return NULL;
    if (self->index) {
        s_entry_t *entry = s_index_find(&self->index->ioservers, name);
        return entry ? entry->ptr : NULL;
    }
    for (size_t i = 0; i < self->nioservers; i++)
        if (strcmp(self->ioservers[i].name, name) == 0)
            return &self->ioservers[i];
    return NULL;
}

site_device_t *site_device(const site_t *self, const char *name)
{
    if (!self || !name)
        return NULL;
    if (self->index) {
        s_entry_t *entry = s_index_find(&self->index->devices, name);
        return entry ? entry->ptr : NULL;
    }
    for (size_t c = 0; c < self->nchannels; c++)
        for (size_t d = 0; d < self->channels[c].ndevices; d++)
            if (strcmp(self->channels[c].devices[d].name, name) == 0)
                return &self->channels[c].devices[d];
    return NULL;
}

site_tag_t *site_tag_by_id(const site_t *self, uint32_t id)
{
    if (!self || id == 0 || id > self->ntags || !self->tags_by_id)
        return NULL;
    return self->tags_by_id[id - 1];
}

const site_broker_t *site_broker(const site_t *self, const char *name)
{
    for (size_t i = 0; i < self->nbrokers; i++)
        if (!name || strcmp(self->brokers[i].name, name) == 0)
            return &self->brokers[i];
    return &self->default_broker;
}

site_tag_t *site_tag(const site_t *self, const char *name)
{
    if (!self || !name)
        return NULL;
    if (self->index) {
        s_entry_t *entry = s_index_find(&self->index->tags, name);
        return entry ? entry->ptr : NULL;
    }
    for (size_t c = 0; c < self->nchannels; c++)
        for (size_t d = 0; d < self->channels[c].ndevices; d++) {
            site_device_t *dev = &self->channels[c].devices[d];
            for (size_t t = 0; t < dev->ntags; t++)
                if (strcmp(dev->tags[t].name, name) == 0)
                    return &dev->tags[t];
        }
    return NULL;
}

//  Priority of ioserver for device, 0 if it does not serve the device.
int site_device_priority(const site_device_t *device, const char *ioserver)
{
    if (!device || !ioserver)
        return 0;
    for (size_t i = 0; i < device->nservers; i++)
        if (strcmp(device->servers[i].ioserver, ioserver) == 0)
            return device->servers[i].priority;
    return 0;
}

//  Enum names as written in the site file; "?" for a value out of range.
const char *site_sync_name(site_sync_t sync)
{
    return (size_t)sync < S_COUNT(s_sync_names) ? s_sync_names[sync] : "?";
}

const char *site_chtype_name(site_chtype_t type)
{
    return (unsigned)type < S_COUNT(s_chtype_names) ? s_chtype_names[type] : "?";
}

const char *site_type_name(site_type_t type)
{
    return (unsigned)type < S_COUNT(s_type_names) ? s_type_names[type] : "?";
}

const site_role_t *site_role_of(const site_t *site, const char *user)
{
    if (user)
        for (size_t i = 0; i < site->nusers; i++)
            if (strcmp(site->users[i].user, user) == 0)
                return site->users[i].role;
    return site->default_role;
}

static bool s_role_lists(char **areas, size_t n, const char *area)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(areas[i], "*") == 0 || strcmp(areas[i], area) == 0)
            return true;
    return false;
}

bool site_may(const site_t *site, const char *user, const char *area, bool write)
{
    if (!site->nroles)
        return true;
    const site_role_t *role = site_role_of(site, user);
    if (!role)
        return false;
    return s_role_lists(role->write, role->nwrite, area) ||
           (!write && s_role_lists(role->read, role->nread, area));
}

const char *site_area_name(site_area_t area)
{
    return (unsigned)area < S_COUNT(s_area_names) ? s_area_names[area] : "?";
}

//  Registers (or bits) a value of this type occupies.
int site_type_width(site_type_t type)
{
    return type == SITE_T_INT32 || type == SITE_T_UINT32 || type == SITE_T_FLOAT32 ? 2 : 1;
}

char *site_path(const site_t *self, const char *path)
{
    if (!path)
        return NULL;
    if (path[0] == '/' || !self->path || !strchr(self->path, '/'))
        return strdup(path);
    size_t dirlen = (size_t)(strrchr(self->path, '/') - self->path);
    size_t len = dirlen + 1 + strlen(path) + 1;
    char *out = malloc(len);
    if (out)
        snprintf(out, len, "%.*s/%s", (int)dirlen, self->path, path);
    return out;
}
