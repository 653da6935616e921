/*  ajournal: the alarm journal, a durable, versioned, append-only file of
    scada.AlarmEvent records (issue 5).

    The file is a 32-byte header (magic "ALARMJNL", format version, the
    number of snapshot records, creation time, header CRC) followed by
    records framed as [u32 length][u32 CRC-32][packed AlarmEvent], little-
    endian; docs/alarm-journal.md describes every byte.

    Writer. ajournal_open creates the file or validates an existing one and
    opens it for append, cutting a torn tail left by a crash (only damage
    confined to the last record; anything else is refused, see
    ajournal_repair). ajournal_append writes one record with one write(2)
    and never waits for the disk unless the policy is AJ_SYNC_EACH;
    ajournal_sync makes everything appended so far durable. Sequence numbers
    must increase. When the records written since the file began pass
    max_bytes the file is rotated: a new file starts with a snapshot (the last
    event of every alarm, in seq order), the old one becomes path.1, older
    ones shift up to path.<keep>. The current file alone is therefore always
    enough to rebuild the state of every alarm.

    Readers. ajournal_read calls back for every complete, valid record of one
    file in order and stops at the first damaged one with a message that
    names the file, the record, its offset and what is wrong, keeping every
    record before it. ajournal_history returns the newest N events across the
    rotated files; ajournal_state_load the last event of every alarm.

    A journal has one writer (the file is locked with flock); readers may run
    at any time and may then see the record being written as truncated.
*/
#ifndef AJOURNAL_H_INCLUDED
#define AJOURNAL_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "scada.pb-c.h"

#define AJ_VERSION           1                  //  format version this code writes and reads
#define AJ_HEADER_SIZE       32                 //  bytes before the first record
#define AJ_FRAME_SIZE        8                  //  length + CRC before each payload
#define AJ_RECORD_MAX        65536              //  largest payload (packed AlarmEvent)
#define AJ_MAX_BYTES_DEFAULT (64 * 1024 * 1024) //  rotate after this many bytes of new records
#define AJ_MAX_BYTES_MIN     4096               //  smallest rotation size accepted
#define AJ_KEEP_DEFAULT      4                  //  rotated files kept: path.1 .. path.4
#define AJ_KEEP_MAX          99                 //  most rotated files kept

//  When the writer waits for the disk. Whatever the policy, every append is
//  handed to the kernel at once, so a crash of the process loses nothing
//  that ajournal_append accepted; the policy decides what a power failure or
//  a kernel crash can lose.
typedef enum {
    AJ_SYNC_EACH = 0, //  fdatasync in every append: an accepted event is on disk
    AJ_SYNC_BATCH,    //  group commit: the caller calls ajournal_sync once per event-loop
                      //  turn, before confirming anything to a user; a power failure loses
                      //  at most the events appended since the last successful sync
    AJ_SYNC_NONE,     //  never fdatasync (tests, benchmarks): a power failure loses what the
                      //  kernel had not written back yet (typically the last 30 s)
} ajournal_sync_t;

//  How a read ended.
typedef enum {
    AJ_OK = 0,        //  every byte of the file read as valid records (or the callback stopped)
    AJ_ERR_IO,        //  the file could not be opened or read
    AJ_ERR_HEADER,    //  not an alarm journal: shorter than the header, wrong magic, header CRC
    AJ_ERR_VERSION,   //  a format version this code does not know
    AJ_ERR_TRUNCATED, //  a record cut short by the end of the file
    AJ_ERR_LENGTH,    //  a record length of 0 or over AJ_RECORD_MAX
    AJ_ERR_CRC,       //  a record whose CRC does not match
    AJ_ERR_DECODE,    //  a record with a correct CRC that is not an AlarmEvent
    AJ_ERR_SEQ,       //  a record whose seq is not greater than the one before
} ajournal_status_t;

//  What a read of one file found. Counts are of complete, valid records.
typedef struct {
    ajournal_status_t status; //  AJ_OK or why reading stopped
    bool stopped;             //  the callback asked to stop (status AJ_OK)
    bool tail;                //  the damage is confined to the last record: nothing but zero
                              //  bytes follows it, as a crash leaves a file (a writer cuts it)
    uint32_t version;         //  format version of the header (0 if none was read)
    uint32_t snapshot;        //  records the header declares a snapshot
    int64_t created_ms;       //  creation time in the header (wall ms)
    uint64_t file_bytes;      //  size of the file when the read began
    uint64_t records;         //  records delivered
    uint64_t bytes_kept;      //  header + records delivered: the valid prefix of the file
    uint64_t first_seq;       //  seq of the first record delivered (0 if none)
    uint64_t last_seq;        //  seq of the last record delivered (0 if none)
    uint64_t bad_record;      //  1-based number of the damaged record (0 if none)
    uint64_t bad_offset;      //  its byte offset in the file
} ajournal_stats_t;

