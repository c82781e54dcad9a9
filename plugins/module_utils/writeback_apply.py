# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Execute a writeback plan against AD, in order, through ``ADClient``.

In check mode nothing is sent: the plan is the answer. Otherwise each operation is one LDAP
request (the planner already chunked large member changes). What can go wrong and what happens:

- an object-level refusal (insufficient rights, constraint violation, a name taken meanwhile):
  recorded for that group, its remaining operations are skipped, other groups go on;
- a create that finds its DN taken (``entryAlreadyExists``): the object there is read; if it
  carries this group's anchor, another run created it a moment ago, and its members are brought
  in line instead (two concurrent runs never make two groups); a foreign object is an error for
  that group only;
- a lost connection (no LDAP result code: the DC went away): the run stops at once with a clear
  error; every group already created carries its anchor (one add with every attribute), so the
  next run finds it and converges.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import ad_codecs
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.ad_client import ADError, first, values
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.ad_codecs import ANCHOR_ATTRIBUTE

ENTRY_ALREADY_EXISTS = 68
NO_SUCH_OBJECT = 32


class ApplyResult(object):
    """What happened: per-group errors, operations executed, and whether anything was written."""

    def __init__(self):
        self.executed = []        # ops sent (as given, with 'outcome' added)
        self.errors = {}          # group_id -> message
        self.notes = {}           # group_id -> [text]
        self.changed = False

    def note(self, group_id, text):
        self.notes.setdefault(group_id, []).append(text)


def _fatal(err):
    """A connection-level failure (no LDAP result code) ends the run; an object-level one does not."""
    return getattr(err, 'result', None) is None


def _members_change(add, remove):
    changes = []
    if add:
        changes.append(('add', list(add)))
    if remove:
        changes.append(('delete', list(remove)))
    return {'member': changes}


def _create(client, op, result):
    attributes = dict(op['attributes'])
    if op.get('members'):
        attributes['member'] = list(op['members'])
    try:
        client.add(op['dn'], attributes)
        return 'created'
    except ADError as err:
        if err.result == NO_SUCH_OBJECT:
            raise ADError('%s. The container %s does not exist: check target_ou and ou_map'
                          % (err.msg, ad_codecs.parent_dn(op['dn'])), operation='add', server=err.server, dn=op['dn'],
                          result=err.result, result_name=err.result_name, diagnostic=err.diagnostic)
        if err.result != ENTRY_ALREADY_EXISTS:
            raise
    # Someone holds the DN: a concurrent run of ours (same anchor), or a foreign object.
    existing = client.get(op['dn'], [ANCHOR_ATTRIBUTE, 'member'])
    wanted_anchor = attributes.get(ANCHOR_ATTRIBUTE)
    if existing is None or first(existing, ANCHOR_ATTRIBUTE) != wanted_anchor:
        raise ADError('Cannot create %r: an object without the anchor %s already holds that name on %s; '
                      'rename or remove it, or map the group to another OU'
                      % (op['dn'], wanted_anchor, client.server),
                      operation='add', server=client.server, dn=op['dn'], result=ENTRY_ALREADY_EXISTS,
                      result_name='entryAlreadyExists')
    have = set(ad_codecs.dn_key(dn) for dn in values(existing, 'member'))
    missing = [dn for dn in op.get('members') or [] if ad_codecs.dn_key(dn) not in have]
    if missing:
        client.modify(op['dn'], _members_change(missing, []))
    result.note(op['group_id'], 'created by a concurrent run; members brought in line')
    return 'adopted_concurrent'


def _target(op):
    """The object an op acts on: by objectGUID when the plan read it (``<GUID=...>``), so a write
    can never land on another object that took the DN meanwhile; by DN otherwise."""
    guid = op.get('object_guid')
    return '<GUID=%s>' % guid if guid else op['dn']


def _check_still_there(client, op):
    """Raise an (object-level) ADError unless ``op['dn']`` still holds the object ``op['object_guid']``."""
    guid = op.get('object_guid')
    if not guid:
        return
    existing = client.get(op['dn'], ['objectGUID'])
    raw = first(existing, 'objectGUID') if existing is not None else None
    found = ad_codecs.guid_from_bytes(raw) if isinstance(raw, bytes) and len(raw) == 16 else None
    if found != ad_codecs.normalize_guid(guid):
        what = 'no object is there any more' if existing is None else 'another object (objectGUID %s) holds it now' % found
        raise ADError('Not renaming or moving %r on %s: %s, not the group read by this run (objectGUID %s); '
                      'the next run finds the group again by its anchor' % (op['dn'], client.server, what, guid),
                      operation='modify_dn', server=client.server, dn=op['dn'], result=NO_SUCH_OBJECT,
                      result_name='noSuchObject')


def _execute(client, op):
    kind = op['op']
    if kind == 'modify_dn':
        # By DN: Samba (unlike Windows) does not resolve <GUID=...> in a modify DN request. So first
        # make sure the DN still names the object the plan read, never renaming or moving another one.
        _check_still_there(client, op)
        client.modify_dn(op['dn'], op['new_rdn'], op.get('new_superior'))
    elif kind == 'modify':
        changes = {}
        for attr, value in op['changes'].items():
            if value is None or value == []:
                changes[attr] = ('replace', [])
            else:
                changes[attr] = ('replace', value if isinstance(value, list) else [value])
        client.modify(_target(op), changes)
    elif kind == 'members':
        client.modify(_target(op), _members_change(op.get('add'), op.get('remove')))
    elif kind == 'delete':
        try:
            client.delete(_target(op))
        except ADError as err:
            if err.result != NO_SUCH_OBJECT or not op.get('object_guid'):
                raise
            return 'already_gone'
    else:
        raise ValueError('Unknown plan operation %r' % (kind,))
    return 'done'


def apply_plan(client, ops, check_mode=False):
    """Run ``ops`` (a plan's ordered operations). Returns an ApplyResult; raises ADError when the
    connection is lost (nothing more can be done safely in this run)."""
    result = ApplyResult()
    if check_mode:
        return result
    failed = set()
    for op in ops:
        gid = op.get('group_id')
        if gid in failed:
            result.executed.append(dict(op, outcome='skipped_after_error'))
            continue
        try:
            outcome = _create(client, op, result) if op['op'] == 'create' else _execute(client, op)
        except ADError as err:
            if _fatal(err):
                raise
            failed.add(gid)
            msg = err.msg if op['dn'] in err.msg else '%s (group %s)' % (err.msg, op['dn'])
            result.errors[gid] = msg
            result.executed.append(dict(op, outcome='error', error=msg))
            continue
        result.changed = True
        result.executed.append(dict(op, outcome=outcome))
    return result
