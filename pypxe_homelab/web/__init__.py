"""The status web page and the JSON API behind it and behind `status`/`probe`."""