//  Where a record delivered to a callback is in its file.
typedef struct {
    uint64_t index;         //  0-based record number
    uint64_t offset;        //  byte offset of its frame
    bool snapshot;          //  one of the snapshot records at the head of the file
    const uint8_t *payload; //  the packed AlarmEvent, valid during the callback only
    uint32_t length;        //  its length
} ajournal_rec_t;

//  Called for each record in file order. ev and rec are valid during the
//  call only (copy what you keep). Return 0 to go on, anything else to stop.
typedef int(ajournal_fn)(const Scada__AlarmEvent *ev, const ajournal_rec_t *rec, void *arg);

//  --------------------------------------------------------------------------
//  Reading

//  Read the journal file `path` (one file, not its rotated ones): call fn
//  for every complete, valid record in order, fill *stats (if not NULL).
//  Returns 0 if the whole file was read (or fn stopped it; an empty file is
//  an empty journal), 1 if reading stopped at a damaged record (the records
//  before it were delivered; err says which record, where, what is wrong and
//  how many records were kept), -1 if the file could not be read at all
//  (cannot open, not a journal, unknown version; err says why, naming the
//  file, and errno is set). err (if errlen > 0) is "" on 0.
int ajournal_read(const char *path, ajournal_fn *fn, void *arg, ajournal_stats_t *stats, char *err,
                  size_t errlen);

//  The newest n events (at most) of the journal `path` and its rotated files
//  path.1, path.2, ..., oldest first, newest last, each event once (a
//  snapshot record stands in for its original only when the file holding
//  the original is gone). Reads the current file whole, and older files
//  only while fewer than n events were found: the cost is one sequential
//  read and decode of those files, O(n) memory. On return *events holds
//  *count events the caller owns (free with ajournal_events_free).
//  Returns 0 (err "" or a note on damaged files whose valid records were
//  used), or -1 if the current file cannot be read (err says why).
int ajournal_history(const char *path, size_t n, Scada__AlarmEvent ***events, size_t *count,
                     char *err, size_t errlen);

//  Free what ajournal_history returned; tolerates NULL, sets *events_p to NULL.
void ajournal_events_free(Scada__AlarmEvent ***events_p, size_t count);

//  --------------------------------------------------------------------------
//  The last event of every alarm: what the alarm service rebuilds its state
//  from. A hash of alarm id -> last event.

typedef struct _ajournal_state_t ajournal_state_t;

//  Read the journal file `path` (the current file holds every alarm's last
//  event, see rotation) and keep the last event of every alarm. Returns the
//  table (err "" or, when reading stopped at a damaged record, that message:
//  the table then holds what came before it), or NULL if the file cannot be
//  read at all (err says why). *stats (if not NULL) as ajournal_read.
//  Caller owns the return value.
ajournal_state_t *ajournal_state_load(const char *path, ajournal_stats_t *stats, char *err,
                                      size_t errlen);

//  Free; tolerates NULL, sets *self_p to NULL.
void ajournal_state_destroy(ajournal_state_t **self_p);

//  Number of alarms.
size_t ajournal_state_size(const ajournal_state_t *self);

//  The last event of `alarm`, or NULL if the journal never named it.
const Scada__AlarmEvent *ajournal_state_get(const ajournal_state_t *self, const char *alarm);

//  The i-th alarm's last event (i < size), in increasing seq order.
const Scada__AlarmEvent *ajournal_state_at(ajournal_state_t *self, size_t i);

//  The highest seq in the table (0 if empty).
uint64_t ajournal_state_last_seq(const ajournal_state_t *self);

//  --------------------------------------------------------------------------
//  Writing

typedef struct _ajournal_t ajournal_t;

