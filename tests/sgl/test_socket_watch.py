"""The soak tests' leak detector (gateway_soak.SocketWatch): a persistent excess of connections is a
violation, a momentary one (an abort overlapping the stream it cancels) is not."""

import os
import socket
import time

from gateway_soak import SocketWatch


def _server():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    return srv


def _connect(port: int, n: int) -> list[socket.socket]:
    return [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]


def test_connections_held_past_the_limit_are_a_violation():
    srv = _server()
    port = srv.getsockname()[1]
    with SocketWatch(os.getpid(), port, limit=2, hold_s=0.3) as watch:
        conns = _connect(port, 4)
        time.sleep(1.0)
    assert watch.violation is not None and "4 connections open" in watch.violation, watch.violation
    for c in conns + [srv]:
        c.close()


def test_a_momentary_excess_is_not():
    srv = _server()
    port = srv.getsockname()[1]
    with SocketWatch(os.getpid(), port, limit=2, hold_s=1.0) as watch:
        for _ in range(3):
            conns = _connect(port, 4)
            time.sleep(0.1)
            for c in conns:
                c.close()
            time.sleep(0.2)
    assert watch.max_open >= 3 and watch.violation is None, (watch.max_open, watch.violation)
    srv.close()
