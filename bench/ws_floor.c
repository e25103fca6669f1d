// What this machine itself allows for WebSocket fan-out (issue 4), with no server in the way:
// the cheapest design there is, measured over loopback TCP, so that bench/ws_fanout.sh's figures
// can be read against a floor rather than a guess.
//
//   synthorg-ws-floor [--clients 1000] [--rate 10000] [--seconds 5] [--batch-ms 5]
//
// Two processes, as in the real set-up: a "server" and a "client" side, each one thread.
// - The server frames each event once (the same ~150-byte JSON text frame synthorg sends, with
//   `sent_ns` its publication time) into one shared buffer, and every `batch-ms` writes each
//   client everything published since its last write in one send(): no per-client, per-event
//   work at all, one syscall per client per batch. A client whose socket is full keeps a
//   backlog of its own, written first next time (counted as "backlogged").
// - The client side reads every socket through epoll, walks the frames (2-byte or 4-byte
//   header), finds `"sent_ns":` in each and records receive time − sent_ns: what a real client
//   must at least do.
// It prints deliveries/s, the latency p50/p99/max, and CPU per delivery of each side. Batching
// every B ms adds up to B ms of latency by itself; a smaller B costs more syscalls.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int64_t now_ns(clockid_t clock) {
  struct timespec t;
  clock_gettime(clock, &t);
  return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static double cpu_seconds(void) {
  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  return (double)usage.ru_utime.tv_sec + (double)usage.ru_utime.tv_usec / 1e6 + (double)usage.ru_stime.tv_sec +
         (double)usage.ru_stime.tv_usec / 1e6;
}

static void die(const char* what) {
  perror(what);
  exit(1);
}

struct Options {
  int clients, rate, batch_ms;
  double seconds;
};

// ---- server side ----

struct Backlog {
  char* bytes;
  size_t size, capacity;
};

static void backlog_append(struct Backlog* backlog, const char* bytes, size_t size) {
  if (backlog->size + size > backlog->capacity) {
    backlog->capacity = (backlog->size + size) * 2;
    backlog->bytes = realloc(backlog->bytes, backlog->capacity);
    if (!backlog->bytes) die("realloc");
  }
  memcpy(backlog->bytes + backlog->size, bytes, size);
  backlog->size += size;
}

// Appends one text frame carrying the event to `out`; returns its size.
static size_t frame_event(char* out, int64_t seq, int64_t sent_ns) {
  char payload[256];
  time_t seconds = (time_t)(sent_ns / 1000000000);
  struct tm utc;
  gmtime_r(&seconds, &utc);
  char stamp[32];
  strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &utc);
  int size = snprintf(payload, sizeof payload,
                      "{\"version\":1,\"event_type\":\"bench.tick\",\"channel\":\"bench\",\"timestamp\":\"%s.%03dZ\","
                      "\"payload\":{\"run\":1,\"seq\":%lld,\"sent_ns\":%lld}}",
                      stamp, (int)((sent_ns / 1000000) % 1000), (long long)seq, (long long)sent_ns);
  size_t header = 2;
  out[0] = (char)0x81;  // FIN, text
  if (size < 126) {
    out[1] = (char)size;
  } else {
    out[1] = 126;
    out[2] = (char)(size >> 8);
    out[3] = (char)(size & 0xFF);
    header = 4;
  }
  memcpy(out + header, payload, (size_t)size);
  return header + (size_t)size;
}

