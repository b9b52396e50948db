/* Issue N raw getpid syscalls and print the mean ns per call.
 * Raw `syscall` so that glibc caching or vDSO paths cannot interfere. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static inline long raw_getpid(void)
{
	long ret;

	asm volatile("syscall" : "=a"(ret) : "a"(39L) : "rcx", "r11", "memory");
	return ret;
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 1000000;
	struct timespec a, b;

	clock_gettime(CLOCK_MONOTONIC, &a);
	for (long i = 0; i < n; i++)
		raw_getpid();
	clock_gettime(CLOCK_MONOTONIC, &b);
	printf("%.2f\n", ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / n);
	return 0;
}
