/*  audit: the record of every write attempt (docs/security.md "Audit").

    One record per attempt, written when its result is known: who (the
    certificate name and public key, and the name the client gave itself),
    the tag and its plant area, the value before and the value asked for,
    the time, the process that took it, and the result with its reason.

    Two copies. The audit file is the one of record: one JSON object per
    line, opened O_APPEND (so lines are only ever added, each with a single
    write(2)), created mode 0640. The Redis stream scada:<site>:audit is for
    screens and tools; entries that cannot go while Redis is away wait (at
    most AUDIT_BACKLOG of them, oldest dropped first and counted) and go
    when audit_flush() finds it back.
*/
#ifndef AUDIT_H_INCLUDED
#define AUDIT_H_INCLUDED

#include "rzloop.h"

#include <stdbool.h>
#include <stdint.h>

#define AUDIT_BACKLOG       10000  //  stream entries kept while Redis is away
#define AUDIT_STREAM_MAXLEN 100000 //  the stream is capped near this (XADD MAXLEN ~)

typedef struct audit_s audit_t;

typedef struct {
    int64_t ts_ms;      //  wall ms of the attempt
    const char *via;    //  the process that took it (b1, io1)
    const char *user;   //  certificate name; NULL: unidentified (plain site)
    const char *key;    //  the certificate's public key (Z85), or NULL
    const char *client; //  the name the client gave itself (not proof), or NULL
    const char *tag;
    const char *area; //  the tag's plant area, or NULL (no such tag)
    bool has_old;     //  the value before the write is known
    double old_value;
    const char *old_quality; //  its quality ("good", "bad-no-comm", ...), or NULL
    double new_value;
    const char *result; //  "ok", "refused" (not allowed) or "failed"
    const char *error;  //  why, when not ok
} audit_rec_t;

//  Open (create) the audit file at `path`; its directory is made if missing.
//  `stream` is the Redis key of the stream, redis may be NULL (file only).
//  NULL with errno when the file cannot be opened: a process that takes
//  writes must not run without its audit file.
audit_t *audit_new(const char *path, const char *stream, rzloop_t *redis);

void audit_destroy(audit_t **self_p);

//  The Redis connection of the stream, when it is made after the audit file.
void audit_set_redis(audit_t *self, rzloop_t *redis);

//  Append one record to the file and queue it for the stream. Returns 0,
//  or -1 when the file write failed (logged, counted; the stream still gets it).
int audit_write(audit_t *self, const audit_rec_t *rec);

//  Send waiting stream entries if Redis is connected (call it from a timer).
void audit_flush(audit_t *self);

//  Counters: records written, file errors, stream entries dropped.
uint64_t audit_records(const audit_t *self);
uint64_t audit_file_errors(const audit_t *self);
uint64_t audit_stream_dropped(const audit_t *self);

//  The line audit_write() appends, without its newline, into buf (always
//  terminated). Returns the length it needed.
size_t audit_format(const audit_rec_t *rec, char *buf, size_t len);

#endif
