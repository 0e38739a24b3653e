"""The hypervisor side: host memory, domains, xenstore, the toolstack.

Nothing here imports the guest (``balloonsim.kernel``): a guest reaches Xen
only through hypercalls and xenstore, as a real one does.
"""
