/*  fuzz_ajournal: libFuzzer target for the alarm journal reader, the
    writer's validation at open, and repair.

    Input layout:
        byte 0      mode bits:
                      bit 0  rewrite the CRC of every frame whose length is
                             sane, so inputs reach the decode and seq checks
                      bit 1  rewrite the header CRC
                      bit 2  also open the file for writing; if that works,
                             append one event and read the file again
                      bit 3  also repair the file
                      bit 4  also read the newest events and every alarm's state
        bytes 1..   the journal file

    The file is written to a private directory and read with ajournal_read.
    An independent walk over the same bytes (its own CRC-32, bit by bit)
    counts the frames present: complete frames with a sane length and a
    matching CRC, from the header on, up to the first that is not. The
    reader must never deliver more records than that, must deliver exactly
    that many when it stops at a frame-level fault (truncation, length,
    CRC), must refuse exactly the files whose header is wrong, and must say
    where it stopped consistently with what it delivered. A writer must
    refuse (and leave untouched) a file the reader stops in the middle of,
    and leave a file it accepts readable to the end.
*/
#include "ajournal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char s_dir[256];
static char s_path[320];
static char s_damaged[352];

static void s_check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_ajournal: invariant broken: %s\n", what);
        abort();
    }
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

static bool s_sane(uint32_t len)
{
    return len >= 1 && len <= AJ_RECORD_MAX;
}

//  True if d holds a version-1 header (or nothing at all).
static bool s_header_ok(const uint8_t *d, size_t n)
{
    if (n == 0)
        return true;
    return n >= AJ_HEADER_SIZE && memcmp(d, "ALARMJNL", 8) == 0 && s_le32(d + 8) == AJ_VERSION &&
           s_le32(d + 28) == s_crc(0, d, 28);
}

//  Frames present: complete, sane length, matching CRC, consecutive.
static uint64_t s_frames(const uint8_t *d, size_t n)
{
    uint64_t count = 0;
    size_t off = AJ_HEADER_SIZE;
    while (off + AJ_FRAME_SIZE <= n) {
        uint32_t len = s_le32(d + off);
        if (!s_sane(len) || n - off - AJ_FRAME_SIZE < len)
            break;
        if (s_le32(d + off + 4) != s_crc(s_crc(0, d + off, 4), d + off + AJ_FRAME_SIZE, len))
            break;
        count++;
        off += AJ_FRAME_SIZE + len;
    }
    return count;
}

static void s_spit(const char *path, const uint8_t *d, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    s_check(fd >= 0, "cannot create the file");
    s_check(n == 0 || write(fd, d, n) == (ssize_t)n, "cannot write the file");
    close(fd);
}

//  The file's bytes, compared with d.
static bool s_same(const char *path, const uint8_t *d, size_t n)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return false;
    uint8_t *buf = malloc(n + 1);
    ssize_t r = read(fd, buf, n + 1);
    close(fd);
    bool same = r == (ssize_t)n && memcmp(buf, d, n) == 0;
    free(buf);
    return same;
}

typedef struct {
    uint64_t n;
    uint64_t last_seq;
    uint64_t end; //  end of the last record delivered
    uint64_t size;
} s_seen_t;

static int s_take(const Scada__AlarmEvent *ev, const ajournal_rec_t *rec, void *arg)
{
    s_seen_t *seen = arg;
    s_check(ev && ev->alarm, "an event without its alarm id");
    s_check(rec->index == seen->n, "record index out of order");
    s_check(seen->n == 0 || ev->seq > seen->last_seq, "seq not increasing");
    s_check(rec->offset == (seen->n ? seen->end : AJ_HEADER_SIZE), "records not consecutive");
    s_check(rec->length >= 1 && rec->length <= AJ_RECORD_MAX, "record length out of range");
    s_check(rec->offset + AJ_FRAME_SIZE + rec->length <= seen->size, "record past the end");
    //  Touch what the event claims, for ASan.
    volatile size_t sum = strlen(ev->alarm);
    if (ev->message)
        sum += strlen(ev->message);
    if (ev->comment)
        sum += strlen(ev->comment);
    (void)sum;
    volatile uint8_t touch = rec->payload[0] ^ rec->payload[rec->length - 1];
    (void)touch;
    seen->n++;
    seen->last_seq = ev->seq;
    seen->end = rec->offset + AJ_FRAME_SIZE + rec->length;
    return 0;
}

