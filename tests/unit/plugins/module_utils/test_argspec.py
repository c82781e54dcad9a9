# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""argspec's value checks: the bounds of ad_group_writeback's ad_write_connections."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.argspec import count_problem
from ansible_collections.hybrid_identity.cloud_sync.plugins.modules import ad_group_writeback


def test_count_problem_names_the_option_and_its_bounds():
    check = count_problem(1, 8)
    assert check('ad_write_connections', 0) == 'ad_write_connections must be from 1 to 8, not 0'
    assert check('ad_write_connections', 9) == 'ad_write_connections must be from 1 to 8, not 9'
    assert [check('ad_write_connections', n) for n in (1, 2, 8, None)] == [None] * 4


def test_ad_group_writeback_bounds_its_write_connections():
    check = ad_group_writeback.argument_spec().value_checks['ad_write_connections']
    assert check('ad_write_connections', 0) and check('ad_write_connections', 9)
    assert check('ad_write_connections', 2) is None
