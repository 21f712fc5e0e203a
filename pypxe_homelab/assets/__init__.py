"""Boot loaders and OS images: sources, resumable checksummed downloads, ISO extraction."""
