"""Metrics: counterfactual quality (images and tabular) and interpretability scores against ground-truth objects."""
from .counterfactual import counterfactual_report, l0_distance, l1_distance, reconstruction_error, validity, ynn
from .interpretability import best_object_matches, count_matched_objects, object_correlations
from .tabular import (categorical_sparsity, count_diversity, immutability_violations, mean_pairwise_distance,
                      numerical_sparsity, range_violations, tabular_cf_metrics, tabular_validity)

__all__ = ["validity", "l1_distance", "l0_distance", "reconstruction_error", "ynn", "counterfactual_report",
           "tabular_validity", "categorical_sparsity", "numerical_sparsity", "immutability_violations",
           "range_violations", "mean_pairwise_distance", "count_diversity", "tabular_cf_metrics",
           "object_correlations", "best_object_matches", "count_matched_objects"]
