"""Stand-in for the pip bootstrap script ansible-test downloads (get-pip.py).

ansible-test creates its sanity virtualenvs without pip and downloads get-pip.py from a host
this machine cannot reach. This script does the same job from what is here: Python's own
ensurepip puts the bundled pip into the virtualenv, then pip installs the exact versions
ansible-test asked for from the package index. tools/sanity.sh installs it into ansible-test's
cache under the name ansible-test looks for.
"""
import subprocess
import sys

GET_PIP_ONLY = ('--no-setuptools', '--no-wheel', '--no-pip')

subprocess.check_call([sys.executable, '-m', 'ensurepip', '--upgrade', '--default-pip'],
                      stdout=subprocess.DEVNULL)
args = [a for a in sys.argv[1:] if a not in GET_PIP_ONLY]
sys.exit(subprocess.call([sys.executable, '-m', 'pip', 'install', '--upgrade'] + args))
