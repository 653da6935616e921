/*  ajournal: the alarm journal. See ajournal.h for the contract and
    docs/alarm-journal.md for the file format.

    Reading is one sequential pass over a file through a bounded buffer
    (s_in_t): every frame is checked (length, then CRC, then decode, then
    seq) before anything is delivered, and the first failure ends the pass.
    The pass never reads past the size the file had when it began, so a
    reader racing the writer sees at worst a truncated last record.

    The writer keeps the file's valid length (`size`) and writes each record
    with one pwrite at that offset; a write that fails is cut back with
    ftruncate, so a failed append never leaves bytes behind that would make
    the records after it unreachable. It also keeps the last event of every
    alarm (ajournal_state_t), which is what a rotation writes at the head of
    the next file.

    Files are replaced by rename only after the new file is complete (and
    synced, unless AJ_SYNC_NONE): a rotation writes path.tmp, shifts the old
    files, renames path to path.1 and path.tmp to path, syncing the
    directory after each step. An open that finds path missing and a
    complete path.tmp finishes that rotation.
*/
#include "ajournal.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const uint8_t s_magic[8] = {'A', 'L', 'A', 'R', 'M', 'J', 'N', 'L'};

#define S_IN_BUF  (256 * 1024) //  read buffer; holds the largest frame
#define S_OUT_BUF (64 * 1024)  //  write buffer of a new file
#define S_ERR_MAX 768          //  longest message kept by a journal

//  --------------------------------------------------------------------------
//  Little-endian fields and the CRC

static uint32_t s_get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t s_get64(const uint8_t *p)
{
    return (uint64_t)s_get32(p) | (uint64_t)s_get32(p + 4) << 32;
}

static void s_put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static void s_put64(uint8_t *p, uint64_t v)
{
    s_put32(p, (uint32_t)v);
    s_put32(p + 4, (uint32_t)(v >> 32));
}

//  CRC-32 as in zlib, Ethernet and PNG (reflected polynomial 0xEDB88320,
//  initial value and final XOR 0xFFFFFFFF), eight bytes at a time with
//  eight tables built once.
static uint32_t s_crc_table[8][256];
static pthread_once_t s_crc_once = PTHREAD_ONCE_INIT;

static void s_crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        s_crc_table[0][i] = c;
    }
    for (int t = 1; t < 8; t++)
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = s_crc_table[t - 1][i];
            s_crc_table[t][i] = (c >> 8) ^ s_crc_table[0][c & 0xff];
        }
}

