"""One service of the OpenTelemetry end-to-end test (tests/tests/otel.rs): a → b over HTTP, b → c
over gRPC, every call sent through the lane router.

The lane reaches the next hop only through OpenTelemetry: the SDK, the default propagators
(W3C trace-context and baggage, or whatever OTEL_PROPAGATORS says) and OpenTelemetry's Flask,
requests and gRPC instrumentation. Nothing here reads, copies or forwards a lane header or the
baggage: a request's `baggage: lane=<id>` reaches the next call because the instrumentation
extracts it on the way in and injects it on the way out.

Each hop answers with a JSON object naming itself, the version it runs (the `VERSION` file of the
working copy it was deployed from), the lane it was deployed in (`LANE_ID`, set by lane), the
`lane` baggage entry OpenTelemetry gave it and its trace id, with the next hop's answer under
`next`. The `x-lane-served-by` values the router put on the next hop's response are copied onto
this hop's response, so the client sees the whole path (the router prepends its own).

    service.py --name a --port 8000 --http --next-http b
    service.py --name b --port 8001 --http --next-grpc c
    service.py --name c --port 8002 --grpc

`--call-from-thread-pool` makes the next call from a worker thread of a thread pool, as code
that fans out work does; `--instrument-threading` turns on OpenTelemetry's threading
instrumentation, which hands the caller's context to the pool's threads.
"""

import argparse
import json
import os
import sys
from concurrent import futures

import grpc
import requests
from flask import Flask, Response
from opentelemetry import baggage, trace
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.instrumentation.grpc import GrpcInstrumentorClient, GrpcInstrumentorServer
from opentelemetry.instrumentation.requests import RequestsInstrumentor
from opentelemetry.instrumentation.threading import ThreadingInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

SERVED_BY = "x-lane-served-by"
# The one gRPC method every gRPC hop serves: bytes in, JSON bytes out (no generated stubs).
GRPC_SERVICE = "lane.otel.Hop"
GRPC_METHOD = "Call"
CALL_TIMEOUT = 20


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--name", required=True, help="this proc, e.g. a")
    p.add_argument("--app", default="otel", help="the app the procs belong to")
    p.add_argument("--port", type=int, required=True)
    serve = p.add_mutually_exclusive_group(required=True)
    serve.add_argument("--http", action="store_true", help="serve HTTP (Flask)")
    serve.add_argument("--grpc", action="store_true", help="serve gRPC")
    nxt = p.add_mutually_exclusive_group()
    nxt.add_argument("--next-http", metavar="PROC", help="call PROC over HTTP")
    nxt.add_argument("--next-grpc", metavar="PROC", help="call PROC over gRPC")
    p.add_argument(
        "--call-from-thread-pool", action="store_true", help="make the next call from a pool thread"
    )
    p.add_argument(
        "--instrument-threading",
        action="store_true",
        help="OpenTelemetry's threading instrumentation: pool threads get the caller's context",
    )
    return p.parse_args()


def router_addr():
    addr = os.environ.get("LANE_ROUTER_ADDR", "").strip()
    if not addr:
        sys.exit("LANE_ROUTER_ADDR is not set: the next hop is called through the lane router")
    return addr


def read_version():
    try:
        with open("VERSION", encoding="utf-8") as f:
            return f.read().strip()
    except OSError as e:
        return f"unknown ({e})"


