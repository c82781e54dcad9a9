#!/usr/bin/env python
"""The floor: exactly the LDAP writes a first writeback needs, with raw ldap3 and nothing else.

    floor.py --plan plan.json --from-ou OU=Bench,DC=... --to-ou OU=BenchFloor,DC=... \
             --server 127.0.0.2 --ca-file ca.crt --user Administrator@corp... --password-env VAR --out floor.json

``plan.json`` is a check-mode plan of the module: the first run's (creates with their attributes
and member lists, then member additions in chunks), or an incremental run's (renames and moves,
attribute updates, member additions and removals, deletes), replayed onto the module's own groups
(``--to-ou`` equal to ``--from-ou``: the benchmark's default, between a lab snapshot and its
restore) or onto a copy of them that the first run's plan built in ``--to-ou``.
The member lists are known up front: no Graph read, no AD read, no planning. DNs are moved from
``--from-ou`` to ``--to-ou`` (for the first run's floor, so it writes beside the module's groups).
One LDAPS connection (TCP_NODELAY, as the module's), simple bind (as the module in the
benchmark), one request per operation. ``--connections N`` (N > 1): the independent writes the
module spreads over N connections (``writeback_apply.segments``: member and attribute changes of
groups that exist and keep their DN) go over N raw connections at once here too, each group's in
order on one, the rest in order on the first: the floor of a run with ``ad_write_connections: N``.
With one connection, nothing on this machine writes these groups faster. Writes ``--out``: seconds spent writing
(bind included), and the operation counts.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import argparse
import json
import os
import socket
import ssl
import sys
import threading
import time
from queue import Empty

import ldap3

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '.build', 'collections'))
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.writeback_apply import group_queue, segments  # noqa: E402


def relocate(value, old, new):
    if isinstance(value, str):
        if value.lower().endswith(old.lower()):
            return value[:len(value) - len(old)] + new
        return value
    if isinstance(value, list):
        return [relocate(v, old, new) for v in value]
    if isinstance(value, dict):
        return dict((k, relocate(v, old, new)) for k, v in value.items())
    return value


def send(conn, op, counts):
    """One operation of the plan, as one request; ``counts`` by kind."""
    if op['op'] == 'modify_dn':
        conn.modify_dn(op['dn'], op['new_rdn'], new_superior=op.get('new_superior'))
        counts['modify_dns'] += 1
    elif op['op'] == 'delete':
        conn.delete(op['dn'])
        counts['deletes'] += 1
    elif op['op'] == 'modify':
        conn.modify(op['dn'], dict((k, [(ldap3.MODIFY_REPLACE, [] if v is None else (v if isinstance(v, list) else [v]))])
                                   for k, v in op['changes'].items()))
        counts['modifies'] += 1
    elif op['op'] == 'create':
        attributes = dict((k, v) for k, v in op['attributes'].items() if v not in (None, []))
        if op.get('members'):
            attributes['member'] = op['members']
        conn.add(op['dn'], attributes=attributes)
        counts['adds'] += 1
    else:
        changes = {}
        if op.get('add'):
            changes['member'] = [(ldap3.MODIFY_ADD, op['add'])]
        if op.get('remove'):
            changes.setdefault('member', []).append((ldap3.MODIFY_DELETE, op['remove']))
        conn.modify(op['dn'], changes)
        counts['modifies'] += 1


def side_by_side(conns, ops, counts):
    """``ops`` over ``conns`` at once, each group's in order on one connection (as writeback_apply)."""
    queue = group_queue(ops)
    lock = threading.Lock()
    errors = []

    def work(conn):
        mine = dict((k, 0) for k in counts)
        try:
            while True:
                try:
                    batch = queue.get_nowait()
                except Empty:
                    break
                for op in batch:
                    send(conn, op, mine)
        except ldap3.core.exceptions.LDAPException as exc:
            errors.append(exc)
        with lock:
            for k, v in mine.items():
                counts[k] += v
    threads = [threading.Thread(target=work, args=(conn,)) for conn in conns]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument('--plan', required=True)
    ap.add_argument('--from-ou', required=True)
    ap.add_argument('--to-ou', required=True)
    ap.add_argument('--server', required=True)
    ap.add_argument('--ca-file', required=True)
    ap.add_argument('--user', required=True)
    ap.add_argument('--password-env', required=True)
    ap.add_argument('--out', required=True)
    ap.add_argument('--connections', type=int, default=1, help='connections for the independent writes (default 1)')
    args = ap.parse_args(argv)

    with open(args.plan) as fh:
        ops = relocate(json.load(fh), args.from_ou, args.to_ou)
    kinds = set(op['op'] for op in ops)
    if kinds - {'create', 'members', 'modify_dn', 'modify', 'delete'}:
        sys.stderr.write('floor: unknown operations in the plan: %s\n' % sorted(kinds))
        return 2

    start = time.perf_counter()
    tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=args.ca_file)
    server = ldap3.Server(args.server, port=636, use_ssl=True, tls=tls, get_info=ldap3.NONE)
    password = os.environ[args.password_env]

    def connect():
        conn = ldap3.Connection(server, user=args.user, password=password, raise_exceptions=True)
        conn.open()
        # As the module's connections (ad_client.no_delay): without it the bind waits 40 ms for the DC's
        # delayed acknowledgement of the TLS handshake.
        conn.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.bind()
        return conn
    conns = [connect()]
    counts = dict(adds=0, modifies=0, modify_dns=0, deletes=0)
    for free, part in segments(ops, args.connections):
        if free and len(conns) < args.connections:
            conns.extend(connect() for unused in range(args.connections - len(conns)))
        if free and len(conns) > 1:
            side_by_side(conns, part, counts)
        else:
            for op in part:
                send(conns[0], op, counts)
    for conn in conns:
        conn.unbind()
    adds, modifies, modify_dns, deletes = counts['adds'], counts['modifies'], counts['modify_dns'], counts['deletes']
    elapsed = time.perf_counter() - start
    with open(args.out, 'w') as fh:
        json.dump(dict(write_s=elapsed, adds=adds, modifies=modifies, modify_dns=modify_dns, deletes=deletes, ops=len(ops),
                       connections=args.connections), fh)
    print('floor: %d adds, %d modifies, %d modify DNs, %d deletes in %.2f s' % (adds, modifies, modify_dns, deletes, elapsed))
    return 0


if __name__ == '__main__':
    sys.exit(main())
