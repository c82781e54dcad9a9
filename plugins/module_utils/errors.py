# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one exception base class of the collection.

Every layer raises a subclass (``ADError``, ``GraphError``, ...); modules catch
``CloudSyncError`` and call ``module.fail_json(**err.to_fail_kwargs())``, so a failure is a
clean Ansible result with a message and structured details, never a traceback.
Never put secrets in ``msg`` or ``details``.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class CloudSyncError(Exception):
    """Base error: ``msg`` (str) names the object and the server's own error; ``details``
    (dict, JSON-able) holds structured extras returned alongside ``msg`` by ``fail_json``."""

    def __init__(self, msg, details=None, **kwargs):
        super(CloudSyncError, self).__init__(msg)
        self.msg = msg
        self.details = dict(details or {})
        self.details.update(kwargs)

    def to_fail_kwargs(self):
        """Keyword arguments for ``AnsibleModule.fail_json``; ``msg`` always wins over a
        ``details`` key of the same name."""
        result = dict(self.details)
        result['msg'] = self.msg
        return result

    def __str__(self):
        return str(self.msg)
