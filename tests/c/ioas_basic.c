/* Drives /dev/iommu as an unmodified program would, under `softiommu run`.
 * Prints one line per check; exits 1 at the first failure.
 * SPDX-License-Identifier: Apache-2.0 OR MIT */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "softiommu_abi.h"
#include "check.h"
#include "ops.h"

static int map_fixed(int fd, int ioas, void *va, uint64_t len, uint64_t iova)
{
	struct map_cmd c = { .size = sizeof(c), .flags = MAP_FIXED_IOVA | MAP_READABLE | MAP_WRITEABLE,
			     .ioas_id = ioas, .user_va = (uintptr_t)va, .length = len, .iova = iova };
	return ioctl(fd, IOMMU_IOAS_MAP, &c);
}

/* After exec: the inherited descriptor still reaches the same context. */
static int exec_child(int fd, int ioas)
{
	struct iova_ranges_cmd r = { .size = sizeof(r), .ioas_id = ioas };
	int rc = ioctl(fd, IOMMU_IOAS_IOVA_RANGES, &r);
	return (rc == -1 && errno == EMSGSIZE && r.num_iovas == 1) ? 0 : 3;
}

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "--exec-child"))
		return exec_child(atoi(argv[2]), atoi(argv[3]));

	int fd = open("/dev/iommu", O_RDWR);
	CHECK(fd >= 0, "open /dev/iommu");
	if (fd < 0)
		return 1;
	struct stat st;
	CHECK(fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode), "the descriptor is a real kernel fd");

	int ioas = ioas_alloc(fd);
	CHECK(ioas == 1, "IOAS_ALLOC gives id 1");

	void *buf = NULL;
	CHECK(posix_memalign(&buf, 2UL << 20, 16 * PAGE) == 0, "allocate a buffer");
	memset(buf, 0x5a, 16 * PAGE);

	struct map_cmd m = { .size = sizeof(m), .flags = MAP_READABLE, .ioas_id = ioas,
			     .user_va = (uintptr_t)buf, .length = 16 * PAGE };
	CHECK(ioctl(fd, IOMMU_IOAS_MAP, &m) == 0 && m.iova != 0 && m.iova % PAGE == 0,
	      "IOAS_MAP with an automatic IOVA");
	CHECK(map_fixed(fd, ioas, buf, 4 * PAGE, 0x100000) == 0, "IOAS_MAP at a fixed IOVA");
	CHECK(map_fixed(fd, ioas, buf, 4 * PAGE, 0x101000) == -1 && errno == EEXIST, "overlap is EEXIST");

	struct iova_ranges_cmd r = { .size = sizeof(r), .ioas_id = ioas };
	CHECK(ioctl(fd, IOMMU_IOAS_IOVA_RANGES, &r) == -1 && errno == EMSGSIZE && r.num_iovas == 1,
	      "IOVA_RANGES reports the count with EMSGSIZE");
	struct iova_range ranges[1];
	r.num_iovas = 1;
	r.allowed_iovas = (uintptr_t)ranges;
	CHECK(ioctl(fd, IOMMU_IOAS_IOVA_RANGES, &r) == 0 && ranges[0].start == 0 && ranges[0].last == ~0ULL,
	      "IOVA_RANGES writes the ranges into our memory");

	struct unmap_cmd u = { .size = sizeof(u), .ioas_id = ioas, .iova = 0x100000, .length = 4 * PAGE };
	CHECK(ioctl(fd, IOMMU_IOAS_UNMAP, &u) == 0 && u.length == 4 * PAGE, "IOAS_UNMAP returns the bytes");
	CHECK(check_refs(fd, buf, 16 * PAGE, 0) == 0, "mapping without a domain pins nothing");

	/* Malformed input never crashes the program. */
	CHECK(ioctl(fd, IOMMU_DESTROY, NULL) == -1 && errno == EFAULT, "NULL argument is EFAULT");
	CHECK(ioctl(fd, IOMMU_DESTROY, (void *)16) == -1 && errno == EFAULT, "wild pointer is EFAULT");
	struct allow_iovas_cmd a = { .size = sizeof(a), .ioas_id = ioas, .num_iovas = 2, .allowed_iovas = 8 };
	CHECK(ioctl(fd, IOMMU_IOAS_ALLOW_IOVAS, &a) == -1 && errno == EFAULT, "bad embedded pointer is EFAULT");
	int x = 0;
	CHECK(ioctl(fd, _IO(';', 0x7f), &x) == -1 && errno == ENOTTY, "unknown request is ENOTTY");
	CHECK(destroy(fd, 0) == -1 && errno == ENOENT, "DESTROY of id 0 is ENOENT");
	struct ioas_alloc_cmd big[2] = { { .size = sizeof(big), .flags = 0 }, { 0 } };
	big[1].flags = 7;
	CHECK(ioctl(fd, IOMMU_IOAS_ALLOC, big) == -1 && errno == E2BIG, "non-zero tail is E2BIG");

	/* VFIO type1 compatibility on the same descriptor. */
	CHECK(ioctl(fd, VFIO_GET_API_VERSION) == 0, "VFIO_GET_API_VERSION");
	CHECK(ioctl(fd, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU) == 1, "VFIO_CHECK_EXTENSION(TYPE1v2)");
	struct vfio_ioas_cmd v = { .size = sizeof(v), .ioas_id = ioas, .op = 1 };
	CHECK(ioctl(fd, IOMMU_VFIO_IOAS, &v) == 0, "IOMMU_VFIO_IOAS set");
	CHECK(ioctl(fd, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) == 0, "VFIO_SET_IOMMU(TYPE1v2)");
	struct vfio_dma_map dm = { .argsz = sizeof(dm), .flags = 3, .vaddr = (uintptr_t)buf, .iova = 0x200000, .size = 2 * PAGE };
	CHECK(ioctl(fd, VFIO_IOMMU_MAP_DMA, &dm) == 0, "VFIO_IOMMU_MAP_DMA");
	struct vfio_dma_unmap du = { .argsz = sizeof(du), .iova = 0x200000, .size = 2 * PAGE };
	CHECK(ioctl(fd, VFIO_IOMMU_UNMAP_DMA, &du) == 0 && du.size == 2 * PAGE, "VFIO_IOMMU_UNMAP_DMA");

	/* A memfd mapped by descriptor. */
	int mfd = memfd_create("softiommu-test", 0);
	CHECK(mfd >= 0 && ftruncate(mfd, 8 * PAGE) == 0, "memfd");
	struct map_file_cmd mf = { .size = sizeof(mf), .flags = MAP_READABLE | MAP_WRITEABLE, .ioas_id = ioas,
				   .fd = mfd, .start = 0, .length = 8 * PAGE };
	CHECK(ioctl(fd, IOMMU_IOAS_MAP_FILE, &mf) == 0 && mf.iova != 0, "IOAS_MAP_FILE of a memfd");
	mf.length = 9 * PAGE;
	CHECK(ioctl(fd, IOMMU_IOAS_MAP_FILE, &mf) == -1 && errno == EINVAL, "MAP_FILE past the end is EINVAL");
	mf.fd = 999;
	mf.length = PAGE;
	CHECK(ioctl(fd, IOMMU_IOAS_MAP_FILE, &mf) == -1 && errno == EBADF, "MAP_FILE of a bad fd is EBADF");

	/* fork: the child shares the context. */
	pid_t pid = fork();
	if (pid == 0) {
		int child_ioas = ioas_alloc(fd);
		_exit(child_ioas > 0 ? child_ioas : 255);
	}
	int status = 0;
	waitpid(pid, &status, 0);
	int child_ioas = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
	CHECK(child_ioas == 2, "a forked child allocates in the same context");
	CHECK(destroy(fd, child_ioas) == 0, "the parent sees the child's object");

	/* SCM_RIGHTS: a descriptor passed to another process reaches the context. */
	int sv[2];
	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
	pid = fork();
	if (pid == 0) {
		char byte;
		char ctl[CMSG_SPACE(sizeof(int))];
		struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
		struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl,
				      .msg_controllen = sizeof(ctl) };
		close(fd); /* only the passed copy is left in this process */
		if (recvmsg(sv[1], &msg, 0) != 1)
			_exit(10);
		struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
		if (!cm || cm->cmsg_type != SCM_RIGHTS)
			_exit(11);
		int passed;
		memcpy(&passed, CMSG_DATA(cm), sizeof(int));
		int id = ioas_alloc(passed);
		_exit(id > 0 ? id : 12);
	}
	{
		char byte = 'x';
		char ctl[CMSG_SPACE(sizeof(int))];
		memset(ctl, 0, sizeof(ctl));
		struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
		struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl,
				      .msg_controllen = sizeof(ctl) };
		struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &fd, sizeof(int));
		CHECK(sendmsg(sv[0], &msg, 0) == 1, "send the descriptor");
	}
	waitpid(pid, &status, 0);
	child_ioas = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
	CHECK(child_ioas == 2, "a process given the descriptor by SCM_RIGHTS uses the same context");
	CHECK(destroy(fd, child_ioas) == 0, "and the sender sees its object");
	close(sv[0]);
	close(sv[1]);

	/* exec keeps a descriptor without O_CLOEXEC. */
	pid = fork();
	if (pid == 0) {
		char fdarg[16], ioasarg[16];
		snprintf(fdarg, sizeof(fdarg), "%d", fd);
		snprintf(ioasarg, sizeof(ioasarg), "%d", ioas);
		execl("/proc/self/exe", argv[0], "--exec-child", fdarg, ioasarg, (char *)NULL);
		_exit(4);
	}
	waitpid(pid, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the context survives exec");

	/* dup shares it too; the context lives until the last close. */
	int fd2 = dup(fd);
	CHECK(fd2 >= 0 && close(fd) == 0, "dup then close the original");
	CHECK(ioas_alloc(fd2) == 2, "the duplicate still reaches the context");
	CHECK(close(fd2) == 0, "close the last reference");
	fd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	CHECK(fd >= 0 && ioas_alloc(fd) == 1, "a reopen gets a fresh context");
	CHECK(check_refs(fd, buf, 16 * PAGE, 0) == 0, "nothing stays pinned after the close");

	/* Everything else passes through untouched, errno included. */
	int p[2];
	CHECK(pipe(p) == 0 && write(p[1], "abc", 3) == 3, "pipe");
	int avail = 0;
	CHECK(ioctl(p[0], FIONREAD, &avail) == 0 && avail == 3, "ioctl on another fd passes through");
	errno = 0;
	CHECK(open("/nonexistent/softiommu", O_RDONLY) == -1 && errno == ENOENT, "open of another path keeps errno");
	CHECK(close(12345) == -1 && errno == EBADF, "close of a bad fd keeps errno");

	return finish();
}
