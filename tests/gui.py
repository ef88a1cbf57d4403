"""Driving real Qt widgets as a user does, for the GUI tests.

A real press of a button sends its value (``False``) with the click;
``signal.emit()`` sends nothing and so cannot catch a callback that breaks
on it. Every GUI test presses, types, picks and drags through these: Qt
mouse and key events sent to the widgets (and to napari's canvases, whose
vispy backend turns them into napari's mouse events).
"""

import numpy as np
from napari.utils.notifications import (
    NotificationSeverity,
    notification_manager,
)
from qtpy.QtCore import QEvent, QPoint, QPointF, Qt
from qtpy.QtGui import QMouseEvent
from qtpy.QtTest import QTest
from qtpy.QtWidgets import (
    QAbstractButton,
    QAbstractScrollArea,
    QAbstractSpinBox,
    QApplication,
    QCheckBox,
    QComboBox,
    QLineEdit,
    QScrollArea,
    QWidget,
)

LEFT = Qt.MouseButton.LeftButton


def native(widget) -> QWidget:
    """The Qt widget of a magicgui widget (or the QWidget itself)."""
    return getattr(widget, 'native', widget)


def click(button, modifier=Qt.KeyboardModifier.NoModifier) -> None:
    """Press a magicgui button or check box (or a QWidget) with the left
    mouse button (a check box on its box)."""
    widget = native(button)
    name = getattr(button, 'text', widget)
    assert widget.isEnabled(), f'{name!r} is disabled'
    point = widget.rect().center()
    if isinstance(widget, QCheckBox):  # on the box, at its left
        point = QPoint(min(10, point.x()), point.y())
    QTest.mouseClick(widget, LEFT, modifier, point)


def type_into(field, text: str) -> None:
    """Replace the text of a magicgui field (line edit, file edit, spin
    box) by typing ``text`` and Enter, with key events."""
    widget = native(field)
    edit = (widget if isinstance(widget, QLineEdit | QAbstractSpinBox)
            else widget.findChild(QLineEdit))
    assert edit is not None and edit.isEnabled(), f'{field!r} takes no text'
    edit.setFocus()
    QTest.keyClick(edit, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)
    QTest.keyClicks(edit, text)
    QTest.keyClick(edit, Qt.Key.Key_Return)
    edit.clearFocus()  # spin boxes and line edits commit on losing focus


def choose(combo, text: str) -> None:
    """Pick ``text`` in a magicgui ComboBox: open its list with a click,
    go to the item with the arrow keys, Enter (a click in a list that has
    just opened is sometimes dropped)."""
    box = native(combo)
    if not isinstance(box, QComboBox):
        box = box.findChild(QComboBox)
    index = box.findText(text)
    items = [box.itemText(i) for i in range(box.count())]
    assert index >= 0, f'{text!r} not in {items}'
    QTest.mouseClick(box, LEFT)  # opens the list
    view = box.view()
    assert view.isVisible(), 'the list did not open'
    QTest.keyClick(view, Qt.Key.Key_Home)  # then the keys of the list
    for _ in range(index):
        QTest.keyClick(view, Qt.Key.Key_Down)
    QTest.keyClick(view, Qt.Key.Key_Return)
    assert box.currentText() == text, (box.currentText(), text)


def select_items(select, names) -> None:
    """Select exactly ``names`` in a magicgui Select (a list): a click on
    the first, Ctrl+click on the others."""
    view = native(select)
    items = {view.item(i).text(): view.item(i) for i in range(view.count())}
    for index, name in enumerate(names):
        view.scrollToItem(items[name])
        modifier = (Qt.KeyboardModifier.ControlModifier if index
                    else Qt.KeyboardModifier.NoModifier)
        QTest.mouseClick(view.viewport(), LEFT, modifier,
                         view.visualItemRect(items[name]).center())
    assert sorted(select.value) == sorted(names), select.value


