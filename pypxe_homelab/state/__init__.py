"""Events in, device and node state out, persisted in sqlite under the data root."""
