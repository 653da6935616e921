/*  slog: the suite's level-checked log. See slog.h. */
#include "slog.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

slog_level_t slog_level = SLOG_INFO;
static char s_name[64] = "scada";

void slog_init(const char *name, slog_level_t level)
{
    snprintf(s_name, sizeof s_name, "%s", name ? name : "scada");
    slog_level = level;
}

int slog_parse_level(const char *text)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++)
        if (text && strcasecmp(text, names[i]) == 0)
            return i;
    return -1;
}

void slog_raw(slog_level_t level, const char *fmt, ...)
{
    static const char tag[] = "DIWE";
    char line[1024];
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %s %c ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, (int)(tv.tv_usec / 1000), s_name, tag[level & 3]);
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof line)
        vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    //  One write per line so lines of concurrent processes do not interleave.
    size_t len = strnlen(line, sizeof line - 2);
    line[len++] = '\n';
    fwrite(line, 1, len, stderr);
    fflush(stderr);
}
