/* media_rtp_nack: which lost packets a receive stream asks for again (see
 * media_rtp.h). A small unordered array: at most MEDIA_RTP_NACK_MAX
 * entries, each looked at on every packet and report, which costs less
 * than keeping them sorted. */
#include "media_rtp.h"

#include <stdint.h>
#include <string.h>

void media_rtp_nack_reset(struct media_rtp_nack *k)
{
	k->n = 0;
}

static void nack_remove(struct media_rtp_nack *k, int i)
{
	k->e[i] = k->e[--k->n];
}

void media_rtp_nack_on_packet(struct media_rtp_nack *k, int64_t ext_seq, int64_t max_seq, bool have_max,
			      int64_t now_ns)
{
	for (int i = 0; i < k->n; i++) {
		if (k->e[i].seq == ext_seq) {
			if (k->e[i].tries)
				k->recovered++;
			nack_remove(k, i);
			return;
		}
	}
	if (!have_max || ext_seq <= max_seq + 1)
		return;
	if (ext_seq - max_seq - 1 > MEDIA_RTP_NACK_MAX)
		return; /* a jump (or a restart), not loss worth asking about */
	for (int64_t s = max_seq + 1; s < ext_seq; s++) {
		if (k->n == MEDIA_RTP_NACK_MAX) {
			/* The oldest gives way. */
			int old = 0;
			for (int i = 1; i < k->n; i++)
				if (k->e[i].seq < k->e[old].seq)
					old = i;
			nack_remove(k, old);
		}
		k->e[k->n].seq = s;
		k->e[k->n].first_ns = now_ns;
		k->e[k->n].sent_ns = 0;
		k->e[k->n].tries = 0;
		k->n++;
	}
}

int media_rtp_nack_due(struct media_rtp_nack *k, int64_t now_ns, int64_t expire_ns, uint16_t *out, int cap)
{
	int64_t due[MEDIA_RTP_NACK_MAX];
	int n = 0;

	for (int i = 0; i < k->n;) {
		if (now_ns - k->e[i].first_ns >= expire_ns || k->e[i].tries >= MEDIA_RTP_NACK_TRIES) {
			nack_remove(k, i);
			continue;
		}
		if (n < cap && (k->e[i].tries ? now_ns - k->e[i].sent_ns >= MEDIA_RTP_NACK_RETRY_NS
					      : now_ns - k->e[i].first_ns >= MEDIA_RTP_NACK_WAIT_NS)) {
			if (!k->e[i].tries)
				k->requested++;
			k->e[i].tries++;
			k->e[i].sent_ns = now_ns;
			due[n++] = k->e[i].seq;
		}
		i++;
	}
	/* Ascending, so the packet builder can fold neighbours into one FCI. */
	for (int i = 1; i < n; i++) {
		int64_t v = due[i];
		int j = i;
		while (j > 0 && due[j - 1] > v) {
			due[j] = due[j - 1];
			j--;
		}
		due[j] = v;
	}
	for (int i = 0; i < n; i++)
		out[i] = (uint16_t)due[i];
	return n;
}

int64_t media_rtp_nack_next(const struct media_rtp_nack *k)
{
	int64_t t = INT64_MAX;
	for (int i = 0; i < k->n; i++) {
		int64_t w = k->e[i].tries ? k->e[i].sent_ns + MEDIA_RTP_NACK_RETRY_NS
					  : k->e[i].first_ns + MEDIA_RTP_NACK_WAIT_NS;
		if (w < t)
			t = w;
	}
	return t;
}
