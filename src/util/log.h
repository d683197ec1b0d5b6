/* Daemon logging. Library-like modules never log (STYLE.md); the daemon, API and drivers do.
 * The macro tests the level before evaluating its arguments, so disabled debug logs cost nothing. */
#ifndef FLT_LOG_H
#define FLT_LOG_H

enum log_level { LOG_LVL_ERROR = 0, LOG_LVL_WARN, LOG_LVL_NOTICE, LOG_LVL_INFO, LOG_LVL_DEBUG };

extern int log_level_current;

void log_set_level(int level);
/* Parse "error|warn|notice|info|debug"; returns the level or -1. */
int log_level_parse(const char *s);
void log_write(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define LOG(lvl, ...)                                                                              \
	do {                                                                                       \
		if ((lvl) <= log_level_current)                                                    \
			log_write((lvl), __VA_ARGS__);                                             \
	} while (0)
#define log_error(...) LOG(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warn(...) LOG(LOG_LVL_WARN, __VA_ARGS__)
#define log_notice(...) LOG(LOG_LVL_NOTICE, __VA_ARGS__)
#define log_info(...) LOG(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...) LOG(LOG_LVL_DEBUG, __VA_ARGS__)

#endif
