import numpy as np
from napari_phase.widgets.diffraction_view import diffraction_view
from napari_phase.widgets._common import Runner

def test_dv(make_napari_viewer, qtbot):
    v = make_napari_viewer(show=True)
    v.add_image(np.random.default_rng(0).random((20, 20)), units=('angstrom','angstrom'))
    dv = diffraction_view(v)
    dv.show_pattern('mean', np.random.default_rng(1).random((30, 30)), (0.5, 0.5))
    assert diffraction_view(v) is dv
    qtbot.wait(100)
    img = dv.qt_viewer.screenshot() if hasattr(dv.qt_viewer,'screenshot') else None
    print(type(img), None if img is None else np.asarray(img).std())

def test_runner(make_napari_viewer, qtbot):
    v = make_napari_viewer()
    r = Runner('Run')
    v.window.add_dock_widget(r)
    got = []
    def job():
        for i in range(5):
            yield i / 5
        yield 'partial'
        return 42
    r.start(job, got.append, got.append)
    qtbot.waitUntil(lambda: r.worker is None, timeout=5000)
    assert got == ['partial', 42]
    def bad():
        yield 0.1
        raise ValueError('boom')
    r.start(bad, got.append)
    qtbot.waitUntil(lambda: r.worker is None, timeout=5000)
    assert 'boom' in r.status.value
