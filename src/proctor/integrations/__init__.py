"""Proctor inside the frameworks agents are built with.

One module per framework, each importing its framework only when it is used (an extra of
its own: ``pip install 'proctor[langgraph]'`` and so on). Every adapter rests on the same
two SDK calls, keyed by the framework's tool-call id: ``px.decide`` (decide once) and
``px.execute`` (run once under that decision or approval).
"""
