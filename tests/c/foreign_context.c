/* A process reaches only the contexts it holds a descriptor of: a child that
 * closed its inherited descriptor and then speaks the server's protocol
 * itself, naming its parent's context, is refused (EBADF), and the context
 * is left as it was. (The trust issue's second finding.)
 * SPDX-License-Identifier: Apache-2.0 OR MIT */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include "softiommu_abi.h"
#include "check.h"
#include "ops.h"

/* The wire protocol's packets (crates/proto): a hello, a call, a reply. */
struct hello { uint32_t magic, kind; uint64_t ino; uint32_t index, reserved; };
struct call { uint32_t op, request; uint64_t ino, arg, len; uint32_t prot, flags; uint64_t offset; };
struct reply { int64_t result; int32_t err; uint32_t reserved; uint64_t fd_addr, extra; uint32_t trap_start, trap_len; };
#define MAGIC 0x534f4654u
#define HELLO_CALL 2
#define CALL_IOCTL 1
#define CALL_IS_CONTEXT 3

/* In a child that holds no descriptor of the context `ino`: an ioctl
 * naming it, sent on a raw call channel. Exit status 0 when refused with
 * EBADF and the context is not even reported to exist. */
static int foreign_child(uint64_t ino)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	const char *path = getenv("SOFTIOMMU_SOCKET");
	if (!path)
		return 10;
	strncpy(addr.sun_path, path, sizeof(addr.sun_path) - 1);
	int s = socket(AF_UNIX, SOCK_STREAM, 0);
	if (s < 0 || connect(s, (struct sockaddr *)&addr, sizeof(addr)))
		return 11;
	struct hello h = { .magic = MAGIC, .kind = HELLO_CALL };
	if (write(s, &h, sizeof(h)) != sizeof(h))
		return 12;
	struct ioas_alloc_cmd a = { .size = sizeof(a) };
	struct call c = { .op = CALL_IOCTL, .request = IOMMU_IOAS_ALLOC, .ino = ino, .arg = (uintptr_t)&a };
	struct reply r;
	if (write(s, &c, sizeof(c)) != sizeof(c) || read(s, &r, sizeof(r)) != sizeof(r))
		return 13;
	if (r.err != EBADF)
		return 14;
	struct call q = { .op = CALL_IS_CONTEXT, .ino = ino };
	if (write(s, &q, sizeof(q)) != sizeof(q) || read(s, &r, sizeof(r)) != sizeof(r))
		return 15;
	return r.result == 0 ? 0 : 16;
}

int main(void)
{
	int fd = open("/dev/iommu", O_RDWR);
	CHECK(fd >= 0, "open /dev/iommu");
	struct stat st;
	CHECK(fstat(fd, &st) == 0, "fstat gives the context's inode");
	pid_t child = fork();
	if (child == 0) {
		close(fd);
		_exit(foreign_child(st.st_ino));
	}
	int status = 0;
	waitpid(child, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	      "a process without the descriptor cannot act on the context");
	/* The context made nothing for the foreign call: the first IOAS is 1. */
	CHECK(ioas_alloc(fd) == 1, "the context is as it was");
	close(fd);
	return finish();
}
