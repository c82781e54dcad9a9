#!/usr/bin/env python
"""Whether the lab's DC writes faster on several connections, and what the module's write path costs.

    .venv/bin/python benchmarks/write_concurrency.py [--groups 300] [--rounds 4] [--connections 1,2,4,8]

Makes ``--groups`` groups of two members each in a new OU of the corp forest, then, round after
round, adds one user to every group and removes it again (``2 x --groups`` member modifies) in each
of these ways, in an order shuffled per round:

* ``raw xN``: raw ldap3 modifies by DN, no control, spread over N connections at once (one thread
  each, each group on one connection), as ``floor.py`` writes with N = 1;
* ``module``: ``ADClient.modify`` on one connection, as ``writeback_apply`` sends a member change
  (``<GUID=...>`` target, the permissive-modify control).

Prints each round's seconds and each way's median ratio to ``raw x1`` in the same rounds. The
groups are created in a lab snapshot's shadow: the forest is snapshotted first and restored at the
end (deleting the groups would leave tombstones, which slow every later ``uSNChanged`` search of
the lab; see ad-lab.md). Writes only to that OU; prints figures only.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import argparse
import os
import random
import socket
import ssl
import statistics
import sys
import threading
import time

import ldap3

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'tests'))
sys.path.insert(0, os.path.join(HERE, '..', '.build', 'collections'))
from lab.lab import Lab  # noqa: E402
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import ad_codecs  # noqa: E402
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.ad_client import ADClient  # noqa: E402

SNAPSHOT = 'write-concurrency-before'


def connect(forest):
    tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(forest.ca_file))
    conn = ldap3.Connection(ldap3.Server(forest.ip, port=636, use_ssl=True, tls=tls, get_info=ldap3.NONE),
                            forest.admin_upn, forest.admin_password, raise_exceptions=True)
    conn.open()
    conn.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)   # as floor.py and the module
    conn.bind()
    return conn


def users(conn, base, count):
    found = conn.extend.standard.paged_search(base, '(&(objectCategory=person)(objectClass=user)(sAMAccountName=corp-user*))',
                                              attributes=['1.1'], paged_size=1000, generator=True)
    out = []
    for entry in found:
        if entry.get('type') == 'searchResEntry':
            out.append(entry['dn'])
            if len(out) == count:
                break
    return out


def make_groups(conn, ou, members, count):
    conn.add(ou, ['organizationalUnit'])
    groups = []
    for i in range(count):
        dn = 'CN=wc%05d,%s' % (i, ou)
        conn.add(dn, ['group'], {'sAMAccountName': 'wc%05d' % i, 'member': members[2 * i:2 * i + 2]})
        conn.search(dn, '(objectClass=*)', search_scope=ldap3.BASE, attributes=['objectGUID'])
        groups.append((dn, ad_codecs.guid_from_bytes(conn.response[0]['raw_attributes']['objectGUID'][0])))
    return groups


def raw_round(forest, groups, extra, connections):
    conns = [connect(forest) for unused in range(connections)]
    failures = []

    def work(index, add):
        conn = conns[index]
        try:
            for g in range(index, len(groups), connections):
                conn.modify(groups[g][0], {'member': [(ldap3.MODIFY_ADD if add else ldap3.MODIFY_DELETE, [extra[g]])]})
        except ldap3.core.exceptions.LDAPException as exc:
            failures.append(exc)
    start = time.perf_counter()
    for add in (True, False):
        threads = [threading.Thread(target=work, args=(i, add)) for i in range(connections)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    elapsed = time.perf_counter() - start
    for conn in conns:
        conn.unbind()
    if failures:
        raise failures[0]
    return elapsed


def module_round(params, groups, extra):
    ad = ADClient(params)
    ad.root_dse()   # connected and bound before the clock starts, as the raw connections
    start = time.perf_counter()
    for add in ('add', 'delete'):
        for (unused, guid), user in zip(groups, extra):
            ad.modify('<GUID=%s>' % guid, {'member': (add, [user])})
    elapsed = time.perf_counter() - start
    ad.close()
    return elapsed


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n', maxsplit=1)[0])
    ap.add_argument('--forest', default='corp')
    ap.add_argument('--groups', type=int, default=300)
    ap.add_argument('--rounds', type=int, default=4)
    ap.add_argument('--connections', default='1,2,4,8')
    args = ap.parse_args(argv)
    lab = Lab()
    forest = lab.forest(args.forest)
    counts = sorted(set([1] + [int(x) for x in args.connections.split(',')]))
    lab.snapshot(args.forest, SNAPSHOT)
    os.sync()   # the snapshot's copy is not written back during the timed rounds
    try:
        conn = connect(forest)
        members = users(conn, forest.base_dn, 3 * args.groups)
        if len(members) < 3 * args.groups:
            sys.exit('write_concurrency: %d users in %s, %d needed (seed the lab)' % (len(members), forest.base_dn, 3 * args.groups))
        groups = make_groups(conn, 'OU=WriteConcurrency,' + forest.base_dn, members, args.groups)
        conn.unbind()
        extra = members[2 * args.groups:]
        params = dict(domain_controllers=[forest.ip], ad_tls_mode='ldaps', ad_allow_plaintext=False, ad_ca_file=str(forest.ca_file),
                      ad_validate_certs=True, ad_auth='simple', ad_user=forest.admin_upn, ad_password=forest.admin_password)
        ways = dict(('raw x%d' % n, (lambda n=n: raw_round(forest, groups, extra, n))) for n in counts)
        ways['module'] = lambda: module_round(params, groups, extra)
        times = dict((name, []) for name in ways)
        print('%d groups, %d member modifies per way and round, on %s' % (len(groups), 2 * len(groups), forest.ip))
        for rnd in range(args.rounds):
            order = list(ways)
            random.Random(rnd).shuffle(order)
            for name in order:
                times[name].append(ways[name]())
            print('round %d: %s' % (rnd + 1, ', '.join('%s %.2f s' % (n, times[n][-1]) for n in ways)), flush=True)
        base = times['raw x1']
        for name in ways:
            ratios = [t / b for t, b in zip(times[name], base)]
            print('%-8s fastest %.2f s (%.2f ms a modify), median ratio to raw x1: %.3f'
                  % (name, min(times[name]), 1000 * min(times[name]) / (2 * len(groups)), statistics.median(ratios)))
    finally:
        lab.restore(args.forest, SNAPSHOT)
        print('lab restored to %s' % SNAPSHOT)


if __name__ == '__main__':
    main()
