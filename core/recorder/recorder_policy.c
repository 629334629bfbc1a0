/* recorder_policy: where the recorder asks the Lua policy host (policy.h)
 * and the disk: who may do what (auth.lua takes over recorder_authorize),
 * admission beyond the global limit (quota.lua, and the free-space check
 * that answers 507), what a room captures (sources.lua), and the lifecycle
 * hooks (lifecycle.lua: tags, keep_local, the S3 key, the S3 object of a
 * deleted recording). Also the read-only
 * queries the policies' `edge` API answers from. Without a policy host each
 * function applies the built-in default. */
#include <stdio.h>
#include <string.h>
#include <sys/statvfs.h>

#include "common_log.h"
#include "config.h"
#include "media.h"
#include "policy.h"
#include "recorder_internal.h"
#include "state.h"

static struct log_handle log_pol = LOG_HANDLE("recorder/policy");

/* ---- the provider behind the policies' edge API --------------------------- */

static cJSON *prov_user_recordings(void *opaque, const char *user_id, const char *status)
{
	struct recorder *r = opaque;
	return state_list_user(r->st, user_id, status);
}

static long long prov_active_count(void *opaque)
{
	struct recorder *r = opaque;
	return state_active_count(r->st);
}

static cJSON *prov_room_recordings(void *opaque, const char *room_id)
{
	struct recorder *r = opaque;
	return state_list_room(r->st, room_id);
}

static long long prov_user_bytes_stored(void *opaque, const char *user_id)
{
	struct recorder *r = opaque;
	cJSON *arr = state_list_user(r->st, user_id, "completed");
	if (!arr)
		return -1;
	long long sum = 0;
	const cJSON *rec;
	cJSON_ArrayForEach(rec, arr) {
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(rec, "file_size_bytes");
		if (cJSON_IsNumber(v) && v->valuedouble > 0)
			sum += (long long)v->valuedouble;
	}
	cJSON_Delete(arr);
	return sum;
}

long long recorder_disk_free(const struct recorder *r)
{
	struct statvfs vfs;
	if (statvfs(r->storage_path, &vfs) != 0)
		return -1;
	return (long long)vfs.f_bavail * (long long)vfs.f_frsize;
}

static long long prov_disk_free_bytes(void *opaque)
{
	return recorder_disk_free(opaque);
}

static int prov_user_usage(void *opaque, const char *user_id, long long *live, double *seconds_today)
{
	struct recorder *r = opaque;
	struct state_user_usage u;
	if (state_user_usage(r->st, user_id, 0, &u) != STATE_OK)
		return -1;
	*live = u.live;
	*seconds_today = u.seconds_today;
	return 0;
}

/* ---- authorization --------------------------------------------------------- */

static enum policy_action policy_action_of(enum recorder_op op)
{
	switch (op) {
	case RECORDER_OP_START: return POLICY_ACTION_START;
	case RECORDER_OP_STOP: return POLICY_ACTION_STOP;
	case RECORDER_OP_PAUSE: return POLICY_ACTION_PAUSE;
	case RECORDER_OP_RESUME: return POLICY_ACTION_RESUME;
	case RECORDER_OP_CANCEL: return POLICY_ACTION_CANCEL;
	case RECORDER_OP_LIST: return POLICY_ACTION_LIST_ROOM;
	case RECORDER_OP_LIST_USER: return POLICY_ACTION_LIST_USER;
	case RECORDER_OP_DOWNLOAD: return POLICY_ACTION_DOWNLOAD;
	case RECORDER_OP_ADMIN: return POLICY_ACTION_ADMIN;
	case RECORDER_OP_DELETE: return POLICY_ACTION_DELETE;
	default: return POLICY_ACTION_READ;
	}
}

/* The hook recorder_new installs when a policy host is given: auth.lua
 * decides; its built-in default is the owner rule (plus admins). */
static bool recorder_policy_authorize(void *opaque, const struct recorder_caller *caller,
				      enum recorder_op op, const cJSON *rec, bool builtin,
				      struct recorder_verdict *out)
{
	struct recorder *r = opaque;
	struct policy_caller pc = { .user_id = caller->user_id, .claims = caller->claims };
	struct policy_verdict v;
	const char *room = rec ? state_record_str(rec, "room_id") : NULL;
	(void)builtin; /* the policy host has its own default, the same rule */
	bool allow = policy_authorize(r->pol, policy_action_of(op), &pc, room, rec, &v);
	out->allow = allow;
	out->status = allow ? 0 : (v.status == 404 ? 404 : 403);
	util_strlcpy(out->reason, allow ? "" : v.reason, sizeof(out->reason));
	if (!allow)
		LOG_DEBUG(&log_pol, "%s denied to %s (%d): %s", recorder_op_name(op), caller->user_id,
			  out->status, v.reason);
	return allow;
}

