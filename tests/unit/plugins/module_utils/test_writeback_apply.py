"""writeback_apply.apply_plan with a stand-in client: a group whose create failed is never acted on
by DN or linked into another group later in the run (another object may hold its name), in this
call or a later one sharing the ApplyResult (a first run's early waves, then the run's own plan).
The applier against a real DC: tests/integration (test_writeback_failures, test_reliability_ad)."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.ad_client import ADError
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.writeback_apply import ApplyResult, apply_plan

OU = 'OU=Cloud,DC=corp,DC=example,DC=test'
CHILD = 'CN=Child,' + OU
PARENT = 'CN=Parent,' + OU
OTHER = 'CN=Other,' + OU
USER = 'CN=U1,OU=Staff,DC=corp,DC=example,DC=test'


class Client(object):
    server = 'dc1'

    def __init__(self):
        self.sent = []

    def add(self, dn, attributes):
        self.sent.append(('add', dn))
        if dn == CHILD:
            raise ADError('insufficient rights on %s' % dn, operation='add', dn=dn, result=50,
                          result_name='insufficientAccessRights')

    def modify(self, dn, changes):
        self.sent.append(('modify', dn))


def create(gid, dn, members):
    return dict(op='create', group_id=gid, dn=dn, attributes={'cn': gid}, members=members)


def test_a_failed_create_is_never_linked_or_written_by_dn_afterwards():
    client = Client()
    result = ApplyResult()
    apply_plan(client, [create('c', CHILD, [USER]), create('p', PARENT, [CHILD.lower(), USER])], result=result)
    assert client.sent == [('add', CHILD)]
    assert set(result.errors) == set(['c', 'p']) and 'whose create failed' in result.errors['p']

    # A later call with the same result (the run's own plan after the early waves).
    later = [dict(op='members', group_id='o', dn=OTHER, object_guid='1234', add=[USER, CHILD], remove=[]),
             dict(op='modify', group_id='c', dn=CHILD, changes={'description': 'x'}),
             dict(op='members', group_id='o2', dn=OTHER, object_guid='5678', add=[USER], remove=[])]
    apply_plan(client, later, result=result)
    assert client.sent == [('add', CHILD), ('modify', '<GUID=5678>')]
    assert [op['outcome'] for op in later] == ['error', 'error', 'done']


def test_nothing_is_refused_when_no_create_failed():
    client = Client()
    ops = [create('p', PARENT, [USER]), dict(op='members', group_id='p', dn=PARENT, add=[OTHER], remove=[])]
    result = apply_plan(client, ops)
    assert client.sent == [('add', PARENT), ('modify', PARENT)] and not result.errors
