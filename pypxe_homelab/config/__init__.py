"""The inventory (config.yaml): model, loader, round-trip editor, host network facts."""