static void send_to(int fd, struct Backlog* backlog, const char* bytes, size_t size, long* backlogged) {
  if (backlog->size > 0) {  // behind: keep the order, append and try to drain
    backlog_append(backlog, bytes, size);
    ssize_t sent = send(fd, backlog->bytes, backlog->size, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (sent > 0) {
      memmove(backlog->bytes, backlog->bytes + sent, backlog->size - (size_t)sent);
      backlog->size -= (size_t)sent;
    }
    return;
  }
  ssize_t sent = send(fd, bytes, size, MSG_DONTWAIT | MSG_NOSIGNAL);
  if (sent < 0) {
    if (errno != EAGAIN) die("send");
    sent = 0;
  }
  if ((size_t)sent < size) {
    ++*backlogged;
    backlog_append(backlog, bytes + sent, size - (size_t)sent);
  }
}

static void serve(int listener, struct Options options, int report) {
  int* fds = calloc((size_t)options.clients, sizeof *fds);
  struct Backlog* backlogs = calloc((size_t)options.clients, sizeof *backlogs);
  for (int i = 0; i < options.clients; ++i) {
    fds[i] = accept(listener, NULL, NULL);
    if (fds[i] < 0) die("accept");
    int one = 1;
    setsockopt(fds[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  char go;
  if (read(report, &go, 1) != 1) die("waiting for the clients");

  int64_t events = (int64_t)(options.rate * options.seconds);
  size_t capacity = (size_t)options.rate * 300 + 4096;  // one batch of frames, generously
  char* batch = malloc(capacity);
  long backlogged = 0;
  double cpu_before = cpu_seconds();
  int64_t start = now_ns(CLOCK_REALTIME), seq = 0;
  struct timespec tick;
  clock_gettime(CLOCK_MONOTONIC, &tick);
  while (seq < events) {
    tick.tv_nsec += (long)options.batch_ms * 1000000;
    while (tick.tv_nsec >= 1000000000) {
      tick.tv_nsec -= 1000000000;
      ++tick.tv_sec;
    }
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &tick, NULL);
    // Every event due by now, each stamped with the moment it was due (published evenly).
    int64_t now = now_ns(CLOCK_REALTIME);
    size_t size = 0;
    while (seq < events && start + seq * 1000000000 / options.rate <= now && size + 300 < capacity) {
      size += frame_event(batch + size, seq, start + seq * 1000000000 / options.rate);
      ++seq;
    }
    if (seq == events) size += frame_event(batch + size, -1, now);  // the end mark
    if (size == 0) continue;
    for (int i = 0; i < options.clients; ++i) send_to(fds[i], &backlogs[i], batch, size, &backlogged);
  }
  // Drain the backlogs, then tell the client side how much the server spent.
  for (int pending = 1; pending;) {
    pending = 0;
    for (int i = 0; i < options.clients; ++i)
      if (backlogs[i].size) {
        send_to(fds[i], &backlogs[i], "", 0, &backlogged);
        pending |= backlogs[i].size > 0;
      }
    if (pending) usleep(1000);
  }
  double cpu = cpu_seconds() - cpu_before;
  if (write(report, &cpu, sizeof cpu) != sizeof cpu || write(report, &backlogged, sizeof backlogged) != sizeof backlogged)
    die("report");
  char done;
  if (read(report, &done, 1) < 0) die("waiting for the end");
}

// ---- client side ----

struct Reader {
  int fd;
  char buffer[1 << 16];
  size_t size;
  int finished;
};

#define BUCKETS 1000000  // 10 µs each: 0 .. 10 s; later lands in the last one
static uint32_t histogram[BUCKETS];

static int64_t parse_frames(struct Reader* reader, int64_t received_ns, int* finished_clients) {
  int64_t frames = 0;
  size_t at = 0;
  for (;;) {
    if (reader->size - at < 2) break;
    const unsigned char* head = (const unsigned char*)reader->buffer + at;
    size_t header = 2, length = head[1] & 0x7F;
    if (length == 126) {
      if (reader->size - at < 4) break;
      length = ((size_t)head[2] << 8) | head[3];
      header = 4;
    }
    if (reader->size - at < header + length) break;
    const char* text = reader->buffer + at + header;
    const char* key = memmem(text, length, "\"sent_ns\":", 10);
    const char* seq = memmem(text, length, "\"seq\":", 6);
    if (!key || !seq) {
      fprintf(stderr, "ws_floor: a frame without sent_ns\n");
      exit(1);
    }
    if (strtoll(seq + 6, NULL, 10) < 0) {
      reader->finished = 1;
      ++*finished_clients;
    } else {
      int64_t latency_us = (received_ns - strtoll(key + 10, NULL, 10)) / 1000;
      int64_t bucket = latency_us < 0 ? 0 : latency_us / 10;
      ++histogram[bucket < BUCKETS ? bucket : BUCKETS - 1];
      ++frames;
    }
    at += header + length;
  }
  memmove(reader->buffer, reader->buffer + at, reader->size - at);
  reader->size -= at;
  return frames;
}

static double percentile(int64_t total, double fraction) {
  int64_t wanted = (int64_t)((double)total * fraction), seen = 0;
  for (int i = 0; i < BUCKETS; ++i) {
    seen += histogram[i];
    if (seen > wanted) return (double)i * 0.01;
  }
  return (double)BUCKETS * 0.01;
}

static double highest(void) {
  for (int i = BUCKETS - 1; i > 0; --i)
    if (histogram[i]) return (double)i * 0.01;
  return 0;
}

static void read_all(int port, struct Options options, int report) {
  struct Reader* readers = calloc((size_t)options.clients, sizeof *readers);
  int poller = epoll_create1(0);
  struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  for (int i = 0; i < options.clients; ++i) {
    readers[i].fd = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(readers[i].fd, (struct sockaddr*)&address, sizeof address) < 0) die("connect");
    struct epoll_event event = {.events = EPOLLIN, .data.ptr = &readers[i]};
    epoll_ctl(poller, EPOLL_CTL_ADD, readers[i].fd, &event);
  }
  if (write(report, "g", 1) != 1) die("go");
  double cpu_before = cpu_seconds();
  int64_t first = 0, last = 0, frames = 0;
  int finished = 0;
  struct epoll_event ready[256];
  while (finished < options.clients) {
    int count = epoll_wait(poller, ready, 256, 10000);
    if (count <= 0) {
      fprintf(stderr, "ws_floor: nothing for 10 s; %d of %d clients finished\n", finished, options.clients);
      break;
    }
    int64_t received = now_ns(CLOCK_REALTIME);
    if (!first) first = received;
    for (int i = 0; i < count; ++i) {
      struct Reader* reader = ready[i].data.ptr;
      ssize_t got = recv(reader->fd, reader->buffer + reader->size, sizeof reader->buffer - reader->size, 0);
      if (got <= 0) die("recv");
      reader->size += (size_t)got;
      frames += parse_frames(reader, received, &finished);
    }
    last = received;
  }
  double cpu = cpu_seconds() - cpu_before;
  double server_cpu = 0;
  long backlogged = 0;
  if (read(report, &server_cpu, sizeof server_cpu) != sizeof server_cpu ||
      read(report, &backlogged, sizeof backlogged) != sizeof backlogged)
    die("server report");
  int64_t expected = (int64_t)(options.rate * options.seconds) * options.clients;
  double span = (double)(last - first) / 1e9;
  printf("| %d | %d | %d ms | %.0f | %lld | %.2f / %.2f / %.2f | %.3f | %.3f | %ld |\n", options.clients,
         options.rate, options.batch_ms, (double)frames / span, (long long)(expected - frames),
         percentile(frames, 0.5), percentile(frames, 0.99), highest(),
         server_cpu * 1e6 / (double)frames, cpu * 1e6 / (double)frames, backlogged);
  if (write(report, "d", 1) != 1) die("done");
}

int main(int argc, char** argv) {
  struct Options options = {.clients = 1000, .rate = 10000, .batch_ms = 5, .seconds = 5};
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--clients")) options.clients = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--rate")) options.rate = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--seconds")) options.seconds = atof(argv[i + 1]);
    else if (!strcmp(argv[i], "--batch-ms")) options.batch_ms = atoi(argv[i + 1]);
    else {
      fprintf(stderr, "usage: %s [--clients N] [--rate EVENTS_PER_S] [--seconds S] [--batch-ms MS]\n", argv[0]);
      return 2;
    }
  }
  if (options.clients < 1 || options.rate < 1 || options.batch_ms < 1 || options.seconds <= 0) {
    fprintf(stderr, "ws_floor: clients, rate, batch-ms and seconds must be positive\n");
    return 2;
  }
  int listener = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in address = {.sin_family = AF_INET};
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  if (bind(listener, (struct sockaddr*)&address, sizeof address) < 0 || listen(listener, 4096) < 0 ||
      getsockname(listener, (struct sockaddr*)&address, &length) < 0)
    die("listen");
  int pair[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, pair) < 0) die("socketpair");
  pid_t child = fork();
  if (child == 0) {
    close(pair[0]);
    read_all(ntohs(address.sin_port), options, pair[1]);
    return 0;
  }
  close(pair[1]);
  serve(listener, options, pair[0]);
  int status = 0;
  waitpid(child, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
