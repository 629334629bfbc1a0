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

/* Flags of an option. */
enum {
	/* The value is a credential: config_dump shows "(redacted)". */
	CONFIG_SECRET = 1 << 0,
	/* The running program applies a new value on reload (SIGHUP);
	 * without it a change waits for a restart. */
	CONFIG_LIVE = 1 << 1,
};

/* One option a module reads. 'def' is the default as text (NULL = none);
 * 'help' is one line shown by config_dump and in error messages.
 * 'choices' (optional, NULL-terminated) makes a string option an
 * enumeration: any other value is refused when it is set, with a message
 * naming the allowed ones ("storage_backend: 's4' is not one of local,
 * s3"). 'flags' are CONFIG_SECRET and friends. A table is an array that
 * ends with an all-zero entry ({0}); it must outlive the struct config (a
 * static const table does). The two last fields are usually given by name:
 *     { "storage_backend", CONFIG_STR, "local", "where ...", .choices = backends },
 *     { "jwt_secret", CONFIG_STR, NULL, "HS256 secret", .flags = CONFIG_SECRET }, */
struct config_option {
	const char *key;
	enum config_type type;
	const char *def;
	const char *help;
	const char *const *choices;
	unsigned flags;
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
/* The flags (CONFIG_SECRET, CONFIG_LIVE) of the option declaring 'key';
 * 0 for an unknown key. */
unsigned config_flags(const struct config *c, const char *key);
/* Where the value of 'key' came from: "path:line", "env EDGEREC_X",
 * "set", "default", or NULL when it has none. Valid until config_free. */
const char *config_origin(const struct config *c, const char *key);

/* Calls 'cb' for every key that has a value (set or default) and starts
 * with 'prefix' ("" or NULL for all), in key order. The callback runs
 * without any lock held and may call the getters; the strings stay valid. */
void config_foreach(const struct config *c, const char *prefix,
		    void (*cb)(void *opaque, const char *key, const char *value), void *opaque);

/* Writes every registered option with its type, value, origin and help to
 * 'out' (a FILE *), for `--print-config` style diagnostics. Values of
 * CONFIG_SECRET options show as "(redacted)", and a password inside a URL
 * ("redis://:pw@host") as "***". */
void config_dump(const struct config *c, void *out);

/* The text config_dump shows for 'value' of 'key' (redacted as above),
 * written into 'out'. Returns 'out'. */
const char *config_display_value(const struct config *c, const char *key, const char *value, char *out,
				 size_t outlen);

/* Names the EDGEREC_* environment variables that set no registered option
 * (a typo such as EDGEREC_REDIS_ULR, or an option of a newer release).
 * Variables in 'ignore' (NULL-terminated, may be NULL) are read by other
 * parts of the program (EDGEREC_LOG) and are not reported. Writes the
 * names, separated by ", ", into 'out' and returns how many there are. */
int config_unknown_env(const struct config *c, const char *const *ignore, char *out, size_t outlen);

/* Compares the live values with 'before' (a snapshot from
 * config_snapshot): calls 'cb' once per key whose effective value differs,
 * with the old and new text (NULL for none). Secret values are passed
 * redacted. For the log of a reload. */
struct config_snapshot;
struct config_snapshot *config_snapshot(const struct config *c);
void config_snapshot_free(struct config_snapshot *s);
void config_diff(const struct config *c, const struct config_snapshot *before,
		 void (*cb)(void *opaque, const char *key, const char *old_value, const char *new_value),
		 void *opaque);

/* The parsers behind the types, for modules that read such values from
 * elsewhere (a request, a policy). Each returns 0 or -1 on malformed text. */
int config_parse_int(const char *s, long long *out);
int config_parse_bool(const char *s, bool *out);
int config_parse_double(const char *s, double *out);
int config_parse_size(const char *s, long long *bytes);
int config_parse_duration(const char *s, long long *ms);

#endif
