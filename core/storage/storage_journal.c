/* storage_journal: a processing journal kept as a small JSON file, and the
 * helpers that record the last completed step in any journal. */
#include "storage.h"

#include "common_log.h"
#include "common_util.h"

#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct log_handle log_journal = LOG_HANDLE("storage/journal");

struct journal_file {
	struct storage_journal iface; /* first: the public view */
	char *path;
	cJSON *doc;
	pthread_mutex_t lock;
};

/* Writes the document through a temporary file, fsync and rename, so a
 * crash leaves either the old or the new journal, never half of one. */
static int journal_save(struct journal_file *jf)
{
	char *text = cJSON_PrintUnformatted(jf->doc), *tmp = NULL;
	int fd = -1, rc = -1;
	if (!text || asprintf(&tmp, "%s.tmp", jf->path) < 0) {
		tmp = NULL;
		goto done;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		goto done;
	size_t len = strlen(text), off = 0;
	while (off < len) {
		ssize_t n = write(fd, text + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			goto done;
		off += (size_t)n;
	}
	if (fsync(fd) < 0 || close(fd) < 0) {
		fd = -1;
		goto done;
	}
	fd = -1;
	if (rename(tmp, jf->path) < 0)
		goto done;
	rc = 0;
done:
	if (rc < 0)
		LOG_ERROR(&log_journal, "cannot write %s: %s", jf->path, strerror(errno));
	if (fd >= 0)
		close(fd);
	if (rc < 0 && tmp)
		unlink(tmp);
	free(tmp);
	cJSON_free(text);
	return rc;
}

static int journal_get(void *opaque, const char *field, char *out, size_t outlen)
{
	struct journal_file *jf = opaque;
	int rc = 1;
	pthread_mutex_lock(&jf->lock);
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(jf->doc, field);
	if (cJSON_IsString(v)) {
		util_strlcpy(out, v->valuestring, outlen);
		rc = 0;
	}
	pthread_mutex_unlock(&jf->lock);
	return rc;
}

static int journal_set(void *opaque, const char *field, const char *value)
{
	struct journal_file *jf = opaque;
	int rc = -1;
	pthread_mutex_lock(&jf->lock);
	cJSON *s = cJSON_CreateString(value);
	if (s) {
		if (cJSON_HasObjectItem(jf->doc, field))
			cJSON_ReplaceItemInObjectCaseSensitive(jf->doc, field, s);
		else
			cJSON_AddItemToObject(jf->doc, field, s);
		rc = journal_save(jf);
	}
	pthread_mutex_unlock(&jf->lock);
	return rc;
}

static int journal_del(void *opaque, const char *prefix)
{
	struct journal_file *jf = opaque;
	size_t pl = strlen(prefix);
	pthread_mutex_lock(&jf->lock);
	cJSON *it = jf->doc->child;
	while (it) {
		cJSON *next = it->next;
		if (strncmp(it->string, prefix, pl) == 0)
			cJSON_Delete(cJSON_DetachItemViaPointer(jf->doc, it));
		it = next;
	}
	int rc = journal_save(jf);
	pthread_mutex_unlock(&jf->lock);
	return rc;
}

struct storage_journal *storage_journal_file_new(const char *path)
{
	struct journal_file *jf = calloc(1, sizeof(*jf));
	char *text = NULL;
	if (!jf || !(jf->path = strdup(path)))
		goto fail;
	text = util_read_file(path, NULL);
	if (text) {
		jf->doc = cJSON_Parse(text);
		if (!cJSON_IsObject(jf->doc)) {
			LOG_WARN(&log_journal, "%s is not a JSON object; starting a new journal", path);
			cJSON_Delete(jf->doc);
			jf->doc = NULL;
		}
	} else if (errno != ENOENT) {
		LOG_ERROR(&log_journal, "cannot read %s: %s", path, strerror(errno));
		goto fail;
	}
	if (!jf->doc && !(jf->doc = cJSON_CreateObject()))
		goto fail;
	pthread_mutex_init(&jf->lock, NULL);
	jf->iface = (struct storage_journal){ .opaque = jf, .get = journal_get, .set = journal_set,
					      .del = journal_del };
	free(text);
	return &jf->iface;
fail:
	free(text);
	if (jf) {
		cJSON_Delete(jf->doc);
		free(jf->path);
		free(jf);
	}
	return NULL;
}

void storage_journal_file_free(struct storage_journal *j)
{
	if (!j)
		return;
	struct journal_file *jf = (struct journal_file *)j;
	pthread_mutex_destroy(&jf->lock);
	cJSON_Delete(jf->doc);
	free(jf->path);
	free(jf);
}

int storage_journal_mark(struct storage_journal *j, const char *step)
{
	if (!j)
		return 0;
	return j->set(j->opaque, "step", step) < 0 ? STORAGE_ERR_JOURNAL : 0;
}

int storage_journal_last(struct storage_journal *j, char *out, size_t outlen)
{
	if (outlen)
		out[0] = '\0';
	if (!j)
		return 0;
	int r = j->get(j->opaque, "step", out, outlen);
	if (r < 0)
		return STORAGE_ERR_JOURNAL;
	if (r == 1 && outlen)
		out[0] = '\0';
	return 0;
}
