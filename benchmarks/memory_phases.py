#!/usr/bin/env python
"""Where the module's memory goes: one run of ad_group_writeback (check mode unless --apply; full Graph read)
with the resident set size (VmRSS) and its high-water mark (VmHWM) printed after each phase.

    .venv/bin/python benchmarks/memory_phases.py --size large [--ou OU=BenchEmpty] [--state] [--apply]

``--ou`` (created empty if missing) is both target and search base: an empty one gives the
first-run plan (every group created), OU=Bench the no-op one. The Graph emulator runs on the
benchmark's tenant (``.build/bench/<size>/tenant.json``) in its own process.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import argparse
import gc
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_writeback as bench  # noqa: E402


def status():
    out = {}
    with open('/proc/self/status') as fh:
        for line in fh:
            if line.startswith(('VmRSS', 'VmHWM')):
                key, value = line.split(':')
                out[key] = int(value.split()[0]) // 1024
    return out


STATE_SCRIPT = '''
import json, sys
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import entra_reader, writeback
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.graph_client import GraphClient
params = json.load(open(sys.argv[1]))
groups, state = entra_reader.read_groups_incremental(GraphClient(params), None, max_members=params['max_members'])
writeback.save_state(sys.argv[2], state)
'''


def save_state(emu, path):
    """A delta state as a full read leaves it, made in a child process (not measured here)."""
    import subprocess
    import tempfile
    from emulator.fixtures import CLIENT_ID, CLIENT_SECRET, TENANT_ID
    args = dict(tenant_id=TENANT_ID, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, auth_method='client_secret',
                authority_host=emu.info['authority_url'], graph_endpoint=emu.info['base_url'],
                graph_ca_bundle=emu.info['ca_file'], max_members=50000)
    with tempfile.NamedTemporaryFile('w', suffix='.json', delete=False) as fh:
        json.dump(args, fh)
    try:
        env = dict(os.environ, PYTHONPATH=bench.COLLECTIONS, REQUESTS_CA_BUNDLE='')
        subprocess.run([bench.PY, '-c', STATE_SCRIPT, fh.name, path], check=True, env=env)
    finally:
        os.unlink(fh.name)


def ansible_exit(result, probe):
    """What ``AnsibleModule.exit_json`` does with the result after the run (ansible-core's
    ``_return_formatted``): a copy scrubbed of no_log values, JSON with the module profile's encoder
    (which copies each container as it goes), ``'\\n%s' %`` of that text, printed (encoded on write).
    Printed to /dev/null here; the peak of these steps is the module's at exit."""
    from ansible.module_utils.common import json as ansible_json
    from ansible.module_utils.common.parameters import remove_values
    result = remove_values(result, set())
    probe('exit: result scrubbed (copy)')
    encoder = ansible_json.get_module_encoder('legacy', ansible_json.Direction.MODULE_TO_CONTROLLER)
    with open(os.devnull, 'w') as out:
        print('\n%s' % json.dumps(result, cls=encoder), file=out)
    probe('exit: printed')
    print('(the result is %.1f MB of JSON)' % (len(json.dumps(result, cls=encoder)) / 1e6))


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument('--size', default='large', choices=sorted(bench.SIZES))
    ap.add_argument('--ou', default='BenchEmpty')
    ap.add_argument('--state', action='store_true',
                    help='with delta_state_path (a fresh file: the incremental reader\'s first, full read)')
    ap.add_argument('--apply', action='store_true',
                    help='a real run (not check mode): it writes the groups into --ou; restore the lab after it '
                         '(lab.py restore) or empty the OU')
    ap.add_argument('--ad-timeout', type=int, default=None,
                    help='ad_timeout for the run (default: the benchmark\'s); an --apply run\'s large member chunks '
                         'can take Samba longer than that when the machine is busy')
    ap.add_argument('--delta', action='store_true',
                    help='with a delta state saved by a full read first (in a child process): the delta read of a no-op')
    args = ap.parse_args(argv)
    from lab.lab import Lab
    from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import writeback as wb
    forest = Lab().forest('corp')
    work = os.path.join(bench.ROOT, '.build', 'bench', args.size)
    ou = bench.existing_ou(forest, args.ou)
    # The lab's identity list (200,000 users at xlarge) is the harness's, not the module's: dropped, so
    # the RSS printed below (and memory_trace's figures) are the run's.
    forest.identities = None
    gc.collect()
    emu = bench.start_emulator(os.path.join(work, 'tenant.json'), work)
    start = time.perf_counter()

    def probe(label):
        s = status()
        print('%-28s %7.2f s  RSS %5d MB  peak %5d MB' % (label, time.perf_counter() - start, s['VmRSS'], s['VmHWM']))
        sys.stdout.flush()

    def wrap(module, name):
        fn = getattr(module, name)

        def wrapped(*a, **kw):
            result = fn(*a, **kw)
            probe('after ' + name)
            return result
        setattr(module, name, wrapped)

    for name in ('_desired', 'check_schema', 'plan_writeback', 'apply_plan', 'planned_names', 'save_state'):
        wrap(wb, name)
    wrap(wb.delta_state, 'write_members')
    from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import entra_reader as er
    for name in ('find_groups', 'read_members_sourced', 'read_groups_report', 'read_groups_incremental'):
        if hasattr(er, name):
            wrap(er, name)
    for name in ('read_managed_groups', 'read_writeback_v2_groups', 'read_objects_at', 'resolve_users'):
        wrap(wb.ad_reader, name)
    try:
        probe('start')
        state_path = os.path.join(work, 'memory-phases-state.json') if args.state or args.delta else None
        if state_path and os.path.exists(state_path):
            os.unlink(state_path)
        if args.delta:
            save_state(emu, state_path)
            probe('delta state saved (%d MB)' % (os.path.getsize(state_path) >> 20))
        params = json.loads(json.dumps(bench.module_args(forest, emu, ou, state_path, True)['ANSIBLE_MODULE_ARGS']))
        for key in list(params):
            if key.startswith('_'):
                del params[key]
        if args.ad_timeout:
            params['ad_timeout'] = args.ad_timeout
        from ansible_collections.hybrid_identity.cloud_sync.plugins.modules import ad_group_writeback as module
        defaults = {}
        spec = module.argument_spec() if hasattr(module, 'argument_spec') else None
        spec = getattr(spec, 'argument_spec', spec)
        if spec:
            defaults = dict((k, v.get('default')) for k, v in spec.items())
        defaults.update(params)
        for key in ('groups', 'group_filter', 'entra_groups', 'sam_account_name_template', 'delta_state_path',
                    'ou_map', 'naming', 'member_match'):
            defaults.setdefault(key, None)
        defaults['ou_map'] = defaults['ou_map'] or []
        defaults['naming'] = defaults['naming'] or 'cloud_sync'
        defaults['member_match'] = defaults['member_match'] or 'auto'
        from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import process_memory

        def run():
            out = wb.run_writeback(defaults, check_mode=not args.apply)
            probe('run_writeback returned')
            return out
        # As the module does: the result rebuilt in fresh memory, the run's given back, then exit_json.
        result = process_memory.rebuilt_in_fresh_memory(run)
        probe('result rebuilt, memory released')
        ansible_exit(result, probe)
    finally:
        emu.stop()
    return 0


if __name__ == '__main__':
    sys.exit(main())
