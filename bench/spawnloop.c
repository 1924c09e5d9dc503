/* bench/spawnloop.c: what one start of a program costs, for bench/spawn.sh.
 *
 *   spawnloop COUNT PROGRAM [ARG...]
 *
 * Runs PROGRAM COUNT times, one after another: posix_spawn (stdin, stdout and stderr on
 * /dev/null, the environment as given) and wait4. Prints one line of three figures in ms per
 * start: the wall time, the CPU (user+system) the children used, from wait4's rusage (exec,
 * dynamic loading, the runtime's start, the program's own work and its exit: all of it
 * charged to the child), and that plus this loop's own CPU (the parent's side of the spawn
 * and the wait). The exit status does not matter (a usage error is the point); a program
 * that cannot be spawned, or that a signal ends, is an error (exit 1). */
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>

extern char **environ;

static double secs(struct timeval tv) { return tv.tv_sec + tv.tv_usec / 1e6; }

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: spawnloop COUNT PROGRAM [ARG...]\n");
    return 2;
  }
  long count = atol(argv[1]);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  struct timespec t0, t1;
  struct rusage self0, self1;
  double child = 0;
  getrusage(RUSAGE_SELF, &self0);
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (long i = 0; i < count; i++) {
    pid_t pid;
    int status, e = posix_spawn(&pid, argv[2], &fa, NULL, argv + 2, environ);
    struct rusage ru;
    if (e != 0) {
      fprintf(stderr, "spawnloop: unable to run %s: error %d\n", argv[2], e);
      return 1;
    }
    if (wait4(pid, &status, 0, &ru) != pid || WIFSIGNALED(status)) {
      fprintf(stderr, "spawnloop: %s did not exit\n", argv[2]);
      return 1;
    }
    child += secs(ru.ru_utime) + secs(ru.ru_stime);
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  getrusage(RUSAGE_SELF, &self1);
  double wall = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
  double self = secs(self1.ru_utime) + secs(self1.ru_stime) - secs(self0.ru_utime) -
                secs(self0.ru_stime);
  printf("%.4f %.4f %.4f\n", wall * 1e3 / count, child * 1e3 / count,
         (child + self) * 1e3 / count);
  return 0;
}
