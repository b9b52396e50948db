/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Shared by the workloads (64- and 32-bit): read a small /proc file, and
 * wait until a child sleeps in a pipe read.  The including file defines
 * die() first.
 */
#ifndef PROCWAIT_H
#define PROCWAIT_H

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

static int read_small(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t len;

	if (fd < 0)
		return -1;
	len = read(fd, buf, size - 1);
	close(fd);
	if (len < 0)
		return -1;
	buf[len] = '\0';
	return (int)len;
}

/*
 * Wait until the child is asleep inside a pipe read made by syscall
 * `nr`: /proc/PID/wchan names the pipe read function (pipe_read,
 * anon_pipe_read on 6.18) and /proc/PID/syscall starts with nr.  A task
 * that is merely runnable shows wchan "0", so this does not accept a
 * child still on its way into (or back out of) the call.
 */
static void wait_blocked_in_pipe_read(pid_t pid, int nr)
{
	char path[64], buf[256], want[16];
	struct timespec ts = { 0, 200000 };	/* 0.2 ms */
	int wlen = snprintf(want, sizeof(want), "%d ", nr);

	for (int tries = 0; tries < 50000; tries++) {	/* ~10 s */
		snprintf(path, sizeof(path), "/proc/%d/wchan", (int)pid);
		if (read_small(path, buf, sizeof(buf)) > 0 &&
		    strstr(buf, "pipe_read")) {
			snprintf(path, sizeof(path), "/proc/%d/syscall",
				 (int)pid);
			if (read_small(path, buf, sizeof(buf)) > 0 &&
			    strncmp(buf, want, wlen) == 0)
				return;
		}
		nanosleep(&ts, NULL);
	}
	die("child %d never blocked in syscall %d", (int)pid, nr);
}

#endif
