/* fuzz_range.c: libFuzzer target for Range headers (fcgi/files.c) and download file names from titles (fcgi/download.c). */
#include "fcgi/download.h"
#include "fcgi/files.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Input: a Range header value; also used as a recording title. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	memcpy(text, data, size);
	text[size] = '\0';
	struct byte_range r[FILES_MAX_RANGES];
	const long long sizes[] = {0, 1, 100, 1LL << 40};
	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		int n = files_parse_range(text, sizes[i], r);
		/* Every range lies in the file, in order, apart from the next. */
		for (int k = 0; k < n; k++)
			if (r[k].first < 0 || r[k].last >= sizes[i] || r[k].first > r[k].last ||
			    (k > 0 && r[k].first <= r[k - 1].last + 1))
				abort();
	}
	(void)files_etag_matches(text, "\"5f-10\"");
	struct vtp_buf out = {0};
	download_disposition(text, "mp4", &out);
	if (strpbrk(out.data, "\r\n") || strlen(out.data) != out.len)
		abort();
	vtp_buf_free(&out);
	free(text);
	return 0;
}
