"""Median-frequency class weights (training.class_balance, Eigen & Fergus 2015)."""

import numpy as np
import pytest

from joint_perception.training.class_balance import label_statistics, median_frequency_weights


def test_label_statistics_counts_pixels_and_the_maps_a_class_appears_in():
    a = np.array([[0, 1], [1, 2]])  # 3 labelled pixels: class 1 x2, class 2 x1
    b = np.array([[1, 1], [1, 1]])  # 4 labelled pixels, class 1 only
    pixels, image_pixels = label_statistics([a, b], 3)
    assert pixels.tolist() == [6, 1, 0]
    assert image_pixels.tolist() == [7, 3, 0]
    with pytest.raises(ValueError, match="0..3"):
        label_statistics([np.array([[4]])], 3)


def test_median_frequency_weights_follow_the_paper_then_power_and_clip():
    pixels = np.array([80, 10, 1, 0])
    image_pixels = np.array([100, 100, 100, 0])
    # f = 0.8, 0.1, 0.01; median 0.1 -> paper weights 0.125, 1, 10; unseen -> w_max
    w = median_frequency_weights(pixels, image_pixels, power=1.0, w_min=0.01, w_max=100)
    np.testing.assert_allclose(w, [0.125, 1.0, 10.0, 100.0])
    w = median_frequency_weights(pixels, image_pixels)  # the paper's, clipped to [0.25, 4]
    np.testing.assert_allclose(w, [0.25, 1.0, 4.0, 4.0])
    w = median_frequency_weights(pixels, image_pixels, power=0.5)
    np.testing.assert_allclose(w, [np.sqrt(0.125), 1.0, np.sqrt(10), 4.0])
    w = median_frequency_weights(pixels, image_pixels, power=1.0, w_min=0.5, w_max=4)
    np.testing.assert_allclose(w, [0.5, 1.0, 4.0, 4.0])
    with pytest.raises(ValueError, match="no labelled pixel"):
        median_frequency_weights([0, 0], [0, 0])
    with pytest.raises(ValueError, match="w_min"):
        median_frequency_weights([1], [1], w_min=2, w_max=1)