def _mouse(widget, kind, point: QPointF, buttons, modifiers) -> None:
    button = LEFT if kind != QEvent.Type.MouseMove else Qt.MouseButton.NoButton
    event = QMouseEvent(kind, point, QPointF(widget.mapToGlobal(point)),
                        button, buttons, modifiers)
    QApplication.sendEvent(widget, event)


def drag(widget, start, end, steps: int = 6, qtbot=None, pause_ms: int = 20,
         modifiers=Qt.KeyboardModifier.NoModifier) -> None:
    """Press the left button at ``start`` (widget pixels, x, y), move in
    ``steps`` to ``end`` (waiting ``pause_ms`` between moves, with
    ``qtbot``), release there."""
    widget = native(widget)
    start, end = np.asarray(start, float), np.asarray(end, float)
    none = Qt.MouseButton.NoButton
    _mouse(widget, QEvent.Type.MouseMove, QPointF(*start), none, modifiers)
    _mouse(widget, QEvent.Type.MouseButtonPress, QPointF(*start), LEFT,
           modifiers)
    for fraction in np.linspace(0, 1, steps + 1)[1:]:
        point = QPointF(*(start + fraction * (end - start)))
        _mouse(widget, QEvent.Type.MouseMove, point, LEFT, modifiers)
        if qtbot is not None:
            qtbot.wait(pause_ms)
    _mouse(widget, QEvent.Type.MouseButtonRelease, QPointF(*end), none,
           modifiers)


def click_at(widget, point) -> None:
    """A click (press, release; no move) at ``point`` (widget x, y)."""
    drag(widget, point, point, steps=0)


def canvas_point(qt_viewer_canvas, camera, world) -> tuple[float, float]:
    """Widget pixel (x, y) of a 2D world point (row, column) on a napari
    canvas showing ``camera`` (2D view, no grid)."""
    widget = native(qt_viewer_canvas)
    center = np.asarray(camera.center)[-2:]
    offset = (np.asarray(world, float)[-2:] - center) * camera.zoom
    return (widget.width() / 2 + offset[1], widget.height() / 2 + offset[0])


def drag_slider(slider, fraction: float) -> None:
    """Drag a QSlider's handle to ``fraction`` of its groove."""
    start = slider.rect().center()
    span = slider.maximum() - slider.minimum()
    position = (slider.value() - slider.minimum()) / max(span, 1)
    x0 = 4 + position * (slider.width() - 8)
    x1 = 4 + fraction * (slider.width() - 8)
    drag(slider, (x0, start.y()), (x1, start.y()))


def errors_since(before: int) -> list[str]:
    """Error notifications raised since ``before`` records."""
    return [str(record.message)
            for record in notification_manager.records[before:]
            if record.severity >= NotificationSeverity.ERROR]


def outside_window(window, roots) -> list[str]:
    """Controls under ``roots`` (visible buttons, fields, lists) that a
    user cannot bring inside ``window``: each is scrolled into view in
    its scroll area first, then its rectangle must lie in the window."""
    frame = window.rect()
    bad = []
    kinds = (QAbstractButton, QAbstractSpinBox, QComboBox, QLineEdit,
             QAbstractScrollArea)
    for root in roots:
        for control in native(root).findChildren(QWidget):
            if not isinstance(control, kinds) or not control.isVisible():
                continue
            if isinstance(control, QScrollArea):
                continue
            area = _scroll_area_of(control)
            if area is not None:
                area.ensureWidgetVisible(control, 0, 0)
            QApplication.processEvents()
            top_left = control.mapTo(window, QPoint(0, 0))
            rect = control.rect().translated(top_left)
            if not frame.contains(rect):
                bad.append(f'{type(control).__name__} '
                           f'{getattr(control, "text", lambda: "")()!r} at '
                           f'{rect.getRect()} outside {frame.getRect()}')
    return bad


def _scroll_area_of(widget):
    parent = widget.parentWidget()
    while parent is not None and not isinstance(parent, QScrollArea):
        parent = parent.parentWidget()
    return parent