void recorder_policy_bind(struct recorder *r)
{
	if (!r->pol)
		return;
	struct policy_provider p = {
		.opaque = r,
		.user_recordings = prov_user_recordings,
		.active_count = prov_active_count,
		.room_recordings = prov_room_recordings,
		.user_bytes_stored = prov_user_bytes_stored,
		.disk_free_bytes = prov_disk_free_bytes,
		.user_usage = prov_user_usage,
	};
	policy_host_set_provider(r->pol, &p);
	recorder_set_authorizer(r, recorder_policy_authorize, r);
}

/* ---- admission ------------------------------------------------------------- */

int recorder_policy_admit(struct recorder *r, const struct recorder_caller *caller, const char *room_id,
			  const char *source, const char *args, const char *format,
			  const struct media_preset **preset, int64_t *max_duration_ms,
			  int *user_limit, bool *fallback, char *reason, size_t reasonlen)
{
	*user_limit = r->max_per_user;
	*fallback = false;
	if (r->pol) {
		static const char *const names[] = { "low", "medium", "high", "ultra" };
		struct policy_preset_fact facts_presets[4];
		size_t n = 0;
		for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
			const struct media_preset *p = media_preset_find(names[i]);
			if (p)
				facts_presets[n++] = (struct policy_preset_fact){
					p->name, p->video_bps, p->audio_bps, media_encode_cost(p, source, args) };
		}
		struct media_encode_load load;
		media_encode_load(&load);
		struct policy_caller pc = { .user_id = caller->user_id, .claims = caller->claims };
		struct policy_admit_facts facts = {
			.caller = &pc,
			.room_id = room_id,
			.quality = (*preset)->name,
			.format = format,
			.max_duration_s = *max_duration_ms / 1000,
			.disk_free_bytes = recorder_disk_free(r),
			.presets = facts_presets,
			.n_presets = n,
			.encode_budget = load.budget,
			.encode_used = load.reserved,
		};
		struct policy_admission a;
		policy_admit(r->pol, &facts, &a);
		*fallback = a.fallback;
		if (a.kind == POLICY_ADMIT_REFUSE) {
			util_strlcpy(reason, a.reason[0] ? a.reason : "refused by the quota policy", reasonlen);
			return a.status == 403 || a.status == 507 || a.status == 503 ? a.status : 400;
		}
		if (a.kind == POLICY_ADMIT_GRANT) {
			const struct media_preset *granted = media_preset_find(a.quality);
			if (granted)
				*preset = granted;
			if (a.max_duration_s > 0 && a.max_duration_s * 1000 < *max_duration_ms)
				*max_duration_ms = a.max_duration_s * 1000;
		}
		/* The policy's answer sets the per-user limit; the built-in
		 * default (the policy failed) keeps the stricter of the policy's
		 * configured limit and max_recordings_per_user. */
		if (a.user_limit > 0 && (!a.fallback || *user_limit <= 0 || a.user_limit < *user_limit))
			*user_limit = a.user_limit;
		if (a.fallback)
			LOG_DEBUG(&log_pol, "quota.lua fell back: the built-in limits decide (user limit %d)",
				  *user_limit);
	}

	/* Disk: what the recording may need at its bitrates for its whole
	 * allowed duration must fit above the reserve. */
	long long avail = recorder_disk_free(r);
	if (avail >= 0) {
		double need = ((double)(*preset)->video_bps + (double)(*preset)->audio_bps) / 8.0 *
			      ((double)*max_duration_ms / 1000.0);
		if (avail < r->disk_low_water) {
			snprintf(reason, reasonlen, "not enough free disk: %lld MB free, below the low-water mark of %lld MB",
				 avail >> 20, (long long)(r->disk_low_water >> 20));
			return 507;
		}
		if ((double)(avail - r->disk_reserve) < need) {
			snprintf(reason, reasonlen,
				 "not enough free disk: %lld MB free, %lld MB reserved, the recording may need %.0f MB",
				 avail >> 20, (long long)(r->disk_reserve >> 20), need / 1048576.0);
			return 507;
		}
	}
	return 0;
}

