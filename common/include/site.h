/*  site: the site file, loaded and validated into plain structs.

    One YAML file describes one site: its I/O servers, channels, devices and
    tags (see README "Site file"). site_load() parses and validates the whole
    file once; every later module reads these structs and never the YAML.
    Every error names the file, the line and the key, e.g.
        site.yaml:14: channels[0].devices[2].tags[1].type: unknown type "flaot32"
                      (expected bool, int16, uint16, int32, uint32, float32)
    The structs are owned by the site_t and freed by site_destroy().
*/
#ifndef SITE_H_INCLUDED
#define SITE_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    SITE_CH_NETWORK = 0, //  each outstation its own TCP socket (address host:port per device)
    SITE_CH_TCP,         //  one TCP connection to a gateway, outstations by unit id
    SITE_CH_SERIAL,      //  Modbus RTU on a serial port
    SITE_CH_LISTEN       //  outstations connect in to the I/O server
} site_chtype_t;

typedef enum {
    SITE_AREA_CO = 0, //  coil, read/write bit            (fc 1, 5, 15)
    SITE_AREA_DI,     //  discrete input, read-only bit   (fc 2)
    SITE_AREA_HR,     //  holding register, read/write    (fc 3, 6, 16)
    SITE_AREA_IR      //  input register, read-only       (fc 4)
} site_area_t;

typedef enum {
    SITE_T_BOOL = 0,
    SITE_T_INT16,
    SITE_T_UINT16,
    SITE_T_INT32,
    SITE_T_UINT32,
    SITE_T_FLOAT32
} site_type_t;

typedef enum {
    SITE_WO_BIG = 0, //  "big": high word in the lower register address (ABCD), the default
    SITE_WO_LITTLE   //  "little": low word first (CDAB)
} site_word_order_t;

typedef enum {
    SITE_SIM_CONST = 0, //  holds its initial value (writes change it)
    SITE_SIM_RAMP,      //  min..max over period_ms, then wraps
    SITE_SIM_SINE,      //  sine between min and max with period_ms
    SITE_SIM_NOISE,     //  uniform random in min..max, new value every period_ms
    SITE_SIM_TOGGLE     //  bool/int that flips between min and max every period_ms
} site_sim_kind_t;

//  How scada-devsim moves a tag's value; ignored by every other process.
typedef struct {
    site_sim_kind_t kind;
    double min, max;    //  engineering units
    uint32_t period_ms; //  > 0
    double initial;     //  value at start
} site_sim_t;

//  One limit of a tag's alarms (HIHI, HI, LO, LOLO).
typedef struct {
    bool set;
    double limit;  //  engineering units
    int priority;  //  1 is the highest; default the tag's alarm priority
    char *message; //  what the operator reads; default "<TAG> high" etc.
} site_limit_t;

//  The alarms of a tag (read by scada-alarm; every other process ignores them).
typedef struct {
    bool any; //  the tag has alarms
    site_limit_t hihi, hi, lo, lolo;
    bool has_state; //  digital alarm: active while the value equals `state`
    double state;
    int state_priority;
    char *state_message;
    double deadband;      //  analog limits clear only this far back inside, default 0
    uint32_t on_delay_ms; //  the condition must hold this long first, default 0
    int priority;         //  default priority of its alarms, default 3
    char *area;           //  default "default"
    bool comm;            //  a COMM alarm while its quality is bad, default true
} site_alarms_t;

typedef struct site_channel_s site_channel_t;
typedef struct site_device_s site_device_t;

