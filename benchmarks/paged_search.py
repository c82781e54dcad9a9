#!/usr/bin/env python
"""What the paged-results control costs on the lab's DC, and whether it honours a request's size limit.

    .venv/bin/python benchmarks/paged_search.py [--rounds 2]

Nine searches of 200 users by objectSid (as ``ad_reader`` resolves members), on the Global Catalog
and on the domain port, each with and without the paged-results control, alternating; then one
unpaged search of the seeded users with a size limit of 30. Prints figures only; reads, never writes.
"""
from __future__ import absolute_import, division, print_function

import argparse
import os
import random
import ssl
import sys
import time

import ldap3

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests'))
from lab.lab import Lab  # noqa: E402

PAGED = '1.2.840.113556.1.4.319'


def connect(forest, port):
    tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(forest.ca_file))
    server = ldap3.Server(forest.ip, port=port, use_ssl=True, tls=tls, get_info=ldap3.NONE)
    return ldap3.Connection(server, forest.admin_upn, forest.admin_password, auto_bind=True)


def user_sids(conn, base):
    sids, cookie = [], None
    while True:
        conn.search(base, '(&(objectCategory=person)(objectClass=user))', attributes=['objectSid'], paged_size=1000,
                    paged_cookie=cookie)
        sids += [e['raw_attributes']['objectSid'][0] for e in conn.response if e.get('type') == 'searchResEntry']
        cookie = conn.result['controls'][PAGED]['value']['cookie']
        if not cookie:
            return sids


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--forest', default='corp')
    ap.add_argument('--rounds', type=int, default=2)
    args = ap.parse_args()
    forest = Lab().forest(args.forest)
    dc, gc = connect(forest, 636), connect(forest, 3269)
    sids = user_sids(dc, forest.base_dn)
    random.seed(1)
    chunks = [random.sample(sids, 200) for unused in range(9)]
    print('%d users in %s' % (len(sids), forest.base_dn))
    for unused in range(args.rounds):
        for conn, name, base in ((gc, 'Global Catalog', ''), (dc, 'domain', forest.base_dn)):
            for paged in (False, True):
                start, found = time.perf_counter(), 0
                for chunk in chunks:
                    flt = '(&(objectClass=user)(|%s))' % ''.join(
                        '(objectSid=%s)' % ''.join('\\%02x' % b for b in sid) for sid in chunk)
                    conn.search(base, flt, attributes=['objectSid'], paged_size=1000 if paged else None)
                    found += sum(1 for e in conn.response if e.get('type') == 'searchResEntry')
                print('%-15s %-8s 9 searches of 200 SIDs: %d found in %.3f s' % (
                    name, 'paged' if paged else 'unpaged', found, time.perf_counter() - start))
    dc.search(forest.base_dn, '(&(objectCategory=person)(objectClass=user))', attributes=['1.1'], size_limit=30)
    print('unpaged search of every user with a size limit of 30: %d entries, result %s (%s)' % (
        sum(1 for e in dc.response if e.get('type') == 'searchResEntry'), dc.result['result'], dc.result['description']))


if __name__ == '__main__':
    main()
