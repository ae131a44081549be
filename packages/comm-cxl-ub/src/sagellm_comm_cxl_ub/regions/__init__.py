"""Where the shared region comes from: POSIX shared memory, a CXL-backed directory or device, a UB segment."""

from sagellm_comm_cxl_ub.regions.base import Region, RegionProvider
from sagellm_comm_cxl_ub.regions.device import DeviceRegionProvider
from sagellm_comm_cxl_ub.regions.directory import DirectoryRegionProvider

__all__ = ["DeviceRegionProvider", "DirectoryRegionProvider", "Region", "RegionProvider"]
