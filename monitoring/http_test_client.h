// For tests of HttpEndpoint and what is served over it (monitoring/, dashboard/): a blocking
// HTTP/1.0 client over a loopback socket that returns the status, headers and body. Header-only,
// never linked into a binary. Any thread.
#ifndef FEDKIT_MONITORING_HTTP_TEST_CLIENT_H_
#define FEDKIT_MONITORING_HTTP_TEST_CLIENT_H_

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"

namespace fedkit::monitoring::testing {

struct HttpReply {
  int status = 0;                              // 0: no connection or no HTTP answer
  std::map<std::string, std::string> headers;  // names in lower case
  std::string body;
};

// Sends `request` (a raw HTTP/1.0 request) to 127.0.0.1:port and reads the answer to the end.
inline HttpReply RawHttpRequest(int port, const std::string& request) {
  HttpReply reply;
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return reply;
  // Bounds a hung server (the test then fails on the status); not a performance limit.
  timeval timeout{60, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    close(fd);
    return reply;
  }
  size_t sent = 0;
  while (sent < request.size()) {
    const ssize_t n = send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += static_cast<size_t>(n);
  }
  std::string raw;
  char buffer[4096];
  ssize_t n;
  while ((n = recv(fd, buffer, sizeof(buffer), 0)) > 0) raw.append(buffer, static_cast<size_t>(n));
  close(fd);
  const size_t end = raw.find("\r\n\r\n");
  if (end == std::string::npos) return reply;
  std::vector<std::string> lines = absl::StrSplit(raw.substr(0, end), "\r\n");
  std::vector<std::string> status_line = absl::StrSplit(lines[0], ' ');
  if (status_line.size() < 2 || !absl::SimpleAtoi(status_line[1], &reply.status)) return reply;
  for (size_t i = 1; i < lines.size(); ++i) {
    const size_t colon = lines[i].find(':');
    if (colon == std::string::npos) continue;
    reply.headers[absl::AsciiStrToLower(lines[i].substr(0, colon))] =
        std::string(absl::StripAsciiWhitespace(lines[i].substr(colon + 1)));
  }
  reply.body = raw.substr(end + 4);
  return reply;
}

// GET `path`, or another `method` with an empty body.
inline HttpReply HttpRequest(int port, const std::string& path, const std::string& method = "GET") {
  return RawHttpRequest(
      port, method + " " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n");
}

}  // namespace fedkit::monitoring::testing

#endif  // FEDKIT_MONITORING_HTTP_TEST_CLIENT_H_
