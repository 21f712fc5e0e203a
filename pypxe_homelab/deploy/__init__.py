"""Running the server as a service: the systemd unit (a template shipped in this package)."""
