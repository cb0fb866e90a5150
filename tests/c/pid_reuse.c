/* Memory is reached through the process that mapped it, never through its
 * pid: a child maps its buffer into our IOAS and exits, a new process is
 * given the same pid and puts a secret at the same address, and neither a
 * read nor a write through the IOAS reaches the new process. (The trust
 * issue's third finding.)
 *
 * Linux keeps the exited child's pinned pages and a read returns their
 * old contents; softiommu cannot reach an exited process's memory and
 * fails the access instead (EFAULT). What both guarantee, and what is
 * checked here, is that the new process is never touched.
 * SPDX-License-Identifier: Apache-2.0 OR MIT */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include "softiommu_abi.h"
#include "check.h"
#include "ops.h"

#define AT ((void *)0x7e5500000000UL)
#define IOVA 0x100000UL
static const char first[] = "the exited child's page";
static const char secret[] = "the new process's secret";

static int map_at_fixed_address(const char *text)
{
	char *p = mmap(AT, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (p != AT)
		return -1;
	strcpy(p, text);
	return 0;
}

/* A process with pid `pid`: clone3 with set_tid where we may choose pids,
 * otherwise forks until the kernel's cyclic allocator comes round to it.
 * Returns 0 in the child, the pid in the parent, -1 on failure. */
static pid_t fork_with_pid(pid_t pid)
{
	pid_t want = pid;
	struct clone_args args = { .exit_signal = SIGCHLD, .set_tid = (uintptr_t)&want, .set_tid_size = 1 };
	long r = syscall(SYS_clone3, &args, sizeof(args));
	if (r >= 0)
		return r;
	for (int i = 0; i < 4 * 1024 * 1024; i++) {
		pid_t c = fork();
		if (c < 0)
			return -1;
		if (c == 0) {
			if (getpid() == pid)
				return 0;
			_exit(0);
		}
		if (c == pid)
			return c;
		waitpid(c, NULL, 0);
	}
	return -1;
}

int main(void)
{
	uint32_t ioas;
	int fd = open_with_ioas(&ioas, NULL);
	struct test_cmd c = { .size = sizeof(c), .op = TEST_OP_CREATE_ACCESS, .id = ioas };
	CHECK(ioctl(fd, IOMMU_TEST_CMD, &c) == 0, "CREATE_ACCESS");
	int afd = c.create_access.out_access_fd;

	/* The first child maps its page into our IOAS, then exits. */
	pid_t first_child = fork();
	if (first_child == 0) {
		if (map_at_fixed_address(first))
			_exit(10);
		struct map_cmd m = { .size = sizeof(m), .flags = MAP_FIXED_IOVA | MAP_READABLE | MAP_WRITEABLE,
				     .ioas_id = ioas, .user_va = (uintptr_t)AT, .length = PAGE, .iova = IOVA };
		_exit(ioctl(fd, IOMMU_IOAS_MAP, &m) ? 11 : 0);
	}
	int status = 0;
	waitpid(first_child, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "a child maps its page and exits");

	/* The second process takes its pid and keeps a secret where it was. */
	int ready[2], go[2], report[2];
	CHECK(pipe(ready) == 0 && pipe(go) == 0 && pipe(report) == 0, "pipes");
	pid_t second = fork_with_pid(first_child);
	if (second == 0) {
		char byte = map_at_fixed_address(secret) ? 'x' : 'r';
		if (write(ready[1], &byte, 1) != 1 || read(go[0], &byte, 1) != 1)
			_exit(20);
		_exit(write(report[1], AT, sizeof(secret)) == sizeof(secret) ? 0 : 21);
	}
	CHECK(second == first_child, "a new process has the exited child's pid");
	char byte = 0;
	CHECK(read(ready[0], &byte, 1) == 1 && byte == 'r', "and its secret at the same address");

	char got[sizeof(secret)] = { 0 };
	struct test_cmd rd = { .size = sizeof(rd), .op = TEST_OP_ACCESS_RW, .id = afd };
	rd.access_rw.iova = IOVA;
	rd.access_rw.length = sizeof(got);
	rd.access_rw.uptr = (uintptr_t)got;
	int r = ioctl(fd, IOMMU_TEST_CMD, &rd);
	CHECK(memcmp(got, secret, sizeof(secret)) != 0, "a read through the IOAS does not see the new process");
	CHECK(r == 0 ? !memcmp(got, first, sizeof(first)) : errno == EFAULT,
	      "it gives the old page or fails with EFAULT");

	static const char overwrite[] = "written through the IOAS!";
	struct test_cmd wr = rd;
	wr.access_rw.uptr = (uintptr_t)overwrite;
	wr.access_rw.flags = ACCESS_RW_WRITE;
	r = ioctl(fd, IOMMU_TEST_CMD, &wr);
	CHECK(r == 0 || errno == EFAULT, "a write through the IOAS succeeds on the old page or fails with EFAULT");

	char seen[sizeof(secret)] = { 0 };
	CHECK(write(go[1], "g", 1) == 1 && read(report[0], seen, sizeof(seen)) == sizeof(seen), "the new process reports");
	CHECK(!memcmp(seen, secret, sizeof(secret)), "its memory is untouched");
	waitpid(second, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "and it exits cleanly");
	close(afd);
	close(fd);
	return finish();
}
