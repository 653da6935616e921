/*  slog: the suite's level-checked log.

    One line per event on stderr: "2026-11-22T03:14:15.123Z io1 W message".
    Every line carries the process name given to slog_init(), so the logs of
    several processes can be merged and still read. The level is checked in the
    macro, before any argument is evaluated.
*/
#ifndef SLOG_H_INCLUDED
#define SLOG_H_INCLUDED

#include <stdarg.h>

typedef enum { SLOG_DEBUG = 0, SLOG_INFO = 1, SLOG_WARN = 2, SLOG_ERROR = 3 } slog_level_t;

extern slog_level_t slog_level;

//  Set the name that prefixes every line, and the lowest level that is printed.
void slog_init(const char *name, slog_level_t level);

//  Parse "debug", "info", "warn", "error"; returns -1 on anything else.
int slog_parse_level(const char *text);

//  Print one line if level passes; use the macros below instead.
void slog_raw(slog_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define slog_debug(...)                                                                            \
    do {                                                                                           \
        if (slog_level <= SLOG_DEBUG)                                                              \
            slog_raw(SLOG_DEBUG, __VA_ARGS__);                                                     \
    } while (0)
#define slog_info(...)                                                                             \
    do {                                                                                           \
        if (slog_level <= SLOG_INFO)                                                               \
            slog_raw(SLOG_INFO, __VA_ARGS__);                                                      \
    } while (0)
#define slog_warn(...)                                                                             \
    do {                                                                                           \
        if (slog_level <= SLOG_WARN)                                                               \
            slog_raw(SLOG_WARN, __VA_ARGS__);                                                      \
    } while (0)
#define slog_error(...) slog_raw(SLOG_ERROR, __VA_ARGS__)

#endif
