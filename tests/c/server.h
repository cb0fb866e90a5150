/* The server behind this program's session: a raw connection to its socket,
 * and its process, found by its command line
 * (`softiommu serve --socket $SOFTIOMMU_SOCKET ...`).
 * SPDX-License-Identifier: Apache-2.0 OR MIT */
#ifndef SOFTIOMMU_SERVER_H
#define SOFTIOMMU_SERVER_H

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* A raw connection to the server (no hello sent yet), or -1. */
static inline int connect_server(void)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	const char *path = getenv("SOFTIOMMU_SOCKET");
	if (!path)
		return -1;
	strncpy(addr.sun_path, path, sizeof(addr.sun_path) - 1);
	int s = socket(AF_UNIX, SOCK_STREAM, 0);
	if (s < 0 || connect(s, (struct sockaddr *)&addr, sizeof(addr))) {
		if (s >= 0)
			close(s);
		return -1;
	}
	return s;
}

/* The server's pid, from its command line, or -1. */
static inline pid_t server_pid(void)
{
	const char *socket = getenv("SOFTIOMMU_SOCKET");
	DIR *proc = opendir("/proc");
	struct dirent *e;
	pid_t found = -1;
	while (socket && proc && (e = readdir(proc))) {
		char path[300], cmd[4096];
		snprintf(path, sizeof(path), "/proc/%s/cmdline", e->d_name);
		int f = open(path, O_RDONLY);
		if (f < 0)
			continue;
		ssize_t n = read(f, cmd, sizeof(cmd) - 1);
		close(f);
		if (n <= 0)
			continue;
		cmd[n] = 0;
		/* Arguments are NUL-separated: look for "serve" then the socket. */
		int serve = 0, ours = 0;
		for (char *a = cmd; a < cmd + n; a += strlen(a) + 1) {
			serve |= !strcmp(a, "serve");
			ours |= serve && !strcmp(a, socket);
		}
		if (ours)
			found = atoi(e->d_name);
	}
	if (proc)
		closedir(proc);
	return found;
}

/* A number field of the server's /proc status ("VmRSS" in KiB,
 * "Threads"), or -1. */
static inline long server_status(pid_t server, const char *field)
{
	char path[64], line[256];
	size_t n = strlen(field);
	snprintf(path, sizeof(path), "/proc/%d/status", server);
	FILE *f = fopen(path, "r");
	long value = -1;
	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, field, n) && line[n] == ':')
			value = strtol(line + n + 1, NULL, 10);
	if (f)
		fclose(f);
	return value;
}

/* The server's resident set in KiB, or -1. */
static inline long server_rss_kib(pid_t server)
{
	return server_status(server, "VmRSS");
}

#endif
