"""The engine of the pack: plain torch, no ComfyUI.

- ``models.diception``: DICEPTION (arXiv 2502.17157), one SD3 transformer for depth, normals,
  segmentation and pose, each answered as an RGB image.
- ``models.persam``: PerSAM / PerSAM-F (arXiv 2305.03048), one-shot personalised Segment Anything.
"""
