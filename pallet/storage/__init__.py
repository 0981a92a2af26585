"""Storage: the layer store and snapshot drivers (overlay, copy fallback); tar diff/apply.

Layers live on disk as directories in overlayfs form, each usable as a lowerdir as it
is: a whiteout is a 0:0 character device, an opaque directory carries
``trusted.overlay.opaque=y``. Tarballs (aufs-style ``.wh.`` whiteouts, the form images
travel in) are converted at the edges:

- ``compression``  gzip / zstd / plain, told apart by magic bytes; read and write
- ``layertar``     apply a layer tarball into a directory, safely; its diff_id on the way
- ``diff``         an overlay upper dir back into a layer tarball; a rootfs into a tar
- ``snapshot``     a container's writable root from layer dirs (overlay, or copies)
- ``tree``         walking, copying and removing layer and snapshot trees
"""
