"""Drift monitors: the policy's ``monitors:`` watched over the decision log.

Baseline (a reference computed once and stored), monitor (the log read incrementally),
detect (a test against a threshold fitted for a stated false-alarm rate), respond (a
``drift.detected`` record, an alert, a lower autonomy stage), validate and update (a
person re-baselines with ``proctor drift reset`` or ``calibrate --apply``).

Runs in the server's loop and in ``proctor drift check``, never on a decision's path, and
needs the ``drift`` extra (numpy); ``import proctor`` does not load it. The modules are
imported one by one: ``views`` (what the console and API show) needs no numpy.
"""
