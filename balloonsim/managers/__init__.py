"""Host memory managers: the policies that set the guests' targets on a real host.

Each manager is one module with a pure decision (``base.Manager``: a
snapshot of the host and its guests in, actions out) registered by name in
``registry.MANAGERS``; ``process.run_manager`` samples the world at the
manager's cadence and applies its actions through the toolstack.
"""
