/* The shim remembers which descriptor numbers hold served files, so that an
 * ioctl need not ask the kernel each time. What it remembers must follow
 * every way a number changes its file: close, dup2, dup3, close_range,
 * closefrom, F_DUPFD, fork and exec; and closes in one thread while another
 * opens. A context answers IOMMU_IOAS_ALLOC; a pipe or /dev/null in its
 * place answers ENOTTY, as the kernel would.
 * SPDX-License-Identifier: Apache-2.0 OR MIT */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include "check.h"
#include "softiommu_abi.h"

static int alloc_ioas(int fd)
{
	struct ioas_alloc_cmd a = { .size = sizeof(a) };
	return ioctl(fd, IOMMU_IOAS_ALLOC, &a);
}

static int served(int fd)
{
	return alloc_ioas(fd) == 0;
}

static int refused(int fd)
{
	return FAILS(alloc_ioas(fd), ENOTTY);
}

/* Opens /dev/null at exactly `number` (which must be free). */
static int null_at(int number)
{
	int fd = open("/dev/null", O_RDWR);
	if (fd != number) {
		dup2(fd, number);
		close(fd);
	}
	return number;
}

static void reused_numbers(void)
{
	int ctx = open("/dev/iommu", O_RDWR);
	CHECK(ctx >= 0 && served(ctx), "a context answers");
	close(ctx);
	int other = open("/dev/null", O_RDWR);
	CHECK(other == ctx, "close: the number is given out again");
	CHECK(refused(other), "close: the new file is not the context");
	close(other);
	ctx = open("/dev/iommu", O_RDWR);
	CHECK(ctx == other && served(ctx), "close: and a context again");
	close(ctx);

	/* libc closes a stream's descriptor with a call of its own. */
	ctx = open("/dev/iommu", O_RDWR);
	FILE *stream = fdopen(ctx, "r+");
	CHECK(stream && served(ctx), "fdopen: the context under a stream");
	fclose(stream);
	other = open("/dev/null", O_RDWR);
	CHECK(other == ctx && refused(other), "fclose: the number's next file is not the context");
	close(other);

	/* pclose, the same way, and a number known as no context's. */
	ctx = open("/dev/iommu", O_RDWR);
	FILE *pipe_stream = popen("true", "r");
	int piped = pipe_stream ? fileno(pipe_stream) : -1;
	CHECK(piped >= 0 && refused(piped), "popen: its pipe is no context");
	pclose(pipe_stream);
	int copy = dup(ctx);
	CHECK(copy == piped && served(copy), "pclose: a dup at the pipe's number is the context");
	close(copy);
	close(ctx);
}

static void replaced_numbers(void)
{
	int ctx = open("/dev/iommu", O_RDWR);
	int pipes[2];
	CHECK(pipe(pipes) == 0, "pipe");
	CHECK(served(ctx) && refused(pipes[0]), "both looked at once");

	CHECK(dup2(pipes[0], ctx) == ctx, "dup2 a pipe over the context");
	CHECK(refused(ctx), "dup2: the number now holds the pipe");
	int ctx2 = open("/dev/iommu", O_RDWR);
	CHECK(served(ctx2), "a second context");
	CHECK(dup2(ctx2, pipes[0]) == pipes[0], "dup2 the context over a pipe");
	CHECK(served(pipes[0]), "dup2: the number now holds the context");

	CHECK(dup3(pipes[1], ctx2, O_CLOEXEC) == ctx2, "dup3 a pipe over the context");
	CHECK(refused(ctx2), "dup3: the number now holds the pipe");
	CHECK(dup3(pipes[0], ctx2, 0) == ctx2, "dup3 the context back");
	CHECK(served(ctx2), "dup3: the number holds the context again");

	int copy = fcntl(ctx2, F_DUPFD_CLOEXEC, 100);
	CHECK(copy >= 100 && served(copy), "F_DUPFD: the copy is the context");
	close(copy);
	CHECK(FAILS(alloc_ioas(copy), EBADF), "a closed number: EBADF");
	copy = null_at(copy);
	CHECK(refused(copy), "the same number on /dev/null");
	close(copy);

	close(ctx);
	close(pipes[0]);
	close(pipes[1]);
	close(ctx2);
}

static void ranges_closed(void)
{
	int ctx = open("/dev/iommu", O_RDWR);
	int at = fcntl(ctx, F_DUPFD, 200);
	CHECK(served(at), "a context at 200");
	close(ctx);
	CHECK(close_range(at, at, CLOSE_RANGE_CLOEXEC) == 0, "close_range marking cloexec");
	CHECK(served(at), "close_range(CLOEXEC) closes nothing");
	CHECK(close_range(at, at + 10, 0) == 0, "close_range");
	CHECK(FAILS(alloc_ioas(at), EBADF), "close_range: closed");
	null_at(at);
	CHECK(refused(at), "close_range: the number's new file");
	close(at);

	ctx = open("/dev/iommu", O_RDWR);
	at = fcntl(ctx, F_DUPFD, 300);
	close(ctx);
	CHECK(served(at), "a context at 300");
	closefrom(300);
	CHECK(FAILS(alloc_ioas(at), EBADF), "closefrom: closed");
	null_at(at);
	CHECK(refused(at), "closefrom: the number's new file");
	close(at);
}

