/* The workload behind the proxy benchmark: a static HTTP/1.1 server answering every request
 * with a small fixed page, keep-alive, a thread per connection. Small and fast on purpose, so
 * that bench/workloads_proxy.py measures the proxies in front of it rather than the workload
 * (busybox httpd forks per request and tops out near 300 requests/s here).
 * Built by bench/workloads_proxy.py: cc -O2 -static -pthread; usage: upstream PORT */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const char answer[] =
    "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 23\r\n\r\nsynthorg bench workload";

static void *serve(void *arg) {
  int fd = (int)(long)arg;
  char buffer[16384];
  size_t held = 0;
  for (;;) {
    ssize_t got = read(fd, buffer + held, sizeof buffer - held - 1);
    if (got <= 0) break;
    held += (size_t)got;
    buffer[held] = 0;
    char *end;
    /* Bodies are not expected: every complete head gets the answer. */
    while ((end = strstr(buffer, "\r\n\r\n")) != NULL) {
      if (write(fd, answer, sizeof answer - 1) < 0) goto done;
      size_t used = (size_t)(end + 4 - buffer);
      memmove(buffer, end + 4, held - used + 1);
      held -= used;
    }
    if (held == sizeof buffer - 1) break;
  }
done:
  close(fd);
  return NULL;
}

int main(int argc, char **argv) {
  int port = argc > 1 ? atoi(argv[1]) : 8080;
  int listener = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
  if (bind(listener, (struct sockaddr *)&address, sizeof address) || listen(listener, 1024)) {
    perror("upstream");
    return 1;
  }
  for (;;) {
    int fd = accept(listener, NULL, NULL);
    if (fd < 0) continue;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    pthread_t thread;
    pthread_attr_t attributes;
    pthread_attr_init(&attributes);
    pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attributes, 64 * 1024);
    if (pthread_create(&thread, &attributes, serve, (void *)(long)fd)) close(fd);
  }
}
