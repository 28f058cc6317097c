/* min_responder.c: the benchmarks' baseline FastCGI program: threaded libfcgi like vtp-api, no work per request. */
/*
 * Usage (on a socket from spawn-fcgi, as vtp-api): min_responder THREADS BODY_FILE...
 * A request whose QUERY_STRING is "b=N" gets the Nth BODY_FILE (from 1) as a
 * 200 application/json answer; "b=0" reads the request body to its end and
 * answers 204 (the shape of POST .../progress). Everything else is 404. The
 * bodies are read once at start, so a request costs only libfcgi's own work:
 * the floor under any real handler behind the same web server.
 */
#include <fcgiapp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_BODIES 8

static char *bodies[MAX_BODIES];
static size_t body_len[MAX_BODIES];
static int n_bodies;
/* libfcgi's FAQ: serialise accept() across threads (as fcgi/main.c does). */
static pthread_mutex_t accept_lock = PTHREAD_MUTEX_INITIALIZER;

/* Reads a whole file into *out (malloc'd, kept for the process's life). Returns 0 or -1. */
static int slurp(const char *path, char **out, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return -1;
	char *buf = NULL;
	size_t size = 0, cap = 0;
	for (;;) {
		if (size == cap) {
			cap = cap ? cap * 2 : 4096;
			char *bigger = realloc(buf, cap);
			if (!bigger) {
				free(buf);
				fclose(f);
				return -1;
			}
			buf = bigger;
		}
		size_t got = fread(buf + size, 1, cap - size, f);
		size += got;
		if (got == 0)
			break;
	}
	fclose(f);
	*out = buf;
	*len = size;
	return 0;
}

static bool close_at_once;

static void answer(FCGX_Request *r)
{
	const char *query = FCGX_GetParam("QUERY_STRING", r->envp);
	int n = query && strncmp(query, "b=", 2) == 0 ? atoi(query + 2) : -1;
	char head[128], sink[4096];
	if (n == 0) {
		while (FCGX_GetStr(sink, sizeof sink, r->in) > 0)
			;
		FCGX_PutS("Status: 204 No Content\r\n\r\n", r->out);
	} else if (n >= 1 && n <= n_bodies) {
		int len = snprintf(head, sizeof head,
				   "Status: 200 OK\r\nContent-Type: application/json; charset=utf-8\r\n"
				   "Content-Length: %zu\r\n\r\n",
				   body_len[n - 1]);
		FCGX_PutStr(head, len, r->out);
		FCGX_PutStr(bodies[n - 1], (int)body_len[n - 1], r->out);
	} else {
		FCGX_PutS("Status: 404 Not Found\r\nContent-Length: 0\r\n\r\n", r->out);
	}
}

static void *serve(void *arg)
{
	(void)arg;
	FCGX_Request r;
	FCGX_InitRequest(&r, 0, 0);
	for (;;) {
		pthread_mutex_lock(&accept_lock);
		int rc = FCGX_Accept_r(&r);
		pthread_mutex_unlock(&accept_lock);
		if (rc < 0)
			break;
		answer(&r);
		/* With MIN_RESPONDER_CLOSE_AT_ONCE set, closes as vtp-api does (fcgi/main.c), to compare like
		 * with like; by default libfcgi's own lingering close, as any libfcgi responder has it. */
		char unread;
		if (close_at_once && FCGX_GetStr(&unread, 1, r.in) == 0 && FCGX_GetError(r.in) == 0)
			FCGX_Detach(&r);
		FCGX_Finish_r(&r);
	}
	FCGX_Free(&r, 1);
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 3 || argc - 2 > MAX_BODIES) {
		fprintf(stderr, "usage: min_responder THREADS BODY_FILE... (at most %d)\n", MAX_BODIES);
		return 2;
	}
	int threads = atoi(argv[1]);
	if (threads < 1 || threads > 256) {
		fprintf(stderr, "min_responder: THREADS must be 1 to 256\n");
		return 2;
	}
	for (int i = 2; i < argc; i++, n_bodies++)
		if (slurp(argv[i], &bodies[n_bodies], &body_len[n_bodies]) < 0) {
			perror(argv[i]);
			return 1;
		}
	close_at_once = getenv("MIN_RESPONDER_CLOSE_AT_ONCE") != NULL;
	FCGX_Init();
	pthread_t *ids = calloc((size_t)threads, sizeof *ids);
	if (!ids)
		return 1;
	for (int i = 0; i < threads; i++)
		if (pthread_create(&ids[i], NULL, serve, NULL) != 0) {
			fprintf(stderr, "min_responder: cannot start a thread\n");
			return 1;
		}
	for (int i = 0; i < threads; i++)
		pthread_join(ids[i], NULL);
	free(ids);
	for (int i = 0; i < n_bodies; i++)
		free(bodies[i]);
	return 0;
}
