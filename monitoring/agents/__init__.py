"""What runs on the hosts: the Munin plugins, Munin's contact hook, the health watcher and its hook."""
