"""An OTLP metrics receiver for the tests, independent of the exporter's own protobuf types.

Built on PyPI's opentelemetry-proto (the OpenTelemetry project's generated Python classes) and
grpcio: it serves MetricsService/Export over gRPC and POST /v1/metrics (protobuf) over HTTP on
loopback, and appends every request it receives to --out as one JSON line,
{"protocol": "grpc" | "http/protobuf", "request": <ExportMetricsServiceRequest as JSON>},
written by google.protobuf.json_format with the proto field names.

Prints "ready grpc=PORT http=PORT" once both listen; runs until killed.

Usage: receiver.py --out FILE [--grpc-port N] [--http-port N]   (0, the default: any free port)
                   [--tls-cert PEM --tls-key PEM [--client-ca PEM]]  (TLS on both; mutual with a CA)
"""

import argparse
import http.server
import json
import ssl
import sys
import threading
from concurrent import futures

import grpc
from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc

lock = threading.Lock()


def record(out, protocol, request):
    line = json.dumps(
        {"protocol": protocol, "request": json_format.MessageToDict(request, preserving_proto_field_name=True)}
    )
    with lock:
        out.write(line + "\n")
        out.flush()


class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, out):
        self.out = out

    def Export(self, request, context):
        record(self.out, "grpc", request)
        return metrics_service_pb2.ExportMetricsServiceResponse()


def http_handler(out):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.path != "/v1/metrics" or self.headers.get("Content-Type") != "application/x-protobuf":
                self.send_response(404 if self.path != "/v1/metrics" else 415)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            request = metrics_service_pb2.ExportMetricsServiceRequest()
            request.ParseFromString(body)
            record(out, "http/protobuf", request)
            reply = metrics_service_pb2.ExportMetricsServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args):
            pass

    return Handler


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--grpc-port", type=int, default=0)
    parser.add_argument("--http-port", type=int, default=0)
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    parser.add_argument("--client-ca")
    args = parser.parse_args()
    out = open(args.out, "a", encoding="utf-8")

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(out), server)
    address = f"127.0.0.1:{args.grpc_port}"
    if args.tls_cert:
        with open(args.tls_key, "rb") as k, open(args.tls_cert, "rb") as c:
            pair = (k.read(), c.read())
        client_ca = open(args.client_ca, "rb").read() if args.client_ca else None
        credentials = grpc.ssl_server_credentials([pair], root_certificates=client_ca, require_client_auth=bool(client_ca))
        grpc_port = server.add_secure_port(address, credentials)
    else:
        grpc_port = server.add_insecure_port(address)
    server.start()

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", args.http_port), http_handler(out))
    if args.tls_cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        if args.client_ca:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(args.client_ca)
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()

    print(f"ready grpc={grpc_port} http={httpd.server_address[1]}", flush=True)
    try:
        server.wait_for_termination()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