typedef struct {
    uint64_t appends;         //  records appended since open
    uint64_t bytes;           //  bytes written since open (records, headers, snapshots)
    uint64_t syncs;           //  fdatasync calls that succeeded
    uint64_t write_errors;    //  appends refused because the write failed (nothing left behind)
    uint64_t rotations;       //  rotations done
    uint64_t rotation_errors; //  rotations that failed (retried later; the journal goes on)
    uint64_t cut_bytes;       //  bytes of a torn tail cut at open
    uint64_t size;            //  bytes in the current file
    uint64_t records;         //  records in the current file, snapshot included
    uint64_t last_seq;        //  seq of the last record (0 if none)
    size_t alarms;            //  alarms in the state table
    bool dirty;               //  written since the last sync
    bool broken;              //  an fdatasync failed: close and open the journal again
} ajournal_counters_t;

//  Open the journal `path` for append, creating it (and its header) if it
//  does not exist. An existing file is read whole: its header must be valid
//  and of version AJ_VERSION; damage confined to its last record (a torn
//  write) is cut off and reported in err; any other damage is refused (see
//  ajournal_repair). Rotation after AJ_MAX_BYTES_DEFAULT keeping
//  AJ_KEEP_DEFAULT files (see ajournal_set_rotation). Returns the journal
//  (err "" or the note of what was cut), or NULL with errno set and err
//  saying why, naming the file. Caller owns the return value.
ajournal_t *ajournal_open(const char *path, ajournal_sync_t policy, char *err, size_t errlen);

//  Sync (unless AJ_SYNC_NONE), close, free; tolerates NULL, sets *self_p to
//  NULL. Call ajournal_sync first to learn whether the last sync worked.
void ajournal_close(ajournal_t **self_p);

//  Rotate when the records written since the current file began (its
//  snapshot not counted) reach max_bytes, keeping `keep` old files
//  (0: none, the journal is then compacted into its snapshot). Returns 0, or
//  -1 (EINVAL) if max_bytes < AJ_MAX_BYTES_MIN or keep is not 0..AJ_KEEP_MAX.
int ajournal_set_rotation(ajournal_t *self, uint64_t max_bytes, int keep);

//  Append one event: one write(2), then fdatasync under AJ_SYNC_EACH, then a
//  rotation if the file is full. ev->seq must be greater than every seq in
//  the journal and ev->alarm set. Returns 0, or -1 with errno set and
//  ajournal_error saying why: EINVAL (seq not increasing, no alarm id),
//  EMSGSIZE (packed event over AJ_RECORD_MAX), ENOMEM, the write's error
//  (ENOSPC, EIO...: nothing of the record stays in the file, try again
//  later), or EIO after a failed fdatasync (AJ_SYNC_EACH: the record was
//  written but may not be durable; the journal is broken). A failed rotation
//  does not fail the append: it is counted and tried again later.
int ajournal_append(ajournal_t *self, const Scada__AlarmEvent *ev);

//  Make every append so far durable: fdatasync if anything was written since
//  the last sync (nothing under AJ_SYNC_NONE). Returns 0, or -1 with errno
//  set. After a failed fdatasync the kernel may have dropped the data and a
//  later fdatasync would not say so: the journal is then broken, every
//  append and sync fails with EIO, and the caller must close it and open it
//  again (which reads back what the disk holds).
int ajournal_sync(ajournal_t *self);

//  The seq of the last record in the journal (0 if none): the service
//  numbers its next event from here.
uint64_t ajournal_last_seq(const ajournal_t *self);

//  The writer's own table of the last event of every alarm, kept up to date
//  by every append. Valid until the next append or close; do not destroy.
ajournal_state_t *ajournal_state(ajournal_t *self);

//  Text of the last error (or note) of this journal, "" if none.
const char *ajournal_error(const ajournal_t *self);

//  Fill *counters.
void ajournal_counters(const ajournal_t *self, ajournal_counters_t *counters);

//  The path given to ajournal_open.
const char *ajournal_path(const ajournal_t *self);

//  --------------------------------------------------------------------------
//  Repair

//  For a journal ajournal_open refuses because of damage that is not a torn
//  tail: move the file aside to path.damaged (replacing an older one) and
//  write a new path holding its header and every valid record before the
//  damage, so no record is guessed at and nothing is lost from view. Not to
//  be called while a writer has the journal open. Returns 1 if repaired
//  (err says what was kept and where the damaged file is), 0 if there was
//  nothing to repair (a clean journal, or a torn write that ajournal_open
//  cuts), -1 if the file is not a journal it can repair or on failure (err
//  says why; nothing was changed, or, if the last rename failed, path is
//  missing and path.tmp complete, which ajournal_open then takes as path).
int ajournal_repair(const char *path, char *err, size_t errlen);

#endif
