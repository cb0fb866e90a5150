/* When the server dies mid-run, the program is told: its calls on served
 * descriptors fail with EIO (never a crash or a hang), a new open fails,
 * and everything else works as before; `softiommu run` still reports the
 * program's exit status. The program kills the server itself: the process
 * whose command line is `softiommu serve --socket $SOFTIOMMU_SOCKET ...`.
 * SPDX-License-Identifier: Apache-2.0 OR MIT */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "softiommu_abi.h"
#include "check.h"
#include "ops.h"
#include "server.h"

int main(void)
{
	uint32_t ioas;
	int fd = open_with_ioas(&ioas, NULL);
	pid_t server = server_pid();
	CHECK(server > 0 && server != getpid() && server != getppid(), "the server is a process of its own");
	CHECK(kill(server, SIGKILL) == 0, "kill it");
	/* Its end of our connection closes once it is gone. */
	for (int i = 0; i < 500 && kill(server, 0) == 0; i++)
		usleep(10000);
	struct ioas_alloc_cmd a = { .size = sizeof(a) };
	CHECK(ioctl(fd, IOMMU_IOAS_ALLOC, &a) == -1 && errno == EIO, "a call on the context fails with EIO");
	CHECK(open("/dev/iommu", O_RDWR) == -1 && errno == ENODEV, "a new open fails");
	CHECK(close(fd) == 0, "close still works");
	int p[2];
	CHECK(pipe(p) == 0 && write(p[1], "x", 1) == 1, "and so does everything else");
	return finish();
}
