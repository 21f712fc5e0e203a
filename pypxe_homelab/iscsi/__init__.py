"""The iSCSI side of Raspberry Pi nodes: one disk file per node, exported by the server's own ``tgtd``.

``naming`` (IQNs and the portal a node is told), ``desired`` (which targets the inventory asks for),
``plan`` (what to change in tgtd to get there), ``disks`` (creating node disks) and ``target`` (the
tgtd process and its tgtadm commands). See docs/how-it-boots.md and docs/design.md.
"""
