"""drivers/xen/balloon.c of Linux v5.16 (and v5.15.3 on): v5.15's thread plus the boot wait.

Commit 40fdea0284bb ("xen/balloon: add late_initcall_sync() for initial
ballooning done") makes an HVM or PVH guest wait at boot, in
``balloon_wait_finish()``, until the balloon-down to its initial target is
done: a populate-on-demand guest that touched more memory than Xen backs
would be crashed.  The wait polls every HZ/10; when the thread has given
up (``BP_ECANCELED``) and the credit has not changed for
``xen.balloon_boot_timeout`` seconds (default 180), the kernel panics.
The same file is in 6.1 (6.1.192 checked): only names changed since.
"""

from __future__ import annotations

from balloonsim.kernel.balloon import BP_ECANCELED
from balloonsim.kernel.balloon_v5_15 import KthreadBalloonDriver
from balloonsim.sim import Process

#: module_param(balloon_boot_timeout, uint, 0444), prefix "xen."
BOOT_TIMEOUT_PARAM = "xen.balloon_boot_timeout"
BOOT_TIMEOUT_DEFAULT = 180


class BootWaitBalloonDriver(KthreadBalloonDriver):
    """The v5.16 driver: the xen-balloon thread and the boot wait."""

    def balloon_init(self) -> None:
        self.balloon_boot_timeout = self.kernel.module_param(BOOT_TIMEOUT_PARAM, BOOT_TIMEOUT_DEFAULT)
        super().balloon_init()
        self.kernel.late_initcall_sync(self.balloon_wait_finish)

    def balloon_wait_finish(self) -> Process:
        """Wait at boot until the initial balloon-down is done; panic if it stalls cancelled."""
        kernel = self.kernel
        last_credit = 0
        last_changed = 0
        warned = False  # pr_warn_once

        # PV guests don't need to wait.
        if kernel.xen_pv_domain or not self.current_credit():
            return 0

        kernel.printk("notice", "Waiting for initial ballooning down having finished.")

        while (credit := self.current_credit()) < 0:
            if credit != last_credit:
                last_changed = kernel.jiffies
                last_credit = credit
            if self.balloon_state is BP_ECANCELED:
                if not warned:
                    warned = True
                    kernel.printk("warn", f"Initial ballooning failed, {-credit} pages need to be freed.")
                if kernel.jiffies >= last_changed + kernel.hz * self.balloon_boot_timeout:
                    kernel.panic("Initial ballooning failed!")

            yield from kernel.schedule_timeout_interruptible(kernel.hz // 10)

        kernel.printk("notice", "Initial ballooning down finished.")
        return 0
