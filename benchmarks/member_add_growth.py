#!/usr/bin/env python
"""How long the lab's DC takes to answer one member add as a group grows, by values per request.

    .venv/bin/python benchmarks/member_add_growth.py [--total 25000] [--chunk-sizes 5000,1000]

For each chunk size, a new empty group gets ``--total`` users, ``chunk`` values to an LDAP modify
(raw ldap3, one connection, no timeout), as the module writes a large group's members (5,000 to a
request, ``writeback_plan``'s ``chunk_size``). Prints each request's seconds against the group's
size before it, and each chunk size's total: whether a request's time grows with the members the
group already has (then a request to a large group can outlast ``ad_timeout``), and what smaller
requests cost in all.

Run it on a lab seeded with at least ``--total`` users (the xlarge lab: ``CLOUDSYNC_LAB_DIR``,
``CLOUDSYNC_LAB_IPS``). The groups are made in a lab snapshot's shadow: the forest is snapshotted
first and restored at the end (stops and starts the DC: never on a lab others are using). Prints
figures only.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from write_concurrency import connect, users  # noqa: E402
sys.path.insert(0, os.path.join(HERE, '..', 'tests'))
from lab.lab import Lab  # noqa: E402

SNAPSHOT = 'member-add-growth-before'


def grow(conn, dn, members, chunk):
    """Adds ``members`` to the new group ``dn``, ``chunk`` to a request: [(size before, seconds)]."""
    conn.add(dn, ['group'], {'sAMAccountName': dn.split(',')[0][3:]})
    times = []
    for start in range(0, len(members), chunk):
        t = time.perf_counter()
        conn.modify(dn, {'member': [('MODIFY_ADD', members[start:start + chunk])]})
        times.append((start, time.perf_counter() - t))
        print('  chunk %5d: %5d members before, %5d added: %7.2f s (%.2f ms a value)'
              % (chunk, start, len(members[start:start + chunk]), times[-1][1], 1000 * times[-1][1] / chunk), flush=True)
    return times


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n', maxsplit=1)[0])
    ap.add_argument('--forest', default='corp')
    ap.add_argument('--total', type=int, default=25000)
    ap.add_argument('--chunk-sizes', default='5000,1000')
    args = ap.parse_args(argv)
    lab = Lab()
    forest = lab.forest(args.forest)
    sizes = [int(x) for x in args.chunk_sizes.split(',')]
    lab.snapshot(args.forest, SNAPSHOT)
    os.sync()   # the snapshot's copy is not written back during the timed requests
    try:
        conn = connect(forest)
        conn.receive_timeout = None
        members = users(conn, forest.base_dn, args.total * len(sizes))
        if len(members) < args.total * len(sizes):
            sys.exit('member_add_growth: %d users in %s, %d needed (seed the lab)'
                     % (len(members), forest.base_dn, args.total * len(sizes)))
        ou = 'OU=MemberAddGrowth,' + forest.base_dn
        conn.add(ou, ['organizationalUnit'])
        print('%d members per group, on %s (%d users read)' % (args.total, forest.ip, len(members)))
        totals = {}
        for index, chunk in enumerate(sizes):
            own = members[index * args.total:(index + 1) * args.total]   # distinct users: no group shares backlinks
            times = grow(conn, 'CN=mag%d,%s' % (chunk, ou), own, chunk)
            totals[chunk] = (sum(s for unused, s in times), max(s for unused, s in times))
        for chunk, (total, slowest) in totals.items():
            print('chunk %5d: %d requests, %.1f s in all, slowest request %.1f s'
                  % (chunk, -(-args.total // chunk), total, slowest))
        conn.unbind()
    finally:
        lab.restore(args.forest, SNAPSHOT)
        print('lab restored to %s' % SNAPSHOT)


if __name__ == '__main__':
    main()