typedef struct {
    char *name;                   //  unique in the site, e.g. "PLC1.LEVEL"
    site_area_t area;             //  from address "hr:12"
    uint16_t address;             //  zero-based register or bit number
    site_type_t type;             //  default uint16 for registers, bool for bits
    site_word_order_t word_order; //  32-bit types only; tag key, else the device's
    double scale, offset;         //  engineering = raw * scale + offset (default 1, 0);
                                  //  also settable as raw: [lo, hi], eng: [lo, hi]
    uint32_t scan_ms;             //  scan period, default the device's scan_ms (1000)
    double deadband;              //  publish only changes larger than this (eng units), default 0
    bool always_scan;             //  polled even when nobody subscribed
    bool writable;          //  default true for co and hr, false (and not settable) for di and ir
    site_sim_t sim;         //  simulation for scada-devsim
    site_alarms_t alarms;   //  for scada-alarm
    char *area_key;         //  its own `area:` (plant area), or NULL
    const char *plant_area; //  the plant area it belongs to (roles, default alarm
                            //  area): its area:, else its device's, else its
                            //  channel's, else "default"
    site_device_t *device;  //  back pointer
    uint32_t id;            //  1-based position in the file (channels, devices, tags in
                            //  order): the small numeric id of the broker protocol
    int line;               //  line in the site file
} site_tag_t;

typedef struct {
    char *ioserver; //  name of an entry in site_t.ioservers
    int priority;   //  1 is the highest
} site_offer_t;

struct site_device_s {
    char *name;                   //  unique in the site
    char *host;                   //  network: from address "host:port"; other types NULL
    uint16_t port;                //  network: from address
    uint8_t unit;                 //  Modbus unit id (default 1; 255 commonly for TCP devices)
    site_word_order_t word_order; //  default for its tags
    uint32_t scan_ms;             //  default scan period of its tags (1000)
    site_offer_t *servers;        //  at least one
    size_t nservers;
    site_tag_t *tags;
    size_t ntags;
    char *area_key;          //  `area:` for its tags, or NULL (the channel's)
    site_channel_t *channel; //  back pointer
    int line;
};

struct site_channel_s {
    char *name;
    site_chtype_t type;
    uint32_t standard_reply_delay_ms; //  default 200
    uint32_t baud;                    //  link speed for transmission time; 0 = not limited
    uint32_t max_read_timeouts;       //  >= 1, default 3
    uint32_t max_write_timeouts;      //  >= 1, default 3
    uint32_t max_gap;                 //  request merging: largest hole bridged, in registers or
                                      //  bits (default 16)
    char *host;                       //  tcp: gateway host; listen: bind address
    uint16_t port;                    //  tcp: gateway port; listen: port
    char *serial_port;                //  serial: e.g. /dev/ttyUSB0
    char parity;                      //  serial: 'N', 'E' or 'O' (default 'N')
    uint8_t data_bits;                //  serial: 7 or 8 (default 8)
    uint8_t stop_bits;                //  serial: 1 or 2 (default 1)
    bool iolog;                       //  I/O log on at start
    char *area_key;                   //  `area:` for its devices' tags, or NULL ("default")
    site_device_t *devices;
    size_t ndevices;
    int line;
};

typedef struct {
    char *name;
    uint32_t connect_window;         //  attempts in flight at most, >= 1, default 10
    uint32_t connect_timeout_ms;     //  default 3000
    uint32_t connect_timeout_min_ms; //  floor of the adaptive connect timeout, default 250
    uint32_t reconnect_min_ms;       //  default 1000
    uint32_t reconnect_max_ms;       //  default 60000, >= reconnect_min_ms
    uint32_t recent_ms;     //  a device lost less than this ago is "recent", default 600000
    uint32_t integrity_ms;  //  full value refresh period, default 30000
    char *publish;          //  ZeroMQ endpoint values and events are published on
    char *control;          //  ZeroMQ endpoint of the request socket (writes, status)
    char *iolog_dir;        //  where channel I/O logs go: DIR/<ioserver>-<channel>.log
                            //  (default "iolog", relative to the working directory)
    uint32_t iolog_max_kb;  //  rotate an I/O log at this size, default 10240
    uint32_t iolog_keep;    //  rotated files kept, default 5
    bool always_scan;       //  poll every tag of its devices, subscribed or not
                            //  (standalone use without brokers); default false
    uint32_t unit_probe_ms; //  a device none of whose tags is polled is still read
                            //  (one register) this often to know it is online,
                            //  default 5000
    int line;
} site_ioserver_t;

typedef struct {
    char *endpoint; //  ROUTER the resolver binds, default tcp://127.0.0.1:5500
    int line;
} site_resolver_t;

