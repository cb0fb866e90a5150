/* The server notices at once that a process has exited: the thread that
 * answered the process's calls ends within moments, not at its next
 * wake-up (every 30 s on an idle channel). Children here make a call and
 * exit without closing anything, as a test runner's or a fuzzer's do;
 * when the server noticed them only at a 100 ms wake-up, a program that
 * forked often kept a crowd of server threads alive, and their stacks and
 * allocator arenas grew the server's memory.
 * SPDX-License-Identifier: Apache-2.0 OR MIT */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "softiommu_abi.h"
#include "check.h"
#include "ops.h"
#include "server.h"

#define CHILDREN 20
/* Far below the idle wake-up, far above a noticed exit on a busy machine. */
#define NOTICED_WITHIN_MS 10000

static long now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

int main(void)
{
	pid_t server = server_pid();
	CHECK(server > 0, "the server is found");
	int fd = open("/dev/iommu", O_RDWR);
	CHECK(fd >= 0, "open /dev/iommu");
	CHECK(ioas_alloc(fd) > 0, "this process's own calls are served");
	long idle = server_status(server, "Threads");
	long slowest = 0;
	int all_noticed = 1;
	for (int i = 0; i < CHILDREN; i++) {
		pid_t child = fork();
		if (child == 0)
			_exit(ioas_alloc(fd) > 0 ? 0 : 1);
		int status = 0;
		waitpid(child, &status, 0);
		CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child's call is served");
		long start = now_ms(), waited = 0;
		while (server_status(server, "Threads") > idle && waited < NOTICED_WITHIN_MS) {
			usleep(1000);
			waited = now_ms() - start;
		}
		if (waited > slowest)
			slowest = waited;
		if (server_status(server, "Threads") > idle) {
			all_noticed = 0;
			break;
		}
	}
	printf("# slowest exit noticed after %ld ms\n", slowest);
	CHECK(all_noticed, "the server's thread for each exited child ended at once");
	close(fd);
	return finish();
}
