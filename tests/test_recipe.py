"""Recipes: validation (keys, units), YAML/JSON round trips."""

import math

import pytest

from napari_phase.recipe import (
    RecipeError,
    new_recipe,
    read_recipe,
    validate,
    write_recipe,
)


def seed_recipe():
    return new_recipe(
        {'calibrate': {'thresh_upper': 0.7}, 'virtual': {},
         'dpc': {'mask': 'threshold', 'mask_threshold': 0.8,
                 'rotation_deg': '-15 deg', 'flip_half_turn': True}},
        seed=3, calibration={'scan_step': '0.239 nm', 'energy': '300 kV',
                             'semiangle': 22.6, 'probe_center': [48, 47.5]},
    )


def test_units_are_converted_to_the_canonical_ones():
    recipe = seed_recipe()
    assert recipe['calibration']['scan_step'] == pytest.approx(2.39)
    assert recipe['calibration']['energy'] == 300e3
    assert recipe['calibration']['probe_center'] == [48.0, 47.5]
    assert recipe['steps']['dpc']['rotation_deg'] == -15.0
    assert list(recipe['steps']) == ['calibrate', 'virtual', 'dpc']
    angle = validate(recipe | {'steps': {'dpc': {'rotation_deg':
                                                 f'{math.pi} rad'}}})
    assert angle['steps']['dpc']['rotation_deg'] == pytest.approx(180)


@pytest.mark.parametrize('suffix', ['.yaml', '.json'])
def test_file_round_trip(tmp_path, suffix):
    recipe = seed_recipe()
    path = write_recipe(tmp_path / f'r{suffix}', recipe)
    assert read_recipe(path) == recipe
    with pytest.raises(ValueError, match='exists'):
        write_recipe(path, recipe)
    write_recipe(path, recipe, force=True)


@pytest.mark.parametrize('bad, message', [
    ({'steps': {'dpc': {'rotaton_deg': 3}}},
     'dpc: unknown key.*rotaton_deg.*known:.*rotation_deg'),
    ({'steps': {'ptycho': {}}}, 'steps: unknown key.*ptycho'),
    ({'colour': 1}, 'the recipe: unknown key.*colour'),
    ({'steps': {'dpc': {'rotation_deg': '400 nm'}}},
     "dpc.rotation_deg: '400 nm' is a length; expected an angle in deg"),
    ({'calibration': {'scan_step': '2 mrad'}},
     "calibration.scan_step: '2 mrad' is an? .*angle; expected a length"),
    ({'calibration': {'energy': '300 furlongs'}}, 'an unknown unit'),
    ({'steps': {'dpc': {'max_iter': 2.5}}}, 'whole number'),
    ({'steps': {'dpc': {'transpose': 'yes'}}}, 'true or false'),
    ({'steps': {'dpc': {'mask': 'round'}}}, 'one of none, bf, threshold'),
    ({'napari_phase_recipe': 99}, 'version 1'),
])
def test_bad_recipes_say_what_is_wrong(bad, message):
    recipe = seed_recipe() | bad
    with pytest.raises(RecipeError, match=message):
        validate(recipe)


def test_bad_files(tmp_path):
    broken = tmp_path / 'broken.yaml'
    broken.write_text('steps: [unclosed')
    with pytest.raises(RecipeError, match='not valid'):
        read_recipe(broken)
    with pytest.raises(RecipeError, match='cannot read'):
        read_recipe(tmp_path / 'missing.yaml')
    unknown = tmp_path / 'unknown.yaml'
    unknown.write_text('napari_phase_recipe: 1\nsteps: {dpc: {foo: 1}}\n')
    with pytest.raises(RecipeError, match='unknown.yaml: dpc: unknown key'):
        read_recipe(unknown)
    with pytest.raises(ValueError, match='does not exist'):
        write_recipe(tmp_path / 'no' / 'r.yaml', seed_recipe())


def test_drawn_shapes_are_checked():
    good = {'type': 'ellipse', 'vertices': [[1, 2], [3, 2], [3, 4], [1, 4]]}
    recipe = validate(seed_recipe() | {'steps': {'virtual': {'detectors': [
        {'name': 'BF', 'shapes': [good]}]}}})
    (detector,) = recipe['steps']['virtual']['detectors']
    assert detector['shapes'][0]['role'] == 'add'  # the default
    assert detector['shapes'][0]['vertices'][0] == [1.0, 2.0]
    for bad, message in (
            ({'type': 'line', 'vertices': [[1, 2], [3, 4]]},
             r'shapes\[0\].type: expected one of ellipse, rectangle'),
            ({'type': 'polygon', 'vertices': 'round'},
             r'shapes\[0\].vertices: expected a list of \[qx, qy\]'),
            ({'type': 'polygon', 'vertices': [[1, 2], [3]]},
             'expected two values'),
            ({'type': 'polygon', 'colour': 'red', 'vertices': []},
             'unknown key.*colour')):
        with pytest.raises(RecipeError, match=message):
            validate(seed_recipe() | {'steps': {'dpc': {
                'mask': 'detector', 'mask_shapes': [bad]}}})


def test_a_session_recipe_records_what_made_its_layers():
    """Iterations done (a run stopped early), drawn detectors with their
    shapes, a drawn DPC mask, forced values."""
    from napari_phase.recipe import recipe_from_parameters

    disk = [{'type': 'ellipse', 'role': 'add',
             'vertices': [[1.0, 2.0], [9.0, 2.0], [9.0, 8.0], [1.0, 8.0]]}]
    records = [
        {'method': 'virtual', 'detector': 'my disk', 'shapes': disk,
         'pixels': 40, 'source': 'scan.h5'},
        {'method': 'dpc', 'descan': 'plane', 'mask': 'detector',
         'mask_detector': 'my disk', 'mask_shapes': disk,
         'rotation_deg': -11.0, 'fitted_rotation_deg': -11.0},
        {'method': 'ptychography', 'num_iter': 64, 'iterations_done': 4,
         'step_size': 0.5, 'seed': 0},
    ]
    recipe = recipe_from_parameters(records, {'scan_step': 2.39})
    steps = recipe['steps']
    assert steps['virtual'] == {'detectors': [{'name': 'my disk',
                                               'shapes': disk}]}
    assert steps['dpc'] == {'descan': 'plane', 'mask': 'detector',
                            'mask_shapes': disk, 'rotation_deg': -11.0}
    assert steps['ptychography']['num_iter'] == 4
