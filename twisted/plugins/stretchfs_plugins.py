"""twistd plugins: stretchfs-master, stretchfs-prism, stretchfs-store.

Only module names are given here, so `twistd --help` imports none of our code.
"""

from __future__ import annotations

from twisted.application.service import ServiceMaker

stretchfs_master = ServiceMaker(
    "StretchFS master", "stretchfs.master.tap",
    "Cluster state: peers, users, inventory and purchase databases.", "stretchfs-master")
stretchfs_prism = ServiceMaker(
    "StretchFS prism", "stretchfs.prism.tap",
    "Public API: upload, purchase and delivery redirects.", "stretchfs-prism")
stretchfs_store = ServiceMaker(
    "StretchFS store", "stretchfs.store.tap",
    "Stores content on one disk and serves it.", "stretchfs-store")