typedef enum {
    SITE_SYNC_BATCH = 0, //  fsync once per event-loop turn, before anything is confirmed
    SITE_SYNC_EACH,      //  fsync every record
    SITE_SYNC_NONE       //  leave it to the OS (tests, benchmarks)
} site_sync_t;

typedef struct {
    char *publish;           //  PUB of alarm events, default tcp://127.0.0.1:5800
    char *control;           //  ROUTER for scadactl alarms/ack/shelve, default :5801
    char *journal;           //  journal file, default "alarms.journal" (relative paths
                             //  against the site file's directory)
    site_sync_t sync;        //  default batch
    uint32_t journal_max_kb; //  rotate past this size, default 65536
    int comm_priority;       //  priority of communication alarms, default 1
    char *comm_area;         //  their area, default "comm"
    uint32_t comm_delay_ms;  //  TAG.COMM only after this long without a good value (10000)
    bool device_alarms;      //  COMM alarms for devices offline and channel/socket
                             //  I/O timeouts, default true
    char *broker;            //  broker it subscribes alarm tags through (default the
                             //  first listed, or b1)
    int line;
} site_alarm_t;

typedef struct {
    char *name;
    char *endpoint;               //  ROUTER clients connect to, default
                                  //  tcp://127.0.0.1:(5700 + 10 x position)
    bool resolve_on_startup;      //  resolve every tag at start (page change = subscribe only)
    bool subscribe_on_startup;    //  subscribe every tag at start (all polled all the time)
    uint32_t update_interval_ms;  //  updates to one client at most this often, default 100
    uint32_t client_heartbeat_ms; //  heartbeat on an idle client link, default 5000
    uint32_t initial_wait_ms;     //  a subscribe reply waits this long at most for first
                                  //  values, default 200
    uint32_t write_timeout_ms;    //  a write the I/O server has not answered fails, default 5000
    int line;
} site_broker_t;

//  A role of security.roles: the plant areas its users may read, and those
//  they may also write. "*" is every area; write implies read.
typedef struct {
    char *name;
    char **read;
    size_t nread;
    char **write;
    size_t nwrite;
    int line;
} site_role_t;

//  security.users: a certificate name (the `name` of its public key file)
//  and its role.
typedef struct {
    char *user;
    char *role_name;
    const site_role_t *role;
    int line;
} site_user_t;

typedef struct {
    char *path;                        //  the file it was loaded from
    char *site;                        //  names every Redis key: scada:<site>:...
    char *redis_host;                  //  default 127.0.0.1
    uint16_t redis_port;               //  default 6379
    char *redis_user;                  //  redis.user: ACL user for AUTH (default: the default user)
    char *redis_password_file;         //  redis.password_file: first line is the password
    char *redis_password_env;          //  redis.password_env: the variable holding it
    char *redis_password;              //  read at load from one of those; NULL: no AUTH
    int redis_line;                    //  line of the redis: section
    uint32_t ping_time_ms;             //  default 1000
    uint32_t resolve_retry_backoff_ms; // default 500
    char *devsim_control;   //  scada-devsim control endpoint, default tcp://127.0.0.1:5590
    char **devsim_start;    //  devsim: {start: [...]}: control commands scada-devsim
                            //  applies to itself at start, in order; others ignore them
    int *devsim_start_line; //  line of each in the site file
    size_t ndevsim_start;
    site_ioserver_t *ioservers;
    size_t nioservers;
    site_channel_t *channels;
    size_t nchannels;
    site_resolver_t resolver; //  defaults when the file has no resolver section
    site_alarm_t alarm;       //  defaults when the file has no alarm section
    char *security_keys;      //  security.keys: certificate directory (default "keys")
    bool security_plain;      //  security.plain: no CURVE (said at every start)
    char *security_audit_dir; //  security.audit_dir: audit files, one per process that takes
                              //  writes (default "audit", against the site file's directory)
    int security_line;        //  line of the security: section (0: none)
    site_role_t *roles;       //  security.roles; none: every allowed certificate may
    size_t nroles;            //  read and write everything
    site_user_t *users;       //  security.users
    size_t nusers;
    char *default_role_name;         //  security.default_role: for certificates not in users
    const site_role_t *default_role; //  (NULL: they may do nothing)
    site_broker_t *brokers;          //  as listed (may be none)
    size_t nbrokers;
    site_broker_t default_broker; //  for a broker name the file does not list: "b1" on
                                  //  tcp://127.0.0.1:5700 with the defaults above
    size_t ndevices;              //  over all channels
    size_t ntags;                 //  over all devices
    site_tag_t **tags_by_id;      //  [id - 1] for id 1..ntags
    struct site_index_s *index;   //  private to site.c: name indexes behind the lookups; a
                                  //  site_t built by hand leaves it NULL and the lookups scan
} site_t;

