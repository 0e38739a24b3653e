"""The guest side: the Linux kernel around the balloon driver, and the driver itself.

``balloon`` is the transcription of drivers/xen/balloon.c (v5.12-v5.14);
``xen_balloon`` its xenstore watch and sysfs files; ``interface`` is all a
driver sees of the kernel (``BalloonKernel``) and all the kernel and the
recorder see of a driver (``BalloonDriver``); the rest is the environment:
``mm`` (page allocator, MemAvailable), ``watermarks``, ``tasks``, ``oom``,
``kswapd``, ``costs``, ``workqueue``, ``hotplug``, and ``guest``, which
assembles them for one domain.
"""
