"""Test lab: isolated network namespaces, a home-router DHCP server and QEMU machines."""
