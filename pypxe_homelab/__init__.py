"""pypxe-homelab: ProxyDHCP, TFTP and HTTP in one process that network-boots and installs a homelab."""

__version__ = "0.1.0"
