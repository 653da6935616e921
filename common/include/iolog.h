/*  iolog: the per-channel I/O log and its summary (seed 002).

    One line per request, so an engineer can see whether replies arrive too
    late and tune the channel's standard reply delay:

      2026-11-22T03:14:15.123Z dev=plc1 unit=1 fc=3 addr=0 count=10 req=12B rep=25B
          deadline=250ms reply=212ms margin=+38ms ok

    (one line in the file; docs/iolog.md describes every field).

    Writing never blocks the event loop for long: iolog_request formats the
    line into a bounded memory buffer (IOLOG_BUFFER_MAX; when it is full the
    line is dropped and counted), and iolog_flush, called by the caller once
    per loop turn or on a timer, appends the buffered lines to the file with
    write(2) and rotates it by size: path -> path.1 -> ... -> path.<keep>, the
    oldest dropped. A disabled log does no I/O at all.

    The summary is pure: it reads entries (or lines, or files of lines),
    skips and counts malformed lines (a half-written last line after a crash
    is one of them), and computes the distribution of reply times and of
    their lateness against the deadline, with a recommendation for the delay.
*/
#ifndef IOLOG_H_INCLUDED
#define IOLOG_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IOLOG_DEVICE_MAX 64           //  device name bytes, with the NUL
#define IOLOG_LINE_MAX   512          //  longest line the format produces, with the NUL
#define IOLOG_BUFFER_MAX (256 * 1024) //  bytes buffered between flushes at most
#define IOLOG_TIME_MAX   86400000     //  deadline and reply times are at most a day (ms)

typedef enum {
    IOLOG_OUT_OK = 0,        //  "ok": a normal reply
    IOLOG_OUT_EXCEPTION,     //  "exception=N": an exception reply with code N
    IOLOG_OUT_TIMEOUT,       //  "timeout": read timeout; the reply, if it came later, is timed
    IOLOG_OUT_MALFORMED,     //  "malformed": a reply that did not decode
    IOLOG_OUT_MISMATCH,      //  "mismatch": a reply to another request (id, unit or function)
    IOLOG_OUT_WRITE_TIMEOUT, //  "write-timeout": the OS did not take the request in time
    IOLOG_OUT_COUNT
} iolog_outcome_t;

//  One request. Times after send are in ms and 0..IOLOG_TIME_MAX.
typedef struct {
    int64_t sent_ms;               //  wall clock of the send, ms since the Unix epoch
    char device[IOLOG_DEVICE_MAX]; //  device name (any bytes; escaped in the line)
    uint8_t unit;                  //  Modbus unit id
    uint8_t fc;                    //  function code
    uint16_t addr;                 //  first register or bit
    uint16_t count;                //  registers or bits
    uint32_t request_bytes;        //  bytes sent
    uint32_t reply_bytes;          //  bytes of the expected reply
    int64_t deadline_ms;           //  deadline, after send
    int64_t reply_ms;              //  when the reply came, after send; -1 if none came
    iolog_outcome_t outcome;
    uint8_t exception; //  exception code, for IOLOG_OUT_EXCEPTION (else 0)
} iolog_entry_t;

//  --------------------------------------------------------------------------
//  The line format

//  Format one entry as a line ending in '\n' into buf (NUL-terminated,
//  truncated to len). Returns the length the full line needs, without the
//  NUL, like snprintf; always < IOLOG_LINE_MAX.
size_t iolog_format_line(const iolog_entry_t *e, char *buf, size_t len);

//  Parse one line of `len` bytes (a trailing '\n' is allowed, a NUL is not
//  needed) into *e. Returns 0, or -1 if the line is malformed in any way
//  (truncated, unknown field, out of range, margin not deadline - reply);
//  *e is then unspecified.
int iolog_parse_line(const char *line, size_t len, iolog_entry_t *e);

//  Name of an outcome as in the line ("exception" without its code).
const char *iolog_outcome_name(iolog_outcome_t outcome);

//  --------------------------------------------------------------------------
//  The writer

typedef struct _iolog_t iolog_t;

typedef struct {
    uint64_t lines;        //  lines written to the file
    uint64_t bytes;        //  bytes written to the file
    uint64_t dropped;      //  lines lost: buffer full, or a write that failed
    uint64_t write_errors; //  failed opens, writes and renames
    uint64_t rotations;    //  times the file was rotated
    size_t pending;        //  bytes buffered now
} iolog_counters_t;

//  Create a log that appends to `path` and rotates it when it would grow
//  past max_bytes, keeping `keep` old files (0: the file restarts empty).
//  Starts enabled; opens the file on the first flush, not here. Returns NULL
//  if path is empty, max_bytes is 0 or keep is not 0..999.
//  Caller owns the return value.
iolog_t *iolog_new(const char *path, size_t max_bytes, int keep);

