"""Seed 001 in a few lines: counterfactuals for a RandomForest on UCI Adult, with immutable features.

    python examples/cfrl_adult.py            # ~2 minutes on 2 CPU cores

The full job (alibi's example settings, metrics, HTML table) is `xrl cfrl adult`.
"""
import numpy as np

from xrl.counterfactual import CounterfactualRLTabular
from xrl.jobs.cfrl_adult import black_box, load_split, train_autoencoder
from xrl.preprocessing import TabularPreprocessor

adult, X_train, X_test, Y_train, Y_test = load_split()     # alibi's 80/20 split of adult.data
predictor = black_box(X_train, Y_train, adult.category_map)   # RandomForest on one-hot + scaled features
pre = TabularPreprocessor(adult.feature_names, adult.category_map).fit(X_train)
ae = train_autoencoder(pre, X_train, epochs=10)               # heterogeneous autoencoder, latent 15

explainer = CounterfactualRLTabular(predictor, ae.encoder, ae.decoder, 15, pre, pre.inverse_transform,
                                    coeff_sparsity=0.5, coeff_consistency=0.5,
                                    immutable_features=["Marital Status", "Relationship", "Race", "Sex"],
                                    ranges={"Age": [0.0, 1.0]}, train_steps=3000, batch_size=100)
explainer.fit(X_train)
rows = X_test[:5]
explanation = explainer.explain(rows, Y_t=1 - predictor(rows).argmax(1), C={"Age": [0, 20]})
print(explanation.data["cf"]["X"])