class Hop:
    def __init__(self, args):
        self.args = args
        self.me = f"{args.app}.{args.name}"
        self.version = read_version()
        self.router = router_addr() if (args.next_http or args.next_grpc) else None
        self.channel = None
        self.pool = futures.ThreadPoolExecutor(max_workers=4) if args.call_from_thread_pool else None
        if args.next_grpc:
            # Created after GrpcInstrumentorClient().instrument(), so the channel is instrumented.
            authority = f"{args.next_grpc}.{args.app}.localhost"
            self.channel = grpc.insecure_channel(
                self.router, options=[("grpc.default_authority", authority)]
            )
            self.grpc_call = self.channel.unary_unary(f"/{GRPC_SERVICE}/{GRPC_METHOD}")

    def me_now(self):
        """This hop's own part of the answer, read from the current OpenTelemetry context."""
        ctx = trace.get_current_span().get_span_context()
        return {
            "service": self.me,
            "version": self.version,
            "deployed_in": os.environ.get("LANE_ID", "?"),
            "baggage_lane": baggage.get_baggage("lane"),
            "trace_id": format(ctx.trace_id, "032x") if ctx.is_valid else None,
        }

    def answer(self):
        """This hop's answer with the next hop's, and the served-by values the router reported."""
        body = self.me_now()
        if self.pool is None:
            served, ok = self.call_next(body)
        else:
            served, ok = self.pool.submit(self.call_next, body).result()
        return body, served, ok

    def call_next(self, body):
        """Calls the next hop, if any, and puts its answer under `next` in `body`."""
        served = []
        ok = True
        if self.args.next_http:
            host = f"{self.args.next_http}.{self.args.app}.localhost"
            try:
                resp = requests.get(
                    f"http://{self.router}/", headers={"Host": host}, timeout=CALL_TIMEOUT
                )
                served = [v.strip() for v in resp.headers.get(SERVED_BY, "").split(",") if v.strip()]
                try:
                    body["next"] = resp.json()
                except ValueError:
                    body["next"] = {"error": f"{resp.status_code}: {resp.text.strip()}"}
                ok = resp.ok
            except requests.RequestException as e:
                body["next"] = {"error": f"cannot call {host}: {e}"}
                ok = False
        elif self.args.next_grpc:
            try:
                reply, call = self.grpc_call.with_call(b"", timeout=CALL_TIMEOUT)
                served = [
                    v.strip()
                    for k, value in (call.initial_metadata() or ())
                    if k == SERVED_BY
                    for v in value.split(",")
                    if v.strip()
                ]
                body["next"] = json.loads(reply)
            except grpc.RpcError as e:
                body["next"] = {"error": f"gRPC {e.code()}: {e.details()}"}
                ok = False
        return served, ok


def serve_http(hop, port):
    app = Flask(hop.me)
    FlaskInstrumentor().instrument_app(app)

    @app.get("/healthz")
    def healthz():
        return "ok\n"

    @app.get("/")
    def index():
        body, served, ok = hop.answer()
        resp = Response(json.dumps(body) + "\n", status=200 if ok else 502, mimetype="application/json")
        if served:
            resp.headers[SERVED_BY] = ", ".join(served)
        return resp

    app.run(host="127.0.0.1", port=port, threaded=True)


def serve_grpc(hop, port):
    def call(_request, context):
        body, served, ok = hop.answer()
        if served:
            context.send_initial_metadata(((SERVED_BY, ", ".join(served)),))
        if not ok:
            context.abort(grpc.StatusCode.UNAVAILABLE, json.dumps(body))
        return json.dumps(body).encode()

    handler = grpc.method_handlers_generic_handler(
        GRPC_SERVICE, {GRPC_METHOD: grpc.unary_unary_rpc_method_handler(call)}
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    print(f"{hop.me} serving gRPC on 127.0.0.1:{port}", file=sys.stderr, flush=True)
    server.wait_for_termination()


def main():
    args = parse_args()
    me = f"{args.app}.{args.name}"
    trace.set_tracer_provider(TracerProvider(resource=Resource.create({"service.name": me})))
    RequestsInstrumentor().instrument()
    GrpcInstrumentorClient().instrument()
    GrpcInstrumentorServer().instrument()
    if args.instrument_threading:
        ThreadingInstrumentor().instrument()
    hop = Hop(args)
    print(
        f"{me} version {hop.version} in {os.environ.get('LANE_ID', '?')}; "
        f"OTEL_PROPAGATORS={os.environ.get('OTEL_PROPAGATORS', '(default: tracecontext,baggage)')}",
        file=sys.stderr,
        flush=True,
    )
    if args.http:
        serve_http(hop, args.port)
    else:
        serve_grpc(hop, args.port)


if __name__ == "__main__":
    main()
