/*  Unit tests of ajournal: the format byte by byte (with a CRC-32 of the
    test's own), round trips, reopening, a truncated tail cut at every byte
    of the last record, damage in the middle (CRC, length, decode, seq)
    that stops reading and is refused for writing until repaired, headers
    that are not ours or of another version, empty files, rotation and
    compaction keeping the last event of every alarm, history across
    rotated files, an interrupted rotation, write errors (/dev/full, a file
    size limit hit in the middle of a record), the sync policies, and the
    writer's lock. Files live in a mkdtemp directory that each test removes.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "ajournal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define T0 1795317255123LL //  2026-11-22T03:14:15.123Z

//  --------------------------------------------------------------------------
//  Helpers

typedef struct {
    char dir[64];
    char path[128];
} s_tmp_t;

static void s_tmp_init(s_tmp_t *t)
{
    strcpy(t->dir, "/tmp/test_ajournal.XXXXXX");
    assert_non_null(mkdtemp(t->dir));
    snprintf(t->path, sizeof t->path, "%s/alarms.journal", t->dir);
}

static void s_tmp_cleanup(s_tmp_t *t)
{
    DIR *d = opendir(t->dir);
    assert_non_null(d);
    struct dirent *de;
    char p[512];
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
            snprintf(p, sizeof p, "%s/%s", t->dir, de->d_name);
            assert_int_equal(unlink(p), 0);
        }
    closedir(d);
    assert_int_equal(rmdir(t->dir), 0);
}

static long s_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

typedef struct {
    uint8_t *data;
    size_t len;
} s_bytes_t;

static s_bytes_t s_slurp(const char *path)
{
    s_bytes_t b = {NULL, 0};
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    b.len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    b.data = malloc(b.len ? b.len : 1);
    assert_int_equal(fread(b.data, 1, b.len, f), b.len);
    fclose(f);
    return b;
}

static void s_spit(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (len)
        assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
}

//  CRC-32 bit by bit (zlib's), independent of the module's table version.
static uint32_t s_crc(uint32_t crc, const uint8_t *p, size_t n)
{
    crc = ~crc;
    while (n--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++)
            crc = crc & 1 ? 0xEDB88320u ^ (crc >> 1) : crc >> 1;
    }
    return ~crc;
}

static uint32_t s_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void s_put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

//  The alarms the tests raise: a small fixed set so the state table is
//  exercised with replacements.
static const char *const s_alarms[] = {"PLC1.LEVEL.HI", "PLC1.LEVEL.LO", "PLC2.TEMP.HI",
                                       "COMM.io1.plc1", "COMM.io1.plc2", "IOTIMEOUT.io1.line2",
                                       "PLC3.PUMP.FAIL"};
#define S_NALARMS (sizeof s_alarms / sizeof s_alarms[0])

//  Event number `seq`, for alarm s_alarms[seq % S_NALARMS] unless alarm is given.
static Scada__AlarmEvent s_event(uint64_t seq, const char *alarm)
{
    Scada__AlarmEvent ev = SCADA__ALARM_EVENT__INIT;
    ev.seq = seq;
    ev.ts_ms = T0 + (int64_t)seq * 10;
    ev.alarm = (char *)(alarm ? alarm : s_alarms[seq % S_NALARMS]);
    ev.kind = (Scada__AlarmEvent__Kind)(seq % 7);
    ev.state = (Scada__AlarmState)(seq % 4);
    ev.has_priority = 1;
    ev.priority = (uint32_t)(1 + seq % 5);
    ev.area = "north";
    ev.message = seq % 3 ? "Tank level high" : "Communication lost";
    ev.has_value = seq % 2;
    ev.value = (double)seq / 4;
    ev.user = seq % 7 == 2 ? "operator1" : NULL;
    ev.source = "PLC1.LEVEL";
    return ev;
}

static void s_assert_event(const Scada__AlarmEvent *got, uint64_t seq, const char *alarm)
{
    Scada__AlarmEvent want = s_event(seq, alarm);
    assert_non_null(got);
    assert_int_equal(got->seq, want.seq);
    assert_int_equal(got->ts_ms, want.ts_ms);
    assert_string_equal(got->alarm, want.alarm);
    assert_int_equal(got->kind, want.kind);
    assert_int_equal(got->state, want.state);
    assert_int_equal(got->priority, want.priority);
    assert_string_equal(got->area, want.area);
    assert_string_equal(got->message, want.message);
    assert_int_equal(got->has_value, want.has_value);
    if (want.has_value)
        assert_true(got->value == want.value);
    if (want.user)
        assert_string_equal(got->user, want.user);
    else
        assert_null(got->user);
}

//  A journal at path with events 1..n (AJ_SYNC_NONE).
static void s_write(const char *path, uint64_t first, uint64_t n)
{
    char err[1024];
    ajournal_t *j = ajournal_open(path, AJ_SYNC_NONE, err, sizeof err);
    assert_non_null(j);
    for (uint64_t s = first; s < first + n; s++) {
        Scada__AlarmEvent ev = s_event(s, NULL);
        assert_int_equal(ajournal_append(j, &ev), 0);
    }
    ajournal_close(&j);
    assert_null(j);
}

//  What a read delivered.
#define S_MAX_RECS 20000
typedef struct {
    size_t n;
    uint64_t seq[S_MAX_RECS];
    uint64_t offset[S_MAX_RECS];
    uint32_t length[S_MAX_RECS];
    bool snapshot[S_MAX_RECS];
    uint64_t stop_after; //  0: never stop
    bool check;          //  compare each event with s_event(seq)
} s_seen_t;

static int s_collect(const Scada__AlarmEvent *ev, const ajournal_rec_t *rec, void *arg)
{
    s_seen_t *seen = arg;
    assert_true(seen->n < S_MAX_RECS);
    assert_int_equal(rec->index, seen->n);
    if (seen->check)
        s_assert_event(ev, ev->seq, strcmp(ev->alarm, "ONCE.RAISED") ? NULL : ev->alarm);
    seen->seq[seen->n] = ev->seq;
    seen->offset[seen->n] = rec->offset;
    seen->length[seen->n] = rec->length;
    seen->snapshot[seen->n] = rec->snapshot;
    seen->n++;
    return seen->stop_after && seen->n == seen->stop_after;
}

static s_seen_t *s_read(const char *path, int want_rc, ajournal_stats_t *st, char *err,
                        size_t errlen)
{
    s_seen_t *seen = calloc(1, sizeof *seen);
    seen->check = true;
    int rc = ajournal_read(path, s_collect, seen, st, err, errlen);
    if (rc != want_rc)
        fprintf(stderr, "ajournal_read: %d: %s\n", rc, err);
    assert_int_equal(rc, want_rc);
    assert_int_equal(st->records, seen->n);
    return seen;
}

static void s_assert_contains(const char *text, const char *part)
{
    if (!strstr(text, part))
        fail_msg("\"%s\" does not contain \"%s\"", text, part);
}

//  --------------------------------------------------------------------------
//  Format

static void test_format_byte_by_byte(void **state)
{
    (void)state;
    //  The test's CRC is the standard one.
    assert_int_equal(s_crc(0, (const uint8_t *)"123456789", 9), 0xCBF43926u);
    s_tmp_t t;
    s_tmp_init(&t);
    s_write(t.path, 1, 2);
    s_bytes_t b = s_slurp(t.path);
    assert_true(b.len > AJ_HEADER_SIZE);
    //  Header: magic, version, snapshot count, creation time, reserved, CRC.
    assert_memory_equal(b.data, "ALARMJNL", 8);
    assert_int_equal(s_le32(b.data + 8), 1);
    assert_int_equal(s_le32(b.data + 12), 0);
    uint64_t created = s_le32(b.data + 16) | (uint64_t)s_le32(b.data + 20) << 32;
    assert_true(created > (uint64_t)T0 - 366LL * 86400000 * 2); //  a wall time in ms
    assert_int_equal(s_le32(b.data + 24), 0);
    assert_int_equal(s_le32(b.data + 28), s_crc(0, b.data, 28));
    //  Records: [length][CRC of the length bytes and the payload][packed AlarmEvent].
    size_t off = AJ_HEADER_SIZE;
    for (uint64_t seq = 1; seq <= 2; seq++) {
        uint32_t len = s_le32(b.data + off);
        assert_true(off + 8 + len <= b.len);
        uint32_t crc = s_crc(s_crc(0, b.data + off, 4), b.data + off + 8, len);
        assert_int_equal(s_le32(b.data + off + 4), crc);
        Scada__AlarmEvent *ev = scada__alarm_event__unpack(NULL, len, b.data + off + 8);
        s_assert_event(ev, seq, NULL);
        Scada__AlarmEvent want = s_event(seq, NULL);
        assert_int_equal(len, scada__alarm_event__get_packed_size(&want));
        scada__alarm_event__free_unpacked(ev, NULL);
        off += 8 + len;
    }
    assert_int_equal(off, b.len);
    free(b.data);
    s_tmp_cleanup(&t);
}

static void test_round_trip_many(void **state)
{
    (void)state;
    s_tmp_t t;
    s_tmp_init(&t);
    s_write(t.path, 1, 5000);
    ajournal_stats_t st;
    char err[1024];
    s_seen_t *seen = s_read(t.path, 0, &st, err, sizeof err);
    assert_string_equal(err, "");
    assert_int_equal(st.status, AJ_OK);
    assert_int_equal(st.version, AJ_VERSION);
    assert_int_equal(st.records, 5000);
    assert_int_equal(st.first_seq, 1);
    assert_int_equal(st.last_seq, 5000);
    assert_int_equal(st.bytes_kept, (uint64_t)s_size(t.path));
    assert_int_equal(st.file_bytes, st.bytes_kept);
    assert_false(st.tail);
    for (size_t i = 0; i < seen->n; i++) {
        assert_int_equal(seen->seq[i], i + 1);
        assert_false(seen->snapshot[i]);
    }
    free(seen);
    //  A callback can stop the read.
    seen = calloc(1, sizeof *seen);
    seen->stop_after = 7;
    assert_int_equal(ajournal_read(t.path, s_collect, seen, &st, err, sizeof err), 0);
    assert_int_equal(seen->n, 7);
    assert_true(st.stopped);
    assert_int_equal(st.records, 7);
    assert_int_equal(st.last_seq, 7);
    free(seen);
    //  A NULL callback only counts.
    assert_int_equal(ajournal_read(t.path, NULL, NULL, &st, err, sizeof err), 0);
    assert_int_equal(st.records, 5000);
    s_tmp_cleanup(&t);
}

static void test_reopen_continues(void **state)
{
    (void)state;
    s_tmp_t t;
    s_tmp_init(&t);
    s_write(t.path, 1, 10);
    char err[1024];
    ajournal_t *j = ajournal_open(t.path, AJ_SYNC_BATCH, err, sizeof err);
    assert_non_null(j);
    assert_string_equal(err, "");
    assert_int_equal(ajournal_last_seq(j), 10);
    ajournal_state_t *s = ajournal_state(j);
    assert_int_equal(ajournal_state_size(s), S_NALARMS);
    assert_int_equal(ajournal_state_get(s, s_alarms[10 % S_NALARMS])->seq, 10);
    //  Seq must go on increasing; a refused event leaves nothing behind.
    long size = s_size(t.path);
    Scada__AlarmEvent ev = s_event(10, NULL);
    errno = 0;
    assert_int_equal(ajournal_append(j, &ev), -1);
    assert_int_equal(errno, EINVAL);
    s_assert_contains(ajournal_error(j), "seq 10");
    s_assert_contains(ajournal_error(j), "not after the last seq 10");
    ev.seq = 3;
    assert_int_equal(ajournal_append(j, &ev), -1);
    ev.alarm = NULL;
    ev.seq = 11;
    assert_int_equal(ajournal_append(j, &ev), -1);
    assert_int_equal(errno, EINVAL);
    assert_int_equal(s_size(t.path), size);
    for (uint64_t q = 11; q <= 20; q++) {
        ev = s_event(q, NULL);
        assert_int_equal(ajournal_append(j, &ev), 0);
    }
    assert_int_equal(ajournal_sync(j), 0);
    ajournal_counters_t c;
    ajournal_counters(j, &c);
    assert_int_equal(c.appends, 10);
    assert_int_equal(c.records, 20);
    assert_int_equal(c.last_seq, 20);
    assert_int_equal(c.syncs, 1);
    assert_false(c.dirty);
    assert_string_equal(ajournal_path(j), t.path);
    ajournal_close(&j);
    ajournal_close(&j); //  tolerates NULL
    ajournal_stats_t st;
    s_seen_t *seen = s_read(t.path, 0, &st, err, sizeof err);
    assert_int_equal(seen->n, 20);
    for (size_t i = 0; i < 20; i++)
        assert_int_equal(seen->seq[i], i + 1);
    free(seen);
    s_tmp_cleanup(&t);
}

static void test_large_event_refused(void **state)
{
    (void)state;
    s_tmp_t t;
    s_tmp_init(&t);
    char err[1024];
    ajournal_t *j = ajournal_open(t.path, AJ_SYNC_NONE, err, sizeof err);
    char *big = malloc(AJ_RECORD_MAX + 1);
    memset(big, 'x', AJ_RECORD_MAX);
    big[AJ_RECORD_MAX] = '\0';
    Scada__AlarmEvent ev = s_event(1, NULL);
    ev.comment = big;
    assert_int_equal(ajournal_append(j, &ev), -1);
    assert_int_equal(errno, EMSGSIZE);
    s_assert_contains(ajournal_error(j), "record limit");
    //  Just under the limit is fine.
    ev.comment = big + (scada__alarm_event__get_packed_size(&ev) - AJ_RECORD_MAX);
    assert_true(scada__alarm_event__get_packed_size(&ev) <= AJ_RECORD_MAX);
    assert_int_equal(ajournal_append(j, &ev), 0);
    ajournal_close(&j);
    ajournal_stats_t st;
    assert_int_equal(ajournal_read(t.path, NULL, NULL, &st, err, sizeof err), 0);
    assert_int_equal(st.records, 1);
    free(big);
    s_tmp_cleanup(&t);
}

//  --------------------------------------------------------------------------
//  Damage

static void test_truncated_tail_at_every_offset(void **state)
{
    (void)state;
    s_tmp_t t;
    s_tmp_init(&t);
    s_write(t.path, 1, 20);
    s_bytes_t whole = s_slurp(t.path);
    ajournal_stats_t st;
    char err[1024], want[512];
    s_seen_t *seen = s_read(t.path, 0, &st, err, sizeof err);
    size_t last = seen->offset[19], end = whole.len;
    uint32_t len = seen->length[19];
    assert_int_equal(last + 8 + len, end);
    free(seen);
    for (size_t cut = last; cut < end; cut++) {
        s_spit(t.path, whole.data, cut);
        seen = s_read(t.path, cut == last ? 0 : 1, &st, err, sizeof err);
        assert_int_equal(st.records, 19);
        assert_int_equal(st.last_seq, 19);
        assert_int_equal(st.bytes_kept, last);
        assert_int_equal(seen->seq[18], 19);
        free(seen);
        if (cut == last) {
            assert_int_equal(st.status, AJ_OK);
            continue;
        }
        assert_int_equal(st.status, AJ_ERR_TRUNCATED);
        assert_true(st.tail);
        assert_int_equal(st.bad_record, 20);
        assert_int_equal(st.bad_offset, last);
        if (cut - last >= 8)
            snprintf(want, sizeof want,
                     "%s: record 20 at byte %zu is truncated (%zu of %zu bytes): ignored; 19 "
                     "records kept",
                     t.path, last, cut - last, (size_t)(8 + len));
        else
            snprintf(want, sizeof want,
                     "%s: record 20 at byte %zu is truncated (%zu bytes, less than its 8-byte "
                     "frame): ignored; 19 records kept",
                     t.path, last, cut - last);
        assert_string_equal(err, want);
        //  The writer cuts the torn record, says so, and appends after record 19.
        ajournal_t *j = ajournal_open(t.path, AJ_SYNC_NONE, err, sizeof err);
        assert_non_null(j);
        s_assert_contains(err, want);
        s_assert_contains(err, "bytes cut from the end of the file");
        assert_string_equal(ajournal_error(j), err);
        ajournal_counters_t c;
        ajournal_counters(j, &c);
        assert_int_equal(c.cut_bytes, cut - last);
        assert_int_equal(ajournal_last_seq(j), 19);
        Scada__AlarmEvent ev = s_event(20, NULL);
        assert_int_equal(ajournal_append(j, &ev), 0);
        ajournal_close(&j);
        s_bytes_t again = s_slurp(t.path);
        //  The same bytes as the intact file, but for the header's creation time.
        assert_int_equal(again.len, whole.len);
        assert_memory_equal(again.data + AJ_HEADER_SIZE, whole.data + AJ_HEADER_SIZE,
                            whole.len - AJ_HEADER_SIZE);
        free(again.data);
    }
    free(whole.data);
    s_tmp_cleanup(&t);
}

static void test_torn_header_of_last_record_zero_filled(void **state)
{
    (void)state;
    //  A crash can leave the file longer than what reached the disk, the
    //  rest zeros: the zeros are a torn write too.
    s_tmp_t t;
    s_tmp_init(&t);
    s_write(t.path, 1, 5);
    s_bytes_t b = s_slurp(t.path);
    uint8_t *z = calloc(1, b.len + 4096);
    memcpy(z, b.data, b.len);
    s_spit(t.path, z, b.len + 4096);
    ajournal_stats_t st;
    char err[1024];
    free(s_read(t.path, 1, &st, err, sizeof err));
    assert_int_equal(st.status, AJ_ERR_LENGTH);
    assert_true(st.tail);
    assert_int_equal(st.records, 5);
    s_assert_contains(err, "has an impossible length 0");
    s_assert_contains(err, ": ignored; 5 records kept");
    //  The last record's payload zeroed (its length and CRC reached the
    //  disk, its payload did not), and more zeros after it.
    s_spit(t.path, b.data, b.len);
    s_seen_t *seen = s_read(t.path, 0, &st, err, sizeof err);
    size_t last = seen->offset[4];
    free(seen);
    memset(z + last + 8, 0, b.len - last - 8);
    s_spit(t.path, z, b.len + 100);
    free(s_read(t.path, 1, &st, err, sizeof err));
    assert_int_equal(st.status, AJ_ERR_CRC);
    assert_true(st.tail);
    assert_int_equal(st.records, 4);
    s_assert_contains(err, "record 5 at byte");
    s_assert_contains(err, "fails its CRC check");
    s_assert_contains(err, ": ignored; 4 records kept");
    ajournal_t *j = ajournal_open(t.path, AJ_SYNC_EACH, err, sizeof err);
    assert_non_null(j);
    s_assert_contains(err, "bytes cut");
    ajournal_close(&j);
    assert_int_equal(s_size(t.path), (long)last);
    free(z);
    free(b.data);
    s_tmp_cleanup(&t);
}

//  Flip one byte of a 20-record journal and check what a read, an open and
//  a repair make of it. Returns the reader's status.
static ajournal_status_t s_flip_and_check(s_tmp_t *t, size_t at, uint8_t mask, uint64_t records,
                                          const char *part)
{
    s_write(t->path, 1, 20);
    s_bytes_t b = s_slurp(t->path);
    b.data[at] ^= mask;
    s_spit(t->path, b.data, b.len);
    ajournal_stats_t st;
    char err[1024], want[256];
    s_seen_t *seen = s_read(t->path, 1, &st, err, sizeof err);
    assert_int_equal(seen->n, records);
    for (size_t i = 0; i < seen->n; i++)
        assert_int_equal(seen->seq[i], i + 1);
    free(seen);
    assert_false(st.tail);
    assert_int_equal(st.bad_record, records + 1);
    snprintf(want, sizeof want, "%s: record %llu at byte %llu ", t->path,
             (unsigned long long)records + 1, (unsigned long long)st.bad_offset);
    s_assert_contains(err, want);
    s_assert_contains(err, part);
    snprintf(want, sizeof want, "reading stops there; %llu records kept (%llu bytes)",
             (unsigned long long)records, (unsigned long long)st.bytes_kept);
    s_assert_contains(err, want);
    //  Not a torn write: the writer refuses and leaves the file alone.
    char err2[1024];
    errno = 0;
    assert_null(ajournal_open(t->path, AJ_SYNC_BATCH, err2, sizeof err2));
    assert_int_equal(errno, EILSEQ);
    s_assert_contains(err2, err);
    s_assert_contains(err2, "not opened for writing");
    s_assert_contains(err2, "ajournal_repair");
    s_bytes_t same = s_slurp(t->path);
    assert_int_equal(same.len, b.len);
    assert_memory_equal(same.data, b.data, b.len);
    free(same.data);
    //  Repair keeps the records before the damage and the damaged file.
    assert_int_equal(ajournal_repair(t->path, err2, sizeof err2), 1);
    s_assert_contains(err2, "repaired");
    char damaged[256];
    snprintf(damaged, sizeof damaged, "%s.damaged", t->path);
    s_assert_contains(err2, damaged);
    same = s_slurp(damaged);
    assert_int_equal(same.len, b.len);
    assert_memory_equal(same.data, b.data, b.len);
    free(same.data);
    ajournal_status_t status = st.status;
    free(s_read(t->path, 0, &st, err, sizeof err));
    assert_int_equal(st.records, records);
    assert_int_equal(ajournal_repair(t->path, err2, sizeof err2), 0);
    s_assert_contains(err2, "nothing to repair");
    ajournal_t *j = ajournal_open(t->path, AJ_SYNC_NONE, err2, sizeof err2);
    assert_non_null(j);
    assert_int_equal(ajournal_last_seq(j), records);
    ajournal_close(&j);
    assert_int_equal(unlink(t->path), 0);
    assert_int_equal(unlink(damaged), 0);
    free(b.data);
    return status;
}

static void test_damage_in_the_middle_stops_there(void **state)
{
    (void)state;
    s_tmp_t t;
    s_tmp_init(&t);
    s_write(t.path, 1, 20);
    ajournal_stats_t st;
    char err[1024];
    s_seen_t *seen = s_read(t.path, 0, &st, err, sizeof err);
    assert_int_equal(unlink(t.path), 0);
    size_t rec10 = seen->offset[9], len10 = seen->length[9];
    //  A byte of the payload: CRC mismatch at record 10.
    assert_int_equal(s_flip_and_check(&t, rec10 + 8 + len10 / 2, 0x10, 9, "fails its CRC check"),
                     AJ_ERR_CRC);
    //  A byte of the CRC itself.
    assert_int_equal(s_flip_and_check(&t, rec10 + 5, 0x01, 9, "fails its CRC check"), AJ_ERR_CRC);
    //  The length's high byte: an impossible length.
    assert_int_equal(s_flip_and_check(&t, rec10 + 3, 0x40, 9, "has an impossible length"),
                     AJ_ERR_LENGTH);
    //  The length's low byte: the frame ends elsewhere, the CRC cannot match.
    assert_int_equal(s_flip_and_check(&t, rec10, 0x01, 9, "fails its CRC check"), AJ_ERR_CRC);
    //  The first record.
    assert_int_equal(s_flip_and_check(&t, seen->offset[0] + 9, 0x80, 0, "fails its CRC check"),
                     AJ_ERR_CRC);
    free(seen);
    s_tmp_cleanup(&t);
}

//  Append a frame with a correct CRC around `payload`.
static void s_append_frame(const char *path, const uint8_t *payload, uint32_t len)
{
    s_bytes_t b = s_slurp(path);
    uint8_t *d = malloc(b.len + 8 + len);
    memcpy(d, b.data, b.len);
    s_put_le32(d + b.len, len);
    memcpy(d + b.len + 8, payload, len);
    s_put_le32(d + b.len + 4, s_crc(s_crc(0, d + b.len, 4), payload, len));
    s_spit(path, d, b.len + 8 + len);
    free(d);
    free(b.data);
}

static void test_valid_crc_but_bad_record(void **state)
{
    (void)state;
    s_tmp_t t;
    s_tmp_init(&t);
    ajournal_stats_t st;
    char err[1024];
    //  Not an AlarmEvent (a field with a wrong wire type), as the last record.
    s_write(t.path, 1, 3);
    static const uint8_t junk[] = {0x0d, 0xff, 0xff};
    s_append_frame(t.path, junk, sizeof junk);
    free(s_read(t.path, 1, &st, err, sizeof err));
    assert_int_equal(st.status, AJ_ERR_DECODE);
    assert_false(st.tail); //  a correct CRC is not a torn write
    assert_int_equal(st.records, 3);
    s_assert_contains(err, "record 4 at byte");
    s_assert_contains(err, "is not a valid AlarmEvent (3 bytes, CRC correct)");
    assert_null(ajournal_open(t.path, AJ_SYNC_NONE, err, sizeof err));
    assert_int_equal(unlink(t.path), 0);
    //  A seq that goes back, followed by a good record.
    s_write(t.path, 1, 3);
    uint8_t buf[512];
    Scada__AlarmEvent ev = s_event(2, NULL);
    uint32_t len = (uint32_t)scada__alarm_event__pack(&ev, buf);
    s_append_frame(t.path, buf, len);
    ev = s_event(4, NULL);
    len = (uint32_t)scada__alarm_event__pack(&ev, buf);
    s_append_frame(t.path, buf, len);
    free(s_read(t.path, 1, &st, err, sizeof err));
    assert_int_equal(st.status, AJ_ERR_SEQ);
    assert_int_equal(st.records, 3);
    assert_int_equal(st.last_seq, 3);
    s_assert_contains(err, "record 4 at byte");
    s_assert_contains(err, "has seq 2, not after the seq 3 before it");
    s_assert_contains(err, "reading stops there; 3 records kept");
    assert_null(ajournal_open(t.path, AJ_SYNC_NONE, err, sizeof err));
    assert_int_equal(errno, EILSEQ);
    s_tmp_cleanup(&t);
}

//  --------------------------------------------------------------------------
//  Headers and empty files

static void test_headers_refused(void **state)
{
    (void)state;
    s_tmp_t t;
    s_tmp_init(&t);
    ajournal_stats_t st;
    char err[1024], want[512];
    s_write(t.path, 1, 3);
    s_bytes_t b = s_slurp(t.path);
    //  Wrong magic.
    memcpy(b.data, "SQLite f", 8);
    s_spit(t.path, b.data, b.len);
    errno = 0;
    assert_int_equal(ajournal_read(t.path, NULL, NULL, &st, err, sizeof err), -1);
    assert_int_equal(errno, EINVAL);
    assert_int_equal(st.status, AJ_ERR_HEADER);
    snprintf(want, sizeof want,
             "%s: not an alarm journal (it starts with \"SQLite f\", not \"ALARMJNL\")", t.path);
    assert_string_equal(err, want);
    assert_null(ajournal_open(t.path, AJ_SYNC_NONE, err, sizeof err));
    assert_string_equal(err, want);
    assert_null(ajournal_state_load(t.path, &st, err, sizeof err));
    assert_int_equal(ajournal_repair(t.path, err, sizeof err), -1);
    s_assert_contains(err, "not repaired");
    //  A future version (header CRC made right, as a newer writer would).
    memcpy(b.data, "ALARMJNL", 8);
    s_put_le32(b.data + 8, 2);
    s_put_le32(b.data + 28, s_crc(0, b.data, 28));
    s_spit(t.path, b.data, b.len);
    errno = 0;
    assert_int_equal(ajournal_read(t.path, NULL, NULL, &st, err, sizeof err), -1);
    assert_int_equal(errno, EPROTONOSUPPORT);
    assert_int_equal(st.status, AJ_ERR_VERSION);
    assert_int_equal(st.version, 2);
    snprintf(want, sizeof want,
             "%s: alarm journal format version 2, but this program reads version 1 (the file "
             "was written by a newer program): refused",
             t.path);
    assert_string_equal(err, want);
    assert_null(ajournal_open(t.path, AJ_SYNC_NONE, err, sizeof err));
    assert_string_equal(err, want);
    //  The version is judged before the header CRC, and with only 12 bytes.
    s_spit(t.path, b.data, 12);
    assert_int_equal(ajournal_read(t.path, NULL, NULL, &st, err, sizeof err), -1);
    assert_int_equal(st.status, AJ_ERR_VERSION);
    //  Version 0.
    s_put_le32(b.data + 8, 0);
    s_spit(t.path, b.data, b.len);
    assert_int_equal(ajournal_read(t.path, NULL, NULL, &st, err, sizeof err), -1);
    s_assert_contains(err, "format version 0, but this program reads version 1: refused");
    //  A damaged header.
    s_put_le32(b.data + 8, 1);
    s_put_le32(b.data + 28, s_crc(0, b.data, 28));
    b.data[13] ^= 4;
    s_spit(t.path, b.data, b.len);
    assert_int_equal(ajournal_read(t.path, NULL, NULL, &st, err, sizeof err), -1);
    assert_int_equal(st.status, AJ_ERR_HEADER);
    s_assert_contains(err, "alarm journal header damaged (CRC stored 0x");
    assert_null(ajournal_open(t.path, AJ_SYNC_NONE, err, sizeof err));
    //  A header cut short, and a few bytes that are not one.
    b.data[13] ^= 4;
    s_spit(t.path, b.data, 20);
    assert_int_equal(ajournal_read(t.path, NULL, NULL, &st, err, sizeof err), -1);
    snprintf(want, sizeof want,
             "%s: alarm journal header truncated (20 of 32 bytes): the file holds no records",
             t.path);
    assert_string_equal(err, want);
    assert_null(ajournal_open(t.path, AJ_SYNC_NONE, err, sizeof err));
    s_spit(t.path, "hello", 5);
    assert_int_equal(ajournal_read(t.path, NULL, NULL, &st, err, sizeof err), -1);
    s_assert_contains(err, "not an alarm journal (5 bytes: \"hello\")");
    //  A file that does not exist.
    assert_int_equal(unlink(t.path), 0);
    errno = 0;
    assert_int_equal(ajournal_read(t.path, NULL, NULL, &st, err, sizeof err), -1);
    assert_int_equal(errno, ENOENT);
    assert_int_equal(st.status, AJ_ERR_IO);
    snprintf(want, sizeof want, "%s: cannot open: No such file or directory", t.path);
    assert_string_equal(err, want);
    free(b.data);
    s_tmp_cleanup(&t);
}

static void test_empty_and_header_only(void **state)
{
    (void)state;
    s_tmp_t t;
    s_tmp_init(&t);
    ajournal_stats_t st;
    char err[1024];
    Scada__AlarmEvent **events;
    size_t n;
    //  An empty file is an empty journal; the writer gives it its header.
    s_spit(t.path, "", 0);
    free(s_read(t.path, 0, &st, err, sizeof err));
    assert_int_equal(st.records, 0);
    assert_int_equal(st.file_bytes, 0);
    assert_int_equal(ajournal_history(t.path, 10, &events, &n, err, sizeof err), 0);
    assert_int_equal(n, 0);
    assert_null(events);
    ajournal_t *j = ajournal_open(t.path, AJ_SYNC_EACH, err, sizeof err);
    assert_non_null(j);
    assert_int_equal(ajournal_last_seq(j), 0);
    ajournal_close(&j);
    assert_int_equal(s_size(t.path), AJ_HEADER_SIZE);
    //  A header only.
    free(s_read(t.path, 0, &st, err, sizeof err));
    assert_int_equal(st.records, 0);
    assert_int_equal(st.bytes_kept, AJ_HEADER_SIZE);
    assert_int_equal(st.last_seq, 0);
    ajournal_state_t *s = ajournal_state_load(t.path, &st, err, sizeof err);
    assert_non_null(s);
    assert_int_equal(ajournal_state_size(s), 0);
    assert_null(ajournal_state_get(s, "PLC1.LEVEL.HI"));
    assert_null(ajournal_state_at(s, 0));
    ajournal_state_destroy(&s);
    ajournal_state_destroy(&s);
    assert_int_equal(ajournal_history(t.path, 10, &events, &n, err, sizeof err), 0);
    assert_int_equal(n, 0);
    //  A new journal where there was none: any first seq, even 0.
    assert_int_equal(unlink(t.path), 0);
    j = ajournal_open(t.path, AJ_SYNC_EACH, err, sizeof err);
    assert_non_null(j);
    Scada__AlarmEvent ev = s_event(0, NULL);
    assert_int_equal(ajournal_append(j, &ev), 0);
    assert_int_equal(ajournal_append(j, &ev), -1);
    ajournal_close(&j);
    free(s_read(t.path, 0, &st, err, sizeof err));
    assert_int_equal(st.records, 1);
    //  Bad arguments.
    assert_null(ajournal_open("", AJ_SYNC_NONE, err, sizeof err));
    assert_int_equal(errno, EINVAL);
    assert_null(ajournal_open(t.path, (ajournal_sync_t)7, err, sizeof err));
    assert_int_equal(errno, EINVAL);
    s_tmp_cleanup(&t);
}

//  --------------------------------------------------------------------------
//  Rotation, history, state

//  Appends events first..first+n-1 to j, remembering the last seq of each
//  alarm in last[]. Alarm "ONCE" gets only event `first` if once is set.
static void s_append_range(ajournal_t *j, uint64_t first, uint64_t n, uint64_t *last)
{
    for (uint64_t s = first; s < first + n; s++) {
        Scada__AlarmEvent ev = s_event(s, NULL);
        assert_int_equal(ajournal_append(j, &ev), 0);
        last[s % S_NALARMS] = s;
    }
}

static void s_check_state(ajournal_state_t *s, const uint64_t *last, uint64_t once_seq)
{
    assert_int_equal(ajournal_state_size(s), S_NALARMS + 1);
    for (size_t a = 0; a < S_NALARMS; a++) {
        const Scada__AlarmEvent *ev = ajournal_state_get(s, s_alarms[a]);
        assert_non_null(ev);
        s_assert_event(ev, last[a], NULL);
    }
    s_assert_event(ajournal_state_get(s, "ONCE.RAISED"), once_seq, "ONCE.RAISED");
    //  In increasing seq order.
    uint64_t prev = 0;
    for (size_t i = 0; i < ajournal_state_size(s); i++) {
        const Scada__AlarmEvent *ev = ajournal_state_at(s, i);
        assert_non_null(ev);
        assert_true(i == 0 || ev->seq > prev);
        prev = ev->seq;
    }
    assert_int_equal(ajournal_state_last_seq(s), prev);
}

static void test_rotation_keeps_last_event_per_alarm(void **state)
{
    (void)state;
    s_tmp_t t;
    s_tmp_init(&t);
    char err[1024], name[256];
    uint64_t last[S_NALARMS] = {0};
    ajournal_t *j = ajournal_open(t.path, AJ_SYNC_BATCH, err, sizeof err);
    assert_int_equal(ajournal_set_rotation(j, 100, 2), -1);
    assert_int_equal(ajournal_set_rotation(j, 4096, AJ_KEEP_MAX + 1), -1);
    assert_int_equal(ajournal_set_rotation(j, 4096, 2), 0);
    //  An alarm raised once at the start and never again must survive
    //  every rotation.
    Scada__AlarmEvent once = s_event(1, "ONCE.RAISED");
    assert_int_equal(ajournal_append(j, &once), 0);
    s_append_range(j, 2, 2000, last);
    assert_int_equal(ajournal_sync(j), 0);
    ajournal_counters_t c;
    ajournal_counters(j, &c);
    assert_true(c.rotations >= 20);
    assert_int_equal(c.rotation_errors, 0);
    assert_int_equal(c.alarms, S_NALARMS + 1);
    assert_true(c.size < 4096 + 8 * 200);
    s_check_state(ajournal_state(j), last, 1);
    ajournal_close(&j);
    //  path, path.1, path.2 and no more.
    snprintf(name, sizeof name, "%s.2", t.path);
    assert_true(s_size(name) > 0);
    snprintf(name, sizeof name, "%s.3", t.path);
    assert_int_equal(s_size(name), -1);
    snprintf(name, sizeof name, "%s.tmp", t.path);
    assert_int_equal(s_size(name), -1);
    //  The current file alone holds every alarm's last event: its snapshot
    //  first (flagged, in seq order), then the newer events.
    ajournal_stats_t st;
    s_seen_t *seen = s_read(t.path, 0, &st, err, sizeof err);
    assert_int_equal(st.snapshot, S_NALARMS + 1);
    for (size_t i = 0; i < seen->n; i++)
        assert_int_equal(seen->snapshot[i], i < S_NALARMS + 1);
    free(seen);
    ajournal_state_t *s = ajournal_state_load(t.path, &st, err, sizeof err);
    assert_non_null(s);
    assert_string_equal(err, "");
    s_check_state(s, last, 1);
    ajournal_state_destroy(&s);
    //  Reopened, the writer knows them too and goes on.
    j = ajournal_open(t.path, AJ_SYNC_BATCH, err, sizeof err);
    assert_non_null(j);
    assert_int_equal(ajournal_last_seq(j), 2001);
    s_check_state(ajournal_state(j), last, 1);
    ajournal_set_rotation(j, 4096, 0); //  compaction: no old files kept
    s_append_range(j, 2002, 500, last);
    ajournal_close(&j);
    snprintf(name, sizeof name, "%s.3", t.path);
    assert_int_equal(s_size(name), -1);
    s = ajournal_state_load(t.path, &st, err, sizeof err);
    s_check_state(s, last, 1);
    ajournal_state_destroy(&s);
    s_tmp_cleanup(&t);
}

static void test_history_across_rotated_files(void **state)
{
    (void)state;
    s_tmp_t t;
    s_tmp_init(&t);
    char err[1024];
    uint64_t last[S_NALARMS] = {0};
    ajournal_t *j = ajournal_open(t.path, AJ_SYNC_NONE, err, sizeof err);
    ajournal_set_rotation(j, 4096, 3);
    Scada__AlarmEvent once = s_event(1, "ONCE.RAISED");
    assert_int_equal(ajournal_append(j, &once), 0);
    s_append_range(j, 2, 999, last);
    ajournal_close(&j);
    Scada__AlarmEvent **ev;
    size_t n;
    //  The newest 100: consecutive, newest last, each once.
    assert_int_equal(ajournal_history(t.path, 100, &ev, &n, err, sizeof err), 0);
    assert_string_equal(err, "");
    assert_int_equal(n, 100);
    for (size_t i = 0; i < n; i++)
        s_assert_event(ev[i], 901 + i, NULL);
    ajournal_events_free(&ev, n);
    assert_null(ev);
    //  More than the current file holds: older files are read, snapshot
    //  copies of their events are not shown twice.
    assert_int_equal(ajournal_history(t.path, 150, &ev, &n, err, sizeof err), 0);
    assert_int_equal(n, 150);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(ev[i]->seq, 851 + i);
    ajournal_events_free(&ev, n);
    //  Everything there is: four files' worth of consecutive events, then
    //  (oldest file gone) the snapshot records of the oldest file kept,
    //  which stand for the events before it: "ONCE.RAISED" is there.
    assert_int_equal(ajournal_history(t.path, 100000, &ev, &n, err, sizeof err), 0);
    assert_true(n > 150 && n < 1000);
    assert_int_equal(ev[n - 1]->seq, 1000);
    assert_int_equal(ev[0]->seq, 1);
    assert_string_equal(ev[0]->alarm, "ONCE.RAISED");
    size_t gaps = 0;
    for (size_t i = 1; i < n; i++) {
        assert_true(ev[i]->seq > ev[i - 1]->seq);
        gaps += ev[i]->seq != ev[i - 1]->seq + 1;
    }
    assert_true(gaps <= S_NALARMS + 1); //  only among the snapshot records
    ajournal_events_free(&ev, n);
    assert_int_equal(ajournal_history(t.path, 0, &ev, &n, err, sizeof err), 0);
    assert_int_equal(n, 0);
    //  A damaged old file: its valid records are used, with a note.
    char name[256];
    snprintf(name, sizeof name, "%s.1", t.path);
    s_bytes_t b = s_slurp(name);
    b.data[b.len - 3] ^= 1;
    s_spit(name, b.data, b.len);
    free(b.data);
    assert_int_equal(ajournal_history(t.path, 100000, &ev, &n, err, sizeof err), 0);
    s_assert_contains(err, name);
    s_assert_contains(err, "fails its CRC check");
    for (size_t i = 1; i < n; i++)
        assert_true(ev[i]->seq > ev[i - 1]->seq);
    assert_int_equal(ev[n - 1]->seq, 1000);
    ajournal_events_free(&ev, n);
    //  A rotated file left from an earlier journal with greater seqs is not
    //  taken for older events.
    char other[256];
    snprintf(other, sizeof other, "%s/other", t.dir);
    s_write(other, 1, 10);
    snprintf(name, sizeof name, "%s/other.1", t.dir);
    s_write(name, 100, 10);
    assert_int_equal(ajournal_history(other, 100, &ev, &n, err, sizeof err), 0);
    assert_int_equal(n, 10);
    assert_int_equal(ev[0]->seq, 1);
    s_assert_contains(err, name);
    s_assert_contains(err, "not older than those of the newer file (from seq 1): not used");
    ajournal_events_free(&ev, n);
    //  No journal at all.
    snprintf(name, sizeof name, "%s/none", t.dir);
    assert_int_equal(ajournal_history(name, 10, &ev, &n, err, sizeof err), -1);
    s_assert_contains(err, "cannot open: No such file or directory");
    ajournal_events_free(&ev, n);
    s_tmp_cleanup(&t);
}

static void test_interrupted_rotation(void **state)
{
    (void)state;
    s_tmp_t t;
    s_tmp_init(&t);
    char err[1024], tmp[256], one[256];
    snprintf(tmp, sizeof tmp, "%s.tmp", t.path);
    snprintf(one, sizeof one, "%s.1", t.path);
    //  Stopped between "path -> path.1" and "path.tmp -> path": path is
    //  missing, path.tmp complete. Made by hand from a journal of 5 events.
    s_write(t.path, 1, 5);
    assert_int_equal(rename(t.path, tmp), 0);
    s_write(one, 1, 5);
    ajournal_t *j = ajournal_open(t.path, AJ_SYNC_EACH, err, sizeof err);
    assert_non_null(j);
    s_assert_contains(err, "was missing");
    s_assert_contains(err, "interrupted rotation");
    assert_int_equal(ajournal_last_seq(j), 5);
    ajournal_close(&j);
    assert_int_equal(s_size(tmp), -1);
    //  A path.tmp beside an existing path never got to replace it: removed.
    s_write(tmp, 1, 2);
    j = ajournal_open(t.path, AJ_SYNC_EACH, err, sizeof err);
    assert_non_null(j);
    assert_string_equal(err, "");
    assert_int_equal(ajournal_last_seq(j), 5);
    ajournal_close(&j);
    assert_int_equal(s_size(tmp), -1);
    //  A torn path.tmp and no path: a new journal.
    assert_int_equal(unlink(t.path), 0);
    s_spit(tmp, "ALARMJNL", 8);
    j = ajournal_open(t.path, AJ_SYNC_EACH, err, sizeof err);
    assert_non_null(j);
    assert_int_equal(ajournal_last_seq(j), 0);
    ajournal_close(&j);
    assert_int_equal(s_size(tmp), -1);
    s_tmp_cleanup(&t);
}

//  --------------------------------------------------------------------------
//  Write errors, sync policies, the lock

static void test_disk_full(void **state)
{
    (void)state;
    char err[1024];
    errno = 0;
    ajournal_t *j = ajournal_open("/dev/full", AJ_SYNC_BATCH, err, sizeof err);
    assert_null(j);
    assert_int_equal(errno, ENOSPC);
    assert_string_equal(err, "/dev/full: cannot write the header: No space left on device");
    //  A directory that does not exist.
    assert_null(ajournal_open("/nonexistent/dir/alarms.journal", AJ_SYNC_BATCH, err, sizeof err));
    assert_int_equal(errno, ENOENT);
    s_assert_contains(err, "cannot create: No such file or directory");
}

static void test_write_error_leaves_nothing_behind(void **state)
{
    (void)state;
    s_tmp_t t;
    s_tmp_init(&t);
    char err[1024];
    ajournal_t *j = ajournal_open(t.path, AJ_SYNC_EACH, err, sizeof err);
    uint64_t last[S_NALARMS];
    s_append_range(j, 1, 5, last);
    long size = s_size(t.path);
    //  The file may grow by 10 more bytes: the next record is cut short by
    //  the kernel (a partial write), then refused (EFBIG), as a full disk does.
    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    lim = old;
    lim.rlim_cur = (rlim_t)size + 10;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    Scada__AlarmEvent ev = s_event(6, NULL);
    errno = 0;
    int rc = ajournal_append(j, &ev);
    int e = errno;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, prev);
    assert_int_equal(rc, -1);
    assert_int_equal(e, EFBIG);
    s_assert_contains(ajournal_error(j), "cannot append event seq 6 of");
    s_assert_contains(ajournal_error(j), "File too large");
    assert_int_equal(s_size(t.path), size); //  the 10 bytes were cut back
    ajournal_counters_t c;
    ajournal_counters(j, &c);
    assert_int_equal(c.write_errors, 1);
    assert_int_equal(c.last_seq, 5);
    assert_false(c.broken);
    //  Room again: the same event goes in.
    assert_int_equal(ajournal_append(j, &ev), 0);
    ajournal_close(&j);
    ajournal_stats_t st;
    free(s_read(t.path, 0, &st, err, sizeof err));
    assert_int_equal(st.records, 6);
    s_tmp_cleanup(&t);
}

static void test_batch_10000_in_order(void **state)
{
    (void)state;
    s_tmp_t t;
    s_tmp_init(&t);
    char err[1024];
    ajournal_t *j = ajournal_open(t.path, AJ_SYNC_BATCH, err, sizeof err);
    ajournal_counters_t c;
    //  One loop turn: a few events, then one sync before confirming them.
    for (uint64_t s = 1; s <= 10000; s++) {
        Scada__AlarmEvent ev = s_event(s, NULL);
        assert_int_equal(ajournal_append(j, &ev), 0);
        if (s % 100 == 0) {
            ajournal_counters(j, &c);
            assert_true(c.dirty);
            assert_int_equal(ajournal_sync(j), 0);
            assert_int_equal(ajournal_sync(j), 0); //  nothing new: no fdatasync
        }
    }
    ajournal_counters(j, &c);
    assert_int_equal(c.syncs, 100);
    assert_int_equal(c.appends, 10000);
    assert_false(c.dirty);
    ajournal_close(&j);
    ajournal_stats_t st;
    s_seen_t *seen = s_read(t.path, 0, &st, err, sizeof err);
    assert_int_equal(seen->n, 10000);
    for (size_t i = 0; i < seen->n; i++)
        assert_int_equal(seen->seq[i], i + 1);
    free(seen);
    s_tmp_cleanup(&t);
}

static void test_sync_policies(void **state)
{
    (void)state;
    s_tmp_t t;
    s_tmp_init(&t);
    char err[1024];
    ajournal_counters_t c;
    uint64_t last[S_NALARMS];
    ajournal_t *j = ajournal_open(t.path, AJ_SYNC_EACH, err, sizeof err);
    s_append_range(j, 1, 20, last);
    ajournal_counters(j, &c);
    assert_int_equal(c.syncs, 20);
    assert_false(c.dirty);
    assert_int_equal(ajournal_sync(j), 0);
    ajournal_counters(j, &c);
    assert_int_equal(c.syncs, 20);
    ajournal_close(&j);
    j = ajournal_open(t.path, AJ_SYNC_NONE, err, sizeof err);
    s_append_range(j, 21, 20, last);
    assert_int_equal(ajournal_sync(j), 0);
    ajournal_counters(j, &c);
    assert_int_equal(c.syncs, 0);
    ajournal_close(&j);
    ajournal_stats_t st;
    free(s_read(t.path, 0, &st, err, sizeof err));
    assert_int_equal(st.records, 40);
    s_tmp_cleanup(&t);
}

static void test_one_writer_at_a_time(void **state)
{
    (void)state;
    s_tmp_t t;
    s_tmp_init(&t);
    char err[1024];
    ajournal_t *j = ajournal_open(t.path, AJ_SYNC_NONE, err, sizeof err);
    assert_non_null(j);
    errno = 0;
    assert_null(ajournal_open(t.path, AJ_SYNC_NONE, err, sizeof err));
    assert_int_equal(errno, EWOULDBLOCK);
    s_assert_contains(err, "in use: another process has it open for writing");
    assert_int_equal(ajournal_repair(t.path, err, sizeof err), -1);
    s_assert_contains(err, "in use");
    //  Readers are not kept out.
    ajournal_stats_t st;
    assert_int_equal(ajournal_read(t.path, NULL, NULL, &st, err, sizeof err), 0);
    ajournal_close(&j);
    j = ajournal_open(t.path, AJ_SYNC_NONE, err, sizeof err);
    assert_non_null(j);
    ajournal_close(&j);
    s_tmp_cleanup(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_byte_by_byte),
        cmocka_unit_test(test_round_trip_many),
        cmocka_unit_test(test_reopen_continues),
        cmocka_unit_test(test_large_event_refused),
        cmocka_unit_test(test_truncated_tail_at_every_offset),
        cmocka_unit_test(test_torn_header_of_last_record_zero_filled),
        cmocka_unit_test(test_damage_in_the_middle_stops_there),
        cmocka_unit_test(test_valid_crc_but_bad_record),
        cmocka_unit_test(test_headers_refused),
        cmocka_unit_test(test_empty_and_header_only),
        cmocka_unit_test(test_rotation_keeps_last_event_per_alarm),
        cmocka_unit_test(test_history_across_rotated_files),
        cmocka_unit_test(test_interrupted_rotation),
        cmocka_unit_test(test_disk_full),
        cmocka_unit_test(test_write_error_leaves_nothing_behind),
        cmocka_unit_test(test_batch_10000_in_order),
        cmocka_unit_test(test_sync_policies),
        cmocka_unit_test(test_one_writer_at_a_time),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
