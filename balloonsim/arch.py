"""What the guest's architecture fixes: batch size, highmem, section size, zones.

The balloon driver's batch is ``ARRAY_SIZE(frame_list)`` =
``PAGE_SIZE / sizeof(xen_pfn_t)``: 512 where ``xen_pfn_t`` is 8 bytes
(x86_64, arm64, and arm32 whose Xen interface uses ``uint64_t``), 1024 on
x86_32 where it is a 4-byte ``unsigned long`` (include/xen/interface/xen.h,
arch/*/include/asm/xen/interface.h).  Highmem exists only on 32-bit kernels.
``PAGES_PER_SECTION`` is ``2^(SECTION_SIZE_BITS - PAGE_SHIFT)``.  Values
marked "from memory" were not checked against a source; every one of them
can be overridden in a scenario.
"""

from __future__ import annotations

from dataclasses import dataclass

from balloonsim.units import PAGES_PER_GIB, PAGES_PER_MIB


@dataclass(frozen=True)
class Arch:
    name: str
    frame_list: int  # pages per increase/decrease_reservation batch
    lowmem_pages: int | None  # first highmem pfn; None: no highmem (64-bit)
    section_pages: int  # PAGES_PER_SECTION
    physmem_bits: int  # MAX_PHYSMEM_BITS: hot-added memory must end below 2**physmem_bits bytes
    struct_page_bytes: int  # sizeof(struct page): the memmap each hot-added page costs

    def split_by_zone(self, start_pfn: int, end_pfn: int) -> tuple[int, int]:
        """(lowmem, highmem) pages among pfns [start, end): highmem is pfn >= lowmem_pages."""
        if self.lowmem_pages is None:
            return end_pfn - start_pfn, 0
        low = max(0, min(end_pfn, self.lowmem_pages) - start_pfn)
        return low, (end_pfn - start_pfn) - low


ARCHES: dict[str, Arch] = {
    # SECTION_SIZE_BITS 27 = 128 MiB (arch/x86/include/asm/sparsemem.h, from memory); MAX_PHYSMEM_BITS 46
    # with 4-level page tables (52 with 5-level), same file
    # struct page (include/linux/mm_types.h): flags, a five-word union, two 32-bit counters and memcg_data,
    # 64 bytes on 64-bit kernels
    "x86_64": Arch(
        "x86_64", frame_list=512, lowmem_pages=None, section_pages=32768, physmem_bits=46, struct_page_bytes=64
    ),
    # 4 KiB pages; SECTION_SIZE_BITS 27 since v5.12, MAX_PHYSMEM_BITS = CONFIG_ARM64_PA_BITS, 48 by
    # default (arch/arm64/include/asm/sparsemem.h)
    "arm64": Arch(
        "arm64", frame_list=512, lowmem_pages=None, section_pages=32768, physmem_bits=48, struct_page_bytes=64
    ),
    # PAE: 896 MiB of lowmem, SECTION_SIZE_BITS 29 = 512 MiB, MAX_PHYSMEM_BITS 36 (from memory); the same
    # struct page in 4-byte words is 36 bytes (with CONFIG_MEMCG, as distributions build them)
    "x86_32": Arch(
        "x86_32",
        frame_list=1024,
        lowmem_pages=896 * PAGES_PER_MIB,
        section_pages=131072,
        physmem_bits=36,
        struct_page_bytes=36,
    ),
    # xen_pfn_t is uint64_t on ARM; 3G/1G split with a 240 MiB vmalloc area leaves
    # about 760 MiB of lowmem; SECTION_SIZE_BITS 28 = 256 MiB, MAX_PHYSMEM_BITS 36, struct page 36 bytes as on
    # x86_32 (all from memory)
    "arm32": Arch(
        "arm32",
        frame_list=512,
        lowmem_pages=760 * PAGES_PER_MIB,
        section_pages=65536,
        physmem_bits=36,
        struct_page_bytes=36,
    ),
}

# x86 ZONE_DMA spans pfn 1..4095 minus the legacy hole 0xa0..0xff: 3999 pages,
# of which the kernel typically manages 3977 (a typical x86 boot; an estimate).
X86_DMA_PRESENT = 3999
X86_DMA_MANAGED = 3977
# hvmloader puts the PCI hole below 4 GiB at 0xF0000000 by default: an HVM
# guest's RAM above 3.75 GiB is relocated above 4 GiB, into ZONE_NORMAL.
HVM_LOW_RAM_END = 3840 * PAGES_PER_MIB
DMA32_END = 4 * PAGES_PER_GIB
DMA_END = 16 * PAGES_PER_MIB


@dataclass(frozen=True)
class ZoneSpan:
    name: str  # DMA, DMA32, Normal, HighMem
    present: int
    managed: int
    highmem: bool = False


def managed_of(present: int) -> int:
    """Managed pages of a zone: present minus its memmap and boot reservations.

    The kernel's exact figure depends on the boot; 98 % is an estimate,
    and scenarios can override the results (``totalreserve_pages``,
    floors) directly.
    """
    return present * 98 // 100


def zone_layout(arch: Arch, guest_type: str, pages: int) -> list[ZoneSpan]:
    """The zones of a guest of ``pages`` RAM pages, lowest first."""
    zones: list[ZoneSpan] = []
    if arch.name in ("x86_64", "x86_32"):
        dma = min(pages, X86_DMA_PRESENT)
        zones.append(ZoneSpan("DMA", dma, X86_DMA_MANAGED if dma == X86_DMA_PRESENT else managed_of(dma)))
        rest = pages - dma
        if arch.name == "x86_64":
            low_end = HVM_LOW_RAM_END if guest_type in ("hvm", "pvh") else DMA32_END
            dma32 = min(rest, low_end - DMA_END)
            zones.append(ZoneSpan("DMA32", dma32, managed_of(dma32)))
            normal = rest - dma32
            zones.append(ZoneSpan("Normal", normal, managed_of(normal)))
            return zones
        normal = min(rest, max(0, arch.lowmem_pages - DMA_END))
        zones.append(ZoneSpan("Normal", normal, managed_of(normal)))
        high = rest - normal
        zones.append(ZoneSpan("HighMem", high, managed_of(high), highmem=True))
        return zones
    if arch.lowmem_pages is None:  # arm64: RAM below 4 GiB is DMA32 (approximation)
        dma32 = min(pages, 3 * PAGES_PER_GIB)
        zones.append(ZoneSpan("DMA32", dma32, managed_of(dma32)))
        zones.append(ZoneSpan("Normal", pages - dma32, managed_of(pages - dma32)))
        return zones
    normal = min(pages, arch.lowmem_pages)  # arm32
    zones.append(ZoneSpan("Normal", normal, managed_of(normal)))
    zones.append(ZoneSpan("HighMem", pages - normal, managed_of(pages - normal), highmem=True))
    return zones
