/* main.c: vtp-api's entry: threaded libfcgi accept loop, clean SIGTERM shutdown, and one-shot CGI mode. */
#include "../lib/db.h"
#include "../lib/image.h"
#include "../lib/log.h"
#include "app.h"
#include "http.h"
#include "router.h"

#include <errno.h>
#include <fcgiapp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static struct vtp_app app;
/* libfcgi's FAQ: serialise accept() across threads. */
static pthread_mutex_t accept_lock = PTHREAD_MUTEX_INITIALIZER;

typedef const char *(*param_fn)(const char *name, void *env);
typedef int (*write_fn)(void *io, const char *data, size_t len);

static const char *fcgi_param(const char *name, void *env)
{
	return FCGX_GetParam(name, (FCGX_ParamArray)env);
}

static const char *cgi_param(const char *name, void *env)
{
	(void)env;
	return getenv(name);
}

static int fcgi_read(void *io, char *buf, int n)
{
	return FCGX_GetStr(buf, n, (FCGX_Stream *)io);
}

/* A CGI body is CONTENT_LENGTH bytes of stdin; io points at what is left of it. */
static int cgi_read(void *io, char *buf, int n)
{
	long long *left = io;
	size_t want = *left < n ? (size_t)*left : (size_t)n;
	size_t got = want ? fread(buf, 1, want, stdin) : 0;
	*left -= (long long)got;
	return ferror(stdin) ? -1 : (int)got;
}

static int fcgi_write(void *io, const char *data, size_t len)
{
	return FCGX_PutStr(data, (int)len, (FCGX_Stream *)io) == (int)len ? 0 : -1;
}

static int cgi_write(void *io, const char *data, size_t len)
{
	(void)io;
	return fwrite(data, 1, len, stdout) == len && fflush(stdout) == 0 ? 0 : -1;
}

static double elapsed_ms(const struct timespec *since)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - since->tv_sec) * 1e3 + (double)(now.tv_nsec - since->tv_nsec) / 1e6;
}

/* Answers one request whose parameters come from param(env), body from
 * read(in), answer to write(out). */
static void serve_one(struct vtp_db *db, param_fn param, void *env, http_read_fn read, void *in, write_fn write,
		      void *out)
{
	struct vtp_ctx ctx = {0};
	struct vtp_buf head = {0};
	struct timespec start;
	clock_gettime(CLOCK_MONOTONIC, &start);

	ctx.app = &app;
	ctx.db = db;
	ctx.req.read = read;
	ctx.req.io = in;
	ctx.req.method = param("REQUEST_METHOD", env);
	ctx.req.query = param("QUERY_STRING", env);
	ctx.req.content_type = param("CONTENT_TYPE", env);
	ctx.req.authorization = param("HTTP_AUTHORIZATION", env);
	ctx.req.user_agent = param("HTTP_USER_AGENT", env);
	ctx.req.remote_addr = param("REMOTE_ADDR", env);
	ctx.req.param = param;
	ctx.req.param_env = env;
	const char *length = param("CONTENT_LENGTH", env);
	ctx.req.content_length = length && *length ? strtoll(length, NULL, 10) : -1;
	if (!ctx.req.query)
		ctx.req.query = "";
	/* Route on PATH_INFO when the server splits the script off (mod_fcgid
	 * with a RewriteRule), else on the request's own path. */
	const char *path_info = param("PATH_INFO", env);
	const char *uri = param("REQUEST_URI", env);
	if (path_info && *path_info)
		ctx.req.path = xstrdup(path_info);
	else if (uri)
		ctx.req.path = xstrndup(uri, strcspn(uri, "?"));

	if (!ctx.req.method || !ctx.req.path)
		http_problem(&ctx, 400, "bad_request", "the web server sent no method or path");
	else
		router_dispatch(&ctx);

	ctx.resp.head_only = ctx.req.method && strcmp(ctx.req.method, "HEAD") == 0;
	/* The head and the body go out as two writes into libfcgi's buffer
	 * rather than one copy of both. */
	http_serialise_head(&ctx.resp, &head);
	bool body = http_has_body(&ctx.resp);
	if (write(out, head.data, head.len) < 0 || (body && ctx.resp.body.len &&
						       write(out, ctx.resp.body.data, ctx.resp.body.len) < 0) ||
	    (ctx.resp.stream && ctx.resp.status != 304 && !ctx.resp.head_only &&
	     ctx.resp.stream(ctx.resp.stream_arg, write, out) < 0))
		log_warn("%s %s: the client went away before the answer was sent", ctx.req.method, ctx.req.path);
	if (ctx.resp.stream_free)
		ctx.resp.stream_free(ctx.resp.stream_arg);
	if (ctx.resp.status >= 500)
		log_warn("%s %s -> %d in %.1f ms", ctx.req.method, ctx.req.path, ctx.resp.status, elapsed_ms(&start));
	else
		log_debug("%s %s -> %d in %.1f ms", ctx.req.method, ctx.req.path, ctx.resp.status, elapsed_ms(&start));
	vtp_buf_free(&head);
	http_ctx_free(&ctx);
}

