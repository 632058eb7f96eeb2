"""Model folders shipped inside the package (``emostream-ekman/``); data only, no code.

The repo-level ``models/emostream-ekman`` is a relative symlink to the folder here, so the
documented location and the installed package data are the same bytes.
"""
