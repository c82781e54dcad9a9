"""Reliability against Microsoft Graph faults: ad_group_writeback reading Graph from the emulator,
whose tenant holds the lab's users as synced users (so members resolve in AD), while the emulator
throttles 30% of requests (429 with Retry-After), answers bursts of 503/504, is slow and expires
every token mid-run. The run completes, each retry waited at least the Retry-After it was given
(measured from the emulator's request log), and AD ends exactly as after a clean run. A delta
link that expired or was reset makes the next incremental run fall back to a full read, which
converges.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import threading
import time
import uuid

import pytest

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.ad_codecs import dn_key
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.writeback import run_writeback

from emulator.fixtures import TenantBuilder
from writeback_helpers import Directory, first, values, writeback_params

GROUPS = 30


def graph_options(emu, **extra):
    opts = dict(tenant_id=emu.tenant_id, client_id=emu.client_id, client_secret=emu.client_secret, client_certificate_path=None,
                client_certificate_password=None, auth_method='auto', managed_identity_client_id=None, cloud='public',
                authority_host=emu.authority_url, graph_endpoint=emu.base_url, graph_ca_bundle=emu.ca_file,
                graph_validate_certs=True, graph_timeout=60, graph_max_retries=8, graph_max_retry_wait=120,
                graph_parallelism=4)
    opts.update(extra)
    return opts


def tenant_from_lab(forest, groups=GROUPS):
    """Entra tenant: the lab's users as synced users, ``groups`` cloud security groups of 3 members each."""
    b = TenantBuilder(onprem_domain=forest.dns_domain)
    users = [b.synced_user(i['sam_account_name'], object_guid=i['object_guid'], object_sid=i['object_sid'], dn=i['dn'],
                           domain=i['domain'], upn=i['user_principal_name'], immutable_id=i['immutable_id'])
             for i in forest.identities]
    ids = [b.group('Rel %02d' % n, members=[users[n % len(users)], users[(n + 5) % len(users)], users[(n + 11) % len(users)]],
                   description='reliability %d' % n) for n in range(groups)]
    return b, users, ids


def run_graph(forest, emu, ou, **kw):
    params = writeback_params(forest, None, target_ou=ou, search_base=ou, all_groups=True, **graph_options(emu))
    params.update(kw)
    return run_writeback(params)


def end_state(directory, ou):
    state = {}
    attrs = ['cn', 'displayName', 'description', 'member', 'msDS-ExternalDirectoryObjectId']
    for entry in directory.client.search(ou, '(objectClass=group)', attrs):
        anchor = first(entry, 'msDS-ExternalDirectoryObjectId')
        assert anchor not in state, 'two groups carry the anchor %s' % anchor
        state[anchor] = (first(entry, 'cn'), first(entry, 'displayName'), first(entry, 'description'),
                         tuple(sorted(dn_key(dn) for dn in values(entry, 'member'))))
    return state


@pytest.fixture
def corp_box(corp):
    directory = Directory(corp)
    made = []

    def box(prefix):
        made.append(directory.make_ou('%s-%s' % (prefix, uuid.uuid4().hex[:8])))
        return made[-1]
    yield directory, box
    for dn in made:
        directory.remove_tree(dn)
    directory.close()


def expire_tokens_after(emu, graph_requests):
    """Expire every token once the run has made ``graph_requests`` Graph requests (token expiry mid-run)."""
    done = threading.Event()

    def watch():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not done.is_set():
            if len([e for e in emu.admin.requests(kind=None) if e['kind'] in ('graph', 'batch')]) >= graph_requests:
                emu.admin.expire_tokens()
                return
            time.sleep(0.01)
    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return done, thread


