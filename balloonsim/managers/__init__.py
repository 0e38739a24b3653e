"""Host memory managers: the policies that set the guests' targets on a real host.

Each manager is one module registered by name in ``registry.MANAGERS``: a pure
decision (snapshots in, actions out; ``base``) and the daemon around it, which
reads and acts on the host through ``process.HostIO`` at the manager's cadence.
"""
