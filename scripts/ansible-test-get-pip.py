"""Offline stand-in for the get-pip.py that ``ansible-test`` bootstraps its virtual environments with.

ansible-test downloads get-pip.py from ci-files.testing.ansible.com, which CI machines that
only reach PyPI cannot fetch. ``make sanity`` puts this file where ansible-test caches that
download (~/.ansible/test/cache/get_pip_<version>.py), next to a pip wheel fetched from PyPI.
Like get-pip.py, it runs pip from that wheel to install the requested packages.
"""
import glob
import os
import sys


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    wheels = sorted(glob.glob(os.path.join(here, "pip-*-py3-none-any.whl")))
    if not wheels:
        sys.exit("no pip wheel next to %s; run 'make sanity' to fetch one" % __file__)
    sys.path.insert(0, wheels[-1])
    # get-pip.py's own options; pip does not know them.
    args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
    from pip._internal.cli.main import main as pip_main  # pylint: disable=import-outside-toplevel

    sys.exit(pip_main(["install", "--upgrade", "--force-reinstall"] + args))


if __name__ == "__main__":
    main()
