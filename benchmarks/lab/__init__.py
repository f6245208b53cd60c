"""The fault lab that ``benchmarks/detection.py`` and ``tests/faults`` share.

:mod:`lab.endpoints` runs pulsewire, plain TCP with kernel keepalive, and websockets
endpoints inside the network namespaces of :mod:`pulsewire.cli.netns` and reports how
each connection ended. Importable as ``lab`` with ``benchmarks/`` on ``sys.path`` (as it is
for a script run from there); not part of the pulsewire package.
"""
