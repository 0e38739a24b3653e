"""The guest side: the Linux kernel around the balloon driver, and the driver itself.

``balloon`` is the transcription of drivers/xen/balloon.c (v5.12-v5.14);
``xen_balloon`` its xenstore watch and sysfs files; the rest is the
environment it calls: ``mm`` (page allocator, MemAvailable), ``workqueue``,
``hotplug``, and ``guest``, which assembles them for one domain.
"""
