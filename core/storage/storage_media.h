/* storage_media: the half of the finishing steps that needs libavformat
 * (demuxing, the MP4 muxer), libvpx decoding and libjpeg. It is linked only
 * into the edgerec-finish helper (storage_finish_tool.c): the server runs
 * each step in a child process (storage_child.c), so it never maps those
 * libraries and their dependencies (about 20 MB of resident pages at
 * idle), and a file that crashes a demuxer ends one step, not the server.
 *
 * Same contracts as storage_step_remux, storage_step_thumbnail and
 * storage_file_facts in storage.h. */
#ifndef EDGEREC_STORAGE_MEDIA_H
#define EDGEREC_STORAGE_MEDIA_H

#include "storage.h"

int storage_media_remux(const struct storage_job *job, char *err, size_t errlen);
int storage_media_thumbnail(const struct storage_job *job, int *out_w, int *out_h,
			    char *err, size_t errlen);
int storage_media_facts(const char *path, struct storage_facts *facts, char *err, size_t errlen);

/* The helper's command line and its replies on stdout, one line each:
 *   edgerec-finish remux IN MP4
 *   edgerec-finish thumbnail IN JPEG WIDTH AT_MS
 *   edgerec-finish facts PATH
 * "progress STEP PERCENT" any number of times, then on success
 * "thumbnail W H" or one "fact KEY VALUE" per field of storage_facts and
 * exit status 0; on failure "error CODE TEXT" (CODE a STORAGE_ERR_*) and
 * exit status 1. */
#define STORAGE_FINISH_TOOL "edgerec-finish"

#endif
