/* A process reaches only the contexts it holds a descriptor of: a child that
 * closed its inherited descriptor and then speaks the server's protocol
 * itself, naming its parent's context, is refused (EBADF); a hello that
 * names another's context without proving it holds it is refused; and a
 * forked child cannot post calls on its parent's call channel. The context
 * is left as it was each time. (The trust issue's second and third
 * findings.)
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
#include "server.h"

/* The wire protocol's packets (crates/proto): a hello, a call, a reply. */
struct hello { uint32_t magic, kind; uint64_t ino; uint32_t index, reserved; };
struct call { uint32_t op, request; uint64_t ino, arg, len; uint32_t prot, flags; uint64_t offset; int32_t fd, tid; };
struct reply { int64_t result; int32_t err; uint32_t reserved; uint64_t fd_addr, extra; uint32_t trap_start, trap_len; };
#define MAGIC 0x534f4654u
#define HELLO_CONTEXT 1
#define HELLO_CALL 2
#define CALL_IOCTL 1
#define CALL_IS_CONTEXT 3

/* In a child that holds no descriptor of the context `ino`: an ioctl
 * naming it, sent on a raw call channel. Exit status 0 when refused with
 * EBADF and the context is not even reported to exist. */
static int foreign_child(uint64_t ino)
{
	int s = connect_server();
	if (s < 0)
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

/* Sends `len` bytes with descriptor `fd` attached. */
static int send_with_fd(int s, const void *buf, size_t len, int fd)
{
	char control[CMSG_SPACE(sizeof(int))] = { 0 };
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
			      .msg_controllen = sizeof(control) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	return sendmsg(s, &msg, 0) == (ssize_t)len ? 0 : -1;
}

/* A hello that claims the context `ino`: bare, and with a descriptor of
 * some other socket the child does hold. Exit status 0 when the server
 * hangs up on both without an answer. */
static int impostor_child(uint64_t ino)
{
	struct hello h = { .magic = MAGIC, .kind = HELLO_CONTEXT, .ino = ino };
	struct reply r;
	int s = connect_server();
	if (s < 0 || write(s, &h, sizeof(h)) != sizeof(h))
		return 20;
	if (read(s, &r, sizeof(r)) != 0)
		return 21;
	int pair[2];
	s = connect_server();
	if (s < 0 || socketpair(AF_UNIX, SOCK_STREAM, 0, pair))
		return 22;
	if (send_with_fd(s, &h, sizeof(h), pair[0]))
		return 23;
	if (read(s, &r, sizeof(r)) != 0)
		return 24;
	return 0;
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

	child = fork();
	if (child == 0) {
		close(fd);
		_exit(impostor_child(st.st_ino));
	}
	waitpid(child, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	      "a hello naming another's context is refused");
	/* Replaced, the context would start again from IOAS 1. */
	CHECK(ioas_alloc(fd) == 2, "and the context is still the program's");

	/* A call channel of our own, then a child that inherits it. */
	int chan = connect_server();
	struct hello h = { .magic = MAGIC, .kind = HELLO_CALL };
	struct call q = { .op = CALL_IS_CONTEXT, .ino = st.st_ino };
	struct reply r = { 0 };
	CHECK(chan >= 0 && write(chan, &h, sizeof(h)) == sizeof(h) && write(chan, &q, sizeof(q)) == sizeof(q) &&
		      read(chan, &r, sizeof(r)) == sizeof(r) && r.result == 1,
	      "our own call channel answers for us");
	child = fork();
	if (child == 0) {
		struct ioas_alloc_cmd a = { .size = sizeof(a) };
		struct call c = { .op = CALL_IOCTL, .request = IOMMU_IOAS_ALLOC, .ino = st.st_ino,
				  .arg = (uintptr_t)&a };
		if (write(chan, &c, sizeof(c)) != sizeof(c))
			_exit(30);
		_exit(read(chan, &r, sizeof(r)) == 0 ? 0 : 31);
	}
	waitpid(child, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	      "a forked child's call on its parent's channel is refused");
	CHECK(ioas_alloc(fd) == 3, "and made nothing in the context");
	close(chan);
	close(fd);
	return finish();
}
