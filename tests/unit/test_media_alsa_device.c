/* test_media_alsa_device: media_alsa against ALSA itself.
 *
 * Anywhere: a missing PCM is -ENOENT and bad parameters -EINVAL, each with a
 * reason; ALSA's null PCM opens, polls and reads; the card list is sane.
 *
 * With EDGEREC_ALSA_TEST_PCM set (tests/integration/test_alsa_capture.py
 * sets it in the qemu guest, for snd-aloop's hw:Loopback,1,0 while it plays
 * a 1 kHz tone into hw:Loopback,0,0) it also captures that PCM for
 * EDGEREC_ALSA_TEST_SECONDS (default 20) and checks: a second open is
 * -EBUSY; the tone is in the output; the output's time (first pts + frames
 * / rate) stays with CLOCK_MONOTONIC within EDGEREC_ALSA_TEST_BOUND_MS
 * (default 15; medians of 5 s windows, first third against last) while the device's own frame count runs off at its clock
 * (EDGEREC_ALSA_TEST_PPM, the rate shift the test set, checked against the
 * frames captured and against the estimate). One JSON line reports the
 * figures. EDGEREC_ALSA_TEST_STALL_AT=S stops reading for 3 s at S seconds:
 * an overrun, whose lost time silence must fill. */
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common_log.h"
#include "common_time.h"

#ifndef MEDIA_HAVE_ALSA
int main(void)
{
	puts("test_media_alsa_device: built without libasound/libspeexdsp, nothing to test");
	return 0;
}
#else

#include "media_alsa.h"

static void test_errors(void)
{
	struct media_alsa *a = (struct media_alsa *)1;
	char err[256] = "";
	struct media_alsa_params p = { .device = "hw:CARD=NoSuchCard,DEV=0", .sample_rate = 48000, .channels = 2 };
	CHECK_INT(media_alsa_open(&a, &p, err, sizeof(err)), -ENOENT);
	CHECK(a == NULL);
	CHECK(strstr(err, "NoSuchCard") != NULL);
	p.device = "no_such_pcm_name";
	CHECK_INT(media_alsa_open(&a, &p, err, sizeof(err)), -ENOENT);
	p.device = "";
	CHECK_INT(media_alsa_open(&a, &p, err, sizeof(err)), -EINVAL);
	p.device = "null";
	p.channels = 3;
	CHECK_INT(media_alsa_open(&a, &p, err, sizeof(err)), -EINVAL);
	CHECK(err[0] != '\0');
}

/* The null PCM: opens, gives poll descriptors, reads frames of silence. */
static void test_null(void)
{
	struct media_alsa *a;
	char err[256] = "";
	struct media_alsa_params p = { .device = "null", .sample_rate = 48000, .channels = 1 };
	int r = media_alsa_open(&a, &p, err, sizeof(err));
	CHECK_INT(r, 0);
	if (r < 0) {
		fprintf(stderr, "null: %s\n", err);
		return;
	}
	struct pollfd fds[8];
	CHECK(media_alsa_pollfds(a, fds, 8) >= 0);
	int got = 0;
	for (int i = 0; i < 200 && got < 4800; i++) {
		struct media_packet pkt;
		r = media_alsa_read(a, &pkt, err, sizeof(err));
		CHECK(r != MEDIA_SOURCE_ERROR);
		if (r == MEDIA_SOURCE_OK) {
			CHECK(pkt.samples > 0);
			CHECK(pkt.data && pkt.data->size == (size_t)pkt.samples * 2);
			got += pkt.samples;
			media_packet_clear(&pkt);
		} else {
			time_sleep_ns(2 * TIME_NS_PER_MS);
		}
	}
	CHECK(got >= 4800);
	struct media_alsa_stats st;
	media_alsa_get_stats(a, &st);
	CHECK_INT(st.device_rate, 48000);
	CHECK(st.frames_captured > 0);
	media_alsa_close(a);
}