/* Numbers past the shim's table are asked of the kernel each time. */
static void high_numbers(void)
{
	struct rlimit lim;
	if (getrlimit(RLIMIT_NOFILE, &lim) || lim.rlim_max < 5001) {
		printf("note: numbers past the table not checked (RLIMIT_NOFILE hard limit %lu)\n",
		       (unsigned long)lim.rlim_max);
		return;
	}
	struct rlimit raised = { .rlim_cur = 5001, .rlim_max = lim.rlim_max };
	if (lim.rlim_cur < 5001)
		setrlimit(RLIMIT_NOFILE, &raised);
	int ctx = open("/dev/iommu", O_RDWR);
	CHECK(dup2(ctx, 5000) == 5000 && served(5000), "a context at 5000");
	close(5000);
	CHECK(null_at(5000) == 5000 && refused(5000), "/dev/null at 5000 after it");
	close(5000);
	close(ctx);
	setrlimit(RLIMIT_NOFILE, &lim);
}

static void forked(void)
{
	int ctx = open("/dev/iommu", O_RDWR);
	CHECK(served(ctx), "the parent's context");
	pid_t child = fork();
	if (child == 0) {
		int ok = served(ctx);
		close(ctx);
		null_at(ctx);
		ok = ok && refused(ctx);
		_exit(ok ? 0 : 1);
	}
	int status = 0;
	waitpid(child, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "fork: the child's numbers follow its own closes");
	CHECK(served(ctx), "fork: the parent's context is untouched");
	close(ctx);
}

static int exec_child(int ctx, int null)
{
	CHECK(served(ctx), "exec: a context kept across exec answers");
	CHECK(refused(null), "exec: /dev/null kept across exec does not");
	return finish();
}

static void execed(const char *self)
{
	int ctx = open("/dev/iommu", O_RDWR);
	int null = open("/dev/null", O_RDWR);
	CHECK(served(ctx) && refused(null), "before exec");
	/* Swap them, so numbers the shim knew hold the other file after exec. */
	int spare = dup(ctx);
	dup2(null, ctx);
	dup2(spare, null);
	close(spare);
	fcntl(ctx, F_SETFD, 0);
	fcntl(null, F_SETFD, 0);
	pid_t child = fork();
	if (child == 0) {
		char a[16], b[16];
		snprintf(a, sizeof(a), "%d", null);
		snprintf(b, sizeof(b), "%d", ctx);
		execl(self, self, "exec-child", a, b, (char *)NULL);
		_exit(127);
	}
	int status = 0;
	waitpid(child, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "exec: the new image learns its numbers afresh");
	close(ctx);
	close(null);
}

/* Two threads open, use and close contexts and pipes as fast as they can,
 * so each reuses numbers the other just closed. Each knows what it opened;
 * every answer must fit that. */
#define ROUNDS 4000

static void *churn(void *arg)
{
	long wrong = 0;
	(void)arg;
	for (int i = 0; i < ROUNDS; i++) {
		int ctx = open("/dev/iommu", O_RDWR);
		if (!served(ctx))
			wrong++;
		close(ctx);
		int pipes[2];
		if (pipe(pipes))
			return (void *)-1L;
		if (!refused(pipes[0]) || !refused(pipes[1]))
			wrong++;
		close(pipes[0]);
		close(pipes[1]);
	}
	return (void *)wrong;
}

static void threads(void)
{
	pthread_t t[2];
	void *wrong[2];
	for (int i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, churn, NULL);
	long total = 0;
	for (int i = 0; i < 2; i++) {
		pthread_join(t[i], &wrong[i]);
		total += (long)wrong[i];
	}
	printf("threads: %ld wrong answers in %d rounds\n", total, 2 * ROUNDS);
	CHECK(total == 0, "threads: every answer fits the file its thread opened");
}

/* A program that races an ioctl against a close of the same descriptor
 * gets whichever answer comes first, as in the kernel; it must not leave
 * the shim believing the closed file is still there. One thread keeps
 * asking number `racy_number` while the other opens a context there,
 * closes it, opens /dev/null there and asks that. */
static volatile int racing = 1;
static int racy_number;

static void *asker(void *arg)
{
	(void)arg;
	while (racing)
		alloc_ioas(racy_number);
	return NULL;
}

static void racing_closes(void)
{
	int ctx = open("/dev/iommu", O_RDWR);
	racy_number = ctx;
	close(ctx);
	pthread_t t;
	pthread_create(&t, NULL, asker, NULL);
	long wrong = 0;
	for (int i = 0; i < ROUNDS; i++) {
		ctx = open("/dev/iommu", O_RDWR);
		if (ctx != racy_number) {
			close(ctx);
			continue;
		}
		close(ctx);
		int null = open("/dev/null", O_RDWR);
		if (null == racy_number && !refused(null))
			wrong++;
		close(null);
	}
	racing = 0;
	pthread_join(t, NULL);
	printf("racing closes: %ld wrong answers\n", wrong);
	CHECK(wrong == 0, "racing closes: a closed context is never taken for the next file");
}

int main(int argc, char **argv)
{
	if (argc == 4 && strcmp(argv[1], "exec-child") == 0)
		return exec_child(atoi(argv[2]), atoi(argv[3]));
	reused_numbers();
	replaced_numbers();
	ranges_closed();
	high_numbers();
	forked();
	execed(argv[0]);
	threads();
	racing_closes();
	return finish();
}
