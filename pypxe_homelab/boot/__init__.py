"""What each machine gets: loader per firmware, generated loader configs, kernel command lines, cloud-init."""
