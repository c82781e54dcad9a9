"""A loopback TCP (optionally TLS) listener for tests that need a server which is not a DC or Graph:
a broken DC, a server presenting an expired or foreign certificate, a host that must never be
contacted. It counts the connections it accepts and keeps what it received."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import socket
import ssl
import threading


class Listener(object):
    """A TCP (optionally TLS) server on 127.0.0.x:<free port> that counts the connections it accepts."""

    def __init__(self, ip, certfile=None, keyfile=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((ip, 0))
        self.sock.listen(8)
        self.ip, self.port = self.sock.getsockname()
        self.accepted = 0
        self.received = b''
        self.ctx = None
        if certfile:
            self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ctx.load_cert_chain(str(certfile), str(keyfile))
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                conn, _addr = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.accepted += 1
            conn.settimeout(2)
            try:
                if self.ctx is not None:
                    conn = self.ctx.wrap_socket(conn, server_side=True)
                self.received += conn.recv(4096)
            except (OSError, ssl.SSLError):
                pass
            finally:
                conn.close()

    @property
    def address(self):
        return '%s:%d' % (self.ip, self.port)

    @property
    def origin(self):
        return 'https://%s:%d' % (self.ip, self.port)

    @property
    def connections(self):
        return self.accepted

    def close(self):
        self._stop = True
        self.thread.join(2)
        self.sock.close()
