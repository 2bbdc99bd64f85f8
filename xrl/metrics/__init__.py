"""Metrics: counterfactual quality (images and tabular) and interpretability scores against ground-truth objects."""
from .counterfactual import (counterfactual_report, l0_distance, l1_distance, reconstruction_error, validity, ynn)

__all__ = ["validity", "l1_distance", "l0_distance", "reconstruction_error", "ynn", "counterfactual_report"]
