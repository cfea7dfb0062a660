/* Minimal pod sandbox ("pause") process: reap children, exit cleanly on SIGINT/SIGTERM. */
#include <signal.h>
#include <stddef.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_term(int sig) { (void)sig; _exit(0); }
static void on_child(int sig) { (void)sig; while (waitpid(-1, NULL, WNOHANG) > 0) {} }

int main(void) {
  signal(SIGINT, on_term);
  signal(SIGTERM, on_term);
  signal(SIGCHLD, on_child);
  for (;;) pause();
}