//  Continue `crc` (0 to start) over n bytes.
static uint32_t s_crc32(uint32_t crc, const uint8_t *p, size_t n)
{
    pthread_once(&s_crc_once, s_crc_init);
    const uint32_t(*t)[256] = (const uint32_t(*)[256])s_crc_table;
    crc = ~crc;
    while (n >= 8) {
        uint32_t a = crc ^ s_get32(p), b = s_get32(p + 4);
        crc = t[7][a & 0xff] ^ t[6][(a >> 8) & 0xff] ^ t[5][(a >> 16) & 0xff] ^ t[4][a >> 24] ^
              t[3][b & 0xff] ^ t[2][(b >> 8) & 0xff] ^ t[1][(b >> 16) & 0xff] ^ t[0][b >> 24];
        p += 8;
        n -= 8;
    }
    while (n--)
        crc = t[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

//  The CRC of a frame covers its four length bytes and its payload.
static uint32_t s_frame_crc(const uint8_t *frame, uint32_t len)
{
    return s_crc32(s_crc32(0, frame, 4), frame + AJ_FRAME_SIZE, len);
}

static void s_header(uint8_t *h, uint32_t snapshot, int64_t created_ms)
{
    memcpy(h, s_magic, sizeof s_magic);
    s_put32(h + 8, AJ_VERSION);
    s_put32(h + 12, snapshot);
    s_put64(h + 16, (uint64_t)created_ms);
    s_put32(h + 24, 0);
    s_put32(h + 28, s_crc32(0, h, 28));
}

static int64_t s_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

//  --------------------------------------------------------------------------
//  Messages

static void s_msg(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void s_msg(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

//  A short printable rendering of up to 8 bytes, for a wrong magic.
static void s_printable(const uint8_t *p, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        *out++ = p[i] >= 0x20 && p[i] < 0x7f && p[i] != '"' && p[i] != '\\' ? (char)p[i] : '.';
    *out = '\0';
}

static unsigned long long s_ull(uint64_t v)
{
    return (unsigned long long)v;
}

//  --------------------------------------------------------------------------
//  Paths and file helpers

static char *s_path_plus(const char *path, const char *suffix)
{
    size_t a = strlen(path), b = strlen(suffix);
    char *p = malloc(a + b + 1);
    if (p) {
        memcpy(p, path, a);
        memcpy(p + a, suffix, b + 1);
    }
    return p;
}

//  path.<i> into buf (PATH_MAX-ish); returns buf.
static char *s_rotated(char *buf, size_t len, const char *path, int i)
{
    snprintf(buf, len, "%s.%d", path, i);
    return buf;
}

//  fsync the directory holding `path`, so a rename or a new name in it
//  survives a power failure.
static int s_sync_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char dir[4096];
    if (!slash)
        strcpy(dir, ".");
    else if (slash == path)
        strcpy(dir, "/");
    else {
        size_t n = (size_t)(slash - path);
        if (n >= sizeof dir) {
            errno = ENAMETOOLONG;
            return -1;
        }
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

static int s_pwrite_all(int fd, const uint8_t *p, size_t n, uint64_t off)
{
    while (n > 0) {
        ssize_t w = pwrite(fd, p, n, (off_t)off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (w == 0) {
            errno = EIO;
            return -1;
        }
        p += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  The state table: alarm id -> last event, open addressing over a dense
//  array of entries.

typedef struct {
    Scada__AlarmEvent *ev; //  owned; its `alarm` is the key
    uint32_t hash;         //  of the key
} s_entry_t;

struct _ajournal_state_t {
    s_entry_t *ent;            //  entries, in order of first appearance
    size_t n, cap;             //  entries used, allocated
    uint32_t *slot;            //  0 = free, else entry index + 1; nslots is a power of two
    size_t nslots;             //  at least twice n
    Scada__AlarmEvent **order; //  events sorted by seq, rebuilt when !sorted
    bool sorted;               //
    uint64_t last_seq;         //  highest seq put
};

static uint32_t s_hash(const char *s)
{
    uint32_t h = 2166136261u; //  FNV-1a
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

static ajournal_state_t *s_state_new(void)
{
    return calloc(1, sizeof(ajournal_state_t));
}

void ajournal_state_destroy(ajournal_state_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    ajournal_state_t *self = *self_p;
    for (size_t i = 0; i < self->n; i++)
        scada__alarm_event__free_unpacked(self->ent[i].ev, NULL);
    free(self->ent);
    free(self->slot);
    free(self->order);
    free(self);
    *self_p = NULL;
}

//  The slot holding `alarm`, or the free slot where it would go.
static size_t s_state_find(const ajournal_state_t *self, const char *alarm, uint32_t hash)
{
    size_t mask = self->nslots - 1, i = hash & mask;
    while (self->slot[i]) {
        const s_entry_t *e = &self->ent[self->slot[i] - 1];
        if (e->hash == hash && strcmp(e->ev->alarm, alarm) == 0)
            break;
        i = (i + 1) & mask;
    }
    return i;
}

//  Make room for one more entry. Returns 0, or -1 (ENOMEM).
static int s_state_reserve(ajournal_state_t *self)
{
    if (self->n == self->cap) {
        size_t cap = self->cap ? self->cap * 2 : 64;
        s_entry_t *ent = realloc(self->ent, cap * sizeof *ent);
        if (!ent) {
            errno = ENOMEM;
            return -1;
        }
        self->ent = ent;
        self->cap = cap;
    }
    if (2 * (self->n + 1) > self->nslots) {
        size_t nslots = self->nslots ? self->nslots * 2 : 128;
        uint32_t *slot = calloc(nslots, sizeof *slot);
        if (!slot) {
            errno = ENOMEM;
            return -1;
        }
        free(self->slot);
        self->slot = slot;
        self->nslots = nslots;
        for (size_t k = 0; k < self->n; k++) {
            size_t i = self->ent[k].hash & (nslots - 1);
            while (slot[i])
                i = (i + 1) & (nslots - 1);
            slot[i] = (uint32_t)(k + 1);
        }
    }
    return 0;
}

//  Take ev as the last event of its alarm (after s_state_reserve).
static void s_state_put(ajournal_state_t *self, Scada__AlarmEvent *ev)
{
    assert(self->nslots > 2 * self->n && self->n < self->cap);
    uint32_t hash = s_hash(ev->alarm);
    size_t i = s_state_find(self, ev->alarm, hash);
    if (self->slot[i]) {
        s_entry_t *e = &self->ent[self->slot[i] - 1];
        scada__alarm_event__free_unpacked(e->ev, NULL);
        e->ev = ev;
    } else {
        self->ent[self->n] = (s_entry_t){ev, hash};
        self->slot[i] = (uint32_t)++self->n;
    }
    if (ev->seq > self->last_seq)
        self->last_seq = ev->seq;
    self->sorted = false;
}

static int s_by_seq(const void *a, const void *b)
{
    uint64_t x = (*(Scada__AlarmEvent *const *)a)->seq, y = (*(Scada__AlarmEvent *const *)b)->seq;
    return (x > y) - (x < y);
}

static int s_state_sort(ajournal_state_t *self)
{
    if (self->sorted)
        return 0;
    Scada__AlarmEvent **order = realloc(self->order, (self->n ? self->n : 1) * sizeof *order);
    if (!order) {
        errno = ENOMEM;
        return -1;
    }
    self->order = order;
    for (size_t i = 0; i < self->n; i++)
        order[i] = self->ent[i].ev;
    qsort(order, self->n, sizeof *order, s_by_seq);
    self->sorted = true;
    return 0;
}

size_t ajournal_state_size(const ajournal_state_t *self)
{
    return self->n;
}

const Scada__AlarmEvent *ajournal_state_get(const ajournal_state_t *self, const char *alarm)
{
    if (!alarm || self->n == 0)
        return NULL;
    size_t i = s_state_find(self, alarm, s_hash(alarm));
    return self->slot[i] ? self->ent[self->slot[i] - 1].ev : NULL;
}

const Scada__AlarmEvent *ajournal_state_at(ajournal_state_t *self, size_t i)
{
    if (i >= self->n || s_state_sort(self) < 0)
        return NULL;
    return self->order[i];
}

uint64_t ajournal_state_last_seq(const ajournal_state_t *self)
{
    return self->last_seq;
}

//  --------------------------------------------------------------------------
//  Reading one file

//  A window on the file: buf[start..end) holds the bytes from file offset
//  pos on. Reads never go past `limit`, the size when the pass began.
typedef struct {
    int fd;
    uint8_t *buf;
    size_t start, end;
    uint64_t pos;
    uint64_t limit;
    int error; //  errno of a failed read, 0 if none
} s_in_t;

//  Make at least `want` bytes available if the file has them. Returns the
//  bytes available (fewer at the end of the file or after a read error).
static size_t s_fill(s_in_t *in, size_t want)
{
    assert(want <= S_IN_BUF);
    size_t have = in->end - in->start;
    if (have >= want)
        return have;
    if (in->start > 0 && S_IN_BUF - in->start < want) {
        memmove(in->buf, in->buf + in->start, have);
        in->start = 0;
        in->end = have;
    }
    while (in->end - in->start < want && !in->error) {
        uint64_t done = in->pos + (in->end - in->start);
        size_t room = S_IN_BUF - in->end;
        if (done >= in->limit || room == 0)
            break;
        if ((uint64_t)room > in->limit - done)
            room = (size_t)(in->limit - done);
        ssize_t r = pread(in->fd, in->buf + in->end, room, (off_t)done);
        if (r < 0) {
            if (errno != EINTR)
                in->error = errno;
            continue;
        }
        if (r == 0) {
            in->limit = done; //  the file shrank
            break;
        }
        in->end += (size_t)r;
    }
    return in->end - in->start;
}

static void s_consume(s_in_t *in, size_t n)
{
    assert(n <= in->end - in->start);
    in->start += n;
    in->pos += n;
}

//  True if every byte from file offset `from` to the end is zero (or there
//  is none): what a crash leaves after a torn last write.
static bool s_rest_zero(s_in_t *in, uint64_t from)
{
    size_t have;
    while (in->pos < from && (have = s_fill(in, 1)) > 0) {
        size_t k = from - in->pos < have ? (size_t)(from - in->pos) : have;
        s_consume(in, k);
    }
    while ((have = s_fill(in, 1)) > 0) {
        const uint8_t *p = in->buf + in->start;
        for (size_t i = 0; i < have; i++)
            if (p[i])
                return false;
        s_consume(in, have);
    }
    return !in->error;
}

//  Receives each valid record; takes ownership of ev. Returns 0 to go on,
//  1 to stop, -1 on failure (errno set).
typedef int(s_take_fn)(Scada__AlarmEvent *ev, const ajournal_rec_t *rec, void *arg);

//  The description of a damaged record and the disposition, into err.
static void s_damage_msg(const char *name, const ajournal_stats_t *st, const char *what, char *err,
                         size_t errlen)
{
    if (st->tail)
        s_msg(err, errlen, "%s: record %llu at byte %llu %s: ignored; %llu records kept", name,
              s_ull(st->bad_record), s_ull(st->bad_offset), what, s_ull(st->records));
    else
        s_msg(err, errlen,
              "%s: record %llu at byte %llu %s, and %llu bytes from there on are not read "
              "(not the end of a torn write): reading stops there; %llu records kept "
              "(%llu bytes)",
              name, s_ull(st->bad_record), s_ull(st->bad_offset), what,
              s_ull(st->file_bytes - st->bad_offset), s_ull(st->records), s_ull(st->bytes_kept));
}

//  Check the header in h (have bytes of it). Returns 0, or -1 with the
//  status, errno and message set.
static int s_check_header(const char *name, const uint8_t *h, size_t have, ajournal_stats_t *st,
                          char *err, size_t errlen)
{
    char shown[9];
    if (have >= sizeof s_magic && memcmp(h, s_magic, sizeof s_magic) != 0) {
        s_printable(h, sizeof s_magic, shown);
        s_msg(err, errlen, "%s: not an alarm journal (it starts with \"%s\", not \"ALARMJNL\")",
              name, shown);
        st->status = AJ_ERR_HEADER;
        errno = EINVAL;
        return -1;
    }
    if (have < sizeof s_magic && memcmp(h, s_magic, have) != 0) {
        s_printable(h, have, shown);
        s_msg(err, errlen, "%s: not an alarm journal (%llu bytes: \"%s\")", name,
              s_ull(st->file_bytes), shown);
        st->status = AJ_ERR_HEADER;
        errno = EINVAL;
        return -1;
    }
    if (have >= 12) {
        st->version = s_get32(h + 8);
        if (st->version != AJ_VERSION) {
            s_msg(err, errlen,
                  "%s: alarm journal format version %u, but this program reads version %u%s: "
                  "refused",
                  name, st->version, AJ_VERSION,
                  st->version > AJ_VERSION ? " (the file was written by a newer program)" : "");
            st->status = AJ_ERR_VERSION;
            errno = EPROTONOSUPPORT;
            return -1;
        }
    }
    if (have < AJ_HEADER_SIZE) {
        s_msg(err, errlen,
              "%s: alarm journal header truncated (%llu of %d bytes): the file holds no records",
              name, s_ull(have), AJ_HEADER_SIZE);
        st->status = AJ_ERR_HEADER;
        errno = EINVAL;
        return -1;
    }
    uint32_t stored = s_get32(h + 28), computed = s_crc32(0, h, 28);
    if (stored != computed) {
        s_msg(err, errlen,
              "%s: alarm journal header damaged (CRC stored 0x%08x, computed 0x%08x): refused",
              name, stored, computed);
        st->status = AJ_ERR_HEADER;
        errno = EINVAL;
        return -1;
    }
    st->snapshot = s_get32(h + 12);
    st->created_ms = (int64_t)s_get64(h + 16);
    return 0;
}

//  One pass over the open file fd; `name` is the path for messages.
//  Returns 0, 1 or -1 as ajournal_read.
static int s_scan(int fd, const char *name, s_take_fn *take, void *arg, ajournal_stats_t *st,
                  char *err, size_t errlen)
{
    memset(st, 0, sizeof *st);
    s_msg(err, errlen, "%s", "");
    struct stat sb;
    if (fstat(fd, &sb) < 0) {
        int e = errno;
        s_msg(err, errlen, "%s: cannot read: %s", name, strerror(e));
        st->status = AJ_ERR_IO;
        errno = e;
        return -1;
    }
    st->file_bytes = S_ISREG(sb.st_mode) ? (uint64_t)sb.st_size : 0;
    if (st->file_bytes == 0)
        return 0; //  an empty file is an empty journal
    s_in_t in = {.fd = fd, .limit = st->file_bytes};
    in.buf = malloc(S_IN_BUF);
    if (!in.buf) {
        s_msg(err, errlen, "%s: cannot read: %s", name, strerror(ENOMEM));
        st->status = AJ_ERR_IO;
        errno = ENOMEM;
        return -1;
    }
    int rc = 0;
    size_t have = s_fill(&in, AJ_HEADER_SIZE);
    if (in.error) {
        s_msg(err, errlen, "%s: cannot read: %s", name, strerror(in.error));
        st->status = AJ_ERR_IO;
        errno = in.error;
        rc = -1;
        goto done;
    }
    if (s_check_header(name, in.buf + in.start, have, st, err, errlen) < 0) {
        rc = -1;
        goto done;
    }
    s_consume(&in, AJ_HEADER_SIZE);
    st->bytes_kept = AJ_HEADER_SIZE;
    char what[160];
    for (;;) {
        uint64_t offset = in.pos;
        have = s_fill(&in, AJ_FRAME_SIZE);
        if (in.error)
            break;
        if (have == 0)
            break; //  clean end
        st->bad_record = st->records + 1;
        st->bad_offset = offset;
        if (have < AJ_FRAME_SIZE) {
            st->status = AJ_ERR_TRUNCATED;
            st->tail = true;
            snprintf(what, sizeof what, "is truncated (%llu bytes, less than its %d-byte frame)",
                     s_ull(have), AJ_FRAME_SIZE);
            break;
        }
        const uint8_t *frame = in.buf + in.start;
        uint32_t len = s_get32(frame);
        if (len == 0 || len > AJ_RECORD_MAX) {
            st->status = AJ_ERR_LENGTH;
            snprintf(what, sizeof what, "has an impossible length %lu (1..%d)", (unsigned long)len,
                     AJ_RECORD_MAX);
            st->tail = s_rest_zero(&in, offset);
            break;
        }
        have = s_fill(&in, AJ_FRAME_SIZE + (size_t)len);
        frame = in.buf + in.start;
        if (in.error)
            break;
        if (have < AJ_FRAME_SIZE + (size_t)len) {
            st->status = AJ_ERR_TRUNCATED;
            st->tail = true;
            snprintf(what, sizeof what, "is truncated (%llu of %llu bytes)", s_ull(have),
                     s_ull(AJ_FRAME_SIZE + (uint64_t)len));
            break;
        }
        uint32_t stored = s_get32(frame + 4), computed = s_frame_crc(frame, len);
        if (stored != computed) {
            st->status = AJ_ERR_CRC;
            snprintf(what, sizeof what,
                     "fails its CRC check (%lu bytes, CRC stored 0x%08lx, computed 0x%08lx)",
                     (unsigned long)len, (unsigned long)stored, (unsigned long)computed);
            st->tail = s_rest_zero(&in, offset + AJ_FRAME_SIZE + len);
            break;
        }
        Scada__AlarmEvent *ev = scada__alarm_event__unpack(NULL, len, frame + AJ_FRAME_SIZE);
        if (!ev) {
            st->status = AJ_ERR_DECODE;
            snprintf(what, sizeof what, "is not a valid AlarmEvent (%lu bytes, CRC correct)",
                     (unsigned long)len);
            break;
        }
        if (st->records > 0 && ev->seq <= st->last_seq) {
            st->status = AJ_ERR_SEQ;
            snprintf(what, sizeof what, "has seq %llu, not after the seq %llu before it",
                     s_ull(ev->seq), s_ull(st->last_seq));
            scada__alarm_event__free_unpacked(ev, NULL);
            break;
        }
        ajournal_rec_t rec = {.index = st->records,
                              .offset = offset,
                              .snapshot = st->records < st->snapshot,
                              .payload = frame + AJ_FRAME_SIZE,
                              .length = len};
        if (st->records == 0)
            st->first_seq = ev->seq;
        st->last_seq = ev->seq;
        st->records++;
        st->bytes_kept = offset + AJ_FRAME_SIZE + len;
        st->bad_record = st->bad_offset = 0;
        int r = take(ev, &rec, arg);
        s_consume(&in, AJ_FRAME_SIZE + (size_t)len);
        if (r < 0) {
            int e = errno;
            s_msg(err, errlen, "%s: cannot keep record %llu: %s", name, s_ull(rec.index + 1),
                  strerror(e));
            st->status = AJ_ERR_IO;
            errno = e;
            rc = -1;
            goto done;
        }
        if (r > 0) {
            st->stopped = true;
            break;
        }
    }
    if (in.error) {
        st->status = AJ_ERR_IO;
        st->tail = false;
        st->bad_record = st->records + 1;
        st->bad_offset = st->bytes_kept;
        s_msg(err, errlen,
              "%s: read error at byte %llu: %s: reading stops there; %llu records kept", name,
              s_ull(in.pos), strerror(in.error), s_ull(st->records));
        errno = in.error;
        rc = 1;
    } else if (st->status != AJ_OK) {
        s_damage_msg(name, st, what, err, errlen);
        errno = EILSEQ;
        rc = 1;
    }
done:
    free(in.buf);
    return rc;
}

//  ajournal_read: hand each event to the caller's function, then free it.
typedef struct {
    ajournal_fn *fn;
    void *arg;
} s_read_ctx_t;

static int s_take_read(Scada__AlarmEvent *ev, const ajournal_rec_t *rec, void *arg)
{
    s_read_ctx_t *ctx = arg;
    int r = ctx->fn ? ctx->fn(ev, rec, ctx->arg) : 0;
    scada__alarm_event__free_unpacked(ev, NULL);
    return r != 0;
}

static int s_take_none(Scada__AlarmEvent *ev, const ajournal_rec_t *rec, void *arg)
{
    (void)rec;
    (void)arg;
    scada__alarm_event__free_unpacked(ev, NULL);
    return 0;
}

//  Open a file for reading; -1 with the message and stats set.
static int s_open_read(const char *path, ajournal_stats_t *st, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        memset(st, 0, sizeof *st);
        st->status = AJ_ERR_IO;
        s_msg(err, errlen, "%s: cannot open: %s", path, strerror(e));
        errno = e;
    }
    return fd;
}

int ajournal_read(const char *path, ajournal_fn *fn, void *arg, ajournal_stats_t *stats, char *err,
                  size_t errlen)
{
    ajournal_stats_t st;
    int fd = s_open_read(path, &st, err, errlen);
    int rc = -1;
    if (fd >= 0) {
        s_read_ctx_t ctx = {fn, arg};
        rc = s_scan(fd, path, s_take_read, &ctx, &st, err, errlen);
        int e = errno;
        close(fd);
        errno = e;
    }
    if (stats)
        *stats = st;
    return rc;
}

//  --------------------------------------------------------------------------
//  The state of every alarm from one file

static int s_take_state(Scada__AlarmEvent *ev, const ajournal_rec_t *rec, void *arg)
{
    (void)rec;
    if (s_state_reserve(arg) < 0) {
        scada__alarm_event__free_unpacked(ev, NULL);
        return -1;
    }
    s_state_put(arg, ev);
    return 0;
}

ajournal_state_t *ajournal_state_load(const char *path, ajournal_stats_t *stats, char *err,
                                      size_t errlen)
{
    ajournal_stats_t st;
    ajournal_state_t *state = NULL;
    int fd = s_open_read(path, &st, err, errlen);
    if (fd >= 0) {
        state = s_state_new();
        int rc = -1;
        if (state)
            rc = s_scan(fd, path, s_take_state, state, &st, err, errlen);
        else {
            s_msg(err, errlen, "%s: %s", path, strerror(ENOMEM));
            errno = ENOMEM;
        }
        int e = errno;
        if (rc < 0)
            ajournal_state_destroy(&state);
        close(fd);
        errno = e;
    }
    if (stats)
        *stats = st;
    return state;
}

//  --------------------------------------------------------------------------
//  History: the newest n events across the rotated files

typedef struct {
    uint8_t *buf;  //  packed event
    uint32_t len;  //
    uint32_t cap;  //  bytes allocated at buf
    uint64_t seq;  //
    bool snapshot; //  a snapshot record of its file
} s_item_t;

//  The newest `max` items of one file, in a ring.
typedef struct {
    s_item_t *items;
    size_t n, cap, head, max;
} s_ring_t;

static int s_take_ring(Scada__AlarmEvent *ev, const ajournal_rec_t *rec, void *arg)
{
    s_ring_t *ring = arg;
    uint64_t seq = ev->seq;
    scada__alarm_event__free_unpacked(ev, NULL);
    s_item_t *it;
    if (ring->n < ring->max) {
        if (ring->n == ring->cap) {
            size_t cap = ring->cap ? ring->cap * 2 : 64;
            if (cap > ring->max)
                cap = ring->max;
            s_item_t *items = realloc(ring->items, cap * sizeof *items);
            if (!items) {
                errno = ENOMEM;
                return -1;
            }
            memset(items + ring->cap, 0, (cap - ring->cap) * sizeof *items);
            ring->items = items;
            ring->cap = cap;
        }
        it = &ring->items[ring->n++];
    } else {
        it = &ring->items[ring->head];
        ring->head = (ring->head + 1) % ring->max;
    }
    if (it->cap < rec->length) {
        uint8_t *buf = realloc(it->buf, rec->length);
        if (!buf) {
            errno = ENOMEM;
            return -1;
        }
        it->buf = buf;
        it->cap = rec->length;
    }
    memcpy(it->buf, rec->payload, rec->length);
    it->len = rec->length;
    it->seq = seq;
    it->snapshot = rec->snapshot;
    return 0;
}

static void s_items_free(s_item_t *items, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(items[i].buf);
    free(items);
}

//  Move the ring's items, oldest first, into a new array (*items, *n; the
//  ring is left empty). Returns 0, or -1 (ENOMEM, everything freed).
static int s_ring_take(s_ring_t *ring, s_item_t **items, size_t *n)
{
    s_item_t *out = ring->n ? malloc(ring->n * sizeof *out) : NULL;
    int rc = ring->n && !out ? -1 : 0;
    for (size_t i = 0; i < ring->n; i++) {
        if (out)
            out[i] = ring->items[(ring->head + i) % ring->n];
        else
            free(ring->items[i].buf);
    }
    for (size_t i = ring->n; i < ring->cap; i++)
        free(ring->items[i].buf);
    *items = out;
    *n = out ? ring->n : 0;
    free(ring->items);
    memset(ring, 0, sizeof *ring);
    if (rc < 0)
        errno = ENOMEM;
    return rc;
}

//  Merge the older file's items (all older than `acc`'s, except for snapshot
//  copies in acc of events the older file holds: seq <= older_last) into
//  acc, keeping the newest max. Returns 0 or -1 (ENOMEM; acc unchanged, the
//  older items freed).
static int s_merge(s_item_t **acc, size_t *nacc, s_item_t *older, size_t nolder,
                   uint64_t older_last, size_t max)
{
    s_item_t *a = *acc;
    size_t keep = 0;
    for (size_t i = 0; i < *nacc; i++) {
        if (a[i].snapshot && a[i].seq <= older_last)
            free(a[i].buf);
        else
            a[keep++] = a[i];
    }
    *nacc = keep;
    size_t total = nolder + keep;
    s_item_t *m = total ? malloc(total * sizeof *m) : NULL;
    if (total && !m) {
        s_items_free(older, nolder);
        errno = ENOMEM;
        return -1;
    }
    size_t i = 0, j = 0, k = 0;
    while (i < nolder || j < keep) {
        if (j == keep || (i < nolder && older[i].seq <= a[j].seq))
            m[k++] = older[i++];
        else
            m[k++] = a[j++];
    }
    size_t drop = total > max ? total - max : 0;
    for (k = 0; k < drop; k++)
        free(m[k].buf);
    if (drop)
        memmove(m, m + drop, (total - drop) * sizeof *m);
    free(older);
    free(a);
    *acc = m;
    *nacc = total - drop;
    return 0;
}

void ajournal_events_free(Scada__AlarmEvent ***events_p, size_t count)
{
    if (!events_p || !*events_p)
        return;
    for (size_t i = 0; i < count; i++)
        if ((*events_p)[i])
            scada__alarm_event__free_unpacked((*events_p)[i], NULL);
    free(*events_p);
    *events_p = NULL;
}

int ajournal_history(const char *path, size_t n, Scada__AlarmEvent ***events, size_t *count,
                     char *err, size_t errlen)
{
    *events = NULL;
    *count = 0;
    s_msg(err, errlen, "%s", "");
    s_item_t *acc = NULL;
    size_t nacc = 0;
    char note[S_ERR_MAX] = "", msg[S_ERR_MAX], name[4096];
    int rc = 0;
    bool gap = false;
    for (int i = 0; i <= AJ_KEEP_MAX && n > 0; i++) {
        const char *file = i == 0 ? path : s_rotated(name, sizeof name, path, i);
        ajournal_stats_t st;
        int fd = s_open_read(file, &st, msg, sizeof msg);
        if (fd < 0) {
            if (i == 0) {
                s_msg(err, errlen, "%s", msg);
                return -1;
            }
            if (errno == ENOENT && !gap) {
                gap = true; //  one missing file may be a rotation that stopped half-way
                continue;
            }
            break;
        }
        gap = false;
        s_ring_t ring = {.max = n};
        int r = s_scan(fd, file, s_take_ring, &ring, &st, msg, sizeof msg);
        int e = errno;
        close(fd);
        size_t nitems;
        s_item_t *items;
        if (s_ring_take(&ring, &items, &nitems) < 0 && r >= 0) {
            r = -1;
            e = ENOMEM;
        }
        if (r < 0) {
            s_items_free(items, nitems);
            if (i == 0 || e == ENOMEM) {
                s_msg(err, errlen, "%s", e == ENOMEM ? strerror(ENOMEM) : msg);
                s_items_free(acc, nacc);
                errno = e;
                return -1;
            }
            if (!note[0])
                snprintf(note, sizeof note, "%s", msg);
            break;
        }
        if (r == 1 && !note[0])
            snprintf(note, sizeof note, "%s", msg);
        //  An older file must hold older events: one left from an earlier
        //  journal (deleted and started again at seq 1) does not.
        uint64_t floor_seq = 0;
        for (size_t k = 0; k < nacc && !floor_seq; k++)
            floor_seq = acc[k].snapshot ? 0 : acc[k].seq;
        if (i > 0 && nitems > 0 && floor_seq && st.last_seq >= floor_seq) {
            if (!note[0])
                s_msg(note, sizeof note,
                      "%s: its events (up to seq %llu) are not older than those of the newer "
                      "file (from seq %llu): not used",
                      file, s_ull(st.last_seq), s_ull(floor_seq));
            s_items_free(items, nitems);
            break;
        }
        if (s_merge(&acc, &nacc, items, nitems, st.last_seq, n) < 0) {
            s_msg(err, errlen, "%s: %s", path, strerror(ENOMEM));
            s_items_free(acc, nacc);
            errno = ENOMEM;
            return -1;
        }
        size_t settled = 0;
        for (size_t k = 0; k < nacc; k++)
            settled += !acc[k].snapshot;
        if (settled >= n)
            break;
    }
    if (nacc > 0) {
        Scada__AlarmEvent **out = calloc(nacc, sizeof *out);
        if (!out)
            rc = -1;
        for (size_t k = 0; out && k < nacc; k++) {
            out[k] = scada__alarm_event__unpack(NULL, acc[k].len, acc[k].buf);
            if (!out[k]) {
                ajournal_events_free(&out, k);
                rc = -1;
            }
        }
        if (rc == 0) {
            *events = out;
            *count = nacc;
        } else {
            s_msg(err, errlen, "%s: %s", path, strerror(ENOMEM));
            errno = ENOMEM;
        }
    }
    s_items_free(acc, nacc);
    if (rc == 0)
        s_msg(err, errlen, "%s", note);
    return rc;
}

//  --------------------------------------------------------------------------
//  The writer

struct _ajournal_t {
    char *path;             //  as given
    char *tmp_path;         //  path.tmp: a new file while it is being written
    int fd;                 //  the current file, locked; -1 after a failed rotation lost it
    bool regular;           //  a regular file (not /dev/full...): can be cut back
    ajournal_sync_t policy; //
    uint64_t max_bytes;     //  rotation size
    int keep;               //  rotated files kept
    uint64_t size;          //  valid bytes of the file; appends go here
    uint64_t snap_end;      //  offset where the records after the snapshot begin
    uint64_t rotate_at;     //  rotate when size - snap_end reaches this
    uint64_t records;       //  records in the current file
    uint64_t last_seq;      //  of the last record
    bool have_seq;          //  the journal holds a record (any seq may come first)
    bool dirty;             //  written since the last fdatasync
    bool broken;            //  an fdatasync failed
    bool torn;              //  a failed write may have left bytes past size
    uint8_t *buf;           //  one frame: AJ_FRAME_SIZE + AJ_RECORD_MAX bytes
    ajournal_state_t *state;
    ajournal_counters_t counters;
    char error[S_ERR_MAX];
};

static int s_fail(ajournal_t *self, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int s_fail(ajournal_t *self, int errnum, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(self->error, sizeof self->error, fmt, ap);
    va_end(ap);
    errno = errnum;
    return -1;
}

static bool s_syncing(const ajournal_t *self)
{
    return self->policy != AJ_SYNC_NONE;
}

//  Buffered writes of a new file.
typedef struct {
    int fd;
    uint8_t *buf;
    size_t len;
    uint64_t off;
} s_out_t;

static int s_out_flush(s_out_t *out)
{
    if (out->len && s_pwrite_all(out->fd, out->buf, out->len, out->off) < 0)
        return -1;
    out->off += out->len;
    out->len = 0;
    return 0;
}

static int s_out_write(s_out_t *out, const uint8_t *p, size_t n)
{
    if (out->len + n > S_OUT_BUF && s_out_flush(out) < 0)
        return -1;
    if (n > S_OUT_BUF) {
        if (s_pwrite_all(out->fd, p, n, out->off) < 0)
            return -1;
        out->off += n;
        return 0;
    }
    memcpy(out->buf + out->len, p, n);
    out->len += n;
    return 0;
}

//  Write tmp_path: a header and, if `snapshot`, the last event of every
//  alarm in seq order; synced (unless AJ_SYNC_NONE) and locked. Returns its
//  descriptor (size, record count and snapshot end in the out arguments),
//  or -1 with errno set and the error message (tmp_path removed).
static int s_new_file(ajournal_t *self, bool snapshot, uint64_t *size, uint64_t *records,
                      uint64_t *snap_end)
{
    ajournal_state_t *state = self->state;
    size_t n = snapshot ? state->n : 0;
    if (snapshot && s_state_sort(state) < 0)
        return s_fail(self, ENOMEM, "%s: %s", self->tmp_path, strerror(ENOMEM));
    int fd = open(self->tmp_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return s_fail(self, errno, "%s: cannot create: %s", self->tmp_path, strerror(errno));
    s_out_t out = {.fd = fd, .buf = malloc(S_OUT_BUF)};
    int e = ENOMEM;
    const char *doing = "write";
    if (!out.buf)
        goto failed;
    uint8_t header[AJ_HEADER_SIZE];
    s_header(header, (uint32_t)n, s_wall_ms());
    if (s_out_write(&out, header, sizeof header) < 0)
        goto failed_errno;
    for (size_t i = 0; i < n; i++) {
        const Scada__AlarmEvent *ev = state->order[i];
        size_t len = scada__alarm_event__get_packed_size(ev);
        assert(len > 0 && len <= AJ_RECORD_MAX); //  it was read or appended as a record
        s_put32(self->buf, (uint32_t)len);
        scada__alarm_event__pack(ev, self->buf + AJ_FRAME_SIZE);
        s_put32(self->buf + 4, s_frame_crc(self->buf, (uint32_t)len));
        if (s_out_write(&out, self->buf, AJ_FRAME_SIZE + len) < 0)
            goto failed_errno;
    }
    if (s_out_flush(&out) < 0)
        goto failed_errno;
    doing = "sync";
    if (s_syncing(self) && fdatasync(fd) < 0)
        goto failed_errno;
    doing = "lock";
    if (flock(fd, LOCK_EX | LOCK_NB) < 0)
        goto failed_errno;
    free(out.buf);
    self->counters.bytes += out.off;
    *size = out.off;
    *records = n;
    *snap_end = out.off;
    return fd;
failed_errno:
    e = errno;
failed:
    free(out.buf);
    close(fd);
    unlink(self->tmp_path);
    return s_fail(self, e, "%s: cannot %s: %s", self->tmp_path, doing, strerror(e));
}

//  Start a new file: the current one becomes path.1 (older ones shift up,
//  the oldest is dropped), a new one with the snapshot becomes path.
static int s_rotate(ajournal_t *self)
{
    if (self->dirty && s_syncing(self)) {
        //  The old file's history must be durable before it leaves path.
        if (fdatasync(self->fd) < 0) {
            self->broken = true;
            return s_fail(self, errno, "%s: fdatasync before rotation failed: %s", self->path,
                          strerror(errno));
        }
        self->dirty = false;
        self->counters.syncs++;
    }
    uint64_t size, records, snap_end;
    int fd = s_new_file(self, true, &size, &records, &snap_end);
    if (fd < 0)
        return -1;
    char from[4096], to[4096];
    for (int i = self->keep - 1; i >= 1; i--)
        if (rename(s_rotated(from, sizeof from, self->path, i),
                   s_rotated(to, sizeof to, self->path, i + 1)) < 0 &&
            errno != ENOENT) {
            int e = errno;
            close(fd);
            unlink(self->tmp_path);
            return s_fail(self, e, "%s: cannot rename to %s: %s", from, to, strerror(e));
        }
    if (self->keep > 0) {
        s_rotated(to, sizeof to, self->path, 1);
        //  The directory is synced between the two renames: were the second
        //  one to reach the disk without the first, the old file would be lost.
        if (rename(self->path, to) < 0) {
            int e = errno;
            close(fd);
            unlink(self->tmp_path);
            return s_fail(self, e, "%s: cannot rename to %s: %s", self->path, to, strerror(e));
        }
        if (s_syncing(self) && s_sync_dir(self->path) < 0) {
            int e = errno;
            close(fd);
            if (rename(to, self->path) < 0)
                self->broken = true; //  path is gone; an open would adopt path.tmp
            else
                unlink(self->tmp_path);
            return s_fail(self, e, "%s: cannot sync its directory: %s", self->path, strerror(e));
        }
    }
    if (rename(self->tmp_path, self->path) < 0) {
        int e = errno;
        close(fd);
        if (self->keep > 0 && rename(to, self->path) < 0)
            self->broken = true; //  path is gone; an open would adopt path.tmp
        else
            unlink(self->tmp_path);
        return s_fail(self, e, "%s: cannot rename to %s: %s", self->tmp_path, self->path,
                      strerror(e));
    }
    if (s_syncing(self))
        s_sync_dir(self->path); //  the old name is already durable; this only hastens the new
    close(self->fd);
    self->fd = fd;
    self->size = size;
    self->records = records;
    self->snap_end = snap_end;
    self->rotate_at = self->max_bytes;
    self->dirty = false;
    self->torn = false;
    self->counters.rotations++;
    return 0;
}

//  path is missing: finish a rotation or repair that stopped between its
//  renames, if path.tmp is a complete journal. Returns the descriptor of
//  path, or -1 (path.tmp was not usable and is removed).
static int s_adopt_tmp(ajournal_t *self, char *err, size_t errlen)
{
    int fd = open(self->tmp_path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ajournal_stats_t st;
    char msg[S_ERR_MAX];
    if (flock(fd, LOCK_EX | LOCK_NB) < 0 ||
        s_scan(fd, self->tmp_path, s_take_none, NULL, &st, msg, sizeof msg) != 0 ||
        st.file_bytes < AJ_HEADER_SIZE) {
        close(fd);
        unlink(self->tmp_path);
        return -1;
    }
    if (rename(self->tmp_path, self->path) < 0) {
        close(fd);
        return -1;
    }
    if (s_syncing(self))
        s_sync_dir(self->path);
    s_msg(err, errlen,
          "%s: was missing; %s (a complete journal left by an interrupted rotation) "
          "renamed to it",
          self->path, self->tmp_path);
    snprintf(self->error, sizeof self->error, "%s", err ? err : "");
    return fd;
}

//  Reading at open: every record goes to the state table; the end of the
//  snapshot is noted.
static int s_take_open(Scada__AlarmEvent *ev, const ajournal_rec_t *rec, void *arg)
{
    ajournal_t *self = arg;
    if (rec->snapshot)
        self->snap_end = rec->offset + AJ_FRAME_SIZE + rec->length;
    return s_take_state(ev, rec, self->state);
}

static void s_free(ajournal_t *self)
{
    if (self->fd >= 0)
        close(self->fd);
    ajournal_state_destroy(&self->state);
    free(self->buf);
    free(self->path);
    free(self->tmp_path);
    free(self);
}

//  Open or create the file, validate it, cut a torn tail. Returns 0 or -1
//  (errno set, message in err).
static int s_open_file(ajournal_t *self, char *err, size_t errlen)
{
    const char *path = self->path;
    int fd = open(path, O_RDWR | O_CLOEXEC);
    bool created = false;
    if (fd < 0 && errno == ENOENT) {
        fd = s_adopt_tmp(self, err, errlen);
        if (fd < 0) {
            uint64_t size, records, snap_end;
            fd = s_new_file(self, false, &size, &records, &snap_end);
            if (fd < 0) {
                s_msg(err, errlen, "%s", self->error);
                return -1;
            }
            if (rename(self->tmp_path, path) < 0 || (s_syncing(self) && s_sync_dir(path) < 0)) {
                int e = errno;
                close(fd);
                unlink(self->tmp_path);
                s_msg(err, errlen, "%s: cannot create: %s", path, strerror(e));
                errno = e;
                return -1;
            }
            created = true;
        }
    }
    if (fd < 0) {
        int e = errno;
        s_msg(err, errlen, "%s: cannot open: %s", path, strerror(e));
        errno = e;
        return -1;
    }
    self->fd = fd;
    if (!created && flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int e = errno;
        if (e == EWOULDBLOCK)
            s_msg(err, errlen, "%s: in use: another process has it open for writing", path);
        else
            s_msg(err, errlen, "%s: cannot lock: %s", path, strerror(e));
        errno = e;
        return -1;
    }
    struct stat sb;
    if (fstat(fd, &sb) < 0) {
        int e = errno;
        s_msg(err, errlen, "%s: cannot open: %s", path, strerror(e));
        errno = e;
        return -1;
    }
    self->regular = S_ISREG(sb.st_mode);
    char note[S_ERR_MAX];
    snprintf(note, sizeof note, "%s", self->error); //  an adopted path.tmp
    ajournal_stats_t st;
    char msg[S_ERR_MAX];
    self->snap_end = AJ_HEADER_SIZE;
    int rc = s_scan(fd, path, s_take_open, self, &st, msg, sizeof msg);
    if (rc < 0) {
        int e = errno;
        s_msg(err, errlen, "%s", msg);
        errno = e;
        return -1;
    }
    if (rc == 1 && !st.tail) {
        s_msg(err, errlen,
              "%s; not opened for writing: this is not a torn last write, and cutting it would "
              "lose the bytes after it (ajournal_repair keeps the %llu records before it and "
              "moves the file to %s.damaged)",
              msg, s_ull(st.records), path);
        errno = EILSEQ;
        return -1;
    }
    if (rc == 1) {
        if (ftruncate(fd, (off_t)st.bytes_kept) < 0 || (s_syncing(self) && fdatasync(fd) < 0)) {
            int e = errno;
            s_msg(err, errlen, "%s; cannot cut it: %s", msg, strerror(e));
            errno = e;
            return -1;
        }
        self->counters.cut_bytes = st.file_bytes - st.bytes_kept;
        s_msg(note, sizeof note, "%s (%llu bytes cut from the end of the file)", msg,
              s_ull(self->counters.cut_bytes));
    }
    if (st.file_bytes == 0) {
        //  An empty file (or a device): it gets its header here.
        uint8_t header[AJ_HEADER_SIZE];
        s_header(header, 0, s_wall_ms());
        if (s_pwrite_all(fd, header, sizeof header, 0) < 0 ||
            (s_syncing(self) && fdatasync(fd) < 0)) {
            int e = errno;
            s_msg(err, errlen, "%s: cannot write the header: %s", path, strerror(e));
            errno = e;
            return -1;
        }
        self->counters.bytes += AJ_HEADER_SIZE;
        self->size = AJ_HEADER_SIZE;
    } else
        self->size = st.bytes_kept;
    self->records = st.records;
    self->last_seq = st.last_seq;
    self->have_seq = st.records > 0;
    if (self->state->n > 0 && self->state->last_seq > self->last_seq)
        self->last_seq = self->state->last_seq;
    //  path.tmp next to a path that exists is a rotation that never got to
    //  its first rename: its content is all in path.
    unlink(self->tmp_path);
    snprintf(self->error, sizeof self->error, "%s", note);
    s_msg(err, errlen, "%s", note);
    return 0;
}

ajournal_t *ajournal_open(const char *path, ajournal_sync_t policy, char *err, size_t errlen)
{
    s_msg(err, errlen, "%s", "");
    if (!path || !*path ||
        (policy != AJ_SYNC_EACH && policy != AJ_SYNC_BATCH && policy != AJ_SYNC_NONE)) {
        s_msg(err, errlen, "%s: bad arguments to ajournal_open", path ? path : "(null)");
        errno = EINVAL;
        return NULL;
    }
    ajournal_t *self = calloc(1, sizeof *self);
    if (!self) {
        s_msg(err, errlen, "%s: %s", path, strerror(ENOMEM));
        errno = ENOMEM;
        return NULL;
    }
    self->fd = -1;
    self->policy = policy;
    self->max_bytes = self->rotate_at = AJ_MAX_BYTES_DEFAULT;
    self->keep = AJ_KEEP_DEFAULT;
    self->path = strdup(path);
    self->tmp_path = s_path_plus(path, ".tmp");
    self->state = s_state_new();
    self->buf = malloc(AJ_FRAME_SIZE + AJ_RECORD_MAX);
    if (!self->path || !self->tmp_path || !self->state || !self->buf) {
        s_free(self);
        s_msg(err, errlen, "%s: %s", path, strerror(ENOMEM));
        errno = ENOMEM;
        return NULL;
    }
    if (s_open_file(self, err, errlen) < 0) {
        int e = errno;
        s_free(self);
        errno = e;
        return NULL;
    }
    self->counters.alarms = self->state->n;
    return self;
}

void ajournal_close(ajournal_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    ajournal_t *self = *self_p;
    if (self->fd >= 0 && self->dirty && !self->broken && s_syncing(self))
        fdatasync(self->fd);
    s_free(self);
    *self_p = NULL;
}

int ajournal_set_rotation(ajournal_t *self, uint64_t max_bytes, int keep)
{
    assert(self);
    if (max_bytes < AJ_MAX_BYTES_MIN || keep < 0 || keep > AJ_KEEP_MAX) {
        errno = EINVAL;
        return -1;
    }
    self->max_bytes = self->rotate_at = max_bytes;
    self->keep = keep;
    return 0;
}

int ajournal_sync(ajournal_t *self)
{
    assert(self);
    if (self->broken) {
        errno = EIO;
        return -1;
    }
    if (!self->dirty || !s_syncing(self))
        return 0;
    if (fdatasync(self->fd) < 0) {
        int e = errno;
        self->broken = true;
        return s_fail(self, e,
                      "%s: fdatasync failed: %s: events appended since the last sync may be "
                      "lost; close and open the journal again",
                      self->path, strerror(e));
    }
    self->dirty = false;
    self->counters.syncs++;
    return 0;
}

int ajournal_append(ajournal_t *self, const Scada__AlarmEvent *ev)
{
    assert(self && ev);
    assert(ev->base.descriptor == &scada__alarm_event__descriptor);
    if (self->broken || self->fd < 0)
        return s_fail(self, EIO,
                      "%s: an earlier fdatasync or rotation failed: close and open the journal "
                      "again",
                      self->path);
    if (!ev->alarm)
        return s_fail(self, EINVAL, "%s: event seq %llu has no alarm id: refused", self->path,
                      s_ull(ev->seq));
    if (self->have_seq && ev->seq <= self->last_seq)
        return s_fail(self, EINVAL,
                      "%s: event seq %llu of %s is not after the last seq %llu: "
                      "refused",
                      self->path, s_ull(ev->seq), ev->alarm, s_ull(self->last_seq));
    size_t len = scada__alarm_event__get_packed_size(ev);
    if (len > AJ_RECORD_MAX)
        return s_fail(self, EMSGSIZE,
                      "%s: event seq %llu of %s packs to %zu bytes, over the %d-byte record "
                      "limit: refused",
                      self->path, s_ull(ev->seq), ev->alarm, len, AJ_RECORD_MAX);
    uint8_t *frame = self->buf;
    s_put32(frame, (uint32_t)len);
    scada__alarm_event__pack(ev, frame + AJ_FRAME_SIZE);
    s_put32(frame + 4, s_frame_crc(frame, (uint32_t)len));
    //  Everything that can fail for lack of memory happens before the write.
    Scada__AlarmEvent *copy = scada__alarm_event__unpack(NULL, len, frame + AJ_FRAME_SIZE);
    if (!copy || s_state_reserve(self->state) < 0) {
        if (copy)
            scada__alarm_event__free_unpacked(copy, NULL);
        return s_fail(self, ENOMEM, "%s: %s", self->path, strerror(ENOMEM));
    }
    if (self->torn) {
        if (ftruncate(self->fd, (off_t)self->size) < 0) {
            int e = errno;
            scada__alarm_event__free_unpacked(copy, NULL);
            self->counters.write_errors++;
            return s_fail(self, e, "%s: cannot cut a failed write back: %s", self->path,
                          strerror(e));
        }
        self->torn = false;
    }
    if (s_pwrite_all(self->fd, frame, AJ_FRAME_SIZE + len, self->size) < 0) {
        int e = errno;
        scada__alarm_event__free_unpacked(copy, NULL);
        self->counters.write_errors++;
        //  A part of the frame may be in the file: cut it now (or before the
        //  next write), so the next record follows the last good one.
        if (self->regular && ftruncate(self->fd, (off_t)self->size) < 0)
            self->torn = true;
        return s_fail(self, e, "%s: cannot append event seq %llu of %s: %s", self->path,
                      s_ull(ev->seq), ev->alarm, strerror(e));
    }
    self->size += AJ_FRAME_SIZE + len;
    self->records++;
    self->last_seq = ev->seq;
    self->have_seq = true;
    self->dirty = true;
    self->counters.appends++;
    self->counters.bytes += AJ_FRAME_SIZE + len;
    s_state_put(self->state, copy);
    if (self->policy == AJ_SYNC_EACH && ajournal_sync(self) < 0)
        return -1;
    if (self->size - self->snap_end >= self->rotate_at && s_rotate(self) < 0) {
        //  The event is in the journal; the rotation is tried again later.
        self->counters.rotation_errors++;
        uint64_t step = self->max_bytes / 16 > 65536 ? self->max_bytes / 16 : 65536;
        self->rotate_at = self->size - self->snap_end + step;
    }
    return 0;
}

uint64_t ajournal_last_seq(const ajournal_t *self)
{
    return self->last_seq;
}

ajournal_state_t *ajournal_state(ajournal_t *self)
{
    return self->state;
}

const char *ajournal_error(const ajournal_t *self)
{
    return self->error;
}

void ajournal_counters(const ajournal_t *self, ajournal_counters_t *counters)
{
    *counters = self->counters;
    counters->size = self->size;
    counters->records = self->records;
    counters->last_seq = self->last_seq;
    counters->alarms = self->state->n;
    counters->dirty = self->dirty;
    counters->broken = self->broken;
}

const char *ajournal_path(const ajournal_t *self)
{
    return self->path;
}

//  --------------------------------------------------------------------------
//  Repair

//  Copy the first n bytes of fd into a new file `to`, synced. Returns 0 or -1.
static int s_copy_prefix(int fd, uint64_t n, const char *to)
{
    int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0)
        return -1;
    uint8_t *buf = malloc(S_IN_BUF);
    int rc = buf ? 0 : -1;
    if (!buf)
        errno = ENOMEM;
    for (uint64_t off = 0; rc == 0 && off < n;) {
        size_t want = n - off < S_IN_BUF ? (size_t)(n - off) : S_IN_BUF;
        ssize_t r = pread(fd, buf, want, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            if (r == 0)
                errno = EIO;
            rc = -1;
            break;
        }
        rc = s_pwrite_all(out, buf, (size_t)r, off);
        off += (uint64_t)r;
    }
    if (rc == 0)
        rc = fdatasync(out);
    int e = errno;
    free(buf);
    close(out);
    if (rc < 0)
        unlink(to);
    errno = e;
    return rc;
}

int ajournal_repair(const char *path, char *err, size_t errlen)
{
    ajournal_stats_t st;
    char msg[S_ERR_MAX];
    int fd = s_open_read(path, &st, err, errlen);
    if (fd < 0)
        return -1;
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int e = errno;
        close(fd);
        s_msg(err, errlen, "%s: in use: a writer has it open; not repaired", path);
        errno = e;
        return -1;
    }
    int rc = s_scan(fd, path, s_take_none, NULL, &st, msg, sizeof msg);
    if (rc < 0 || (rc == 1 && st.status == AJ_ERR_IO)) {
        int e = errno;
        close(fd);
        s_msg(err, errlen, "%s; not repaired", msg);
        errno = e;
        return -1;
    }
    if (rc == 0 || st.tail) {
        close(fd);
        if (rc == 0)
            s_msg(err, errlen, "%s: %llu records, no damage: nothing to repair", path,
                  s_ull(st.records));
        else
            s_msg(err, errlen,
                  "%s; a torn last write, which opening the journal cuts: nothing "
                  "to repair",
                  msg);
        return 0;
    }
    char *tmp = s_path_plus(path, ".tmp"), *damaged = s_path_plus(path, ".damaged");
    int result = -1, e = ENOMEM;
    const char *failed = "";
    if (!tmp || !damaged)
        failed = "out of memory";
    else if (s_copy_prefix(fd, st.bytes_kept, tmp) < 0) {
        e = errno;
        failed = tmp;
    } else if (rename(path, damaged) < 0 || s_sync_dir(path) < 0) {
        e = errno;
        unlink(tmp);
        failed = damaged;
    } else if (rename(tmp, path) < 0) {
        //  path is missing and path.tmp complete: ajournal_open adopts it.
        e = errno;
        failed = path;
    } else {
        s_sync_dir(path);
        result = 1;
    }
    if (result == 1)
        s_msg(err, errlen,
              "%s: repaired: the %llu records before the damage (%llu bytes) kept, the damaged "
              "file moved to %s (%s)",
              path, s_ull(st.records), s_ull(st.bytes_kept), damaged, msg);
    else
        s_msg(err, errlen, "%s: not repaired: %s: %s", path, failed, strerror(e));
    close(fd);
    free(tmp);
    free(damaged);
    errno = result == 1 ? 0 : e;
    return result;
}
