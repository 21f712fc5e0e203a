"""I/O only: the ProxyDHCP sockets, the TFTP thread and the aiohttp application."""
