/* test_sdp.c: unit tests of the SDP check of POST /recordings/start (fcgi/sdp.c), with SDPs as mediasoup writes them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../fcgi/sdp.h"

#include <stdlib.h>
#include <string.h>

static const char mediasoup[] =
	"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=FFmpeg\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
	"m=video 5004 RTP/AVPF 101\r\na=rtpmap:101 VP8/90000\r\na=rtcp:5005\r\na=rtcp-fb:101 nack pli\r\n"
	"m=audio 5006 RTP/AVP 100\r\na=rtpmap:100 opus/48000/2\r\na=rtcp:5007\r\n";

static void test_usable_sdps(void **state)
{
	(void)state;
	assert_null(sdp_problem(mediasoup));
	assert_null(sdp_problem("v=0\nm=audio 41000 RTP/AVP 111\n"));
	/* Blank lines and bare CRs separate lines too. */
	assert_null(sdp_problem("v=0\r\n\r\nm=video 5004 RTP/AVP 96\r\r\na=x\r"));
}

static void test_refused_sdps(void **state)
{
	(void)state;
	assert_string_equal(sdp_problem(""), "must start with the line v=0");
	assert_string_equal(sdp_problem("v=1\r\nm=video 1 RTP/AVP 96\r\n"), "must start with the line v=0");
	assert_string_equal(sdp_problem("v=0"), "must start with the line v=0");
	assert_string_equal(sdp_problem("v=0\r\ns=x\r\n"), "has no m= (media) line");
	assert_string_equal(sdp_problem("v=0\r\nM=video 1 RTP/AVP 96\r\n"), "has a line that is not of the form x=value");
	assert_string_equal(sdp_problem("v=0\r\nm=video 1 RTP/AVP 96\r\nx\r\n"),
			    "has a line that is not of the form x=value");
	assert_string_equal(sdp_problem("v=0\r\nm=video 1 RTP/AVP 96\r\n=x\r\n"),
			    "has a line that is not of the form x=value");
	/* Only ASCII letters name a line, whatever the locale says of 0xe9. */
	assert_string_equal(sdp_problem("v=0\r\nm=video 1 RTP/AVP 96\r\n\xe9=x\r\n"),
			    "has a line that is not of the form x=value");
}

static void test_size_limit(void **state)
{
	(void)state;
	size_t head = strlen(mediasoup);
	char *big = malloc(MAX_SDP_BYTES + 2);
	memcpy(big, mediasoup, head);
	/* Exactly the limit: a long a= line fills it up to the final CRLF. */
	memcpy(big + head, "a=", 2);
	memset(big + head + 2, 'x', MAX_SDP_BYTES - head - 4);
	memcpy(big + MAX_SDP_BYTES - 2, "\r\n", 3);
	assert_int_equal(strlen(big), MAX_SDP_BYTES);
	assert_null(sdp_problem(big));
	memcpy(big + MAX_SDP_BYTES - 2, "x\r\n", 4);
	assert_string_equal(sdp_problem(big), "is larger than 65536 bytes");
	free(big);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_usable_sdps),
		cmocka_unit_test(test_refused_sdps),
		cmocka_unit_test(test_size_limit),
	};
	return cmocka_run_group_tests_name("sdp", tests, NULL, NULL);
}