static void *serve_fastcgi(void *unused)
{
	(void)unused;
	struct vtp_db db;
	FCGX_Request request;
	vtp_db_init(&db, &app.cfg, "vtp-api");
	db.prepare = true; /* a thread's connection serves many requests: plan each statement once */
	FCGX_InitRequest(&request, 0, 0);
	for (;;) {
		pthread_mutex_lock(&accept_lock);
		int rc = FCGX_Accept_r(&request);
		pthread_mutex_unlock(&accept_lock);
		if (rc < 0)
			break;
		serve_one(&db, fcgi_param, request.envp, fcgi_read, request.in, fcgi_write, request.out);
		/* libfcgi closes a connection by waiting, in poll(), until the web server has closed its end
		 * (a lingering close: a socket closed with request data unread can reset the connection before
		 * the answer is read). When the request's stdin is read to its end nothing is left unread, so
		 * the connection is closed at once and this thread takes the next request without that wait. */
		char unread;
		bool stdin_read = FCGX_GetStr(&unread, 1, request.in) == 0 && FCGX_GetError(request.in) == 0;
		request.detached = 0; /* on a kept connection (FCGI_KEEP_CONN), left from an earlier request */
		if (stdin_read)
			FCGX_Detach(&request);
		FCGX_Finish_r(&request);
	}
	FCGX_Free(&request, 1);
	vtp_db_close(&db);
	return NULL;
}

static int run_cgi(void)
{
	struct vtp_db db;
	vtp_db_init(&db, &app.cfg, "vtp-api");
	const char *length = getenv("CONTENT_LENGTH");
	long long body_left = length ? strtoll(length, NULL, 10) : 0;
	if (body_left < 0)
		body_left = 0;
	serve_one(&db, cgi_param, NULL, cgi_read, &body_left, cgi_write, NULL);
	vtp_db_close(&db);
	return 0;
}

static int run_fastcgi(void)
{
	long n = app.cfg.api_threads;
	pthread_t *threads = xcalloc((size_t)n, sizeof *threads);
	sigset_t stop_signals;
	int sig = 0;

	/* Every thread inherits this mask: the signals reach only sigwait below,
	 * never libfcgi's own handlers, which cannot stop a threaded process. */
	sigemptyset(&stop_signals);
	sigaddset(&stop_signals, SIGTERM);
	sigaddset(&stop_signals, SIGINT);
	sigaddset(&stop_signals, SIGHUP);
	sigaddset(&stop_signals, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
	for (long i = 0; i < n; i++)
		if (pthread_create(&threads[i], NULL, serve_fastcgi, NULL) != 0) {
			log_error("cannot start thread %ld: %s", i, strerror(errno));
			abort();
		}
	log_info("serving FastCGI with %ld threads", n);
	sigwait(&stop_signals, &sig);
	log_info("signal %d: finishing the requests under way", sig);
	FCGX_ShutdownPending();
	/* Wakes the threads blocked in accept(); requests already accepted
	 * are answered on their own sockets. */
	shutdown(0, SHUT_RDWR);
	for (long i = 0; i < n; i++)
		pthread_join(threads[i], NULL);
	free(threads);
	log_info("stopped");
	return 0;
}

int main(int argc, char **argv)
{
	char *error = NULL;
	int ret = 1;
	vtp_log_set_program("vtp-api");
	/* A child that renders one thumbnail for a request (fcgi/thumbnail.c). */
	if (argc > 1 && strcmp(argv[1], "--render-thumbnail") == 0)
		return image_render_main(argc, argv);
	if (vtp_config_load_default(&app.cfg) < 0)
		return 1;
	if (vtp_auth_init(&app.auth, &app.cfg, &error) < 0) {
		log_error("configuration: %s", error);
		free(error);
		goto out;
	}
	if (FCGX_Init() != 0) {
		log_error("cannot initialise libfcgi");
		goto out;
	}
	signal(SIGPIPE, SIG_IGN);
	ret = FCGX_IsCGI() ? run_cgi() : run_fastcgi();
out:
	vtp_auth_free(&app.auth);
	vtp_config_free(&app.cfg);
	return ret;
}