static void test_list(void)
{
	struct media_alsa_device d[16];
	int n = media_alsa_list(d, 16);
	CHECK(n >= 0 && n <= 16);
	for (int i = 0; i < n; i++) {
		fprintf(stderr, "capture PCM %s (%s): %d-%d channels, %d-%d Hz, %d subdevices\n", d[i].id,
			d[i].name, d[i].channels_min, d[i].channels_max, d[i].rate_min, d[i].rate_max,
			d[i].subdevices);
		CHECK(strncmp(d[i].id, "hw:CARD=", 8) == 0);
		CHECK(d[i].channels_max >= d[i].channels_min);
	}
	CHECK_INT(media_alsa_list(d, 0), 0);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* The median of 'n' values (n >= 1; sorts a copy). */
static double median(const double *v, int n)
{
	double *c = malloc((size_t)n * sizeof(*c));
	if (!c)
		return 0;
	memcpy(c, v, (size_t)n * sizeof(*c));
	qsort(c, (size_t)n, sizeof(*c), cmp_double);
	double m = n % 2 ? c[n / 2] : (c[n / 2 - 1] + c[n / 2]) / 2;
	free(c);
	return m;
}

/* Energy of 'n' mono samples at 'freq' (Goertzel) as a share of all. */
static double tone_share(const int16_t *x, int n, int stride, double freq, int rate)
{
	double w = 2 * M_PI * freq / rate, c = 2 * cos(w), s1 = 0, s2 = 0, total = 0;
	for (int i = 0; i < n; i++) {
		double v = x[(size_t)i * stride];
		double s0 = v + c * s1 - s2;
		s2 = s1;
		s1 = s0;
		total += v * v;
	}
	double power = s1 * s1 + s2 * s2 - c * s1 * s2;
	return total > 0 ? 2 * power / (n * total) : 0;
}

/* Captures the PCM named by the environment (the guest's loopback). */
static void test_live(const char *pcm)
{
	const char *sv = getenv("EDGEREC_ALSA_TEST_SECONDS");
	const char *bv = getenv("EDGEREC_ALSA_TEST_BOUND_MS");
	const char *pv = getenv("EDGEREC_ALSA_TEST_PPM");
	const char *stv = getenv("EDGEREC_ALSA_TEST_STALL_AT");
	double stall_at = stv ? atof(stv) : -1;  /* stop reading for 3 s then: an overrun */
	bool stalled = false;
	double seconds = sv ? atof(sv) : 20, bound_ms = bv ? atof(bv) : 15;
	struct media_alsa *a, *b;
	char err[256] = "";
	struct media_alsa_params p = { .device = pcm, .sample_rate = 48000, .channels = 2 };
	int r = media_alsa_open(&a, &p, err, sizeof(err));
	CHECK_INT(r, 0);
	if (r < 0) {
		fprintf(stderr, "%s: %s\n", pcm, err);
		return;
	}
	/* The same subdevice again: in use. */
	CHECK_INT(media_alsa_open(&b, &p, err, sizeof(err)), -EBUSY);
	CHECK(strstr(err, "in use") != NULL);

	int64_t start = time_mono_ns(), t0 = -1;
	uint64_t frames = 0;
	int blocks = 0, tone_blocks = 0;
	/* The output's time against the clock: the least delay (now - end of
	 * the output read) in each 5 s window; the medians of the first and
	 * the last third of the windows compared. A starved guest delivers
	 * the loopback's frames late for a while (its timer runs late), so a
	 * window can be late as a whole: medians see through a few of them,
	 * not through a clock that drifts. The same for the device's own
	 * frames (uncorrected): its clock. */
	enum { MAX_WIN = 1024 };
	static double win_delay[MAX_WIN], win_raw[MAX_WIN], win_at[MAX_WIN];
	int nwin = 0;
	double win_min = 1e18, raw_min = 1e18;
	int64_t win_start = start;
	int win_reads = 0, windows_sparse = 0;
	int16_t block[4800 * 2];
	int fill = 0;
	while (time_mono_ns() - start < (int64_t)(seconds * TIME_NS_PER_SEC)) {
		if (stall_at >= 0 && !stalled && time_mono_ns() - start >= (int64_t)(stall_at * TIME_NS_PER_SEC)) {
			stalled = true;
			time_sleep_ns(3 * TIME_NS_PER_SEC);
		}
		struct pollfd fds[8];
		int n = media_alsa_pollfds(a, fds, 8);
		poll(fds, (nfds_t)n, 100);
		struct media_packet pkt;
		while ((r = media_alsa_read(a, &pkt, err, sizeof(err))) == MEDIA_SOURCE_OK) {
			int64_t now = time_mono_ns();
			if (t0 < 0)
				t0 = pkt.pts_ns;
			CHECK_INT(pkt.pts_ns, t0 + (int64_t)(frames * TIME_NS_PER_SEC / 48000));
			frames += (uint64_t)pkt.samples;
			double end = (double)t0 + (double)frames * TIME_NS_PER_SEC / 48000;
			double delay = (now - end) / 1e6;
			if (delay < win_min)
				win_min = delay;
			struct media_alsa_stats now_st;
			media_alsa_get_stats(a, &now_st);
			double raw = (now - (double)t0 - (double)now_st.frames_captured * TIME_NS_PER_SEC / 48000) / 1e6;
			if (raw < raw_min)
				raw_min = raw;
			win_reads++;
			if (getenv("EDGEREC_ALSA_TEST_SERIES") && delay > 20)
				fprintf(stderr, "late t=%.3f samples=%d delay=%.2f raw=%.2f captured=%llu out=%llu\n",
					(now - start) / 1e9, pkt.samples, delay, raw,
					(unsigned long long)now_st.frames_captured, (unsigned long long)frames);
			if (now - win_start >= 5 * TIME_NS_PER_SEC) {
				/* A window in which this thread hardly ran says little
				 * (counted; its least delay still counts). */
				if (win_reads < 125)
					windows_sparse++;
				if (now - start > 3 * TIME_NS_PER_SEC && nwin < MAX_WIN) {  /* past the start-up */
					win_delay[nwin] = win_min;
					win_raw[nwin] = raw_min;
					win_at[nwin] = (now - start) / 1e9;
					nwin++;
				}
				if (getenv("EDGEREC_ALSA_TEST_SERIES"))
					fprintf(stderr, "series t=%.1f reads=%d delay=%.2f raw=%.2f drift=%.1f error=%.2f corr=%.0f\n",
						(now - start) / 1e9, win_reads, win_min, raw_min, now_st.drift_ppm,
						now_st.error_ms, now_st.correction_ppm);
				win_min = 1e18;
				raw_min = 1e18;
				win_reads = 0;
				win_start = now;
			}
			/* 100 ms blocks: is the 1 kHz tone there (left channel)? */
			const int16_t *s = (const int16_t *)pkt.data->data;
			for (int i = 0; i < pkt.samples; i++) {
				block[fill * 2] = s[i * 2];
				block[fill * 2 + 1] = s[i * 2 + 1];
				if (++fill == 4800) {
					blocks++;
					if (tone_share(block, 4800, 2, 1000, 48000) > 0.9)
						tone_blocks++;
					fill = 0;
				}
			}
			media_packet_clear(&pkt);
		}
		CHECK(r == MEDIA_SOURCE_AGAIN);
		if (r != MEDIA_SOURCE_AGAIN) {
			fprintf(stderr, "%s: %s\n", pcm, err);
			break;
		}
	}
	int64_t elapsed = time_mono_ns() - start;
	struct media_alsa_stats st;
	media_alsa_get_stats(a, &st);
	/* Medians of the first and last thirds of the windows. */
	int third = nwin / 3 > 0 ? nwin / 3 : 1;
	double first_win = nwin ? median(win_delay, third) : 0;
	double last_win = nwin ? median(win_delay + nwin - third, third) : 0;
	double first_raw = nwin ? median(win_raw, third) : 0;
	double last_raw = nwin ? median(win_raw + nwin - third, third) : 0;
	double span_s = nwin ? median(win_at + nwin - third, third) - median(win_at, third) : 0;
	double max_win = -1e18, min_win = 1e18;
	for (int i = 0; i < nwin; i++) {
		max_win = fmax(max_win, win_delay[i]);
		min_win = fmin(min_win, win_delay[i]);
	}
	double wander = nwin ? max_win - min_win : 0;
	/* The device's own rate: how its frames ran behind or ahead of the
	 * clock between the thirds. */
	double dev_ppm = span_s > 0 ? -(last_raw - first_raw) / 1e3 / span_s * 1e6 : 0;
	printf("{\"pcm\":\"%s\",\"seconds\":%.3f,\"frames_out\":%llu,\"frames_captured\":%llu,"
	       "\"device_ppm_measured\":%.1f,\"drift_ppm\":%.1f,\"overruns\":%llu,\"steps\":%llu,"
	       "\"frames_inserted\":%llu,\"frames_dropped\":%llu,\"delay_first_ms\":%.2f,\"delay_last_ms\":%.2f,"
	       "\"delay_wander_ms\":%.2f,\"tone_blocks\":%d,\"blocks\":%d,\"windows_sparse\":%d,\"device_timestamps\":%s}\n",
	       pcm, elapsed / 1e9, (unsigned long long)frames, (unsigned long long)st.frames_captured, dev_ppm,
	       st.drift_ppm, (unsigned long long)st.overruns, (unsigned long long)st.steps,
	       (unsigned long long)st.frames_inserted, (unsigned long long)st.frames_dropped, first_win,
	       last_win, wander, tone_blocks, blocks, windows_sparse, st.device_timestamps ? "true" : "false");
	fflush(stdout);
	/* Output time holds to the monotonic clock (an overrun under load
	 * fills its gap with silence and keeps it too). */
	CHECK(nwin >= 3 || seconds < 20);
	CHECK(fabs(last_win - first_win) <= bound_ms);
	/* The tone is there (the first blocks may precede it; an overrun's
	 * time is silence; a starved guest's player may leave a gap now and
	 * then: 2 %). */
	CHECK(tone_blocks >= blocks - 10 - blocks / 50 - (int)(st.overruns * 2 + st.frames_inserted / 4800));
	if (stall_at >= 0) {
		/* 3 s without a read: the buffer (2 s) overran, what it held is
		 * lost with what came after; silence fills those 3 s. */
		CHECK(st.overruns >= 1);
		CHECK(fabs(st.frames_inserted / 48000.0 - 3.0) < 0.5);
	}
	if (pv && st.overruns == 0) {  /* frames lost: no rate from their count */
		double want = atof(pv);
		CHECK(fabs(dev_ppm - want) < 60);        /* the guest's timers are coarse */
		CHECK(fabs(st.drift_ppm - want) < 30);
	}
	media_alsa_close(a);
}

int main(void)
{
	log_set_level(-1);  /* EDGEREC_LOG=debug shows the device's segments */
	test_errors();
	test_null();
	test_list();
	const char *pcm = getenv("EDGEREC_ALSA_TEST_PCM");
	if (pcm && pcm[0])
		test_live(pcm);
	return check_exit();
}

#endif