//  Flush what is buffered, close the file, free; tolerates NULL, sets
//  *self_p to NULL.
void iolog_destroy(iolog_t **self_p);

//  Switch the log on or off. Switching off flushes what is buffered and
//  closes the file; while off, iolog_request and iolog_flush do nothing.
void iolog_set_enabled(iolog_t *self, bool enabled);
bool iolog_enabled(const iolog_t *self);

//  Buffer the line of one request. Returns 0 (buffered, or the log is off),
//  or -1 if the buffer is full: the line is dropped and counted.
int iolog_request(iolog_t *self, const iolog_entry_t *e);

//  Append the buffered lines to the file, rotating as needed; writes at most
//  IOLOG_BUFFER_MAX bytes. Returns 0, or -1 (errno set) if the file could not
//  be opened, written or rotated: the buffered lines are then dropped and
//  counted, and the next flush tries again.
int iolog_flush(iolog_t *self);

//  Fill *counters.
void iolog_counters(const iolog_t *self, iolog_counters_t *counters);

//  The path given to iolog_new.
const char *iolog_path(const iolog_t *self);

//  --------------------------------------------------------------------------
//  The summary

enum { IOLOG_P50 = 0, IOLOG_P90, IOLOG_P95, IOLOG_P99, IOLOG_PMAX, IOLOG_NPCT };

//  Percentiles are nearest-rank: the p-th of n sorted values is the
//  ceil(p x n / 100)-th. The timed replies are the good replies (ok and
//  exception) and the late replies of read timeouts.
typedef struct {
    uint64_t bad_lines;           //  malformed or incomplete log lines skipped
    uint64_t requests;            //  entries
    uint64_t ok;                  //  by outcome...
    uint64_t exceptions;          //
    uint64_t timeouts;            //
    uint64_t malformed;           //
    uint64_t mismatches;          //
    uint64_t write_timeouts;      //
    uint64_t late_replies;        //  read timeouts whose reply came after the deadline
    uint64_t no_reply;            //  read timeouts that never got a reply
    uint64_t timed;               //  timed replies: the population of the percentiles below
    int64_t first_ms;             //  earliest send (wall ms), 0 if no entries
    int64_t last_ms;              //  latest send
    int64_t reply_ms[IOLOG_NPCT]; //  reply time after send
    int64_t late_ms[IOLOG_NPCT];  //  lateness: reply - deadline, > 0 late, < 0 early
    int64_t deadline_p50_ms;      //  median deadline of the timed replies
} iolog_stats_t;

typedef struct _iolog_summary_t iolog_summary_t;

//  Create an empty summary. Returns NULL on allocation failure.
//  Caller owns the return value.
iolog_summary_t *iolog_summary_new(void);

//  Destroy; tolerates NULL, sets *self_p to NULL.
void iolog_summary_destroy(iolog_summary_t **self_p);

//  Add one entry. Returns 0, or -1 on allocation failure.
int iolog_summary_add(iolog_summary_t *self, const iolog_entry_t *e);

//  Parse and add one line. Returns 0 if added, 1 if malformed (counted in
//  bad_lines, nothing else changes), -1 on allocation failure.
int iolog_summary_add_line(iolog_summary_t *self, const char *line, size_t len);

//  Add every line of a file; a last line without its '\n' is incomplete and
//  counted as bad. Returns 0, or -1 with errno set if the file cannot be
//  read (ENOENT for a rotated file that does not exist yet) or on
//  allocation failure.
int iolog_summary_add_file(iolog_summary_t *self, const char *path);

//  Fill *stats with what was added so far.
void iolog_summary_stats(iolog_summary_t *self, iolog_stats_t *stats);

//  The standard_reply_delay_ms to use, given the stats and the current
//  delay: the current one when p95 of timed replies arrive more than 10% of
//  the median deadline before the deadline, or when nothing was timed.
//  Otherwise: the delay at which 95% of replies are in time (current + p95
//  lateness), plus a margin that puts that p95 reply 10% of the new deadline
//  before it (at least 10 ms), rounded up to a multiple of 10 ms.
uint32_t iolog_recommend_delay(const iolog_stats_t *stats, uint32_t reply_delay_ms);

//  Write the summary of `channel` for an engineer into text (lines ending
//  in '\n', NUL-terminated, truncated to len): counts, the percentiles, and
//  one recommendation sentence. Returns the length the full text needs,
//  like snprintf.
size_t iolog_stats_text(const iolog_stats_t *stats, const char *channel, uint32_t reply_delay_ms,
                        char *text, size_t len);

//  All of it at once: read the files (missing ones are skipped), fill *stats
//  (if not NULL) and text (if len > 0). Returns the number of files read, or
//  -1 with errno set on allocation failure or a file that exists but cannot
//  be read.
int iolog_summarize(const char *const *paths, size_t npaths, const char *channel,
                    uint32_t reply_delay_ms, iolog_stats_t *stats, char *text, size_t len);

#endif
