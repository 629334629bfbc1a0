/* config: edgerec's settings as flat dotted keys with typed getters.
 *
 * Provides: struct config (opaque), option tables that modules register,
 * a file parser (`key = value`, `# comments`, `[section]` prefixes), the
 * EDGEREC_* environment overrides and the typed getters.
 * Uses: common (log, util) only.
 *
 * Each module declares a table of the options it reads and registers it; a
 * value is accepted only for a registered key, so a typo in the file is
 * reported as "path:line: unknown option 'x'". A key ending in ".*" inside
 * the table, e.g. "room.*.source", declares a family: the '*' stands for one
 * non-empty segment without dots ("room.lobby.source").
 *
 * Values are stored as strings and checked against the option's type when
 * they are set, so a getter never sees a malformed value:
 *   CONFIG_STR       any text
 *   CONFIG_INT       a decimal integer (optional sign)
 *   CONFIG_BOOL      true/false, yes/no, on/off, 1/0 (any case)
 *   CONFIG_DOUBLE    a decimal number
 *   CONFIG_SIZE      bytes, with an optional K, M, G or T suffix (powers of
 *                    1024, "B"/"iB" allowed after it): "512", "10M", "2GiB"
 *   CONFIG_DURATION  a number with ms, s, m, h or d; a bare number means
 *                    seconds: "7200", "30s", "250ms", "5m", "2h", "1.5h"
 * config_get_int() returns sizes in bytes and durations in milliseconds.
 *
 * Order of precedence: registered default < file < environment < explicit
 * config_set() (the command line). Threads: configure (register, load, env,
 * set) from one thread; after that any thread may read. Readers and a later
 * config_set() may also overlap safely: reads take a read lock, and a
 * string returned by a getter stays valid until config_free(), even when the
 * key is set again (the old text is kept, not freed). */
#ifndef EDGEREC_CONFIG_H
#define EDGEREC_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

enum config_type {
	CONFIG_STR = 1,
	CONFIG_INT,
	CONFIG_BOOL,
	CONFIG_DOUBLE,
	CONFIG_SIZE,
	CONFIG_DURATION,
};

/* One option a module reads. 'def' is the default as text (NULL = none);
 * 'help' is one line shown by config_dump and in error messages. A table is
 * an array that ends with an all-zero entry ({0}); it must outlive the
 * struct config (a static const table does). */
struct config_option {
	const char *key;
	enum config_type type;
	const char *def;
	const char *help;
};

struct config;

/* Returns an empty configuration (no options registered), or NULL when out
 * of memory. */
struct config *config_new(void);
/* Frees 'c' and every string a getter returned. NULL is a no-op. */
void config_free(struct config *c);

/* Registers a module's table. Registering the same key again with the same
 * type is allowed (two modules reading one option); another type is an
 * error, as is a malformed key or a default that does not parse. Values set
 * earlier for keys this table declares (see config_allow_unknown) are
 * checked now. Returns 0 or -1 (and logs why). */
int config_register(struct config *c, const struct config_option *table);

/* By default a key that no table declares is an error. A tool that reads
 * the shared file but registers only the few options it needs (edgerec
 * token) allows unknown keys: they are kept as plain strings and checked if
 * a table registered later declares them. */
void config_allow_unknown(struct config *c, bool allow);

/* Reads 'path': `key = value` lines, blank lines, lines whose first
 * non-blank character is '#', and `[section]` headers that prefix the keys
 * after them ("[s3]" then "bucket = x" sets "s3.bucket"; "[]" clears the
 * prefix). A value may be wrapped in double quotes to keep spaces or '#'
 * literally (\" and \\ escape inside quotes); otherwise a '#' preceded by a
 * blank starts a comment and surrounding blanks are trimmed. The whole file
 * is checked before any value is applied: on error nothing changes, -1
 * comes back and 'err' holds "path:line: reason". Returns 0 on success. */
int config_load_file(struct config *c, const char *path, char *err, size_t errlen);

/* Same as config_load_file for text already in memory; 'name' is used in
 * error messages in place of the path. */
int config_load_string(struct config *c, const char *name, const char *text, size_t len,
		       char *err, size_t errlen);

/* Applies EDGEREC_<KEY> environment variables: the key upper-cased with
 * '.' (and '-') turned into '_' (EDGEREC_REDIS_URL, EDGEREC_S3_ENDPOINT).
 * For a family the wildcard segment is taken as written:
 * EDGEREC_ROOM_lobby_SOURCE sets room.lobby.source. An invalid value is
 * logged and ignored; config_apply_env_checked reports it instead. */
void config_apply_env(struct config *c);
/* As config_apply_env, but an invalid value is an error: -1, 'err' says
 * "EDGEREC_X: reason" and no variable is applied. */
int config_apply_env_checked(struct config *c, char *err, size_t errlen);

/* Reloads the configuration, validate-then-swap: reads 'path' and the
 * environment again into a new value set beside the live one (values given
 * with config_set are kept; keys no longer in the file return to their
 * defaults), checks all of it, and only then swaps it in under the lock.
 * On any error the live values stay as they were and -1 comes back with
 * 'err' ("path:line: reason"). Otherwise returns how many keys changed
 * value. Strings returned earlier by the getters stay valid. Modules that
 * copied a value at start-up keep their copy: a reload changes what the
 * getters return from now on. */
int config_reload_file(struct config *c, const char *path, char *err, size_t errlen);

/* Sets one value after checking it. Returns 0, or -1 with 'err' filled
 * ("unknown option 'x'", "max_concurrent_recordings: 'ten' is not an
 * integer"). */
int config_set(struct config *c, const char *key, const char *value, char *err, size_t errlen);

/* The value of 'key': the set value, else the registered default, else
 * NULL. The string stays valid until config_free(). */
const char *config_get_str(const struct config *c, const char *key);
/* Integer view: INT as is, SIZE in bytes, DURATION in milliseconds, BOOL as
 * 0/1. 0 when the key has no value. */
long long config_get_int(const struct config *c, const char *key);
/* Boolean view; false when the key has no value or is not a boolean. */
bool config_get_bool(const struct config *c, const char *key);
/* Floating view (DOUBLE, INT; DURATION in seconds); 0 when unset. */
double config_get_double(const struct config *c, const char *key);
/* True when the key has a value from the file, the environment or
 * config_set (not only a default). */
bool config_is_set(const struct config *c, const char *key);
/* Where the value of 'key' came from: "path:line", "env EDGEREC_X",
 * "set", "default", or NULL when it has none. Valid until config_free. */
const char *config_origin(const struct config *c, const char *key);

/* Calls 'cb' for every key that has a value (set or default) and starts
 * with 'prefix' ("" or NULL for all), in key order. The callback runs
 * without any lock held and may call the getters; the strings stay valid. */
void config_foreach(const struct config *c, const char *prefix,
		    void (*cb)(void *opaque, const char *key, const char *value), void *opaque);

/* Writes every registered option with its type, value, origin and help to
 * 'out' (a FILE *), for `--print-config` style diagnostics. */
void config_dump(const struct config *c, void *out);

/* The parsers behind the types, for modules that read such values from
 * elsewhere (a request, a policy). Each returns 0 or -1 on malformed text. */
int config_parse_int(const char *s, long long *out);
int config_parse_bool(const char *s, bool *out);
int config_parse_double(const char *s, double *out);
int config_parse_size(const char *s, long long *bytes);
int config_parse_duration(const char *s, long long *ms);

#endif
