"""The only package that speaks to the kernel through ctypes.

One small module per kernel area. Every call checks its return value and raises
``OSError`` with the errno (and the path, where there is one); nothing here returns
False for failure.
"""
