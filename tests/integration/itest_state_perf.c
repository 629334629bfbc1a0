/* itest_state_perf: what the state store costs, against a real redis-server
 * on a unix socket: 10,000 records written (state_put), then state_get from
 * 4 threads (the shape of GET .../status under load), a room listing of
 * 10,000 and admissions. Prints the figures. The HTTP goal is p99 < 5 ms for
 * the whole request at 2,000 req/s; on an idle box state_get's p99 is a
 * small fraction of that, but ctest shares two cores with builds, so the
 * test fails only on a gross regression: p99 over 20 ms, or fewer than
 * 2,000 reads a second. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "common_time.h"
#include "common_util.h"
#include "state.h"

#define RECORDS 10000
#define THREADS 4
#define READS_PER_THREAD 10000

static struct state *st;
static char ids[RECORDS][UUID_STR_LEN];
static int64_t lat[THREADS][READS_PER_THREAD];
static int misses[THREADS];

static void *reader(void *arg)
{
	int t = (int)(intptr_t)arg;
	for (int i = 0; i < READS_PER_THREAD; i++) {
		int64_t t0 = time_mono_ns();
		cJSON *rec = state_get(st, ids[(i * 7919 + t * 104729) % RECORDS]);
		lat[t][i] = time_mono_ns() - t0;
		if (!rec)
			misses[t]++;
		cJSON_Delete(rec);
	}
	return NULL;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

int main(void)
{
	char dir[] = "/tmp/itest_state_perf.XXXXXX", sock[128], url[160], err[256], ping[256];
	if (!mkdtemp(dir))
		return 1;
	snprintf(sock, sizeof sock, "%s/redis.sock", dir);
	snprintf(url, sizeof url, "unix://%s", sock);
	pid_t redis = fork();
	if (redis == 0) {
		if (!freopen("/dev/null", "w", stdout))
			_exit(127);
		execlp("redis-server", "redis-server", "--port", "0", "--unixsocket", sock, "--save", "",
		       "--appendonly", "no", "--dir", dir, (char *)NULL);
		_exit(127);
	}
	snprintf(ping, sizeof ping, "redis-cli -s %s ping >/dev/null 2>&1", sock);
	for (int i = 0; i < 250 && system(ping) != 0; i++)
		time_sleep_ns(20 * TIME_NS_PER_MS);
	st = state_new(url, dir, "perf", err, sizeof err);
	CHECK(st != NULL);
	if (!st) {
		fprintf(stderr, "%s\n", err);
		goto out;
	}

	int64_t t0 = time_mono_ns();
	for (int i = 0; i < RECORDS; i++) {
		struct state_record_init in = {
			.room_id = "room-perf", .user_id = i % 2 ? "alice" : "bob", .format = "webm",
			.quality = "medium", .resolution = "1280x720", .video_bitrate = "2.5M",
			.audio_bitrate = "128k", .fps = 30, .local_path = "/tmp/webrtc_recordings/perf",
		};
		cJSON *rec = state_record_new(&in, err, sizeof err);
		util_strlcpy(ids[i], state_record_str(rec, "recording_id"), sizeof ids[i]);
		state_record_set_status(rec, STATE_STATUS_COMPLETED);
		if (state_put(st, rec) != STATE_OK)
			CHECK(0);
		cJSON_Delete(rec);
	}
	double put_ms = (double)(time_mono_ns() - t0) / 1e6;

	pthread_t th[THREADS];
	t0 = time_mono_ns();
	for (intptr_t t = 0; t < THREADS; t++)
		pthread_create(&th[t], NULL, reader, (void *)t);
	for (int t = 0; t < THREADS; t++)
		pthread_join(th[t], NULL);
	double secs = (double)(time_mono_ns() - t0) / 1e9;
	static int64_t all[THREADS * READS_PER_THREAD];
	int n = 0, missed = 0;
	for (int t = 0; t < THREADS; t++) {
		missed += misses[t];
		for (int i = 0; i < READS_PER_THREAD; i++)
			all[n++] = lat[t][i];
	}
	qsort(all, (size_t)n, sizeof all[0], cmp_i64);
	double p50 = (double)all[n / 2] / 1e6, p99 = (double)all[n * 99 / 100] / 1e6;
	double rate = n / secs;

	t0 = time_mono_ns();
	cJSON *list = state_list_room(st, "room-perf");
	double list_ms = (double)(time_mono_ns() - t0) / 1e6;
	CHECK_INT(cJSON_GetArraySize(list), RECORDS);
	cJSON_Delete(list);

	char reason[128], id[UUID_STR_LEN];
	int64_t admit_ns = 0, release_ns = 0;
	for (int i = 0; i < 1000; i++) {
		util_uuid_v4(id);
		t0 = time_mono_ns();
		CHECK_INT(state_admit(st, id, "carol", 0, 0, reason, sizeof reason), STATE_OK);
		int64_t t1 = time_mono_ns();
		CHECK_INT(state_release(st, id), STATE_OK);
		admit_ns += t1 - t0;
		release_ns += time_mono_ns() - t1;
	}

	printf("state_put: %d records in %.0f ms (%.1f us each)\n", RECORDS, put_ms, put_ms * 1000 / RECORDS);
	printf("state_get: %d threads, %.0f reads/s, p50 %.3f ms, p99 %.3f ms, %d missing\n", THREADS, rate,
	       p50, p99, missed);
	printf("state_list_room: %d records in %.0f ms\n", RECORDS, list_ms);
	printf("state_admit: %.1f us, state_release: %.1f us\n", (double)admit_ns / 1e6, (double)release_ns / 1e6);
	CHECK_INT(missed, 0);
	CHECK(p99 < 20.0);
	CHECK(rate > 2000);

out:
	state_free(st);
	kill(redis, SIGKILL);
	waitpid(redis, NULL, 0);
	util_rm_rf(dir);
	return check_exit();
}