//  Read the file and check the result against the independent walk.
static int s_read_checked(const uint8_t *d, size_t n, ajournal_stats_t *st)
{
    char err[1024];
    s_seen_t seen = {.size = n};
    int rc = ajournal_read(s_path, s_take, &seen, st, err, sizeof err);
    uint64_t frames = s_header_ok(d, n) ? s_frames(d, n) : 0;
    s_check(rc >= -1 && rc <= 1, "return value");
    s_check(st->records == seen.n, "stats disagree with the callbacks");
    s_check(st->records <= frames, "more records kept than frames present");
    s_check(st->bytes_kept <= n, "more bytes kept than the file has");
    s_check(st->file_bytes == n, "file size");
    s_check(rc == 0 || err[0], "a failure without a message");
    s_check(rc != 0 || !err[0], "a message on success");
    s_check((rc == -1) == !s_header_ok(d, n), "header verdict");
    if (rc == -1)
        return rc;
    s_check(seen.n == 0 || st->last_seq == seen.last_seq, "last seq");
    s_check(st->bytes_kept == (seen.n ? seen.end : (n ? AJ_HEADER_SIZE : 0)), "bytes kept");
    if (rc == 0) {
        s_check(st->status == AJ_OK, "status of a clean read");
        s_check(st->records == frames, "a clean read missed frames");
        s_check(st->bytes_kept == n, "a clean read did not reach the end");
        return rc;
    }
    s_check(st->bad_record == st->records + 1, "bad record number");
    s_check(st->bad_offset == st->bytes_kept, "bad record offset");
    s_check(strstr(err, s_path) != NULL, "the message does not name the file");
    switch (st->status) {
    case AJ_ERR_TRUNCATED:
    case AJ_ERR_LENGTH:
    case AJ_ERR_CRC:
        s_check(st->records == frames, "a frame-level stop disagrees with the frames present");
        break;
    case AJ_ERR_DECODE:
    case AJ_ERR_SEQ:
        s_check(st->records < frames, "a record-level stop on a frame that is not there");
        s_check(!st->tail, "a correct CRC taken for a torn write");
        break;
    default:
        s_check(0, "status of a stopped read");
    }
    return rc;
}

static void s_cleanup(void)
{
    unlink(s_path);
    unlink(s_damaged);
    rmdir(s_dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *tmp = getenv("TMPDIR");
    int len = snprintf(s_dir, sizeof s_dir, "%s/fuzz_ajournal.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (len < 0 || (size_t)len >= sizeof s_dir || !mkdtemp(s_dir))
        abort();
    atexit(s_cleanup);
    snprintf(s_path, sizeof s_path, "%s/alarms.journal", s_dir);
    snprintf(s_damaged, sizeof s_damaged, "%s.damaged", s_path);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    size_t n = size - 1;
    uint8_t *d = malloc(n ? n : 1);
    memcpy(d, data + 1, n);
    if (mode & 1)
        for (size_t off = AJ_HEADER_SIZE; off + AJ_FRAME_SIZE <= n;) {
            uint32_t len = s_le32(d + off);
            if (!s_sane(len) || n - off - AJ_FRAME_SIZE < len)
                break;
            s_put_le32(d + off + 4, s_crc(s_crc(0, d + off, 4), d + off + AJ_FRAME_SIZE, len));
            off += AJ_FRAME_SIZE + len;
        }
    if ((mode & 2) && n >= AJ_HEADER_SIZE)
        s_put_le32(d + 28, s_crc(0, d, 28));
    s_spit(s_path, d, n);
    ajournal_stats_t st;
    int rc = s_read_checked(d, n, &st);
    char err[1024];

    if (mode & 16) {
        Scada__AlarmEvent **events;
        size_t count;
        int hr = ajournal_history(s_path, 4, &events, &count, err, sizeof err);
        s_check(hr == (rc < 0 ? -1 : 0), "history disagrees with the read");
        s_check(count <= 4 && count <= st.records, "history count");
        for (size_t i = 1; i < count; i++)
            s_check(events[i]->seq > events[i - 1]->seq, "history out of order");
        ajournal_events_free(&events, count);
        ajournal_stats_t st2;
        ajournal_state_t *state = ajournal_state_load(s_path, &st2, err, sizeof err);
        s_check((state == NULL) == (rc < 0), "state load disagrees with the read");
        if (state) {
            s_check(ajournal_state_size(state) <= st.records, "more alarms than records");
            s_check(ajournal_state_last_seq(state) == st.last_seq, "state last seq");
            for (size_t i = 0; i < ajournal_state_size(state); i++) {
                const Scada__AlarmEvent *ev = ajournal_state_at(state, i);
                s_check(ajournal_state_get(state, ev->alarm) == ev, "state lookup");
            }
        }
        ajournal_state_destroy(&state);
    }

    if (mode & 4) {
        ajournal_t *j = ajournal_open(s_path, AJ_SYNC_NONE, err, sizeof err);
        bool may_open = rc == 0 || (rc == 1 && st.tail);
        s_check((j != NULL) == may_open, "open disagrees with the read");
        if (!j)
            s_check(s_same(s_path, d, n), "a refused open changed the file");
        else {
            s_check(ajournal_last_seq(j) == st.last_seq, "writer's last seq");
            Scada__AlarmEvent ev = SCADA__ALARM_EVENT__INIT;
            ev.seq = st.last_seq + 1;
            ev.alarm = "FUZZ.ALARM";
            ev.ts_ms = 1;
            s_check(ajournal_append(j, &ev) == 0, "append after open");
            ajournal_close(&j);
            ajournal_stats_t st2;
            s_check(ajournal_read(s_path, NULL, NULL, &st2, err, sizeof err) == 0,
                    "an opened journal does not read clean");
            s_check(st2.records == st.records + 1, "records after append");
        }
    } else if (mode & 8) {
        int r = ajournal_repair(s_path, err, sizeof err);
        s_check(r == (rc < 0 ? -1 : rc == 0 || st.tail ? 0 : 1), "repair disagrees with the read");
        if (r == 1) {
            s_check(s_same(s_damaged, d, n), "the damaged file is not the original");
            ajournal_stats_t st2;
            s_check(ajournal_read(s_path, NULL, NULL, &st2, err, sizeof err) == 0,
                    "a repaired journal does not read clean");
            s_check(st2.records == st.records, "records after repair");
            unlink(s_damaged);
        } else
            s_check(s_same(s_path, d, n), "a repair that did nothing changed the file");
    }
    unlink(s_path);
    free(d);
    return 0;
}
