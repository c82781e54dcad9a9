"""Put ansible.windows, community.windows, microsoft.ad and awx.awx under .build/collections.

The cloudsync_agent role uses the first three; the AWX-as-code playbook (extensions/awx) uses
awx.awx. ansible-lint and the syntax and argument-spec tests need them installed. Galaxy is not reachable from every machine this project runs on, but the
`ansible` package on PyPI bundles these collections: download its wheel once (cached under
.cache/) and extract only these. Idempotent: does nothing when they are present.
"""
import pathlib
import subprocess
import sys
import zipfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
TARGET = ROOT / ".build" / "collections"
CACHE = ROOT / ".cache" / "ansible-dl"
COLLECTIONS = ("ansible/windows", "community/windows", "microsoft/ad", "awx/awx")
# ansible 12 is the bundle built for ansible-core 2.19.
BUNDLE = "ansible>=12,<13"


def main():
    base = TARGET / "ansible_collections"
    if all((base / c / "MANIFEST.json").exists() for c in COLLECTIONS):
        return 0
    wheels = sorted(CACHE.glob("ansible-*.whl")) if CACHE.exists() else []
    if not wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", BUNDLE, "-d", str(CACHE)],
                       check=True, timeout=900)
        wheels = sorted(CACHE.glob("ansible-*.whl"))
    prefixes = tuple("ansible_collections/%s/" % c for c in COLLECTIONS)
    with zipfile.ZipFile(str(wheels[-1])) as wheel:
        for name in wheel.namelist():
            if name.startswith(prefixes):
                wheel.extract(name, str(TARGET))
    print("setup: extracted %s from %s" % (", ".join(c.replace("/", ".") for c in COLLECTIONS), wheels[-1].name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