def test_throttling_server_errors_latency_and_token_expiry_mid_run_end_as_a_clean_run(corp, corp_box, graph_emulator_factory):
    directory, box = corp_box
    tenant, _users, group_ids = tenant_from_lab(corp)
    clean_emu = graph_emulator_factory(tenant.build(), settings={'throttle_enabled': False})
    clean_ou = box('graph-clean')
    clean = run_graph(corp, clean_emu, clean_ou)
    assert clean['summary']['created'] == GROUPS and clean['summary']['errors'] == 0
    assert clean['summary']['unresolved_members'] == 0
    reference = end_state(directory, clean_ou)
    assert len(reference) == GROUPS

    emu = graph_emulator_factory(tenant.build(), settings={'throttle_enabled': False})
    admin = emu.admin
    # 30% of every Graph request (and $batch item) refused with 429 + Retry-After; only on
    # /groups paths so that each refused request has its own path in the log to pair its retry with.
    admin.add_fault(status=429, rate=0.3, retry_after=1, match='/groups')
    admin.add_fault(status=503, count=3, match='/groups')      # a burst of 503 without Retry-After
    admin.add_fault(status=504, count=2, match='/groups')      # then gateway timeouts
    admin.add_fault(status=None, rate=0.3, latency=0.2, match='/groups')  # slow answers
    done, watcher = expire_tokens_after(emu, 2)
    ou = box('graph-faults')
    try:
        result = run_graph(corp, emu, ou, graph_backoff_base=0.2)
    finally:
        done.set()
        watcher.join()
    assert result['summary']['errors'] == 0 and result['summary']['created'] == GROUPS, result['summary']
    assert end_state(directory, ou) == reference, 'AD after a faulty Graph read differs from AD after a clean one'

    log = admin.requests()
    statuses = [e['status'] for e in log if e['kind'] in ('graph', 'batch', 'batch_item')]
    assert statuses.count(429) >= 3, 'the run met too little throttling to prove anything: %r' % statuses
    assert 503 in statuses and 504 in statuses
    assert 401 in statuses, 'the tokens were not expired mid-run'
    assert admin.counters()['tokens_issued'] >= 2, 'a new token was not requested after the 401'
    delays = admin.retry_delays(statuses=(429,))
    refused = [e for e in log if e['status'] == 429]
    assert len(delays) == len(refused), 'a throttled request was not retried: %d of %d' % (len(delays), len(refused))
    early = [d for d in delays if d['retry_after'] is not None and d['delay'] < float(d['retry_after'])]
    assert early == [], 'retried before Retry-After: %r' % early
    assert admin.counters()['emulator_errors'] == 0

    again = run_graph(corp, emu, ou, graph_backoff_base=0.2)
    assert again['changed'] is False


@pytest.mark.parametrize('break_link', ['expire_delta_tokens', 'reset_delta_tokens'])
def test_rejected_delta_link_falls_back_to_a_full_read_and_converges(corp, corp_box, graph_emulator_factory, tmp_path, break_link):
    directory, box = corp_box
    tenant, users, group_ids = tenant_from_lab(corp, groups=4)
    emu = graph_emulator_factory(tenant.build(), settings={'throttle_enabled': False})
    ou = box('delta')
    state_path = str(tmp_path / 'delta.json')
    first_run = run_graph(corp, emu, ou, delta_state_path=state_path)
    assert first_run['summary']['created'] == 4

    # Changes while the link is broken: a member added, a group renamed, a new group.
    emu.admin.add_members(group_ids[0], [users[20]])
    emu.admin.update_group(group_ids[1], displayName='Rel renamed')
    new_id = emu.admin.create_group(displayName='Rel late', securityEnabled=True, mailEnabled=False, groupTypes=[],
                                    mailNickname='rellate', members=[users[21]])['id']
    getattr(emu.admin, break_link)()
    before = emu.admin.requests()
    second = run_graph(corp, emu, ou, delta_state_path=state_path)
    after = emu.admin.requests(since=before[-1]['n'] + 1 if before else 0)
    rejected = [e for e in after if 'delta' in e['path'] and e['status'] in (400, 410)]
    assert rejected, 'the broken delta link was not even tried'
    assert second['summary']['errors'] == 0
    assert second['summary']['created'] == 1 and second['summary']['renamed'] == 1, second['summary']

    # The converged state equals a clean full read of the tenant as it is now.
    clean_ou = box('delta-clean')
    run_graph(corp, emu, clean_ou)
    assert end_state(directory, ou) == end_state(directory, clean_ou)
    state = end_state(directory, ou)
    assert 'Group_' + new_id.lower() in state
    third = run_graph(corp, emu, ou, delta_state_path=state_path)
    assert third['changed'] is False


# -- outages ridden out by time, not by count ------------------------------------------------------

