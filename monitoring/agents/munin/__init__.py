"""Munin plugins (monitoring/agents/munin/plugins/*) and the helper module they share (photostack_munin.py).

Both are copied verbatim to every host by the munin_node role; plugins run with the host's
monitoring venv (/opt/photostack/venv) and find the helper through PYTHONPATH (plugin-conf.d).
"""
