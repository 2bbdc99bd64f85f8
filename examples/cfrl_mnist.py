"""Seed 000 in a few lines: counterfactuals for the bundled MNIST classifier.

    python examples/cfrl_mnist.py            # ~1-2 minutes on 2 CPU cores; writes cfrl_mnist.png

The full job (metrics, more figures, the saved explainer) is `xrl cfrl mnist`.
"""
import numpy as np

from xrl.counterfactual import CounterfactualRL
from xrl.datasets import load_mnist
from xrl.pretrained import load_pretrained
from xrl.render import plot_explanation

(X_train, Y_train), (X_test, Y_test) = load_mnist()       # float32 [N, 1, 28, 28] in [0, 1]
classifier = load_pretrained("mnist_classifier")           # the black box (any callable works)
ae = load_pretrained("mnist_autoencoder")                  # encoder/decoder: CFRL acts in its latent space

explainer = CounterfactualRL(predictor=classifier, encoder=ae.encoder, decoder=ae.decoder, latent_dim=64,
                             coeff_sparsity=7.5, coeff_consistency=0, train_steps=1000, batch_size=100,
                             backend="pytorch", act_noise=0.3, seed=0)
explainer.fit(X=X_train)
explanation = explainer.explain(X_test[:10], Y_t=np.array([2]), batch_size=100)   # every image towards a "2"
print("counterfactual classes:", explanation.data["cf"]["class"].ravel())
plot_explanation(explanation, n=10, path="cfrl_mnist.png")
