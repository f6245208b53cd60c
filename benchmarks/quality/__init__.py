"""The parts of ``detection_quality.py``: fixed and adaptive policies on simulated paths.

- :mod:`quality.model`: the network (a TCP-like path with loss and in-order delivery) and
  a pair of real sessions on a fake clock; :func:`quality.model.simulate` runs one cell;
- :mod:`quality.study`: the policies and paths under test, and the cells of a study;
- :mod:`quality.matches`: each adaptive config against its fixed matches, noise allowed for;
- :mod:`quality.checks`: the model's and the matches' rules, checked on scripted cases
  before a smoke run trusts them;
- :mod:`quality.report`: the short RESULTS.md section, the full tables, and ``--json``.

``benchmarks/detection_quality.py`` is the entry point; its docstring states the method.
"""
