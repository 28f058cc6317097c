/* fuzz_jwt.c: libFuzzer target for bearer-token verification (header check, base64url, claims). */
#include "lib/auth.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct vtp_auth auth;
	static int ready;
	if (!ready) {
		struct vtp_config cfg = {0};
		char *error = NULL;
		cfg.jwt_alg = (char *)"HS256";
		cfg.jwt_secret = (char *)"fuzzing-secret-0123456789";
		cfg.jwt_issuer = (char *)"https://lms.example";
		if (vtp_auth_init(&auth, &cfg, &error) != 0)
			abort();
		ready = 1;
	}
	char *header = malloc(size + 8);
	memcpy(header, "Bearer ", 7);
	memcpy(header + 7, data, size);
	header[size + 7] = '\0';
	const char *token = vtp_auth_bearer(header);
	struct vtp_principal who;
	const char *reason;
	if (token)
		(void)vtp_auth_verify(&auth, token, 1800000000, &who, &reason);
	free(header);
	return 0;
}