def module_defaults(emu, **extra):
    """The Graph options as a module gets them when the playbook sets only the credentials (the
    argument spec's defaults), pointed at the emulator."""
    from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.argspec import GRAPH_AUTH_ARGSPEC
    opts = dict((name, spec.get('default')) for name, spec in GRAPH_AUTH_ARGSPEC.items())
    opts.update(tenant_id=emu.tenant_id, client_id=emu.client_id, client_secret=emu.client_secret,
                authority_host=emu.authority_url, graph_endpoint=emu.base_url, graph_ca_bundle=emu.ca_file)
    opts.update(extra)
    return opts


def test_a_20_second_outage_answered_with_a_short_retry_after_is_ridden_out(graph_emulator):
    """Graph answers 503 with Retry-After: 2 for 20 seconds. With the default options the read waits
    each Retry-After and succeeds once the outage is over: retries are bounded by time
    (graph_retry_budget), not by a count that a short Retry-After uses up in 10 seconds.
    Graph's guidance: wait the Retry-After, then retry (https://learn.microsoft.com/en-us/graph/throttling)."""
    from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.graph_client import GraphClient
    emu = graph_emulator
    client = GraphClient(module_defaults(emu))
    client.get('/organization')     # the token, before the outage
    start = len(emu.admin.requests())
    emu.admin.add_fault(status=503, retry_after=2, duration=20, match='/groups')
    groups = list(client.iter_pages('/groups', {'$select': 'id,displayName'}))
    assert 'Finance Team' in [g['displayName'] for g in groups]
    log = [e for e in emu.admin.requests(start) if e['kind'] == 'graph']
    refused = [e for e in log if e['status'] == 503]
    assert len(refused) > 5, 'the outage met fewer refusals than the old count bound: %d' % len(refused)
    assert [e['status'] for e in log[len(refused):]] and all(e['status'] == 200 for e in log[len(refused):])
    delays = emu.admin.retry_delays(statuses=(503,))
    assert len(delays) == len(refused)
    assert all(d['delay'] >= 2 - 0.05 for d in delays), 'retried before Retry-After: %r' % delays
    assert client.stats['retries'] == len(refused)


def test_a_retry_budget_too_short_for_the_outage_fails_saying_how_long_it_waited(graph_emulator, tmp_path):
    """Through ansible-playbook: graph_retry_budget=5 against an outage that does not end. The task
    fails with a message naming the request, the status, the attempts and the time waited, and the
    attempts it states are the requests the emulator received."""
    import re
    from module_runner import failure_text, run_tasks
    emu = graph_emulator
    emu.admin.add_fault(status=503, retry_after=2, match='/groups')
    args = dict(tenant_id=emu.tenant_id, client_id=emu.client_id, client_secret=emu.client_secret,
                authority_host=emu.authority_url, graph_endpoint=emu.base_url, graph_ca_bundle=emu.ca_file,
                groups=['Finance Team'])
    rc, out, results = run_tasks(tmp_path, [{'hybrid_identity.cloud_sync.entra_group_info': dict(args, graph_retry_budget=5)},
                                            {'hybrid_identity.cloud_sync.entra_group_info': args}],
                                 env={'CLOUDSYNC_GRAPH_RETRY_BUDGET': '3'})
    sent = [e for e in emu.admin.requests() if e['kind'] == 'graph' and '/groups' in e['path']]
    assert sent and all(e['status'] == 503 for e in sent)
    stated = 0
    for result, budget in zip(results, (5, 3)):
        msg = result.get('msg', '')
        assert result.get('failed'), result
        assert 'HTTP 503' in msg and '/v1.0/groups' in msg and 'graph_retry_budget=%d' % budget in msg, msg
        match = re.search(r'gave up after (\d+) attempts in [\d.]+ s \(waited ([\d.]+) s\)', msg)
        assert match, msg
        attempts, waited = int(match.group(1)), float(match.group(2))
        assert attempts >= 2 and waited <= budget, msg
        assert result['attempts'] == attempts and result['waited'] == pytest.approx(waited, abs=0.1)
        assert 'Traceback' not in failure_text(result)
        stated += attempts
    assert stated == len(sent), 'the attempts stated (%d) are not the requests sent (%d)' % (stated, len(sent))
    assert rc == 0  # ignore_errors: the play itself ran to the end
