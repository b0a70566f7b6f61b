"""A tiny HTTP server that answers every GET with "<name> <client address>".

In the quickstart scenario it stands in for ifconfig.me (on the WAN host) and for the two
published web servers (on the LAN), so that a curl shows which server answered and which
address it saw.
"""
import argparse
import http.server


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--name", required=True)
    parser.add_argument("--port", type=int, default=80)
    args = parser.parse_args()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the name http.server calls)
            body = ("%s %s\n" % (args.name, self.client_address[0])).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args):
            pass

    http.server.ThreadingHTTPServer(("0.0.0.0", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
