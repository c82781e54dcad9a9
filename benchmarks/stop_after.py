#!/usr/bin/env python
"""Run ad_group_writeback with the DC made to stop answering after N writes.

    python benchmarks/stop_after.py N MODULE_FILE ARGS.json

The (N+1)th add or modify raises the ADError a DC that does not answer within ``ad_timeout``
gives (no LDAP result code), as the xlarge first run of 2026-11-26 met after 16,921 creates. The
module then stops and fails with what it did: this is how the benchmark measures the size of a
failure after writes (``bench_writeback.py --stopped-first N``). A benchmark tool, never a part of
the collection: the module runs unchanged, through ``runpy``, in this process.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import runpy
import sys


def stop_after(count):
    from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.ad_client import ADClient, ADError
    done = [0]

    def stopping(real, operation):
        def call(self, dn, *args, **kwargs):
            if done[0] >= count:
                raise ADError('%s of %r: the DC did not answer within ad_timeout (benchmarks/stop_after.py after %d writes)'
                              % (operation, dn, count), operation=operation, server=self.server, dn=dn)
            done[0] += 1
            return real(self, dn, *args, **kwargs)
        return call
    ADClient.add = stopping(ADClient.add, 'add')
    ADClient.modify = stopping(ADClient.modify, 'modify')


def main(argv):
    count, script = int(argv[1]), argv[2]
    stop_after(count)
    sys.argv = argv[2:]
    runpy.run_path(script, run_name='__main__')


if __name__ == '__main__':
    main(sys.argv)
