"""Protocol code: bytes in, typed requests out, pure decisions, bytes back. No sockets, no files."""
