/* app.h: what every request shares, read-only after start-up: configuration and the JWT keys. */
#ifndef VTP_APP_H
#define VTP_APP_H

#include "../lib/auth.h"
#include "../lib/config.h"

struct vtp_app {
	struct vtp_config cfg;
	struct vtp_auth auth;
};

#endif
