"""Run ZODB's real repozo with its clock fixed at a given time.

    python repozo_at.py <epoch-seconds> [repozo options...]

repozo names backups after ``time.gmtime()``; the tests need distinct,
ordered names without sleeping, so this swaps the ``time`` module that
repozo sees for one whose ``gmtime()`` (and ``time()``) return the given
moment. Everything else is the unmodified repozo ``main``.
"""

import sys
import time as _time


class _FixedTime:
    def __init__(self, t):
        self._t = t

    def time(self):
        return self._t

    def gmtime(self, secs=None):
        return _time.gmtime(self._t if secs is None else secs)

    def __getattr__(self, name):
        return getattr(_time, name)


def main():
    from ZODB.scripts import repozo

    t = float(sys.argv[1])
    repozo.time = _FixedTime(t)
    sys.argv = ["repozo"] + sys.argv[2:]
    repozo.main(sys.argv[1:])


if __name__ == "__main__":
    main()
