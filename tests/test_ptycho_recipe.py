"""A continued ptychography session in a recipe: recorded from the
result's parameters, validated, and replayed by the pipeline and the
command line into the same arrays."""

import numpy as np
import pytest
from ptycho_truth import EXTENT, layer, scan

from napari_phase import load_results, ptychography, write_emd
from napari_phase.cli import main
from napari_phase.pipeline import run_pipeline
from napari_phase.recipe import (
    RecipeError,
    new_recipe,
    recipe_from_parameters,
    write_recipe,
)

FIRST = {'num_iter': 3, 'max_batch_size': 32, 'num_probes': 2,
         'fix_probe': True, 'seed': 4}
SECOND = {'num_iter': 2, 'max_batch_size': 16, 'position_correction': True,
          'tv_weight': 0.01, 'seed': 4}


@pytest.fixture(scope='module')
def session():
    cube = scan([layer(EXTENT, 1)], scan_shape=(10, 10), C1=150.0)
    first = ptychography(cube, **FIRST)
    return cube, ptychography(cube, continue_from=first, **SECOND)


def test_the_recipe_records_both_runs(session):
    cube, result = session
    recipe = recipe_from_parameters([result.parameters],
                                    cube.calibration.to_dict())
    step = recipe['steps']['ptychography']
    assert step['num_iter'] == 3 and step['num_probes'] == 2
    assert step['fix_probe'] is True
    (later,) = step['continued']
    assert later['num_iter'] == 2 and later['max_batch_size'] == 16
    assert later['position_correction'] is True
    assert later['tv_weight'] == 0.01
    assert 'num_probes' not in later  # the model is the first run's
    assert recipe['seed'] == 4


def test_the_pipeline_and_the_cli_replay_it(session, tmp_path):
    cube, result = session
    recipe = recipe_from_parameters([result.parameters],
                                    cube.calibration.to_dict())
    recipe['steps'] = {'ptychography': recipe['steps']['ptychography']}
    replay = run_pipeline(cube, recipe).results['ptychography']
    np.testing.assert_array_equal(replay.object, result.object)
    assert replay.errors == result.errors
    assert replay.parameters['iterations_done'] == 5

    data, path = tmp_path / 'scan.h5', tmp_path / 'session.yaml'
    write_emd(data, cube)
    write_recipe(path, recipe)
    out = tmp_path / 'replay.h5'
    assert main(['run', str(data), '--recipe', str(path), '--methods',
                 'ptycho', '-o', str(out)]) == 0
    layers = {attrs['name']: array for array, attrs, _ in load_results(out)}
    np.testing.assert_array_equal(layers['ptychography phase'],
                                  result.phase)


def test_continued_runs_are_validated():
    steps = {'ptychography': {'num_iter': 2, 'continued': [
        {'num_iter': '3', 'max_position_update': '0.05 nm'}]}}
    checked = new_recipe(steps)['steps']['ptychography']['continued']
    assert checked == [{'num_iter': 3, 'max_position_update': 0.5}]
    bad = {'ptychography': {'continued': [{'num_iters': 3}]}}
    with pytest.raises(RecipeError, match=r'continued\[0\].*num_iters'):
        new_recipe(bad)
    nested = {'ptychography': {'continued': [{'continued': []}]}}
    with pytest.raises(RecipeError, match='cannot itself'):
        new_recipe(nested)
    wrong = {'ptychography': {'slice_thickness': '3 mrad'}}
    with pytest.raises(RecipeError, match='slice_thickness.*length'):
        new_recipe(wrong)


def test_a_stopped_run_records_the_iterations_it_did():
    """Cancelled during its third iteration (one batch each), then
    continued for two: the runs record 2 and 2 iterations (not the 50
    asked), and so does the recipe."""
    cube = scan([layer(EXTENT, 1)], scan_shape=(8, 8), C1=150.0)
    batches = iter(range(100))
    first = ptychography(cube, num_iter=50, max_batch_size=64,
                         stop=lambda: next(batches) == 2)
    assert first.parameters['iterations_done'] == 2
    assert first.parameters['runs'][0]['num_iter'] == 2
    assert first.parameters['num_iter'] == 50  # what was asked
    result = ptychography(cube, num_iter=2, max_batch_size=64,
                          continue_from=first)
    assert [run['num_iter'] for run in result.parameters['runs']] == [2, 2]
    step = recipe_from_parameters([result.parameters],
                                  cube.calibration.to_dict())
    step = step['steps']['ptychography']
    assert step['num_iter'] == 2
    assert [run['num_iter'] for run in step['continued']] == [2]
