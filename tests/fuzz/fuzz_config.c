/* fuzz_config.c: libFuzzer target for the key = value configuration file parser. */
#include "lib/config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char path[64];
	if (!path[0]) {
		snprintf(path, sizeof path, "/tmp/vtp-fuzz-config-%d", (int)getpid());
		/* The environment must not override what the file says. */
		unsetenv("DATABASE_URL");
		unsetenv("VTP_LOG_LEVEL");
		unsetenv("PORT");
	}
	FILE *f = fopen(path, "wb");
	if (!f)
		return 0;
	fwrite(data, 1, size, f);
	fclose(f);
	struct vtp_config cfg;
	char *error = NULL;
	(void)vtp_config_load(&cfg, path, &error);
	free(error);
	vtp_config_free(&cfg);
	unlink(path);
	return 0;
}