//  Load and validate a site file. Returns NULL on any error and writes one
//  message "FILE:LINE: KEY: what is wrong" into err (errlen bytes, always
//  terminated). Caller owns the return value.
site_t *site_load(const char *path, char *err, size_t errlen);

//  Same from a string already in memory; `name` stands for the file in messages.
site_t *site_load_string(const char *text, size_t len, const char *name, char *err, size_t errlen);

//  Destroy a site; tolerates NULL and sets *self_p to NULL.
void site_destroy(site_t **self_p);

//  Lookups; NULL if there is none.
site_ioserver_t *site_ioserver(const site_t *self, const char *name);
site_device_t *site_device(const site_t *self, const char *name);
site_tag_t *site_tag(const site_t *self, const char *name);
site_tag_t *site_tag_by_id(const site_t *self, uint32_t id);

//  The broker called `name`: the listed one, or the default (defaults above,
//  endpoint tcp://127.0.0.1:5700) for a name the file does not list. NULL
//  name: the first listed broker, or the default.
const site_broker_t *site_broker(const site_t *self, const char *name);

//  Priority of `ioserver` for `device`, or 0 if that I/O server does not serve it.
int site_device_priority(const site_device_t *device, const char *ioserver);

//  A path from the site file: absolute as it is, relative ones against the
//  directory of the site file, so every process finds the same file.
//  Caller owns the result (free()); NULL on allocation failure.
char *site_path(const site_t *self, const char *path);

//  Names for enums, as written in the site file.
const char *site_chtype_name(site_chtype_t type);
const char *site_type_name(site_type_t type);
const char *site_area_name(site_area_t area);

//  Roles (security.roles). The role of a certificate name: its entry in
//  security.users, else security.default_role; NULL when it has none (and
//  so no rights). Without roles in the site this is NULL too: ask
//  site_may() first.
const site_role_t *site_role_of(const site_t *site, const char *user);

//  May `user` (a certificate name; NULL: unidentified) read, or write, the
//  tags of plant area `area`? Always true on a site without roles; an
//  unidentified client of a site with roles may do nothing.
bool site_may(const site_t *site, const char *user, const char *area, bool write);

//  Registers (or bits) a tag of this type occupies: 1 for bool/16-bit, 2 for 32-bit.
int site_type_width(site_type_t type);

//  Name of a sync policy as written in the site file ("batch", "each", "none").
const char *site_sync_name(site_sync_t sync);

//  Bind a ZeroMQ socket to an endpoint of the site file (common/src/sbind.c).
//  The endpoint is bound as given, except a tcp:// endpoint whose host is a
//  host name (not *, not an IPv4 or [IPv6] address, not an interface of this
//  machine): ZeroMQ cannot bind a name, and peers connect to it by that name
//  (a docker-compose service), so it is bound as tcp://*:PORT, and
//  localhost as tcp://127.0.0.1:PORT, with one log line saying so. A
//  bracketed IPv6 address turns the socket's ipv6 option on. Returns what
//  zsock_bind() returns (>= 0: the port, 0 for a non-tcp endpoint), or -1
//  with "cannot bind ENDPOINT: reason" in err.
typedef struct _zsock_t zsock_t;
int site_bind(zsock_t *sock, const char *endpoint, char *err, size_t errlen);

#endif
