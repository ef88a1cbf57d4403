"""Driving real Qt widgets as a user does, for the GUI tests.

A real press of a button sends its value (``False``) with the click;
``signal.emit()`` sends nothing and so cannot catch a callback that breaks
on it. Every GUI test presses, types and drags through these.
"""

from qtpy.QtCore import Qt
from qtpy.QtTest import QTest


def click(button) -> None:
    """Press a magicgui button (or a QWidget) with the left mouse button."""
    native = getattr(button, 'native', button)
    assert native.isEnabled(), f'{getattr(button, "text", native)!r} is disabled'
    QTest.mouseClick(native, Qt.MouseButton.LeftButton)
