"""The parts of ``bench_idle.py``: what N idle connections with a 1 s heartbeat cost.

- :mod:`idle.variants`: the sides measured (``none``, ``tasks``, ``floor``, ``websockets``,
  ``pulsewire``), each one process's half of a heartbeat over loopback;
- :mod:`idle.worker`: a worker process: holds one side, answers the orchestrator's
  commands and measures its windows (CPU, RSS, heartbeats, evidence, lateness, GC);
- :mod:`idle.harness`: the orchestrator: process pairs, quiet waits, measurement plans,
  bounded waits, and the interpreters of the builds compared (``--compare``);
- :mod:`idle.figures`: numbers per measurement, medians over runs, same-round ratios,
  targets;
- :mod:`idle.report`: the short RESULTS.md section and the full detail.

``benchmarks/bench_idle.py`` is the entry point and its docstring says what is measured.
"""