void recorder_policy_note_admission(struct recorder *r, cJSON *rec, bool fallback, int64_t max_duration_ms)
{
	if (!fallback && max_duration_ms >= r->max_duration_ms)
		return;
	cJSON *m = recorder_rec_metadata(rec);
	cJSON *a = cJSON_CreateObject();
	if (!m || !a) {
		cJSON_Delete(a);
		return;
	}
	cJSON_AddNumberToObject(a, "max_duration_seconds", (double)(max_duration_ms / 1000));
	cJSON_AddStringToObject(a, "decided_by", fallback ? "built-in default (quota.lua failed)" : "quota.lua");
	recorder_json_set(m, "admission", a);
}

/* ---- sources and lifecycle --------------------------------------------------- */

int recorder_policy_source(struct recorder *r, const char *room_id, char *source, size_t slen,
			   char *args, size_t alen)
{
	if (r->pol) {
		struct policy_source ps;
		policy_resolve_source(r->pol, room_id, &ps);
		if (ps.unresolved)
			return -1;
		util_strlcpy(source, ps.source[0] ? ps.source : "test", slen);
		util_strlcpy(args, ps.args, alen);
		return 0;
	}
	char key[RECORDER_ROOM_MAX + 16];
	snprintf(key, sizeof(key), "room.%s.source", room_id);
	const char *v = config_get_str(r->cfg, key);
	util_strlcpy(source, v && v[0] ? v : "test", slen);
	snprintf(key, sizeof(key), "room.%s.args", room_id);
	v = config_get_str(r->cfg, key);
	util_strlcpy(args, v ? v : "", alen);
	return 0;
}

/* Merges the hook's tags into rec.metadata. */
static void merge_tags(cJSON *rec, const cJSON *tags)
{
	cJSON *m = cJSON_GetObjectItemCaseSensitive(rec, "metadata");
	if (!cJSON_IsObject(m) || !cJSON_IsObject(tags))
		return;
	for (const cJSON *t = tags->child; t; t = t->next) {
		cJSON *copy = cJSON_Duplicate(t, 1);
		if (!copy || !t->string) {
			cJSON_Delete(copy);
			continue;
		}
		if (cJSON_GetObjectItemCaseSensitive(m, t->string))
			cJSON_ReplaceItemInObjectCaseSensitive(m, t->string, copy);
		else
			cJSON_AddItemToObject(m, t->string, copy);
	}
}

static void lifecycle(struct recorder *r, enum policy_event ev, cJSON *rec, struct policy_lifecycle_result *res)
{
	memset(res, 0, sizeof(*res));
	policy_lifecycle(r->pol, ev, rec, res);
	merge_tags(rec, res->tags);
	cJSON_Delete(res->tags);
	res->tags = NULL;
}

void recorder_lifecycle_event(struct recorder *r, enum recorder_status to, cJSON *rec)
{
	if (!r->pol)
		return;
	struct policy_lifecycle_result res;
	enum policy_event ev = to == RECORDER_COMPLETED ? POLICY_EVENT_COMPLETED
			       : to == RECORDER_FAILED  ? POLICY_EVENT_FAILED
							: POLICY_EVENT_STARTED;
	lifecycle(r, ev, rec, &res);
}

void recorder_lifecycle_stopped(struct recorder *r, cJSON *rec, char *s3_key, size_t keylen, bool *keep_local)
{
	if (!r->pol)
		return;
	struct policy_lifecycle_result res;
	lifecycle(r, POLICY_EVENT_STOPPED, rec, &res);
	if (res.fallback)
		return; /* the configured behaviour stands */
	*keep_local = res.keep_local;
	if (r->s3 && res.s3_key[0])
		util_strlcpy(s3_key, res.s3_key, keylen);
}

bool recorder_lifecycle_deleted(struct recorder *r, const cJSON *rec)
{
	if (!r->pol)
		return false;
	struct policy_lifecycle_result res;
	memset(&res, 0, sizeof(res));
	policy_lifecycle(r->pol, POLICY_EVENT_DELETED, rec, &res);
	cJSON_Delete(res.tags);
	return !res.fallback && res.delete_s3;
}
