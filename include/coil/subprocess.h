/* coil: subprocesses (asyncio's create_subprocess_exec / create_subprocess_shell and Process).
 *
 * A child's stdin, stdout and stderr are each inherited (the default), a PIPE (a coil_stream
 * in this process), /dev/null, a given fd, or for stderr the same as stdout. The child is
 * spawned with posix_spawn (vfork-style, so spawning from a large process is cheap), with an
 * empty signal mask and SIGPIPE/SIGXFSZ at their defaults, and, unless keep_fds is set, every
 * fd above 2 closed (asyncio's close_fds=True). A program that cannot be executed is reported
 * by the create call itself (-ENOENT, -EACCES, ...), not as an exit status.
 *
 * Waiting for the exit uses a pidfd polled on the loop's ring and reaps with waitid(P_PIDFD): no
 * SIGCHLD handler, so children created elsewhere in the process are never stolen.
 *
 * Differences from asyncio, and why:
 * - A PIPE is a connected AF_UNIX stream socket pair, not pipe(2): that is what coil_stream
 *   runs on, and it gives write_eof (the child reads EOF while this side still reads its
 *   output) and no SIGPIPE in this process when the child goes away (-EPIPE instead). Programs
 *   see an ordinary byte stream on their stdio; only one that insists on S_ISFIFO would notice.
 * - A bare program name in argv[0] is searched in this process's PATH (posix_spawnp), not in
 *   the PATH of opts->env.
 * - coil_subprocess_free kills (SIGKILL) a child that is still running, as closing asyncio's
 *   transport does, and reaps it in the background.
 *
 * Loop thread only. */
#ifndef COIL_SUBPROCESS_H
#define COIL_SUBPROCESS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "api.h"
#include "stream.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct coil_subprocess coil_subprocess;

/* Where a child's standard stream goes. */
typedef enum coil_stdio {
    COIL_STDIO_INHERIT = 0, /* this process's own fd 0/1/2 (asyncio's None) */
    COIL_STDIO_PIPE,        /* a coil_stream: coil_subprocess_stdin/stdout/stderr */
    COIL_STDIO_DEVNULL,     /* /dev/null */
    COIL_STDIO_FD,          /* the fd in stdin_fd/stdout_fd/stderr_fd (not taken over) */
    COIL_STDIO_STDOUT,      /* stderr only: wherever stdout goes */
} coil_stdio;

typedef struct coil_subprocess_opts {
    coil_stdio stdin_mode, stdout_mode, stderr_mode;
    int stdin_fd, stdout_fd, stderr_fd;  /* for COIL_STDIO_FD */
    const char *cwd;                     /* NULL = this process's working directory */
    char *const *env;                    /* NULL-terminated "K=V" list; NULL = this environment */
    bool keep_fds;                       /* leave fds above 2 open in the child (close_fds=False);
                                          * coil's own fds are close-on-exec either way */
    bool start_new_session;              /* setsid() in the child */
    const coil_stream_opts *stream;      /* for the PIPE streams; NULL = defaults */
} coil_subprocess_opts;

/* Start argv[0] with arguments argv (NULL-terminated). Never suspends. Returns 0 with *out,
 * the exec error (-ENOENT for a missing program, -EACCES, -ENOEXEC, ...), a chdir error for
 * opts->cwd, -EINVAL (no argv[0], COIL_STDIO_STDOUT for stdin or stdout, a negative fd for
 * COIL_STDIO_FD, no loop), -EMFILE, -ENOMEM. On error nothing is left behind. */
COIL_API int coil_create_subprocess_exec(const char *const *argv, const coil_subprocess_opts *opts, coil_subprocess **out);
/* Run cmd with /bin/sh -c. Never suspends. Errors as coil_create_subprocess_exec. */
COIL_API int coil_create_subprocess_shell(const char *cmd, const coil_subprocess_opts *opts, coil_subprocess **out);

/* The child's pid. */
COIL_API pid_t coil_subprocess_pid(const coil_subprocess *p);
/* The PIPE streams, owned by the process object (freed with it), or NULL when not a PIPE. */
COIL_API coil_stream *coil_subprocess_stdin(coil_subprocess *p);
COIL_API coil_stream *coil_subprocess_stdout(coil_subprocess *p);
COIL_API coil_stream *coil_subprocess_stderr(coil_subprocess *p);

/* Suspend until the child exits; 0 with *returncode (optional): the exit status, or minus the
 * signal number that killed it (-9 for SIGKILL), as asyncio. Any number of tasks may wait.
 * Cancelling a wait only stops that waiter: the child runs on and can be waited for later.
 * Returns 0, -ECANCELED, COIL_ENOTASK, -EINVAL. Does not suspend if it has already exited. */
COIL_API int coil_subprocess_wait(coil_subprocess *p, int *returncode);
/* Without suspending: 0 with *returncode if the child has exited (reaping it if needed, like
 * Popen.poll), COIL_EINVALSTATE while it runs. */
COIL_API int coil_subprocess_returncode(coil_subprocess *p, int *returncode);

/* Send a signal. 0, -ESRCH once the child has exited (asyncio's ProcessLookupError), -EINVAL.
 * A child that has exited but was not waited for yet is reaped first (without blocking), so it
 * is not signalled and its status stays for coil_subprocess_wait/_returncode. Never suspends.
 * terminate is SIGTERM, kill is SIGKILL. */
COIL_API int coil_subprocess_send_signal(coil_subprocess *p, int sig);
COIL_API int coil_subprocess_terminate(coil_subprocess *p);
COIL_API int coil_subprocess_kill(coil_subprocess *p);

/* asyncio's communicate: write `input` (may be NULL) to stdin and close it, read stdout and
 * stderr to EOF at the same time (so a child filling both never deadlocks), then wait for the
 * exit. out/err (each optional, with its length) receive malloc'd NUL-terminated blocks the
 * caller frees, or NULL when that stream is not a PIPE. Suspends. Returns 0; -EINVAL for input
 * with no stdin PIPE; a read error; -ECANCELED (nothing is returned then, and the child runs
 * on). A child that stops reading its stdin (-EPIPE/-ECONNRESET) is not an error, as asyncio. */
COIL_API int coil_subprocess_communicate(coil_subprocess *p, const void *input, size_t len, char **out, size_t *outlen,
                                         char **err, size_t *errlen);

/* Release the process object and its streams. A child still running is killed (SIGKILL) and
 * reaped in the background. Never suspends. Call it before the loop closes. */
COIL_API void coil_subprocess_free(coil_subprocess *p);

#ifdef __cplusplus
}
#endif
#endif
